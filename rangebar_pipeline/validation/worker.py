"""The heavy validators in a worker process: the expectations gate and the tier-2 statistics.

great-expectations, statsmodels and scikit-learn take ~5 s to import, and an import holds the GIL:
in a Dagster step that records events meanwhile, a background-thread import slows the recording
thread as much as it runs. :func:`start` launches one worker process per process (a plain
``python -m`` child over pipes, so it also works under daemonic Celery workers) that imports them
on the other core; :func:`validate_expectations` and :func:`validate_tier2` here send their
arguments to it (pickled; polars frames travel as Arrow IPC) and return its result, or compute in
this process when no worker was started, after one has died (counted in :data:`FALLBACKS`, logged),
or with ``RANGEBAR_VALIDATION_WORKER=0``. Errors raised by a validator are raised here as they are.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any, Final

from rangebar_pipeline.validation import expectations, tier2
from rangebar_pipeline.validation.expectations import ExpectationsResult
from rangebar_pipeline.validation.tier2 import Tier2Result

__all__ = [
    "FALLBACKS",
    "running",
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
_LOCK = threading.Lock()
_PROCESS: list[subprocess.Popen[bytes]] = []


def _forget() -> None:
    """In a forked child: the parent's worker, pipes and lock are not this process's."""
    global _LOCK  # noqa: PLW0603
    _LOCK = threading.Lock()
    _PROCESS.clear()


os.register_at_fork(after_in_child=_forget)


def _enabled() -> bool:
    return os.environ.get("RANGEBAR_VALIDATION_WORKER", "1") != "0"


def start() -> None:
    """Start this process's worker (it imports and prepares the validators at once); a no-op when
    one runs or the worker is switched off."""
    with _LOCK:
        if not _enabled() or (_PROCESS and _PROCESS[0].poll() is None):
            return
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "rangebar_pipeline.validation.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )
        except OSError as exc:  # no process to be had: everything runs here, as without a worker
            log.warning("cannot start the validation worker (%s): validating in this process", exc)
            return
        _PROCESS[:] = [process]


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
    """Whether this process has a live worker."""
    return bool(_PROCESS) and _PROCESS[0].poll() is None


@atexit.register
def stop() -> None:
    """End the worker (its stdin closes: it exits; killed if it does not within 5 s)."""
    with _LOCK:
        for process in _PROCESS:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        _PROCESS.clear()


def _call(name: str, *args: Any, **kwargs: Any) -> Any:
    with _LOCK:
        process = _PROCESS[0] if _PROCESS else None
        if process is not None and process.stdin is not None and process.stdout is not None:
            try:
                pickle.dump((name, args, kwargs), process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                process.stdin.flush()
                ok, value = pickle.load(process.stdout)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                log.warning("the validation worker died (%s): %s runs in this process", exc, name)
                FALLBACKS.append(name)
                process.kill()
                process.wait()
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


def _serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    expectations.warm_up()  # imports and contexts first, on the worker's background thread
    tier2.warm_up()
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
    _serve(sys.stdin.buffer, _replies)
