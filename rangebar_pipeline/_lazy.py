"""Modules imported on first attribute access, so that importing ours does not import them.

>>> pd = lazy_module("pandas")  # nothing imported yet
>>> pd.DataFrame  # doctest: +ELLIPSIS
<class 'pandas...DataFrame'>

Use it as ``if TYPE_CHECKING: import pandas as pd`` / ``else: pd = lazy_module("pandas")``: type
checkers see the real module, the runtime a stand-in that is not registered in ``sys.modules`` (so
libraries that look there, as polars does for pandas, are not misled).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, cast


class _LazyModule:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> ModuleType:
    """A stand-in for ``import name`` that imports the module on first attribute access."""
    return cast(ModuleType, _LazyModule(name))  # typed as the module it stands for
