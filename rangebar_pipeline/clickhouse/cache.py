"""7.1.3's ``RangeBarCache`` and ``CacheKey`` as reads of :class:`BarStore`, plus the module-level
``get_cached_bars``/``count_bars`` its module guide documents (the top-level functions).

Symbols are 7.1.3's: ``"BTCUSDT"`` (Binance spot) or a cache symbol such as ``"BINANCE_UM_BTCUSDT"``;
timestamps are epoch milliseconds of the bar's close time. The store keeps whole UTC days, so ranges
are answered from the days they touch and invalidation forgets whole days.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

from rangebar_pipeline.api import count_bars, get_cached_bars
from rangebar_pipeline.clickhouse.config import ClickHouseConfig
from rangebar_pipeline.constants import resolve_threshold
from rangebar_pipeline.exceptions import StoreError
from rangebar_pipeline.frames import bars_to_pandas
from rangebar_pipeline.records import bars_to_records
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.parquet import series_of

__all__ = ["CacheKey", "RangeBarCache", "count_bars", "get_cached_bars"]


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms // 1000, UTC).date()


def _close_ms() -> pl.Expr:
    return pl.col("close_time").dt.epoch("ms")


@dataclass(frozen=True)
class CacheKey:
    """Symbol, threshold and the ``[start_ts, end_ts]`` (ms) range of a set of bars."""

    symbol: str
    threshold_decimal_bps: int
    start_ts: int
    end_ts: int

    @property
    def hash_key(self) -> str:
        """MD5 of the key's fields (as 7.1.3)."""
        text = f"{self.symbol}_{self.threshold_decimal_bps}_{self.start_ts}_{self.end_ts}"
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class RangeBarCache:
    """7.1.3's cache API over :class:`BarStore` (the ``client`` argument is accepted and ignored;
    :attr:`client` is the store's own).

    >>> with RangeBarCache(cache_dir="/tmp/rb") as cache:  # doctest: +SKIP
    ...     cache.count_bars("BTCUSDT", 250)
    """

    def __init__(
        self,
        client: object | None = None,
        *,
        config: ClickHouseConfig | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        del client
        self._store = BarStore(config.dsn if config is not None else None, cache_dir=cache_dir)

    @property
    def client(self) -> Any:
        """The clickhouse-connect client of the bar store, for your own queries (tables
        ``<database>.range_bars`` and ``<database>.bar_coverage``, database :attr:`database`).

        It is shared with every store of the same DSN in this process. For embedded chDB the
        connection is not thread-safe: when other threads use the store, query under
        ``with cache.lock():``. Do not close it; :meth:`close` releases it.
        """
        return self._store.client

    @property
    def database(self) -> str:
        """The ClickHouse database of the bar store."""
        return self._store.database

    def lock(self) -> AbstractContextManager[Any]:
        """The store's re-entrant lock, serialising use of :attr:`client` with the store's own calls."""
        return self._store.lock()

    def close(self) -> None:
        """Release the store."""
        self._store.close()

    def __enter__(self) -> RangeBarCache:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _read(self, series: Series, threshold: int, start_ms: int, end_ms: int) -> pl.DataFrame:
        bars = self._store.read_bars(series, threshold, _day(start_ms), _day(end_ms))
        return bars.filter(_close_ms().is_between(start_ms, end_ms))

    # --- keyed access (7.1.3 stored arbitrary frames under a key; here: the key's range) ----------

    def has_range_bars(self, key: CacheKey) -> bool:
        """Whether every UTC day of the key's range is stored (a complete answer exists)."""
        series = series_of(key.symbol)
        return self._store.is_covered(series, key.threshold_decimal_bps, _day(key.start_ts), _day(key.end_ts))

    def get_range_bars(self, key: CacheKey) -> pd.DataFrame | None:
        """The bars closed in the key's range (backtesting.py frame), or None when not fully stored."""
        if not self.has_range_bars(key):
            return None
        return bars_to_pandas(
            self._read(series_of(key.symbol), key.threshold_decimal_bps, key.start_ts, key.end_ts)
        )

    def invalidate_range_bars(self, key: CacheKey) -> int:
        """Forget the days of the key's range; returns the number of days."""
        return self.invalidate_range_bars_by_range(
            key.symbol, key.threshold_decimal_bps, key.start_ts, key.end_ts
        )

    def invalidate_range_bars_by_range(
        self, symbol: str, threshold_decimal_bps: int, start_timestamp_ms: int, end_timestamp_ms: int
    ) -> int:
        """Forget every UTC day touched by the range; returns the number of days forgotten."""
        return self._store.invalidate(
            series_of(symbol), resolve_threshold(threshold_decimal_bps), _day(start_timestamp_ms),
            _day(end_timestamp_ms),
        )  # fmt: skip

    def store_range_bars(self, key: CacheKey, bars: pd.DataFrame, version: str = "") -> int:
        """Not supported: bars enter the store with their checkpoints (see the module docstring)."""
        del key, bars, version
        raise StoreError(
            "store_range_bars is not supported: the bar store keeps bars with the checkpoint chain of "
            "their days; compute them with get_range_bars or precompute_range_bars (docs/migration.md)"
        )

    def store_bars_bulk(
        self, symbol: str, threshold_decimal_bps: int, bars: pd.DataFrame, version: str = ""
    ) -> int:
        """Not supported, as :meth:`store_range_bars`."""
        del symbol, threshold_decimal_bps, bars, version
        return self.store_range_bars(CacheKey("", 0, 0, 0), pd.DataFrame())

    # --- reads by symbol and time ------------------------------------------------------------------

    def count_bars(self, symbol: str, threshold_decimal_bps: int, before_ts: int | None = None) -> int:
        """Stored bars of the series (closed before ``before_ts`` ms when given)."""
        series, threshold = series_of(symbol), resolve_threshold(threshold_decimal_bps)
        if before_ts is None:
            return self._store.count_bars(series, threshold)
        day = _day(before_ts)
        earlier = self._store.count_bars(series, threshold, date.min, date.fromordinal(day.toordinal() - 1))
        same_day = self._store.read_bars(series, threshold, day, day).filter(_close_ms() < before_ts)
        return earlier + same_day.height

    def get_n_bars(
        self,
        symbol: str,
        threshold_decimal_bps: int,
        n_bars: int,
        before_ts: int | None = None,
        include_microstructure: bool = False,
    ) -> tuple[pd.DataFrame | None, int]:
        """The ``n_bars`` most recent stored bars (closed before ``before_ts``) and how many there are."""
        series, threshold = series_of(symbol), resolve_threshold(threshold_decimal_bps)
        end = _day(before_ts) if before_ts is not None else datetime.now(UTC).date()
        extra = self._store.count_bars(series, threshold, end, end)
        bars = self._store.last_n_bars(series, threshold, n_bars + extra, end)
        if before_ts is not None:
            bars = bars.filter(_close_ms() < before_ts)
        bars = bars.tail(n_bars)
        if bars.height == 0:
            return None, 0
        return bars_to_pandas(bars, include_microstructure=include_microstructure), bars.height

    def get_last_bar_before(
        self, symbol: str, threshold_decimal_bps: int, before_timestamp_ms: int
    ) -> dict[str, Any] | None:
        """The last stored bar closed before the time, as a bar dict (``process_trades`` format)."""
        series, threshold = series_of(symbol), resolve_threshold(threshold_decimal_bps)
        day = _day(before_timestamp_ms)
        bars = self._store.last_n_bars(
            series, threshold, 1 + self._store.count_bars(series, threshold, day, day), day
        )
        records = bars_to_records(bars.filter(_close_ms() < before_timestamp_ms).tail(1))
        return records[0] if records else None

    def _edge_ms(self, symbol: str, threshold_decimal_bps: int, *, newest: bool) -> int | None:
        series, threshold = series_of(symbol), resolve_threshold(threshold_decimal_bps)
        for item in self._store.status().series:
            if item.series == series and item.threshold == threshold:
                day = item.last_day if newest else item.first_day
                times = self._store.read_bars(series, threshold, day, day).select(_close_ms())
                return int(times.max().item() if newest else times.min().item())
        return None

    def get_oldest_bar_timestamp(self, symbol: str, threshold_decimal_bps: int) -> int | None:
        """Close time (ms) of the oldest stored bar, or None."""
        return self._edge_ms(symbol, threshold_decimal_bps, newest=False)

    def get_newest_bar_timestamp(self, symbol: str, threshold_decimal_bps: int) -> int | None:
        """Close time (ms) of the newest stored bar, or None."""
        return self._edge_ms(symbol, threshold_decimal_bps, newest=True)

    def get_bars_by_timestamp_range(
        self,
        symbol: str,
        threshold_decimal_bps: int,
        start_ts: int,
        end_ts: int,
        include_microstructure: bool = False,
    ) -> pd.DataFrame | None:
        """Stored bars closed in ``[start_ts, end_ts]`` (ms), or None when there are none."""
        bars = self._read(series_of(symbol), resolve_threshold(threshold_decimal_bps), start_ts, end_ts)
        return bars_to_pandas(bars, include_microstructure=include_microstructure) if bars.height else None
