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
stored for the previous day, or from a fresh processor when the previous day is not stored.

chDB opens one data directory per process and its connection is not thread-safe: clients are shared
per DSN in a process-wide registry, calls are serialised with a re-entrant lock, and a directory held
by another process raises :class:`~rangebar_pipeline.exceptions.StoreLockedError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import unquote, urlparse, urlunparse

import clickhouse_connect
import polars as pl

from rangebar_pipeline import _core
from rangebar_pipeline.calendar import US_PER_DAY, day_start_us, days
from rangebar_pipeline.exceptions import MissingColumnError, StoreError, StoreLockedError
from rangebar_pipeline.options import DEFAULT_OPTIONS, BarOptions
from rangebar_pipeline.paths import default_cache_dir
from rangebar_pipeline.schema import BAR_COLUMNS, BAR_SCHEMA, LOOKBACK_SCHEMA, SCHEMA_VERSION, SPREAD_SCHEMA
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources.base import source_type
from rangebar_pipeline.storage.migrations import migrate

log = logging.getLogger(__name__)

DSN_ENV: Final = "RANGEBAR_CLICKHOUSE_DSN"
DEFAULT_DATABASE: Final = "rangebar"
SCHEMA_FILE: Final = Path(__file__).with_name("schema.sql")

_TIME_COLUMNS: Final = ("open_time", "close_time")
_VALUE_COLUMNS: Final = tuple(c for c in BAR_COLUMNS if c not in _TIME_COLUMNS)
_TABLE_COLUMNS: Final = (
    "source",
    "market",
    "symbol",
    "threshold_decimal_bps",
    "options",
    "day",
    "write_id",
    "open_time_us",
    "close_time_us",
    *_VALUE_COLUMNS,
    *SPREAD_SCHEMA,
    *LOOKBACK_SCHEMA,
)
#: The kernel build that computes bars in this process (recorded with every stored day).
KERNEL_VERSION: Final[str] = _core.__version__


#: Columns of a ``bar_coverage`` row as :func:`_coverage_row` lays them out.
_COVERAGE_COLUMNS: Final = (
    "source",
    "market",
    "symbol",
    "threshold_decimal_bps",
    "options",
    "day",
    "write_id",
    "bar_count",
    "tick_count",
    "first_agg_trade_id",
    "last_agg_trade_id",
    "checkpoint",
    "checkpoint_sha256",
    "parent_checkpoint_sha256",
    "created_at",
    "is_deleted",
    "schema_version",
    "kernel_version",
)


def _coverage_row(
    series: Series,
    threshold: int,
    options: str,
    day: date,
    write_id: int,
    *,
    bar_count: int = 0,
    tick_count: int = 0,
    first_id: int | None = None,
    last_id: int | None = None,
    checkpoint: bytes = b"",
    checkpoint_sha: str = "",
    parent_sha: str = "",
    is_deleted: bool = False,
) -> list[Any]:
    """One ``bar_coverage`` row: a stored day, or with ``is_deleted`` a tombstone."""
    return [
        series.source,
        series.market,
        series.symbol,
        threshold,
        options,
        day,
        write_id,
        bar_count,
        tick_count,
        first_id,
        last_id,
        checkpoint,
        checkpoint_sha,
        parent_sha,
        _write_time(write_id),
        int(is_deleted),
        SCHEMA_VERSION,
        KERNEL_VERSION,
    ]


def _write_time(write_id: int) -> datetime:
    """The wall-clock time a write id was taken (ids are nanosecond clock readings)."""
    return datetime.fromtimestamp(write_id // 1000 / 1e6, tz=UTC)


# --- DSN --------------------------------------------------------------------------------------------


def resolve_dsn(dsn: str | None = None, *, cache_dir: str | Path | None = None) -> str:
    """The DSN to use: ``dsn``, else ``RANGEBAR_CLICKHOUSE_DSN``, else chDB under the cache directory."""
    if dsn:
        return dsn
    env = os.environ.get(DSN_ENV)
    if env:
        return env
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return f"chdb://{(root / 'clickhouse').resolve()}"


def redact_dsn(dsn: str) -> str:
    """``dsn`` with user and password replaced by ``***`` (safe for logs and errors)."""
    parsed = urlparse(dsn)
    if parsed.username is None and parsed.password is None:
        return dsn
    host = parsed.hostname or ""
    if parsed.port is not None:
        host = f"{host}:{parsed.port}"
    return urlunparse(parsed._replace(netloc=f"***@{host}"))


def _secrets(dsn: str) -> list[str]:
    parsed = urlparse(dsn)
    found = [parsed.password, unquote(parsed.password or ""), parsed.username, unquote(parsed.username or "")]
    return [s for s in found if s and len(s) >= 2]


def _scrub(text: str, dsn: str) -> str:
    """Remove the DSN's credentials from ``text``."""
    text = text.replace(dsn, redact_dsn(dsn))
    for secret in _secrets(dsn):
        text = text.replace(secret, "***")
    return text


def _chdb_path(dsn: str) -> Path | None:
    if not dsn.startswith("chdb:"):
        return None
    parsed = urlparse(dsn)
    if parsed.netloc and parsed.netloc != "":
        raise StoreError(f"unsupported chDB DSN {dsn!r}: expected chdb:///absolute/path")
    return Path(parsed.path)


def _database(dsn: str) -> str:
    if dsn.startswith("chdb:"):
        return DEFAULT_DATABASE
    name = urlparse(dsn).path.strip("/").split("/")[0]
    name = unquote(name) or DEFAULT_DATABASE
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise StoreError(f"invalid ClickHouse database name {name!r} in DSN {redact_dsn(dsn)}")
    return name


# --- process-wide engine registry -------------------------------------------------------------------


@dataclass
class _Engine:
    dsn: str
    client: Any
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0


_REGISTRY: dict[str, _Engine] = {}
_REGISTRY_LOCK = threading.Lock()
_WRITE_ID_LOCK = threading.Lock()
_last_write_id = 0


def _next_write_id() -> int:
    """A process-monotonic UInt64 version (nanoseconds since the epoch, bumped on ties)."""
    global _last_write_id  # noqa: PLW0603
    with _WRITE_ID_LOCK:
        _last_write_id = max(time.time_ns(), _last_write_id + 1)
        return _last_write_id


def _lock_holder(path: Path) -> str | None:
    """Describe the process holding the chDB directory ``path``, or None when it is free."""
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


def _locked_error(path: Path, holder: str) -> StoreLockedError:
    return StoreLockedError(
        f"the embedded ClickHouse store {path} is held by another process ({holder}); chDB allows one "
        f"process per data directory: wait for it to finish, stop it, or set {DSN_ENV} to a ClickHouse "
        "server (http://user:password@host:8123/database)"
    )


def _connect(dsn: str) -> Any:
    path = _chdb_path(dsn)
    try:
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            holder = _lock_holder(path)
            if holder is not None:
                raise _locked_error(path, holder)
            return clickhouse_connect.get_client(dsn=dsn)
        return clickhouse_connect.get_client(dsn=dsn, database="default", connect_timeout=10)
    except StoreError:
        raise
    except Exception as exc:
        if path is not None:
            holder = _lock_holder(path)
            if holder is not None:
                raise _locked_error(path, holder) from None
            for other in _REGISTRY.values():
                if other.dsn.startswith("chdb:") and other.dsn != dsn:
                    raise StoreError(
                        f"cannot open {redact_dsn(dsn)}: this process already uses the embedded store "
                        f"{redact_dsn(other.dsn)} and chDB allows one data directory per process; close "
                        "its BarStore first"
                    ) from None
        message = _scrub(str(exc), dsn)
        raise StoreError(f"cannot connect to ClickHouse at {redact_dsn(dsn)}: {message}") from None


def _acquire(dsn: str) -> _Engine:
    with _REGISTRY_LOCK:
        engine = _REGISTRY.get(dsn)
        if engine is None:
            engine = _Engine(dsn, _connect(dsn))
            _REGISTRY[dsn] = engine
        engine.users += 1
        return engine


def _release(engine: _Engine) -> None:
    with _REGISTRY_LOCK:
        engine.users -= 1
        if engine.users == 0:
            _REGISTRY.pop(engine.dsn, None)
            with engine.lock, contextlib.suppress(Exception):
                engine.client.close()


# --- records ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coverage:
    """The current stored version of one (series, threshold, day)."""

    series: Series
    threshold: int
    day: date
    write_id: int
    bar_count: int
    tick_count: int
    first_agg_trade_id: int | None
    last_agg_trade_id: int | None
    checkpoint_sha256: str
    parent_checkpoint_sha256: str
    created_at: datetime
    options: BarOptions = DEFAULT_OPTIONS
    #: Bar schema version and kernel version that produced the day (1 and "" before schema 2).
    schema_version: int = SCHEMA_VERSION
    kernel_version: str = KERNEL_VERSION

    @property
    def fresh_start(self) -> bool:
        """True when the day was computed with a fresh processor (no previous-day checkpoint)."""
        return self.parent_checkpoint_sha256 == ""

    @property
    def stale(self) -> bool:
        """True when an older bar schema or another kernel build produced the day."""
        return self.schema_version != SCHEMA_VERSION or self.kernel_version != KERNEL_VERSION


@dataclass(frozen=True, slots=True)
class DayWrite:
    """One (series, threshold, day) to store: its bars and the checkpoints around them."""

    series: Series
    threshold: int
    day: date
    bars: pl.DataFrame
    checkpoint: bytes
    tick_count: int
    parent_checkpoint: bytes | None = None
    options: BarOptions = DEFAULT_OPTIONS


@dataclass(frozen=True, slots=True)
class SeriesStatus:
    """Stored days and bars of one (series, threshold, options)."""

    series: Series
    threshold: int
    days: int
    first_day: date
    last_day: date
    bars: int
    ticks: int
    options: BarOptions = DEFAULT_OPTIONS
    #: Days produced by an older bar schema or another kernel build (recomputed on request).
    stale_days: int = 0


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """What the bar store holds (DSN with credentials redacted)."""

    dsn: str
    series: tuple[SeriesStatus, ...]

    @property
    def total_bars(self) -> int:
        return sum(s.bars for s in self.series)

    @property
    def total_days(self) -> int:
        return sum(s.days for s in self.series)


def checkpoint_sha256(checkpoint: bytes | None) -> str:
    """Hex sha256 of a checkpoint blob; ``""`` for None (a fresh processor)."""
    return "" if checkpoint is None else hashlib.sha256(checkpoint).hexdigest()


# --- the store ------------------------------------------------------------------------------------------


class BarStore:
    """Range bars by (series, threshold, UTC day) in ClickHouse; see the module docstring.

    >>> with BarStore(cache_dir="/tmp/rb") as store:  # doctest: +SKIP
    ...     store.write_day(series, 250, day, bars, checkpoint=cp, tick_count=n)
    ...     store.read_bars(series, 250, day, day)
    """

    def __init__(self, dsn: str | None = None, *, cache_dir: str | Path | None = None) -> None:
        self._dsn = resolve_dsn(dsn, cache_dir=cache_dir)
        self.database = _database(self._dsn)
        #: The migration statements run when this store was opened (empty for a current store).
        self.migrated: list[str] = []
        self._engine: _Engine | None = _acquire(self._dsn)
        try:
            self._ensure_schema()
        except BaseException:
            self.close()
            raise

    # -- lifecycle

    @property
    def dsn(self) -> str:
        """The DSN with credentials redacted."""
        return redact_dsn(self._dsn)

    @property
    def closed(self) -> bool:
        return self._engine is None

    def close(self) -> None:
        """Release this store's share of the connection (idempotent)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            _release(engine)

    def __enter__(self) -> BarStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BarStore({self.dsn!r})"

    @contextlib.contextmanager
    def _client(self) -> Iterator[Any]:
        engine = self._engine
        if engine is None:
            raise StoreError(f"{self!r} is closed")
        with engine.lock:
            try:
                yield engine.client
            except (StoreError, ValueError):
                raise
            except Exception as exc:
                raise StoreError(f"ClickHouse at {self.dsn} failed: {_scrub(str(exc), self._dsn)}") from None

    def _ensure_schema(self) -> None:
        text = re.sub(r"--[^\n]*", "", SCHEMA_FILE.read_text())
        with self._client() as client:
            for statement in text.split(";"):
                if statement.strip():
                    client.command(statement.replace("{db}", self.database))
            self.migrated = migrate(client, self.database)

    # -- helpers

    def _where(
        self,
        series: Series,
        threshold: int | None,
        start: date | None,
        end: date | None,
        options: BarOptions | None = None,
    ) -> str:
        parts = ["source = {source:String}", "market = {market:String}", "symbol = {symbol:String}"]
        if threshold is not None:
            parts.append("threshold_decimal_bps = {threshold:UInt32}")
        if options is not None:
            parts.append("options = {options:String}")
        if start is not None:
            parts.append("day >= {start:Date}")
        if end is not None:
            parts.append("day <= {end:Date}")
        return " AND ".join(parts)

    @staticmethod
    def _params(
        series: Series,
        threshold: int | None,
        start: date | None = None,
        end: date | None = None,
        options: BarOptions | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"source": series.source, "market": series.market, "symbol": series.symbol}
        if threshold is not None:
            params["threshold"] = _check_threshold(threshold)
        if options is not None:
            params["options"] = options.key
        if start is not None:
            params["start"] = start
        if end is not None:
            params["end"] = end
        return params

    def _visible(
        self, series: Series, threshold: int, start: date | None, end: date | None, options: BarOptions
    ) -> str:
        where = self._where(series, threshold, start, end, options)
        return (
            f"{where} AND (day, write_id) IN "
            f"(SELECT day, write_id FROM {self.database}.bar_coverage FINAL WHERE {where})"
        )

    def _select_bars(
        self, query_tail: str, params: dict[str, Any], series: Series, options: BarOptions
    ) -> pl.DataFrame:
        columns = ["open_time_us", "close_time_us", *_VALUE_COLUMNS]
        columns += list(source_type(series).spread_schema)
        if options.lookback_trades:
            columns += list(LOOKBACK_SCHEMA)
        sql = f"SELECT {', '.join(columns)} FROM {self.database}.range_bars WHERE {query_tail}"
        with self._client() as client:
            table = client.query_arrow(sql, parameters=params, use_strings=True)
        return _to_bar_frame(pl.DataFrame(pl.from_arrow(table)), series, options)

    # -- writing

    def write_day(
        self,
        series: Series,
        threshold: int,
        day: date,
        bars: pl.DataFrame,
        *,
        checkpoint: bytes,
        tick_count: int,
        parent_checkpoint: bytes | None = None,
        options: BarOptions = DEFAULT_OPTIONS,
    ) -> Coverage:
        """Replace the bars of (series, threshold, day) atomically; return the new coverage record.

        ``bars`` are the bars closed by the ticks of ``day`` (BAR_SCHEMA columns, spread columns
        optional); ``checkpoint`` is the processor state after the day's last tick and
        ``parent_checkpoint`` the state it started from (None: a fresh processor); ``options`` the
        bar options they were computed with (part of the key).
        """
        day_write = DayWrite(series, threshold, day, bars, checkpoint, tick_count, parent_checkpoint, options)
        return self.write_days([day_write])[0]

    def write_days(self, writes: Sequence[DayWrite]) -> list[Coverage]:
        """Replace many (series, threshold, day) at once: one insert of bars, one of coverage rows.

        Each day gets its own write id and switches atomically as in :meth:`write_day`. Superseded
        versions are retired with one lightweight delete per (series, threshold) of the batch, and
        only when an older version of one of its days is actually stored (a first backfill of a
        range issues no mutation at all).
        """
        if not writes:
            return []
        frames: list[pl.DataFrame] = []
        coverage_rows: list[list[Any]] = []
        records: list[Coverage] = []
        for item in writes:
            threshold = _check_threshold(item.threshold)
            if not isinstance(item.checkpoint, bytes | bytearray):
                raise TypeError(f"checkpoint must be bytes, got {type(item.checkpoint).__name__}")
            if item.tick_count < 0:
                raise ValueError(f"tick_count must be >= 0, got {item.tick_count}")
            write_id = _next_write_id()
            rows = _prepare_rows(item, threshold, write_id)
            cp_sha = checkpoint_sha256(bytes(item.checkpoint))
            parent = item.parent_checkpoint
            parent_sha = checkpoint_sha256(None if parent is None else bytes(parent))
            first_id = int(rows["first_agg_trade_id"].min()) if rows.height else None  # type: ignore[arg-type]
            last_id = int(rows["last_agg_trade_id"].max()) if rows.height else None  # type: ignore[arg-type]
            coverage_rows.append(
                _coverage_row(
                    item.series, threshold, item.options.key, item.day, write_id, bar_count=rows.height,
                    tick_count=item.tick_count, first_id=first_id, last_id=last_id,
                    checkpoint=bytes(item.checkpoint), checkpoint_sha=cp_sha, parent_sha=parent_sha,
                )
            )  # fmt: skip
            if rows.height:
                frames.append(rows)
            records.append(
                Coverage(
                    item.series, threshold, item.day, write_id, rows.height, item.tick_count, first_id,
                    last_id, cp_sha, parent_sha, _write_time(write_id), item.options,
                )
            )  # fmt: skip
        db = self.database
        groups: dict[tuple[Series, int, BarOptions], list[Coverage]] = {}
        for record in records:
            groups.setdefault((record.series, record.threshold, record.options), []).append(record)
        with self._client() as client:
            if frames:
                rows = pl.concat(frames, how="vertical")
                summary = client.insert_arrow(
                    f"{db}.range_bars", rows.to_arrow(compat_level=pl.CompatLevel.oldest())
                )
                if int(summary.written_rows) != rows.height:
                    raise StoreError(
                        f"writing {len(writes)} day(s) starting {writes[0].series} {writes[0].day}: sent "
                        f"{rows.height} bars, ClickHouse wrote {summary.written_rows}; the previous "
                        "versions of those days stay current"
                    )
            client.insert(f"{db}.bar_coverage", coverage_rows, column_names=_COVERAGE_COLUMNS)
            for (series, threshold, options), group in groups.items():
                span = (min(r.day for r in group), max(r.day for r in group))
                oldest_new = min(r.write_id for r in group)
                self._delete_older(client, series, threshold, span, options, write_id=oldest_new)
        for record in records:
            log.info(
                "stored %s %d dbps%s %s: %d bars (write %d)",
                record.series, record.threshold, _suffix(record.options), record.day, record.bar_count,
                record.write_id,
            )  # fmt: skip
        return records

    def _delete_older(
        self,
        client: Any,
        series: Series,
        threshold: int,
        span: tuple[date, date],
        options: BarOptions,
        *,
        write_id: int,
    ) -> None:
        """Delete the bars of writes older than ``write_id`` in ``span``; a cheap probe first, so a
        first write of a range (nothing older stored) issues no mutation."""
        where = self._where(series, threshold, *span, options)
        params = self._params(series, threshold, *span, options) | {"write_id": write_id}
        older = f"FROM {self.database}.range_bars WHERE {where} AND write_id < {{write_id:UInt64}}"
        if client.query(f"SELECT 1 {older} LIMIT 1", parameters=params).result_rows:
            client.command(f"DELETE {older}", parameters=params)

    def invalidate(
        self,
        series: Series,
        threshold: int | None = None,
        start: date | None = None,
        end: date | None = None,
        *,
        options: BarOptions | None = None,
    ) -> int:
        """Forget stored days of a series (one threshold or all, one bar-options variant or all,
        optional day bounds); return how many."""
        records = self._coverage_rows(series, threshold, start, end, options)
        if not records:
            return 0
        write_id = _next_write_id()
        tombstones = [
            _coverage_row(series, thr, key, day, write_id, is_deleted=True) for thr, key, day in records
        ]
        span = (start or date.min, end or date.max)
        with self._client() as client:
            client.insert(f"{self.database}.bar_coverage", tombstones, column_names=_COVERAGE_COLUMNS)
            for thr, key in sorted({(thr, key) for thr, key, _ in records}):
                self._delete_older(client, series, thr, span, BarOptions.from_key(key), write_id=write_id)
        log.info("invalidated %d stored days of %s", len(records), series)
        return len(records)

    # -- coverage

    def _coverage_rows(
        self,
        series: Series,
        threshold: int | None,
        start: date | None,
        end: date | None,
        options: BarOptions | None,
    ) -> list[tuple[int, str, date]]:
        sql = (
            f"SELECT threshold_decimal_bps, options, day FROM {self.database}.bar_coverage FINAL "
            f"WHERE {self._where(series, threshold, start, end, options)} "
            "ORDER BY threshold_decimal_bps, options, day"
        )
        with self._client() as client:
            result = client.query(sql, parameters=self._params(series, threshold, start, end, options))
        return [(int(t), str(k), d) for t, k, d in result.result_rows]

    def coverage(
        self, series: Series, threshold: int, start: date, end: date, *, options: BarOptions = DEFAULT_OPTIONS
    ) -> dict[date, Coverage]:
        """The stored days in ``[start, end]`` with their current version (chain validity not checked)."""
        threshold = _check_threshold(threshold)
        sql = (
            "SELECT day, write_id, bar_count, tick_count, first_agg_trade_id, last_agg_trade_id, "
            "checkpoint_sha256, parent_checkpoint_sha256, created_at, schema_version, kernel_version "
            f"FROM {self.database}.bar_coverage FINAL "
            f"WHERE {self._where(series, threshold, start, end, options)} ORDER BY day"
        )
        with self._client() as client:
            result = client.query(sql, parameters=self._params(series, threshold, start, end, options))
        return {row[0]: _coverage_record(series, threshold, options, row) for row in result.result_rows}

    def stale_days(
        self, series: Series, threshold: int, start: date, end: date, *, options: BarOptions = DEFAULT_OPTIONS
    ) -> list[date]:
        """Stored days in ``[start, end]`` produced by an older bar schema or another kernel build."""
        return [
            d
            for d, record in self.coverage(series, threshold, start, end, options=options).items()
            if record.stale
        ]

    def covered_days(
        self, series: Series, threshold: int, start: date, end: date, *, options: BarOptions = DEFAULT_OPTIONS
    ) -> set[date]:
        """Days in ``[start, end]`` that are stored *and* continue the stored previous day (chain rule)."""
        _check_range(start, end)
        stored = self.coverage(series, threshold, start - timedelta(days=1), end, options=options)
        valid: set[date] = set()
        for day in days(start, end):
            record = stored.get(day)
            if record is None:
                continue
            previous = stored.get(day - timedelta(days=1))
            expected = previous.checkpoint_sha256 if previous is not None else ""
            if record.parent_checkpoint_sha256 == expected:
                valid.add(day)
        return valid

    def is_covered(
        self, series: Series, threshold: int, start: date, end: date, *, options: BarOptions = DEFAULT_OPTIONS
    ) -> bool:
        """True when every day of ``[start, end]`` is covered (a cache answer is then complete)."""
        covered = self.covered_days(series, threshold, start, end, options=options)
        return len(covered) == (end - start).days + 1

    def checkpoint_for(
        self, series: Series, threshold: int, day: date, *, options: BarOptions = DEFAULT_OPTIONS
    ) -> bytes | None:
        """The processor checkpoint stored at the end of ``day``, or None when the day is not stored."""
        sql = (
            f"SELECT checkpoint FROM {self.database}.bar_coverage FINAL "
            f"WHERE {self._where(series, threshold, day, day, options)}"
        )
        with self._client() as client:
            result = client.query(
                sql,
                parameters=self._params(series, threshold, day, day, options),
                column_formats={"checkpoint": "bytes"},
            )
        rows = result.result_rows
        return bytes(rows[0][0]) if rows else None

    def checkpoints_at(
        self, series: Series, thresholds: Sequence[int], day: date, *, options: BarOptions = DEFAULT_OPTIONS
    ) -> dict[int, bytes]:
        """The checkpoints stored at the end of ``day`` for several thresholds (absent ones omitted)."""
        wanted = [_check_threshold(t) for t in thresholds]
        sql = (
            f"SELECT threshold_decimal_bps, checkpoint FROM {self.database}.bar_coverage FINAL "
            f"WHERE {self._where(series, None, day, day, options)} "
            "AND threshold_decimal_bps IN {thresholds:Array(UInt32)}"
        )
        params = self._params(series, None, day, day, options) | {"thresholds": wanted}
        with self._client() as client:
            result = client.query(sql, parameters=params, column_formats={"checkpoint": "bytes"})
        return {int(t): bytes(cp) for t, cp in result.result_rows}

    # -- reading

    def read_bars(
        self, series: Series, threshold: int, start: date, end: date, *, options: BarOptions = DEFAULT_OPTIONS
    ) -> pl.DataFrame:
        """Stored bars of the days in ``[start, end]``, ascending by (close_time, first_agg_trade_id).

        Only stored days contribute: check :meth:`is_covered` first for a complete answer. Bars
        carry the columns of ``options`` (the lookback group when it is on).
        """
        threshold = _check_threshold(threshold)
        _check_range(start, end)
        visible = self._visible(series, threshold, start, end, options)
        tail = f"{visible} ORDER BY close_time_us, first_agg_trade_id"
        return self._select_bars(tail, self._params(series, threshold, start, end, options), series, options)

    def last_n_bars(
        self, series: Series, threshold: int, n: int, end: date, *, options: BarOptions = DEFAULT_OPTIONS
    ) -> pl.DataFrame:
        """The ``n`` most recent stored bars of days up to ``end`` (fewer if fewer are stored), ascending."""
        threshold = _check_threshold(threshold)
        if n <= 0:
            raise ValueError(f"n must be > 0, got {n}")
        tail = (
            f"{self._visible(series, threshold, None, end, options)} "
            f"ORDER BY close_time_us DESC, first_agg_trade_id DESC LIMIT {int(n)}"
        )
        frame = self._select_bars(tail, self._params(series, threshold, None, end, options), series, options)
        return frame.reverse()

    def count_bars(
        self,
        series: Series,
        threshold: int,
        start: date | None = None,
        end: date | None = None,
        *,
        options: BarOptions = DEFAULT_OPTIONS,
    ) -> int:
        """Number of stored (visible) bars of the series and threshold, optionally within day bounds."""
        threshold = _check_threshold(threshold)
        sql = (
            f"SELECT count() FROM {self.database}.range_bars "
            f"WHERE {self._visible(series, threshold, start, end, options)}"
        )
        with self._client() as client:
            result = client.query(sql, parameters=self._params(series, threshold, start, end, options))
        return int(result.result_rows[0][0])

    def status(self) -> StoreStatus:
        """Days, bars, ticks and stale days stored per (series, threshold, bar options)."""
        sql = (
            "SELECT source, market, symbol, threshold_decimal_bps, options, count(), min(day), max(day), "
            "sum(bar_count), sum(tick_count), "
            "countIf(schema_version != {schema:UInt16} OR kernel_version != {kernel:String}) "
            f"FROM {self.database}.bar_coverage FINAL "
            "GROUP BY source, market, symbol, threshold_decimal_bps, options "
            "ORDER BY source, market, symbol, threshold_decimal_bps, options"
        )
        with self._client() as client:
            rows = client.query(
                sql, parameters={"schema": SCHEMA_VERSION, "kernel": KERNEL_VERSION}
            ).result_rows
        return StoreStatus(
            self.dsn,
            tuple(
                SeriesStatus(
                    Series(r[0], r[1], r[2]),
                    int(r[3]),
                    int(r[5]),
                    r[6],
                    r[7],
                    int(r[8]),
                    int(r[9]),
                    BarOptions.from_key(str(r[4])),
                    int(r[10]),
                )
                for r in rows
            ),
        )

    def clear(self) -> int:
        """Forget every stored day of every series; return the number of days forgotten."""
        total = 0
        for item in self.status().series:
            total += self.invalidate(item.series, item.threshold, options=item.options)
        return total


# --- frame conversion --------------------------------------------------------------------------------


def _coverage_record(series: Series, threshold: int, options: BarOptions, row: Sequence[Any]) -> Coverage:
    day, write_id, bars, ticks, first_id, last_id, sha, parent_sha, created, schema, kernel = row
    return Coverage(
        series, threshold, day, int(write_id), int(bars), int(ticks),
        None if first_id is None else int(first_id), None if last_id is None else int(last_id),
        str(sha), str(parent_sha), created if created.tzinfo else created.replace(tzinfo=UTC),
        options, int(schema), str(kernel),
    )  # fmt: skip


def _suffix(options: BarOptions) -> str:
    return f" [{options.key}]" if options.key else ""


def _check_threshold(threshold: int) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= 100_000:
        raise ValueError(f"threshold must be an integer in 1..=100000 decimal bps, got {threshold!r}")
    return threshold


def _check_range(start: date, end: date) -> None:
    if start > end:
        raise ValueError(f"start day {start} is after end day {end}")


def _prepare_rows(item: DayWrite, threshold: int, write_id: int) -> pl.DataFrame:
    """Validate a day's bars and shape them as ``range_bars`` rows."""
    series, options, day, bars = item.series, item.options, item.day, item.bars
    missing = [c for c in options.bar_schema if c not in bars.columns]
    if missing:
        raise MissingColumnError(
            f"bars for {series} {day} ({options}) lack columns {missing}; expected the columns of "
            "BarOptions.bar_schema"
        )
    frame = bars.select(
        pl.col("open_time").dt.epoch("us").alias("open_time_us"),
        pl.col("close_time").dt.epoch("us").alias("close_time_us"),
        *(pl.col(c).cast(BAR_SCHEMA[c], strict=True) for c in _VALUE_COLUMNS),
        *(
            (pl.col(c) if c in bars.columns else pl.lit(None)).cast(dtype).alias(c)
            for c, dtype in SPREAD_SCHEMA.items()
        ),
        *(
            (pl.col(c) if options.lookback_trades else pl.lit(None)).cast(dtype).alias(c)
            for c, dtype in LOOKBACK_SCHEMA.items()
        ),
    )
    day_start = day_start_us(day)
    outside = frame.with_row_index("row").filter(
        (pl.col("close_time_us") < day_start) | (pl.col("close_time_us") >= day_start + US_PER_DAY)
    )
    if outside.height:
        row = outside.row(0, named=True)
        raise ValueError(
            f"bar {row['row']} of {series} closes at {row['close_time_us']} us, outside day {day} "
            f"[{day_start}, {day_start + US_PER_DAY}): bars must be stored under the day of their close"
        )
    key = ["close_time_us", "first_agg_trade_id"]
    duplicated = frame.with_row_index("row").filter(pl.struct(key).is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        raise ValueError(
            f"bars of {series} {day} repeat the key close_time_us={row['close_time_us']}, "
            f"first_agg_trade_id={row['first_agg_trade_id']} (row {row['row']})"
        )
    head = pl.DataFrame(
        {
            "source": [series.source],
            "market": [series.market],
            "symbol": [series.symbol],
            "threshold_decimal_bps": pl.Series([threshold], dtype=pl.UInt32),
            "options": [options.key],
            "day": [day],
            "write_id": pl.Series([write_id], dtype=pl.UInt64),
        }
    )
    return head.join(frame.sort(key), how="cross").select(_TABLE_COLUMNS)


def _to_bar_frame(raw: pl.DataFrame, series: Series, options: BarOptions) -> pl.DataFrame:
    """ClickHouse rows -> bar frame in the kernel's order: BAR_SCHEMA, the lookback group (when
    ``options`` has it), then the spread columns (Exness)."""
    extra = dict(source_type(series).spread_schema)
    lookback = LOOKBACK_SCHEMA if options.lookback_trades else {}
    if raw.is_empty() and not raw.columns:
        return pl.DataFrame(schema=BAR_SCHEMA | lookback | extra)
    return raw.select(
        pl.col("open_time_us").cast(pl.Int64).cast(BAR_SCHEMA["open_time"]).alias("open_time"),
        pl.col("close_time_us").cast(pl.Int64).cast(BAR_SCHEMA["close_time"]).alias("close_time"),
        *(pl.col(c).cast(BAR_SCHEMA[c]) for c in _VALUE_COLUMNS),
        *(pl.col(c).cast(dtype) for c, dtype in (lookback | extra).items()),
    )
