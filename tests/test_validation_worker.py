"""The validation worker process: same results as in this process, errors raised here, and a
worker killed between calls costs nothing but a recomputation here (counted)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import polars as pl
import pytest

from rangebar_pipeline.validation import expectations, tier2, worker
from tests.data_paths import GOLDEN_SERIES, load_golden
from tests.test_validation_tier2 import synthetic_bars


@pytest.fixture
def running_worker() -> Iterator[None]:
    worker.stop()
    worker.start()
    assert worker.running()
    yield
    worker.stop()


def _frame() -> pl.DataFrame:
    market, symbol, dbps = GOLDEN_SERIES[0]
    return load_golden(market, symbol, dbps)


def test_the_worker_gives_the_results_of_this_process(running_worker: None) -> None:
    frame = _frame()
    out_of_range = pl.when(pl.int_range(pl.len()) == 3).then(5.0).otherwise(pl.col("ofi"))
    broken = frame.with_columns(out_of_range.alias("ofi"))
    for bars in (frame, broken):
        there, here = worker.validate_expectations(bars), expectations.validate_expectations(bars)
        assert there == here
    assert not worker.validate_expectations(broken).passed
    bars = synthetic_bars(predictive=True)
    there_t2, here_t2 = worker.validate_tier2(bars), tier2.validate_tier2(bars)
    assert there_t2.to_dict() == here_t2.to_dict()
    assert worker.running() and not worker.FALLBACKS, "everything was answered by the worker"


def test_an_error_in_the_worker_is_raised_here(running_worker: None) -> None:
    with pytest.raises(TypeError, match="found int") as there:
        worker.validate_expectations(42)
    with pytest.raises(TypeError, match="found int") as here:
        expectations.validate_expectations(42)
    assert type(there.value) is type(here.value) and str(there.value) == str(here.value)
    assert worker.running(), "a validator's error does not end the worker"


def test_a_killed_worker_is_replaced_by_this_process(running_worker: None) -> None:
    frame = _frame()
    assert worker.validate_expectations(frame).passed  # answered by the worker: it is up
    before = len(worker.FALLBACKS)
    process = worker._PROCESS[0].process
    assert process is not None, "this process's own worker"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    result = worker.validate_expectations(frame)  # the call that meets the dead worker
    assert result == expectations.validate_expectations(frame)
    assert worker.FALLBACKS[before:] == ["validate_expectations"], "one recomputation here, counted"
    assert not worker.running()
    worker.validate_expectations(frame)  # no worker now: computed here, not a fault
    assert worker.FALLBACKS[before:] == ["validate_expectations"]


def test_switched_off_no_process_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    worker.stop()
    monkeypatch.setenv("RANGEBAR_VALIDATION_WORKER", "0")
    worker.start()
    assert not worker.running()
    assert worker.validate_expectations(_frame()).passed


def test_a_worker_killed_during_a_call_is_replaced_by_this_process() -> None:
    """The kill hits a call in flight: a fresh worker answers its first call only after importing
    great-expectations and the statistics stack (seconds), and the kill comes while the caller waits."""
    worker.stop()
    worker.start()
    process = worker._PROCESS[0].process
    assert process is not None
    killed = threading.Event()

    def kill_while_waiting() -> None:
        while not worker._LOCK.locked():  # the caller holds the lock while it waits for the reply
            time.sleep(0.01)
        time.sleep(0.5)
        assert process.poll() is None, "the worker answered before the fault: no fault was tested"
        os.kill(process.pid, signal.SIGKILL)
        killed.set()

    killer = threading.Thread(target=kill_while_waiting)
    killer.start()
    before = len(worker.FALLBACKS)
    bars = synthetic_bars(predictive=True)
    try:
        result = worker.validate_tier2(bars)
    finally:
        killer.join()
        worker.stop()
    assert killed.is_set()
    assert worker.FALLBACKS[before:] == ["validate_tier2"], "the call in flight was recomputed here, once"
    assert result.to_dict() == tier2.validate_tier2(bars).to_dict()


def test_a_forked_child_does_not_use_its_parents_worker(running_worker: None) -> None:
    pid = os.fork()
    if pid == 0:  # the child: no worker of its own, the parent's pipes untouched
        os._exit(0 if not worker.running() and not worker._PROCESS else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert worker.running() and worker.validate_expectations(_frame()).passed, "the parent's still answers"
