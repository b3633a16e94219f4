"""The validation service: great-expectations and the statistics stack imported once per machine.

Every run process otherwise starts its own validation worker (:mod:`.worker`) and waits for its ~4 s
of imports: a fresh ``dagster`` run pays them on its critical path. The service imports and prepares
the validators once, then listens on a Unix socket; each connection is served by a process forked
from the prepared one (ready in ~20 ms; a crash there ends that connection only, and its client
recomputes the call in flight). A client first sends its code's :func:`~.worker.fingerprint`; the
service declines clients of other code, which then start their own worker.

The socket appears only once the validators are prepared (bound under a temporary name, then
renamed), so a client never waits for the imports: until then it starts its own worker. Calls cross
it pickled, so it is the service's user's alone (mode 0600).

Run by the deployment beside the daemon and stopped by pid (SIGTERM or SIGINT: the socket is
removed, connections in flight finish)::

    python -m rangebar_pipeline.validation.service /run/rangebar/validation.sock [--pidfile FILE]

and give the run processes ``RANGEBAR_VALIDATION_SOCKET=/run/rangebar/validation.sock``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from rangebar_pipeline.validation import expectations, tier2
from rangebar_pipeline.validation.worker import fingerprint, serve

__all__ = ["main", "prepare", "run", "started"]

log = logging.getLogger("rangebar_pipeline.validation.service")


def prepare() -> None:
    """Import the validators and build great-expectations' context here, in this thread, so that
    the process has no other thread when it forks."""
    expectations.prepare()
    tier2.prepare()


def _handle(connection: socket.socket) -> None:
    """In the forked process: the handshake, then the calls until the client closes."""
    requests, replies = connection.makefile("rb"), connection.makefile("wb")
    try:
        kind, theirs = pickle.load(requests)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError):
        return
    accepted = kind == "hello" and theirs == fingerprint()
    answer = os.getpid() if accepted else "it runs other code (its package, Python or libraries differ)"
    pickle.dump((accepted, answer), replies)
    replies.flush()
    if accepted:
        serve(requests, replies)


def _claim(path: Path) -> None:
    """Make sure no service listens at ``path``; a stale socket file (nothing accepts) is removed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except FileNotFoundError:
            return
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
            return
    raise SystemExit(f"a validation service already listens at {path}")


def _listen(path: Path) -> socket.socket:
    """A listening socket, renamed to ``path`` only now: clients find it when it answers at once."""
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    staged.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(staged))
    staged.chmod(0o600)  # calls arrive pickled: only the service's user may connect
    listener.listen(64)
    _claim(path)  # again: another service may have started meanwhile
    staged.rename(path)
    return listener


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(path: Path, pidfile: Path | None = None) -> None:
    """Prepare, listen at ``path`` and fork a process per connection until SIGTERM or SIGINT."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _claim(path)
    prepare()
    fingerprint()  # read the package once here: every connection's process inherits it
    listener = _listen(path)
    try:
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the finished connections
        if pidfile is not None:
            pidfile.write_text(f"{os.getpid()}\n")
        log.info("validation service %d ready at %s", os.getpid(), path)
        while True:
            connection, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                try:
                    _handle(connection)
                except BaseException:  # this connection's process only: logged, the service goes on
                    log.exception("a connection of the validation service failed")
                os._exit(0)
            connection.close()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
        path.unlink(missing_ok=True)
        if pidfile is not None:
            pidfile.unlink(missing_ok=True)


@contextlib.contextmanager
def started(path: Path, log_file: Path, *, timeout: float = 300.0) -> Iterator[int]:
    """Run the service at ``path`` in a child process (its log in ``log_file``) for the ``with``
    block: yields its pid once it listens; stopped by pid (SIGTERM, then SIGKILL) at the end."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pidfile = path.with_name(f"{path.name}.pid")
    pidfile.unlink(missing_ok=True)
    with log_file.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", __spec__.name, str(path), "--pidfile", str(pidfile)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + timeout
        while not (pidfile.exists() and pidfile.read_text().strip() == str(process.pid)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the validation service did not start: see {log_file}")
            time.sleep(0.1)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("socket", type=Path, help="the Unix socket to listen at")
    parser.add_argument("--pidfile", type=Path, help="write the service's pid here (removed at exit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    run(args.socket.resolve(), args.pidfile)


if __name__ == "__main__":
    main()
