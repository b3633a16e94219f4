"""The process-wide connection registry of the bar store and the chDB directory lock probe.

chDB opens one data directory per process and its connection is not thread-safe: clients are shared
per DSN in a process-wide registry, calls are serialised with a re-entrant lock, and a directory held
by another process (an ``fcntl`` lock on its ``status`` file) raises
:class:`~rangebar_pipeline.exceptions.StoreLockedError`. A server DSN goes through the same registry.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import clickhouse_connect

from rangebar_pipeline.exceptions import StoreError, StoreLockedError
from rangebar_pipeline.storage.bars.dsn import DSN_ENV, chdb_path, is_embedded, redact_dsn, scrub_secrets

__all__ = ["Engine", "acquire", "chdb_lock_holder", "release"]

log = logging.getLogger(__name__)


@dataclass
class Engine:
    """One shared client of a DSN, its lock and the number of stores using it."""

    dsn: str
    client: Any
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """The client under the engine's lock; client errors become scrubbed :class:`StoreError`\\ s."""
        with self.lock:
            try:
                yield self.client
            except (StoreError, ValueError):
                raise
            except Exception as exc:
                raise StoreError(
                    f"ClickHouse at {redact_dsn(self.dsn)} failed: {scrub_secrets(str(exc), self.dsn)}"
                ) from None


_REGISTRY: dict[str, Engine] = {}
_REGISTRY_LOCK = threading.Lock()


def chdb_lock_holder(path: Path) -> str | None:
    """Describe the process holding the chDB directory ``path`` (``"PID 123"``), or None when free.

    The holder may be this process (its own open store): compare with ``f"PID {os.getpid()}"``.
    """
    status = path / "status"
    if not status.exists():
        return None
    fd = os.open(status, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = status.read_text(errors="replace")
            pid = re.search(r"PID:\s*(\d+)", text)
            return f"PID {pid.group(1)}" if pid else "an unknown process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


#: Below this much free space a failure to start the embedded engine is reported as a full disk (chDB
#: itself says only "Error initializing EmbeddedServer").
_LOW_DISK: Final = 16 << 20


def _locked_error(path: Path, holder: str) -> StoreLockedError:
    return StoreLockedError(
        f"the embedded ClickHouse store {path} is held by another process ({holder}); chDB allows one "
        f"process per data directory: wait for it to finish, stop it, or set {DSN_ENV} to a ClickHouse "
        "server (http://user:password@host:8123/database)"
    )


def _prepare_directory(path: Path) -> None:
    """Refuse to create the embedded store on a full disk, and clear one whose creation a full disk
    cut short: ClickHouse then leaves its metadata files empty and never starts again (``Empty query
    in file metadata/...``). Such a store holds no bars (no table has a data part), so it is removed
    and created anew; with bars in it the store is refused, naming the empty files."""
    empty = sorted(
        p for p in [*path.glob("metadata/*.sql"), *path.glob("store/*/*/*.sql")] if not p.stat().st_size
    )
    if empty:
        parts = [d for d in path.glob("store/*/*/*") if d.is_dir() and d.name != "detached"]
        if parts:
            raise StoreError(
                f"the embedded ClickHouse store {path} has empty metadata files "
                f"({', '.join(map(str, empty))}) and holds data: it cannot start; restore those files"
            )
        log.warning(
            "the embedded store %s was left incomplete by a failed creation (empty %s): created anew",
            path,
            empty[0],
        )
        shutil.rmtree(path)
    if not (path / "metadata").is_dir() and (free := shutil.disk_usage(path.parent).free) < _LOW_DISK:
        raise StoreError(
            f"cannot create the embedded ClickHouse store {path}: No space left on device "
            f"({free // 1024} KiB free on its disk; nothing was created)"
        )


def _connect(dsn: str) -> Any:
    path = chdb_path(dsn)
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            holder = chdb_lock_holder(path) if path.exists() else None
            if holder is not None:
                raise _locked_error(path, holder)
            _prepare_directory(path)
            path.mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(dsn=dsn)
        return clickhouse_connect.get_client(dsn=dsn, database="default", connect_timeout=10)
    except StoreError:
        raise
    except Exception as exc:
        if path is not None:
            holder = chdb_lock_holder(path)
            if holder is not None:
                raise _locked_error(path, holder) from None
            for other in _REGISTRY.values():
                if is_embedded(other.dsn) and other.dsn != dsn:
                    raise StoreError(
                        f"cannot open {redact_dsn(dsn)}: this process already uses the embedded store "
                        f"{redact_dsn(other.dsn)} and chDB allows one data directory per process; close "
                        "its BarStore first"
                    ) from None
        message = scrub_secrets(str(exc), dsn)
        if path is not None and (free := shutil.disk_usage(path).free) < _LOW_DISK:
            message += f" (No space left on device: {free // 1024} KiB free on the disk of {path})"
        raise StoreError(f"cannot connect to ClickHouse at {redact_dsn(dsn)}: {message}") from None


def acquire(dsn: str) -> Engine:
    """The shared engine of ``dsn`` (connected on first use), with one more user."""
    with _REGISTRY_LOCK:
        engine = _REGISTRY.get(dsn)
        if engine is None:
            engine = Engine(dsn, _connect(dsn))
            _REGISTRY[dsn] = engine
        engine.users += 1
        return engine


def release(engine: Engine) -> None:
    """One user less; the last one closes the client and drops it from the registry."""
    with _REGISTRY_LOCK:
        engine.users -= 1
        if engine.users == 0:
            _REGISTRY.pop(engine.dsn, None)
            with engine.lock, contextlib.suppress(Exception):
                engine.client.close()
