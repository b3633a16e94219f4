"""The heavy validators in a worker process: the expectations gate and the tier-2 statistics.

great-expectations, statsmodels and scikit-learn take ~5 s to import, and an import holds the GIL:
in a Dagster step that records events meanwhile, a background-thread import slows the recording
thread as much as it runs. :func:`start` launches one worker process per process (a plain
``python -m`` child over pipes, so it also works under daemonic Celery workers) that imports them
on the other core; :func:`validate_expectations` and :func:`validate_tier2` here send their
arguments to it (pickled; polars frames travel as Arrow IPC) and return its result, or compute in
this process when no worker was started, after one has died (counted in :data:`FALLBACKS`, logged),
or with ``RANGEBAR_VALIDATION_WORKER=0``. Errors raised by a validator are raised here as they are.

With ``RANGEBAR_VALIDATION_SOCKET`` naming a running :mod:`~rangebar_pipeline.validation.service`
(prepared once per machine), :func:`start` connects to it instead, and a process pays no imports;
when none listens there, or it runs other code, the process starts its own worker as above.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import logging
import os
import pickle
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any, Final

from rangebar_pipeline.validation import expectations, tier2
from rangebar_pipeline.validation.expectations import ExpectationsResult
from rangebar_pipeline.validation.tier2 import Tier2Result

__all__ = [
    "FALLBACKS",
    "fingerprint",
    "running",
    "serve",
    "start",
    "stop",
    "validate_expectations",
    "validate_tier2",
    "warm_up",
]

log = logging.getLogger(__name__)

_VALIDATORS: Final[dict[str, Callable[..., Any]]] = {
    "validate_expectations": expectations.validate_expectations,
    "validate_tier2": tier2.validate_tier2,
}
#: Calls computed in this process because the worker had died (a fault test counts them).
FALLBACKS: list[str] = []
#: The libraries whose versions decide the validators' results, with this package's code.
_LIBRARIES: Final = (
    "great_expectations",
    "numpy",
    "pandas",
    "polars",
    "scikit-learn",
    "scipy",
    "statsmodels",
)
#: How long a client waits for the service's answer to its first message before going without it.
_HANDSHAKE_SECONDS: Final = 10.0
_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Worker:
    """Where this process's validation calls go: its own worker process, or a connection to the
    service (``process`` None), served there by the process ``pid``."""

    pid: int
    requests: IO[bytes]
    replies: IO[bytes]
    process: subprocess.Popen[bytes] | None = None
    connection: socket.socket | None = None

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        assert self.connection is not None
        if self.connection.fileno() < 0:
            return False
        readable, _, _ = select.select([self.connection], [], [], 0)
        return not readable  # between calls the service sends nothing: readable means closed

    def close(self) -> None:
        """Close the requests: the worker (or the service's process for this connection) exits."""
        for stream in (self.requests, self.replies):
            stream.close()
        if self.connection is not None:
            self.connection.close()
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        else:
            self.close()


_PROCESS: list[_Worker] = []


def _forget() -> None:
    """In a forked child: the parent's worker, pipes and lock are not this process's."""
    global _LOCK  # noqa: PLW0603
    _LOCK = threading.Lock()
    _PROCESS.clear()


@cache
def fingerprint() -> str:
    """This process's validation code: the package's sources, Python and the libraries' versions.
    A service answers only clients of the same code (its results are theirs)."""
    digest = hashlib.sha256(sys.version.encode())
    for library in _LIBRARIES:
        try:
            version = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{library}=={version}".encode())
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


os.register_at_fork(after_in_child=_forget)


def _enabled() -> bool:
    return os.environ.get("RANGEBAR_VALIDATION_WORKER", "1") != "0"


def start() -> None:
    """Connect to the validation service, or else start this process's worker (it imports and
    prepares the validators at once); a no-op when one serves or the worker is switched off."""
    with _LOCK:
        if not _enabled() or (_PROCESS and _PROCESS[0].alive()):
            return
        if _PROCESS:
            _PROCESS.pop().kill()
        found = _connect(os.environ.get("RANGEBAR_VALIDATION_SOCKET")) or _spawn()
        if found is not None:
            _PROCESS[:] = [found]


def _connect(path: str | None) -> _Worker | None:
    """A connection to the service at ``path`` that agreed to serve this code, or None (logged)."""
    if not path:
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.settimeout(_HANDSHAKE_SECONDS)  # the service forks a process per connection at once
        connection.connect(path)
        requests, replies = connection.makefile("wb"), connection.makefile("rb")
        pickle.dump(("hello", fingerprint()), requests)
        requests.flush()
        ok, answer = pickle.load(replies)
        connection.settimeout(None)
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        connection.close()
        log.info("no validation service at %s (%s): this process starts its own worker", path, exc)
        return None
    if not ok:
        connection.close()
        log.warning("the validation service at %s declined: %s; starting a worker", path, answer)
        return None
    return _Worker(answer, requests, replies, connection=connection)


def _spawn() -> _Worker | None:
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "rangebar_pipeline.validation.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
    except OSError as exc:  # no process to be had: everything runs here, as without a worker
        log.warning("cannot start the validation worker (%s): validating in this process", exc)
        return None
    assert process.stdin is not None and process.stdout is not None
    return _Worker(process.pid, process.stdin, process.stdout, process=process)


def warm_up(*, gate: bool, statistics: bool) -> None:
    """Get the validators a step needs ready: the worker process when it is on (it prepares both),
    else this process's background warm-ups of those asked for."""
    if not (gate or statistics):
        return
    start()
    if running():
        return
    if gate:
        expectations.warm_up()
    if statistics:
        tier2.warm_up()


def running() -> bool:
    """Whether this process has a live worker (or a connection to the service)."""
    return bool(_PROCESS) and _PROCESS[0].alive()


@atexit.register
def stop() -> None:
    """End the worker (its stdin closes: it exits; killed if it does not within 5 s), or the
    connection to the service."""
    with _LOCK:
        for found in _PROCESS:
            found.close()
        _PROCESS.clear()


def _call(name: str, *args: Any, **kwargs: Any) -> Any:
    with _LOCK:
        found = _PROCESS[0] if _PROCESS else None
        if found is not None:
            try:
                pickle.dump((name, args, kwargs), found.requests, protocol=pickle.HIGHEST_PROTOCOL)
                found.requests.flush()
                ok, value = pickle.load(found.replies)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                log.warning("the validation worker died (%s): %s runs in this process", exc, name)
                FALLBACKS.append(name)
                found.kill()
                _PROCESS.clear()
            else:
                if ok:
                    return value
                raise value
    return _VALIDATORS[name](*args, **kwargs)


def validate_expectations(bars: Any, **options: Any) -> ExpectationsResult:
    """:func:`rangebar_pipeline.validation.validate_expectations`, in the worker when one runs."""
    result: ExpectationsResult = _call("validate_expectations", bars, **options)
    return result


def validate_tier2(bars: Any, **options: Any) -> Tier2Result:
    """:func:`rangebar_pipeline.validation.validate_tier2`, in the worker when one runs."""
    result: Tier2Result = _call("validate_tier2", bars, **options)
    return result


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer pickled calls from ``requests`` on ``replies`` until ``requests`` ends."""
    while True:
        try:
            name, args, kwargs = pickle.load(requests)
        except EOFError:
            return
        try:
            reply: tuple[bool, Any] = (True, _VALIDATORS[name](*args, **kwargs))
        except Exception as exc:  # raised in the parent as it is
            reply = (False, exc)
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an error that does not pickle: its text does
            data = pickle.dumps((False, RuntimeError(f"{name} failed in the validation worker: {exc!r}")))
        replies.write(data)
        replies.flush()


if __name__ == "__main__":
    # The protocol owns the original stdout; anything a library prints goes to stderr.
    _replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    expectations.warm_up()  # imports and contexts first, on the worker's background thread
    tier2.warm_up()
    serve(sys.stdin.buffer, _replies)
