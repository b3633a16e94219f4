"""The :class:`BarStore` facade: one object per DSN over the shared engine, the reads and the writes.

Every public method takes (series, threshold, ..., options=...) as before; internally they build one
:class:`~rangebar_pipeline.storage.bars.records.BarKey`. The chain rule lives here only
(:meth:`BarStore.covered_days`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import polars as pl

from rangebar_pipeline.calendar import days
from rangebar_pipeline.exceptions import StoreError
from rangebar_pipeline.options import DEFAULT_OPTIONS, BarOptions
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import reads
from rangebar_pipeline.storage.bars import writes as day_writes
from rangebar_pipeline.storage.bars.dsn import database_name, location, redact_dsn, resolve_dsn
from rangebar_pipeline.storage.bars.engine import Engine, acquire, release
from rangebar_pipeline.storage.bars.reads import Selection
from rangebar_pipeline.storage.bars.records import (
    BarKey,
    Coverage,
    DayWrite,
    StoreStatus,
    check_range,
)
from rangebar_pipeline.storage.bars.schema import ensure_schema

__all__ = ["BarStore"]


class BarStore:
    """Range bars by (series, threshold, UTC day) in ClickHouse; see :mod:`rangebar_pipeline.storage.bars`.

    >>> with BarStore(cache_dir="/tmp/rb") as store:  # doctest: +SKIP
    ...     store.write_day(series, 250, day, bars, checkpoint=cp, tick_count=n)
    ...     store.read_bars(series, 250, day, day)
    """

    def __init__(self, dsn: str | None = None, *, cache_dir: str | Path | None = None) -> None:
        self._dsn = resolve_dsn(dsn, cache_dir=cache_dir)
        self.database = database_name(self._dsn)
        #: The migration statements run when this store was opened (empty for a current store).
        self.migrated: list[str] = []
        self._engine: Engine | None = acquire(self._dsn)
        try:
            with self._client() as client:
                self.migrated = ensure_schema(client, self.database)
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

    @property
    def client(self) -> Any:
        """The clickhouse-connect client of this store, for your own read queries.

        It is shared by every store of the DSN in this process; for chDB it is not thread-safe:
        use it under :meth:`lock` when other threads use the store.
        """
        return self._open_engine().client

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        """The engine's re-entrant lock (``with store.lock(): store.client.query(...)``)."""
        return self._open_engine().lock

    def close(self) -> None:
        """Release this store's share of the connection (idempotent)."""
        engine, self._engine = self._engine, None
        if engine is not None:
            release(engine)

    def __enter__(self) -> BarStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BarStore({self.dsn!r})"

    def _open_engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise StoreError(f"{self!r} is closed")
        return engine

    @contextlib.contextmanager
    def _client(self) -> Iterator[Any]:
        with self._open_engine().session() as client:
            yield client

    # -- addresses

    def uri(self, series: Series, threshold: int, day: date, *, options: BarOptions = DEFAULT_OPTIONS) -> str:
        """Where the bars of one stored day live, for display (no credentials).

        ``<store>/<database>.range_bars?source=..&market=..&symbol=..&threshold=..&day=YYYY-MM-DD``
        with ``&options=<BarOptions.key>`` when not the plain rule; ``<store>`` is
        :func:`~rangebar_pipeline.storage.bars.dsn.location`: ``clickhouse://host:port`` for a server,
        ``chdb://<data directory>`` for embedded chDB, e.g.
        ``chdb:///home/u/.cache/rangebar/clickhouse/rangebar.range_bars?source=binance&market=spot&symbol=BTCUSDT&threshold=250&day=2024-01-02``.
        """
        key = BarKey(series, threshold, options)
        query = {"source": series.source, "market": series.market, "symbol": series.symbol}
        query |= {"threshold": str(key.threshold), "day": day.isoformat()}
        if options.key:
            query["options"] = options.key
        return f"{location(self._dsn)}/{self.database}.range_bars?{urlencode(query)}"

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

    def prepare(self, writes: Sequence[DayWrite]) -> list[DayWrite]:
        """``writes`` with their bars validated and shaped as rows now, so that :meth:`write_days`
        only stamps and inserts them: for a writer holding days until their batch is written.

        Raises:
            MissingColumnError, ValueError: As :meth:`write_days` would for these bars.
        """
        return [replace(w, rows=day_writes.shape_rows(w)) for w in writes]

    def write_days(self, writes: Sequence[DayWrite]) -> list[Coverage]:
        """Replace many (series, threshold, day) at once: one insert of bars, one of coverage rows.

        Each day gets its own write id and switches atomically as in :meth:`write_day`. Superseded
        versions are retired with one lightweight delete per (series, threshold) of the batch, and
        only when an older version of one of its days is actually stored (a first backfill of a
        range issues no mutation at all).
        """
        if not writes:
            return []
        with self._client() as client:
            return day_writes.write_days(client, self.database, writes)

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
        with self._client() as client:
            return day_writes.invalidate(
                client, self.database, Selection(series, threshold, options, start, end)
            )

    # -- coverage

    def coverage(
        self, series: Series, threshold: int, start: date, end: date, *, options: BarOptions = DEFAULT_OPTIONS
    ) -> dict[date, Coverage]:
        """The stored days in ``[start, end]`` with their current version (chain validity not checked)."""
        key = BarKey(series, threshold, options)
        with self._client() as client:
            return reads.coverage(client, self.database, key, start, end)

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
        """Days in ``[start, end]`` that are stored *and* continue the stored previous day.

        The chain rule: bars of day D depend on the processor state at the end of D-1, so a stored
        day is covered iff its parent checkpoint is the one stored for D-1, or it started from a
        fresh processor and D-1 is not stored. This is the rule's only definition.
        """
        check_range(start, end)
        stored = self.coverage(series, threshold, start - timedelta(days=1), end, options=options)
        valid: set[date] = set()
        for day in days(start, end):
            record = stored.get(day)
            if record is None:
                continue
            previous = stored.get(day - timedelta(days=1))
            if record.continues(previous.checkpoint_sha256 if previous is not None else ""):
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
        key = BarKey(series, threshold, options)
        with self._client() as client:
            return reads.checkpoint_at(client, self.database, key, day)

    def checkpoints_at(
        self, series: Series, thresholds: Sequence[int], day: date, *, options: BarOptions = DEFAULT_OPTIONS
    ) -> dict[int, bytes]:
        """The checkpoints stored at the end of ``day`` for several thresholds (absent ones omitted)."""
        with self._client() as client:
            return reads.checkpoints_at(client, self.database, series, thresholds, day, options=options)

    # -- reading

    def read_bars(
        self,
        series: Series,
        threshold: int,
        start: date,
        end: date,
        *,
        options: BarOptions = DEFAULT_OPTIONS,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Stored bars of the days in ``[start, end]``, ascending by (close_time, first_agg_trade_id).

        Only stored days contribute: check :meth:`is_covered` first for a complete answer. Bars
        carry the columns of ``options`` (the lookback and intra groups when on), or only ``columns``.
        """
        key = BarKey(series, threshold, options)
        check_range(start, end)
        order = "ORDER BY close_time_us, first_agg_trade_id"
        with self._client() as client:
            return reads.select_bars(
                client, self.database, key, Selection.of(key, start, end), order, columns=columns
            )

    def last_n_bars(
        self, series: Series, threshold: int, n: int, end: date, *, options: BarOptions = DEFAULT_OPTIONS
    ) -> pl.DataFrame:
        """The ``n`` most recent stored bars of days up to ``end`` (fewer if fewer are stored), ascending."""
        key = BarKey(series, threshold, options)
        if n <= 0:
            raise ValueError(f"n must be > 0, got {n}")
        order = f"ORDER BY close_time_us DESC, first_agg_trade_id DESC LIMIT {int(n)}"
        with self._client() as client:
            frame = reads.select_bars(client, self.database, key, Selection.of(key, None, end), order)
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
        key = BarKey(series, threshold, options)
        with self._client() as client:
            return reads.count_bars(client, self.database, Selection.of(key, start, end))

    def status(self) -> StoreStatus:
        """Days, bars, ticks and stale days stored per (series, threshold, bar options)."""
        with self._client() as client:
            rows = reads.status_rows(client, self.database)
        return StoreStatus(self.dsn, tuple(rows))

    def clear(self) -> int:
        """Forget every stored day of every series; return the number of days forgotten."""
        total = 0
        for item in self.status().series:
            total += self.invalidate(item.series, item.threshold, options=item.options)
        return total
