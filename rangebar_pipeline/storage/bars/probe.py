"""A read-only look at a bar store without opening it (for preflight checks and status displays).

:func:`probe` never creates anything and never takes the chDB directory lock: for chDB it checks that
the engine is importable, who holds the directory and which tables exist on disk; for a server it
connects (3 s timeout), asks for the version and lists the tables of the database.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import clickhouse_connect

from rangebar_pipeline.storage.bars.dsn import chdb_path, database_name, redact_dsn, resolve_dsn
from rangebar_pipeline.storage.bars.engine import chdb_lock_holder
from rangebar_pipeline.storage.bars.schema import TABLES

__all__ = ["StoreProbe", "probe", "probe_connection"]


@dataclass(frozen=True, slots=True)
class StoreProbe:
    """What :func:`probe` found. ``error`` is the failing step's exception type, never a secret."""

    #: The DSN with credentials redacted.
    dsn: str
    kind: Literal["chdb", "server"]
    database: str
    #: The chDB data directory (None for a server).
    chdb_path: Path | None
    #: chDB: the engine is importable (a server: always True).
    installed: bool
    #: ``"chDB 3.6.0"`` or the server's ``version()``; None when unknown.
    version: str | None = None
    #: chDB: the other process holding the directory (``"PID 123"``); None when free or held by us.
    lock_holder: str | None = None
    #: A server accepted the connection; chDB: importable and not held by another process.
    reachable: bool = False
    #: A server answered the queries; chDB: as ``reachable`` (nothing is queried).
    answered: bool = False
    #: The store's tables that exist (of ``range_bars``, ``bar_coverage``).
    tables: frozenset[str] = frozenset()
    error: str | None = None

    @property
    def embedded(self) -> bool:
        return self.kind == "chdb"

    @property
    def has_schema(self) -> bool:
        """True when every table of the store exists."""
        return set(TABLES) <= self.tables


def probe(dsn: str | None = None) -> StoreProbe:
    """Probe the store of ``dsn`` (default: :func:`resolve_dsn`'s) without opening it."""
    dsn = resolve_dsn(dsn)
    path = chdb_path(dsn)
    if path is not None:
        return _probe_chdb(dsn, path)
    return probe_connection(dsn)


def _probe_chdb(dsn: str, path: Path) -> StoreProbe:
    shown, database = redact_dsn(dsn), database_name(dsn)
    try:
        import chdb  # noqa: F401

        version = f"chDB {importlib.metadata.version('chdb')}"
    except ImportError:
        return StoreProbe(shown, "chdb", database, path, installed=False, error="ImportError")
    holder = chdb_lock_holder(path) if path.exists() else None
    if holder == f"PID {os.getpid()}":  # this process's own store is usable
        holder = None
    tables = path / "metadata" / database
    found = frozenset(name for name in TABLES if (tables / f"{name}.sql").exists())
    free = holder is None
    return StoreProbe(shown, "chdb", database, path, True, version, holder, free, free, found)


def probe_connection(dsn: str) -> StoreProbe:
    """Connect through clickhouse-connect (3 s timeout), ask for the version and list the tables.

    This is :func:`probe` of a server DSN. On a chDB DSN it opens the embedded engine (unlike
    :func:`probe`), which runs the same checks in-process.
    """
    shown, database, path = redact_dsn(dsn), database_name(dsn), chdb_path(dsn)
    kind: Literal["chdb", "server"] = "server" if path is None else "chdb"
    try:
        client = clickhouse_connect.get_client(dsn=dsn, database="default", connect_timeout=3)
    except Exception as exc:
        return StoreProbe(shown, kind, database, path, True, error=type(exc).__name__)
    try:
        version = str(client.command("SELECT version()"))
        rows = client.query(
            "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": database}
        ).result_rows
    except Exception as exc:
        return StoreProbe(shown, kind, database, path, True, reachable=True, error=type(exc).__name__)
    finally:
        client.close()
    found = frozenset(str(row[0]) for row in rows) & set(TABLES)
    return StoreProbe(shown, kind, database, path, True, version, None, True, True, found)
