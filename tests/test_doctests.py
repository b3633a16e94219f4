"""Every docstring example of the package runs (``doctest``), module by module."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import rangebar_pipeline

MODULES = ["rangebar_pipeline"] + [
    info.name
    for info in pkgutil.walk_packages(rangebar_pipeline.__path__, "rangebar_pipeline.")
    if info.name != "rangebar_pipeline._core"
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} failing docstring example(s) in {name} (output above)"
