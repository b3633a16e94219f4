"""The package configures polars' allocator at import, unless the process already chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rangebar_pipeline._allocator import POLARS_MALLOC_CONF, POLARS_MALLOC_ENV

REPORT = (
    "import os; import rangebar_pipeline._allocator as a; print(repr(os.environ.get({env!r})), a.SET_HERE)"
)


def run(code: str, **env: str) -> str:
    """``code``'s output in a fresh process, the variable unset unless given in ``env``."""
    environ = {k: v for k, v in os.environ.items() if k != POLARS_MALLOC_ENV} | env
    argv = [sys.executable, "-c", code]
    return subprocess.run(argv, env=environ, capture_output=True, text=True, check=True).stdout.strip()


def imported(before: str = "", **env: str) -> str:
    """The variable and ``SET_HERE`` after importing the package (``before``: code run first)."""
    return run(before + REPORT.format(env=POLARS_MALLOC_ENV), **env)


def test_importing_the_package_keeps_polars_freed_memory() -> None:
    assert imported() == f"{POLARS_MALLOC_CONF!r} True"


@pytest.mark.parametrize("value", ["", "dirty_decay_ms:0"])
def test_a_process_that_chose_keeps_its_choice(value: str) -> None:
    assert imported(**{POLARS_MALLOC_ENV: value}) == f"{value!r} False"


def test_nothing_is_changed_once_polars_is_loaded() -> None:
    polars_own = run(f"import os, polars; print(repr(os.environ[{POLARS_MALLOC_ENV!r}]))")
    assert imported(before="import polars; ") == f"{polars_own} False"  # polars' own setting
    assert POLARS_MALLOC_CONF not in polars_own


def test_polars_reads_the_setting_after_the_package_set_it() -> None:
    code = f"import os, rangebar_pipeline, polars; print(repr(os.environ[{POLARS_MALLOC_ENV!r}]))"
    # polars prepends its defaults and appends what the process set: jemalloc takes the last value
    assert run(code).endswith(f",{POLARS_MALLOC_CONF}'")
