"""A real HTTP server on 127.0.0.1 for tests: serves a directory tree in its real layout, with faults.

    with LoopbackServer(SHARED_DATA / "binance_vision") as server:
        server.fault("*/BTCUSDT-aggTrades-2024-08-08.zip", Fault(status=500, times=2))
        ...  # a client pointed at server.url sees two 500s, then the file
        assert server.count("*/BTCUSDT-aggTrades-2024-08-08.zip") == 3

Faults match request paths with :func:`fnmatch.fnmatch` patterns; the first matching fault that has
uses left applies. ``put`` overlays virtual files (e.g. a wrong ``.CHECKSUM``). Every request is logged.
The server speaks HTTP/1.1 with keep-alive, so connection pools are exercised for real.

Tests synchronise on what the server saw, not on the clock: :meth:`LoopbackServer.wait_for` blocks until
the request log satisfies a predicate (a faulted request arrived, a client gave up); a ``hang`` fault
holds its response until the client closes the connection (its read timeout fired) and marks the
request ``abandoned``; a ``gate`` fault holds it until the test sets the event.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import select
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

__all__ = ["Fault", "LoopbackServer", "RequestRecord"]


@dataclass
class Fault:
    """What to do instead of (or while) serving a path.

    Attributes:
        status: Answer with this HTTP status and a short body.
        delay: Stall this many seconds before answering (a client read timeout fires first).
        body: Serve these bytes instead of the file.
        truncate: Send only this many body bytes while declaring the full length, then drop the
            connection (with ``reset``: a TCP RST, "connection reset by peer").
        reset: See ``truncate``.
        times: Apply to the first ``times`` matching requests only (``None``: always).
        hang: Send nothing until the client closes the connection (its read timeout fired); the
            request is then logged as ``abandoned``.
        gate: Hold the response until this event is set (then serve it as usual).
    """

    status: int | None = None
    delay: float = 0.0
    body: bytes | None = None
    truncate: int | None = None
    reset: bool = False
    times: int | None = None
    hang: bool = False
    gate: threading.Event | None = None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the server saw: method, path, the status sent, whether a fault applied, and whether
    the client closed the connection before any answer (``hang``)."""

    method: str
    path: str
    status: int
    faulted: bool
    abandoned: bool = False


class LoopbackServer:
    """A threaded HTTP/1.1 server on ``127.0.0.1`` (an ephemeral port) serving ``root``.

    Args:
        root: Directory served at ``/`` (``None``: only files added with :meth:`put`).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root.resolve() if root is not None else None
        self._faults: list[tuple[str, Fault]] = []
        self._files: dict[str, bytes] = {}
        self._log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> LoopbackServer:
        """Start serving in a daemon thread."""
        handler = type("_BoundHandler", (_Handler,), {"owner": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="loopback-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (stalled responses are cut short)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43121`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("the loopback server is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- configuration --------------------------------------------------------------------------

    def fault(self, pattern: str, fault: Fault) -> Fault:
        """Apply ``fault`` to request paths matching ``pattern`` (fnmatch, e.g. ``"*.CHECKSUM"``)."""
        with self._lock:
            self._faults.append((pattern, fault))
        return fault

    def put(self, path: str, content: bytes) -> None:
        """Serve ``content`` at ``path`` (overrides a file of the served tree)."""
        with self._lock:
            self._files["/" + path.lstrip("/")] = content

    def clear(self) -> None:
        """Remove all faults and virtual files (the request log is kept)."""
        with self._lock:
            self._faults.clear()
            self._files.clear()

    # --- the request log ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._log)

    def count(self, pattern: str = "*") -> int:
        """Number of requests whose path matches ``pattern``."""
        return sum(1 for r in self.requests if fnmatch.fnmatch(r.path, pattern))

    def wait_for(
        self, predicate: Callable[[list[RequestRecord]], bool], *, timeout: float = 300.0
    ) -> list[RequestRecord]:
        """Block until ``predicate(request log)`` holds; return the log. ``timeout`` only bounds a hung
        test (it raises ``TimeoutError``); nothing is decided by it."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self._log), timeout=timeout):
                raise TimeoutError(f"the loopback server's log never satisfied {predicate!r}: {self._log}")
            return list(self._log)

    def wait_count(self, pattern: str, n: int, *, timeout: float = 300.0) -> list[RequestRecord]:
        """Block until at least ``n`` requests matching ``pattern`` arrived; return the log."""
        return self.wait_for(
            lambda log: sum(1 for r in log if fnmatch.fnmatch(r.path, pattern)) >= n, timeout=timeout
        )

    # --- used by the handler --------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for pattern, fault in self._faults:
                if fnmatch.fnmatch(path, pattern) and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _content(self, path: str) -> bytes | None:
        with self._lock:
            if path in self._files:
                return self._files[path]
        if self.root is None:
            return None
        target = (self.root / path.lstrip("/")).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            return None
        return target.read_bytes()

    def _record(self, method: str, path: str, status: int, *, faulted: bool) -> int:
        with self._changed:
            self._log.append(RequestRecord(method, path, status, faulted))
            self._changed.notify_all()
            return len(self._log) - 1

    def _abandoned(self, index: int) -> None:
        with self._changed:
            self._log[index] = dataclasses.replace(self._log[index], abandoned=True)
            self._changed.notify_all()


class _Handler(BaseHTTPRequestHandler):
    owner: LoopbackServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        owner = self.owner
        fault = owner._take_fault(path)
        content = fault.body if fault is not None and fault.body is not None else owner._content(path)
        if fault is not None and fault.status is not None:
            status, content = fault.status, f"injected HTTP {fault.status}\n".encode()
        elif content is None:
            status, content = 404, b"not found\n"
        else:
            status = 200
        index = owner._record(self.command, path, status, faulted=fault is not None)
        if fault is not None and fault.hang:
            self._hang_until_closed()
            owner._abandoned(index)
            return
        if fault is not None and fault.gate is not None:
            while not fault.gate.wait(0.1):
                if owner._stopping.is_set():
                    return
        if fault is not None and fault.delay > 0 and owner._stopping.wait(fault.delay):
            return
        if status == 200 and fault is not None and fault.truncate is not None and not head:
            self._send_truncated(content, fault.truncate, reset=fault.reset)
            return
        self._send(status, content, head=head)

    def _hang_until_closed(self) -> None:
        """Answer nothing until the peer closes the connection (or the server stops)."""
        self.close_connection = True
        while not self.owner._stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.1)
            if readable:
                try:
                    if not self.connection.recv(65536):  # EOF: the client gave up
                        return
                except OSError:
                    return

    def _send(self, status: int, body: bytes, *, head: bool) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_truncated(self, body: bytes, keep: int, *, reset: bool) -> None:
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:keep])
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        if reset:  # SO_LINGER with a zero timeout: close() sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            self.connection.shutdown(socket.SHUT_RDWR)
