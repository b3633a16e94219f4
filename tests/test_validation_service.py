"""The validation service: a process prepared once answers every client of the same code with this
process's results; a client of other code, or without a service, starts its own worker; a killed
connection costs a recomputation here (counted) and the next start connects again; the service
stops by pid and removes its socket."""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from rangebar_pipeline.validation import expectations, service, tier2, worker
from tests.data_paths import GOLDEN_SERIES, load_golden
from tests.test_validation_tier2 import synthetic_bars


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short folder for the socket (a Unix socket's path has at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rb-vs-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def service_socket(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The service running at a socket that this process's clients are given; stopped by pid."""
    path = folder / "v.sock"
    worker.stop()
    monkeypatch.setattr(worker, "FALLBACKS", [])  # this test's recomputations only
    with service.started(path, folder / "service.log") as pid:
        monkeypatch.setenv("RANGEBAR_VALIDATION_SOCKET", str(path))
        yield path
        worker.stop()
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the service ran the whole test"
    assert not path.exists() and not path.with_name("v.sock.pid").exists(), "stopped cleanly by pid"


def _frame() -> pl.DataFrame:
    market, symbol, dbps = GOLDEN_SERIES[0]
    return load_golden(market, symbol, dbps)


def _connected_pid() -> int:
    found = worker._PROCESS[0]
    assert found.process is None and found.connection is not None, "connected to the service"
    return found.pid


def test_the_service_gives_the_results_of_this_process(service_socket: Path) -> None:
    worker.start()
    pid = _connected_pid()
    frame = _frame()
    out_of_range = pl.when(pl.int_range(pl.len()) == 3).then(5.0).otherwise(pl.col("ofi"))
    broken = frame.with_columns(out_of_range.alias("ofi"))
    for bars in (frame, broken):
        assert worker.validate_expectations(bars) == expectations.validate_expectations(bars)
    assert not worker.validate_expectations(broken).passed
    bars = synthetic_bars(predictive=True)
    assert worker.validate_tier2(bars).to_dict() == tier2.validate_tier2(bars).to_dict()
    with pytest.raises(TypeError, match="found int"):
        worker.validate_expectations(42)  # a validator's error, raised here as it is
    assert worker.running() and _connected_pid() == pid and not worker.FALLBACKS


def test_clients_at_once_are_served_by_processes_of_their_own(service_socket: Path) -> None:
    first, second = worker._connect(str(service_socket)), worker._connect(str(service_socket))
    assert first is not None and second is not None and first.pid != second.pid
    try:
        for found in (second, first):  # both open: the second is answered while the first waits
            pickle.dump(("validate_expectations", (_frame(),), {}), found.requests)
            found.requests.flush()
            ok, result = pickle.load(found.replies)
            assert ok and result.passed
    finally:
        first.close()
        second.close()


def test_a_killed_connection_is_recomputed_here_and_the_next_start_reconnects(service_socket: Path) -> None:
    worker.start()
    frame = _frame()
    assert worker.validate_expectations(frame).passed
    killed = _connected_pid()
    os.kill(killed, signal.SIGKILL)  # the service's process of this connection, between calls
    before = len(worker.FALLBACKS)
    assert worker.validate_expectations(frame) == expectations.validate_expectations(frame)
    assert worker.FALLBACKS[before:] == ["validate_expectations"], "one recomputation here, counted"
    worker.start()
    assert _connected_pid() != killed, "a new connection, served by a new process"
    assert worker.validate_expectations(frame).passed
    assert worker.FALLBACKS[before:] == ["validate_expectations"]


def test_a_service_of_other_code_is_declined(service_socket: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "fingerprint", lambda: "other code")
    worker.start()
    found = worker._PROCESS[0]
    assert found.process is not None, "this process's own worker"
    assert worker.validate_expectations(_frame()).passed
    worker.stop()


def test_without_a_service_a_process_starts_its_own_worker(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = folder / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left:
        left.bind(str(stale))  # a socket file nothing listens at, as a killed service leaves it
    for path in (folder / "missing.sock", stale):
        monkeypatch.setenv("RANGEBAR_VALIDATION_SOCKET", str(path))
        worker.stop()
        worker.start()
        assert worker._PROCESS[0].process is not None
        assert worker.validate_expectations(_frame()).passed
    worker.stop()


def test_the_service_takes_over_a_stale_socket_and_refuses_a_second(folder: Path) -> None:
    path = folder / "v.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left:
        left.bind(str(path))
    with service.started(path, folder / "service.log"):
        assert path.is_socket()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, "calls arrive pickled: the user's alone"
        second = subprocess.run(
            [sys.executable, "-m", "rangebar_pipeline.validation.service", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert second.returncode != 0 and "already listens" in second.stderr
        assert path.is_socket(), "the first one still listens"
    assert not path.exists()
