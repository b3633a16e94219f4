"""What a bare ``import rangebar_pipeline`` and ``rangebar --help`` load, each in a fresh interpreter.

Heavy libraries load on first use only (issue 13); every public name stays importable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rangebar_pipeline

ROOT = Path(__file__).resolve().parents[1]

# Modules a light import must not load (polars is allowed but not needed either): heavy libraries,
# and our own stores, API and validators.
HEAVY = (
    "pandas",
    "numpy",
    "pyarrow",
    "clickhouse_connect",
    "chdb",
    "great_expectations",
    "statsmodels",
    "sklearn",
    "scipy",
    "dagster",
    "requests",
    "yaml",
    "rangebar_pipeline.api",
    "rangebar_pipeline.storage",
    "rangebar_pipeline.validation",
)


def _loaded_after(code: str) -> list[str]:
    """Heavy top-level modules in ``sys.modules`` after running ``code`` in a new interpreter."""
    body = textwrap.indent(code, "    ")
    probe = f"import json, sys\ntry:\n{body}\nexcept SystemExit:\n    pass\n"
    probe += f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_bare_import_loads_no_heavy_library() -> None:
    assert _loaded_after("import rangebar_pipeline") == []


def test_cli_help_loads_no_heavy_library() -> None:
    code = "import io, contextlib\nfrom rangebar_pipeline.cli import main\n"
    code += "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])"
    assert _loaded_after(code) == []


def test_first_use_loads_the_library_it_needs() -> None:
    loaded = _loaded_after("from rangebar_pipeline import validate_tier1")
    assert "clickhouse_connect" not in loaded and "dagster" not in loaded


def test_the_processor_loads_no_pandas_or_pyarrow() -> None:
    assert _loaded_after("from rangebar_pipeline import RangeBarProcessor") == ["numpy"]


@pytest.mark.parametrize("name", rangebar_pipeline.__all__)
def test_every_public_name_is_importable(name: str) -> None:
    assert getattr(rangebar_pipeline, name) is not None
    assert name in dir(rangebar_pipeline)


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = rangebar_pipeline.no_such_name  # type: ignore[attr-defined]


def test_the_cached_bars_path_loads_no_pandas() -> None:
    """``rangebar bars`` (the API, both stores, the backfill engine) prints with polars: no pandas."""
    loaded = _loaded_after("import rangebar_pipeline.api, rangebar_pipeline.cli, rangebar_pipeline.storage")
    assert "pandas" not in loaded and "dagster" not in loaded and "great_expectations" not in loaded
    assert "clickhouse_connect" in loaded, "the probe must reach the bar store"


def test_storing_days_loads_no_pandas(tmp_path: Path) -> None:
    """A bar-store write (bars and coverage rows, both as Arrow) and its reads: the ClickHouse client
    imports pandas for a plain row insert, 0.35 s of a short script."""
    code = f"""
from datetime import date
import polars as pl
from rangebar_pipeline import RangeBarProcessor
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore, DayWrite
trades = {{"timestamp": [1_723_075_200_000, 1_723_075_260_000], "price": [100.0, 103.0]}}
trades["quantity"] = [1.0, 2.0]
processor = RangeBarProcessor(250)
bars = processor.process(pl.DataFrame(trades))
day, series = date(2024, 8, 8), Series("binance", "spot", "BTCUSDT")
with BarStore(dsn="chdb://{tmp_path / "store"}") as store:
    store.write_days([DayWrite(series, 250, day, bars, processor.checkpoint().to_bytes(), 2)])
    assert store.read_bars(series, 250, day, day).height == bars.height
    assert store.covered_days(series, 250, day, day)
"""
    assert "pandas" not in _loaded_after(code)


def test_only_a_call_with_pandas_output_loads_pandas() -> None:
    call = "from rangebar_pipeline import process_trades_polars\n"
    call += "process_trades_polars({'timestamp': [1_700_000_000_000], 'price': [1.0], 'quantity': [1.0]}"
    assert "pandas" not in _loaded_after(call + ", output='polars')")
    assert "pandas" in _loaded_after(call + ")")


def test_import_ahead_leaves_no_thread_and_errors_to_the_caller() -> None:
    code = """
import importlib, threading
from rangebar_pipeline._lazy import import_ahead
with import_ahead("rangebar_no_such_module"):
    pass
assert [t.name for t in threading.enumerate()] == ["MainThread"]
try:
    importlib.import_module("rangebar_no_such_module")
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("imported")
try:
    with import_ahead("pandas"):
        raise KeyError("in the block")
except KeyError:
    pass
assert [t.name for t in threading.enumerate()] == ["MainThread"]
"""
    assert "pandas" in _loaded_after(code)  # the block waited for the import


def test_warm_ups_run_one_after_another_on_one_thread() -> None:
    """Both step warm-ups (great-expectations, the tier-2 statistics stack) import narwhals; from two
    threads at once that raised ``_DeadlockError`` in one of them. They now share one thread, once
    per process, and a validator waits for its own warm-up (and those before it) before importing."""
    code = """
import threading
from rangebar_pipeline import _lazy
from rangebar_pipeline.validation import expectations, tier2
seen = []
gx, stats = expectations.warm_up(), tier2.warm_up()
assert expectations.warm_up() is gx, "a second step in the process queues nothing"
failing = _lazy.in_background(lambda: 1 / 0)
last = _lazy.in_background(lambda: seen.append(threading.current_thread().name))
_lazy.warmed("tier2")
assert gx.done() and stats.done(), "waited for the tier-2 warm-up and the one queued before it"
last.result()
assert gx.exception() is None and stats.exception() is None, (gx.exception(), stats.exception())
assert isinstance(failing.exception(), ZeroDivisionError)
assert seen == ["rangebar-warm-up"]
assert [t.name for t in threading.enumerate()] == ["MainThread", "rangebar-warm-up"]
"""
    assert {"great_expectations", "sklearn", "statsmodels"} <= set(_loaded_after(code))


def test_background_work_runs_in_a_forked_child() -> None:
    """A child forked after the parent started its background thread (a prefork Celery worker, a
    forked executor) has no such thread: its work goes to a thread of its own instead of a queue
    nobody reads (which would hang the step that waits for it)."""
    code = """
import os, threading
from rangebar_pipeline import _lazy
assert _lazy.in_background(lambda: 1).result(timeout=60) == 1  # the parent's thread runs
pid = os.fork()
if pid == 0:
    try:
        name = _lazy.in_background(lambda: threading.current_thread().name).result(timeout=60)
        os._exit(0 if name == "rangebar-warm-up" else 3)
    except BaseException:
        os._exit(4)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=180)
