"""Tier 2 bar store: range bars and per-day processor checkpoints in ClickHouse.

The store speaks to ClickHouse through clickhouse-connect. The DSN comes from the argument, else from
``RANGEBAR_CLICKHOUSE_DSN``, else it is the embedded chDB engine under the cache directory
(``chdb:///<cache>/clickhouse``: real ClickHouse in-process, nothing to install). A server DSN
(``http(s)://user:password@host:8123/database``) runs the same code. Credentials are redacted from every
message.

Atomic day replacement: each write of a (series, threshold, day) gets a new monotonic ``write_id``. The
bars are inserted first, tagged with it; then one ``bar_coverage`` row names it as the current version
(``ReplacingMergeTree(write_id, is_deleted)`` read with ``FINAL``); then older versions of that day are
deleted. Readers only select bars whose ``(day, write_id)`` is current, so they see the old day or the
new day, never half of one or both; a crash before the switch leaves the old version readable.

Chain rule: bars of day D depend on the processor state at the end of D-1. Every coverage row keeps the
checkpoint at the end of its day and the sha256 of the checkpoint it started from (empty when it started
with a fresh processor). A stored day is *covered* iff it was computed from the checkpoint currently
stored for the previous day, or from a fresh processor when the previous day is not stored
(:meth:`BarStore.covered_days`).

chDB opens one data directory per process and its connection is not thread-safe: clients are shared
per DSN in a process-wide registry, calls are serialised with a re-entrant lock, and a directory held
by another process raises :class:`~rangebar_pipeline.exceptions.StoreLockedError`.

Modules: :mod:`.dsn` (DSN handling), :mod:`.engine` (connection registry, chDB lock probe),
:mod:`.schema` (``schema.sql`` and migrations), :mod:`.records` (key and records), :mod:`.reads`,
:mod:`.writes`, :mod:`.store` (the :class:`BarStore` facade), :mod:`.probe` (a read-only look for
preflight checks).
"""

from __future__ import annotations

from rangebar_pipeline.storage.bars.dsn import (
    DEFAULT_DATABASE,
    DSN_ENV,
    chdb_path,
    database_name,
    is_embedded,
    location,
    redact_dsn,
    resolve_dsn,
    scrub_secrets,
)
from rangebar_pipeline.storage.bars.engine import chdb_lock_holder
from rangebar_pipeline.storage.bars.probe import StoreProbe, probe, probe_connection
from rangebar_pipeline.storage.bars.records import (
    KERNEL_VERSION,
    BarKey,
    Coverage,
    DayWrite,
    SeriesStatus,
    StoreStatus,
    checkpoint_sha256,
)
from rangebar_pipeline.storage.bars.schema import SCHEMA_FILE, TABLES
from rangebar_pipeline.storage.bars.store import BarStore

__all__ = [
    "DEFAULT_DATABASE",
    "DSN_ENV",
    "KERNEL_VERSION",
    "SCHEMA_FILE",
    "TABLES",
    "BarKey",
    "BarStore",
    "Coverage",
    "DayWrite",
    "SeriesStatus",
    "StoreProbe",
    "StoreStatus",
    "chdb_lock_holder",
    "chdb_path",
    "checkpoint_sha256",
    "database_name",
    "is_embedded",
    "location",
    "probe",
    "probe_connection",
    "redact_dsn",
    "resolve_dsn",
    "scrub_secrets",
]
