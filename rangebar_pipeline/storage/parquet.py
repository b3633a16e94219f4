"""rangebar 7.1.3's ``TickStorage`` (``rangebar.storage.parquet``) over this package's tick store.

A thin adapter: every call goes to :class:`~rangebar_pipeline.storage.ticks.TickStore`, which keeps
one verified Parquet file per UTC day and series. 7.1.3 named a series by one *cache symbol*
(``"BINANCE_SPOT_BTCUSDT"``, ``"EXNESS_SPOT_EURUSD"``; a bare ``"BTCUSDT"`` is Binance spot) and
filtered by epoch-millisecond bounds; both work here. Frames come back in the Tier 1 schema
(``timestamp`` is a UTC microsecond datetime, prices are exact decimals), not 7.1.3's raw columns.

>>> storage = TickStorage(cache_dir="/tmp/rangebar-doctest")
>>> storage.list_months("BTCUSDT")
[]
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from rangebar_pipeline.calendar import days, parse_day
from rangebar_pipeline.paths import default_cache_dir
from rangebar_pipeline.series import SOURCES, Series, parse_market, parse_source
from rangebar_pipeline.storage.ticks import TickStore, tick_schema
from rangebar_pipeline.trades import timestamps_us, to_polars

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TickStorage", "get_cache_dir", "series_of"]

_MS_PER_DAY = 86_400_000


def get_cache_dir() -> Path:
    """The cache root (``$RANGEBAR_CACHE_DIR`` or the platform's user cache directory)."""
    return default_cache_dir()


def series_of(symbol: str) -> Series:
    """``"BINANCE_UM_BTCUSDT"`` -> ``Series("binance", "um", "BTCUSDT")``; ``"BTCUSDT"`` -> Binance spot."""
    parts = symbol.split("_", 2)
    if len(parts) == 3 and parts[0].lower() in SOURCES:
        source = parse_source(parts[0])
        return Series(source, parse_market(parts[1], source=source), parts[2].upper())
    return Series.of(symbol)


def _cache_symbol(series: Series) -> str:
    return f"{series.source}_{series.market}_{series.symbol}".upper()


def _day_of_ms(ms: int) -> date:
    return datetime.fromtimestamp(ms // 1000, UTC).date()


def _as_ms(value: int | datetime | date) -> int:
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(stamp.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000)
    return int(value)


class TickStorage:
    """7.1.3's tick storage API (monthly and range reads, stats) over :class:`TickStore`."""

    def __init__(self, cache_dir: Path | str | None = None) -> None:
        self._store = TickStore(cache_dir)

    @property
    def cache_dir(self) -> Path:
        """The cache root."""
        return self._store.root

    @property
    def ticks_dir(self) -> Path:
        """Where the tick files live (``<cache_dir>/ticks``)."""
        return self._store.ticks_dir

    @property
    def store(self) -> TickStore:
        """The underlying tick store."""
        return self._store

    def _stored_days(self, series: Series) -> list[date]:
        return self._store.list_days(series)

    def _bounds(self, series: Series, start_ts: int | None, end_ts: int | None) -> list[date]:
        days = self._stored_days(series)
        lo = None if start_ts is None else _day_of_ms(_as_ms(start_ts))
        hi = None if end_ts is None else _day_of_ms(_as_ms(end_ts))
        return [d for d in days if (lo is None or d >= lo) and (hi is None or d <= hi)]

    def _scan(self, series: Series, days: list[date]) -> pl.LazyFrame:
        if not days:
            return pl.LazyFrame(schema=tick_schema(series))
        frame = self._store.get_ticks(series, days[0], days[-1], fetch_if_missing=False, lazy=True)
        assert isinstance(frame, pl.LazyFrame)
        return frame

    def read_ticks(
        self,
        symbol: str,
        start_ts: int | None = None,
        end_ts: int | None = None,
        *,
        timestamp_col: str = "timestamp",
    ) -> pl.DataFrame:
        """Stored ticks with ``start_ts <= timestamp <= end_ts`` (epoch ms, or datetimes), sorted."""
        series = series_of(symbol)
        frame = self._scan(series, self._bounds(series, start_ts, end_ts))
        millis = pl.col(timestamp_col).dt.epoch("ms")
        if start_ts is not None:
            frame = frame.filter(millis >= _as_ms(start_ts))
        if end_ts is not None:
            frame = frame.filter(millis <= _as_ms(end_ts))
        return frame.collect()

    def get_ticks(self, symbol: str, start: int | None = None, end: int | None = None) -> pl.DataFrame:
        """:meth:`read_ticks` under the name 7.1.3's module guide (``CLAUDE.md``) uses."""
        return self.read_ticks(symbol, start, end)

    def read_ticks_streaming(
        self,
        symbol: str,
        start_ts: int | None = None,
        end_ts: int | None = None,
        *,
        chunk_size: int = 100_000,
        timestamp_col: str = "timestamp",
    ) -> Iterator[pl.DataFrame]:
        """:meth:`read_ticks` in chunks of at most ``chunk_size`` rows, one stored day at a time."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        series = series_of(symbol)
        for day in self._bounds(series, start_ts, end_ts):
            start = max(_as_ms(day), _as_ms(start_ts)) if start_ts is not None else None
            frame = self.read_ticks(symbol, start, end_ts, timestamp_col=timestamp_col)
            frame = frame.filter(pl.col(timestamp_col).dt.date() == day)
            yield from frame.iter_slices(chunk_size)

    def has_ticks(
        self,
        symbol: str,
        start_ts: int,
        end_ts: int,
        *,
        min_coverage: float = 0.95,
        timestamp_col: str = "timestamp",
    ) -> bool:
        """Whether at least ``min_coverage`` of the UTC days touched by ``[start_ts, end_ts]`` are stored."""
        del timestamp_col
        series = series_of(symbol)
        wanted = days(_day_of_ms(_as_ms(start_ts)), _day_of_ms(_as_ms(end_ts)))
        stored = set(self._stored_days(series))
        return sum(d in stored for d in wanted) >= min_coverage * len(wanted)

    def write_ticks(
        self, symbol: str, ticks: pl.DataFrame | pd.DataFrame, *, timestamp_col: str = "timestamp"
    ) -> int:
        """Store trades (any column names/units :func:`process_trades_polars` accepts) day by day,
        merged with the days already stored; returns the number of rows given."""
        series = series_of(symbol)
        frame = to_polars(ticks).rename({timestamp_col: "timestamp"} if timestamp_col != "timestamp" else {})
        if frame.height == 0:
            return 0
        schema = tick_schema(series)
        micros = pl.Series("timestamp", timestamps_us(frame["timestamp"], None))
        columns: dict[str, Any] = {"timestamp": micros.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")}
        for name, dtype in schema.items():
            if name != "timestamp":
                source = frame[name] if name in frame.columns else pl.Series(name, [None] * frame.height)
                columns[name] = source.cast(dtype)
        canonical = pl.DataFrame(columns).select(list(schema))
        for (day,), part in canonical.group_by(pl.col("timestamp").dt.date(), maintain_order=True):
            merged = part
            if self._store.has_day(series, day):
                stored = self._store.read_day(series, day)
                merged = pl.concat([stored, part])
            self._store.write_day(series, day, merged)
        return canonical.height

    def list_symbols(self) -> list[str]:
        """Cache symbols (``SOURCE_MARKET_SYMBOL``) with stored ticks."""
        return sorted(
            _cache_symbol(Series(s.source, s.market, s.symbol))  # type: ignore[arg-type]
            for s in self._store.status().series
        )

    def list_months(self, symbol: str) -> list[str]:
        """``YYYY-MM`` months with at least one stored day."""
        return sorted({d.strftime("%Y-%m") for d in self._stored_days(series_of(symbol))})

    def delete_ticks(self, symbol: str, year_month: str | None = None) -> bool:
        """Delete the stored days of one month (``"2024-01"``) or of every month; True if any."""
        series = series_of(symbol)
        days = [
            d for d in self._stored_days(series) if year_month is None or d.strftime("%Y-%m") == year_month
        ]
        return any([self._store.delete_day(series, d) for d in days])

    def get_stats(self, symbol: str) -> dict[str, Any]:
        """7.1.3's statistics dict (``file_count`` counts day files here) plus ``days``."""
        series = series_of(symbol)
        for s in self._store.status().series:
            if (s.source, s.market, s.symbol) == (series.source, series.market, series.symbol):
                return {
                    "symbol": symbol,
                    "exists": True,
                    "file_count": s.days,
                    "total_size_bytes": s.bytes,
                    "total_size_mb": s.bytes / 1024 / 1024,
                    "total_rows": s.rows,
                    "months": self.list_months(symbol),
                    "days": s.days,
                    "compression": "zstd",
                }
        return {"symbol": symbol, "exists": False, "file_count": 0, "total_size_bytes": 0, "total_rows": 0}

    def fetch_month(
        self,
        symbol: str,
        year: int,
        month: int,
        *,
        timestamp_col: str = "timestamp",
        force_refresh: bool = False,
    ) -> pl.LazyFrame:
        """The stored ticks of one month, lazily (nothing is downloaded, as in 7.1.3)."""
        del timestamp_col
        series = series_of(symbol)
        if force_refresh:
            return pl.LazyFrame(schema=tick_schema(series))
        days = [d for d in self._stored_days(series) if (d.year, d.month) == (year, month)]
        return self._scan(series, days)

    def fetch_date_range(
        self, symbol: str, start_date: str, end_date: str, *, timestamp_col: str = "timestamp"
    ) -> Iterator[pl.LazyFrame]:
        """One lazy frame per month of ``[start_date, end_date]`` that has stored days."""
        first, last = parse_day(start_date, name="start_date"), parse_day(end_date, name="end_date")
        series = series_of(symbol)
        stored = [d for d in self._stored_days(series) if first <= d <= last]
        for month in sorted({(d.year, d.month) for d in stored}):
            yield self._scan(series, [d for d in stored if (d.year, d.month) == month])
        del timestamp_col
