"""Dagster's SQLite instance storage, keeping one SQLAlchemy engine per database file.

Dagster's SQLite storages create an engine, and with it a new SQLite connection and an empty
compiled-statement cache, for every transaction, and flush every commit to the disk: recording one
materialization event cost ~10 ms, most of it connecting, compiling the same ``INSERT`` again and
waiting for the disk behind the bar store's writes. A day of six thresholds records 31 events.

These subclasses keep the engine of each file (the runs database, the index shard and the few run
shards being written) and let SQLite flush commits at its checkpoints (:data:`SYNCHRONOUS`); the
event log remembers which of its tables exist, which Dagster looks up again for every event. The
files, schema, statements, transactions and locks stay Dagster's: Dagster's own classes read and
write the same instance. ``deploy/dagster.yaml`` selects them, so the webserver, the daemon and the
run workers all use them.

A forked child builds its own engines (a SQLite connection must not cross a fork); a run shard's
engine is closed when more than :data:`RUN_SHARD_ENGINES` others were used since.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from dagster._time import datetime_from_timestamp

__all__ = [
    "RUN_SHARD_ENGINES",
    "PooledSqliteEventLogStorage",
    "PooledSqliteRunStorage",
    "PooledSqliteStorage",
]

RUN_SHARD_ENGINES = 8
"""Engines kept for run shards besides the index shard's (a run writes one shard at a time)."""

SYNCHRONOUS = "NORMAL"
"""SQLite's ``synchronous`` on these (WAL) databases: a commit is not flushed to the disk at once but
at the next checkpoint. A process that crashes loses nothing; a power cut or an OS crash may lose the
last events before it, never the database's consistency. ``FULL`` (Dagster's setting) flushes every
commit, which waits behind the bar store's writes on the same disk: ~3 ms an event, 0.2 s a run
(Dagster's own classes remain a choice: remove the ``storage`` block of ``deploy/dagster.yaml``)."""

_RECORD_JSON = '{{"__class__": "EventLogRecord", "event_log_entry": {entry}, "storage_id": {storage_id}}}'
"""``serialize_value(EventLogRecord(storage_id, entry))`` given the entry's JSON (tested against it)."""


class _Engines:
    """One engine per SQLite URL, least recently used closed beyond ``keep``, rebuilt after a fork."""

    def __init__(
        self,
        connect_args: Mapping[str, Any],
        keep: int,
        pinned: frozenset[str] = frozenset(),
    ):
        self._connect_args = {**connect_args, "check_same_thread": False}
        self._keep, self._pinned = keep, pinned
        self._engines: OrderedDict[str, sa.Engine] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def get(self, url: str) -> sa.Engine:
        with self._lock:
            if self._pid != os.getpid():  # inherited from the parent: leave its connections alone
                for engine in self._engines.values():
                    engine.dispose(close=False)
                self._engines.clear()
                self._pid = os.getpid()
            kept = self._engines.get(url)
            if kept is not None:
                self._engines.move_to_end(url)
                return kept
            # QueuePool without an overflow limit: never blocks a thread, as Dagster's NullPool never did
            engine = sa.create_engine(url, connect_args=self._connect_args, max_overflow=-1)
            sa.event.listen(engine, "connect", self._on_connect)
            self._engines[url] = engine
            unpinned = [u for u in self._engines if u not in self._pinned]
            for stale in unpinned[: max(0, len(unpinned) - self._keep)]:
                self._engines.pop(stale).dispose()
            return engine

    @staticmethod
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA synchronous={SYNCHRONOUS}")

    def count(self) -> int:
        return len(self._engines)

    def dispose(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.dispose(close=self._pid == os.getpid())
            self._engines.clear()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log, with one engine per shard kept."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        # set before the parent's constructor, which already connects to the index shard
        index = create_db_conn_string(base_dir, INDEX_SHARD_NAME)
        self._engines = _Engines(
            {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}, RUN_SHARD_ENGINES, frozenset({index})
        )
        self._tables: set[str] = set()
        self._asset_key_columns: set[str] = set()
        self._serialized = threading.local()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[sa.Connection]:
        with self._db_lock:
            engine = self._engines.get(self.conn_string_for_shard(shard))
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        """Dagster's check, on the kept index engine; a table once found is remembered (Dagster adds
        tables in migrations and never drops one). Dagster asks before storing every materialization's
        tags and every check evaluation, each time on a new engine: ~1.5 ms an event."""
        if table_name in self._tables:
            return True
        engine = self._engines.get(self.conn_string_for_shard(INDEX_SHARD_NAME))
        with engine.connect() as conn:
            found = bool(engine.dialect.has_table(conn, table_name))
        if found:
            self._tables.add(table_name)
        return found

    def _has_asset_key_col_on_connection(self, conn: sa.Connection, column_name: str) -> bool:
        """Dagster's check of an ``asset_keys`` column, remembered once found (as tables are): Dagster
        reflects the table's columns again for every materialization (~0.15 ms of SQLite pragmas)."""
        if column_name in self._asset_key_columns:
            return True
        found = bool(super()._has_asset_key_col_on_connection(conn, column_name))
        if found:
            self._asset_key_columns.add(column_name)
        return found

    def _event_to_row(self, event: EventLogEntry) -> dict[str, Any]:
        row = super()._event_to_row(event)
        self._serialized.last = (event, row["event"])  # for _get_asset_entry_values, on this thread
        return row

    def _get_asset_entry_values(
        self, event: EventLogEntry, event_id: int, has_asset_key_index_cols: bool
    ) -> dict[str, Any]:
        """Dagster's ``asset_keys`` values of a materialization, with the stored event's JSON reused.

        Dagster serializes the event once for its row and again, wrapped in an ``EventLogRecord``, as
        the asset's last materialization: ~1 ms for a bar materialization with its column schema.
        The wrapper's JSON is the event's between two fixed fields; other events are Dagster's."""
        last: tuple[EventLogEntry, str] | None = getattr(self._serialized, "last", None)
        self._serialized.last = None
        materialization = event.is_dagster_event and event.get_dagster_event().is_step_materialization
        if last is None or last[0] is not event or not materialization:
            return dict(super()._get_asset_entry_values(event, event_id, has_asset_key_index_cols))
        values: dict[str, Any] = {
            "last_materialization": _RECORD_JSON.format(entry=last[1], storage_id=int(event_id)),
            "last_run_id": event.run_id,
        }
        if has_asset_key_index_cols:
            values["last_materialization_timestamp"] = datetime_from_timestamp(event.timestamp)
        return values

    def wipe(self) -> None:
        self._engines.dispose()  # the run shards' files are deleted
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self._engines.dispose()


class PooledSqliteRunStorage(SqliteRunStorage):
    """Dagster's SQLite run storage, with its engine kept."""

    def __init__(self, conn_string: str, inst_data: ConfigurableClassData | None = None):
        self._engines = _Engines({}, keep=1)
        super().__init__(conn_string, inst_data)

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteRunStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        with self._engines.get(self._conn_string).connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        super().dispose()
        self._engines.dispose()


class PooledSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite instance storage (same layout under ``base_dir``), with pooled engines.

    ``deploy/dagster.yaml``::

        storage:
          custom:
            module: rangebar_pipeline.dagster_storage
            class: PooledSqliteStorage
            config: {base_dir: {env: DAGSTER_HOME}}
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self.base_dir = base_dir
        self._run_storage = PooledSqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()  # type: ignore[no-untyped-call]  # DagsterStorage's

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
