"""rangebar 7.1.3's ``TickStorage`` (``rangebar.storage.parquet``): 7.1.3's semantics, two kinds of symbol.

- **Your own symbols** (``"BTCUSDT"``, ``"MY_TICKS"``: anything that is not a cache symbol below) get
  7.1.3's store, call for call: one zstd-3 Parquet file per UTC month at 7.1.3's path
  ``<cache_dir>/ticks/<SYMBOL>/<YYYY-MM>.parquet`` holding the columns you wrote (a datetime
  ``timestamp`` becomes epoch milliseconds), :meth:`TickStorage.write_ticks` appending to the month
  (duplicates kept), reads filtered by ``start_ts <= timestamp <= end_ts`` on the stored values,
  months listed and deleted as files. Unlike 7.1.3, a month file is replaced atomically under a lock
  (a crash or a concurrent writer never leaves a torn file) and a symbol that is not a plain file
  name (``/``, ``\\``, NUL, ``.``, ``..``) or names a tick-cache source directory is refused.
- **Cache symbols** ``SOURCE_MARKET_SYMBOL`` (``"BINANCE_SPOT_BTCUSDT"``, ``"EXNESS_SPOT_EURUSD"``, as
  7.1.3's ``get_range_bars`` named its tick cache) are this package's tick cache
  (:class:`~rangebar_pipeline.storage.ticks.TickStore`: one verified file per UTC day): frames in its
  schema (UTC microsecond ``timestamp``, exact decimals), writes merged into the day files with exact
  duplicates removed, ``file_count`` counting days (docs/migration.md lists each difference).

>>> storage = TickStorage(cache_dir="/tmp/rangebar-doctest")
>>> storage.list_months("BTCUSDT")
[]
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from rangebar_pipeline.calendar import days, parse_day
from rangebar_pipeline.paths import default_cache_dir
from rangebar_pipeline.series import MARKET_ALIASES, SOURCES, Series, parse_market, parse_source
from rangebar_pipeline.storage._atomic import atomic_write, remove_temp_files
from rangebar_pipeline.storage._lock import file_lock
from rangebar_pipeline.storage.ticks import TickStore, tick_schema
from rangebar_pipeline.trades import timestamps_us, to_polars

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COMPRESSION", "COMPRESSION_LEVEL", "TickStorage", "get_cache_dir", "series_of"]

COMPRESSION: Final = "zstd"
COMPRESSION_LEVEL: Final = 3


def get_cache_dir() -> Path:
    """The cache root (``$RANGEBAR_CACHE_DIR`` or the platform's user cache directory)."""
    return default_cache_dir()


def cache_series(symbol: str) -> Series | None:
    """The series of a cache symbol (``"BINANCE_UM_BTCUSDT"``), else None (one of your own symbols)."""
    parts = symbol.split("_", 2)
    if len(parts) == 3 and parts[0].lower() in SOURCES and parts[1].lower() in MARKET_ALIASES:
        source = parse_source(parts[0])
        return Series(source, parse_market(parts[1], source=source), parts[2].upper())
    return None


def series_of(symbol: str) -> Series:
    """``"BINANCE_UM_BTCUSDT"`` -> ``Series("binance", "um", "BTCUSDT")``; ``"BTCUSDT"`` -> Binance spot."""
    return cache_series(symbol) or Series.of(symbol)


def _cache_symbol(series: Series) -> str:
    return f"{series.source}_{series.market}_{series.symbol}".upper()


def _check_own_symbol(symbol: str) -> str:
    """``symbol`` if it can name a directory under ``ticks/`` without escaping it or hitting the cache."""
    bad = [c for c in ("/", "\\", "\x00") if c in symbol]
    if not symbol or bad or symbol in (".", "..") or symbol.strip() != symbol:
        found = f"the characters {bad}" if bad else "an empty, blank or relative name"
        raise ValueError(f"invalid symbol {symbol!r}: expected a plain file name, found {found}")
    if symbol.lower() in SOURCES:
        raise ValueError(
            f"invalid symbol {symbol!r}: {symbol.lower()}/ holds the tick cache; name its series as "
            f"{symbol.upper()}_SPOT_<SYMBOL>"
        )
    return symbol


def _year_month(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m")


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
    """7.1.3's tick storage API: your own symbols as 7.1.3 stored them, cache symbols over the tick cache."""

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
        """The tick cache (of the cache symbols)."""
        return self._store

    # --- your own symbols: 7.1.3's month files ----------------------------------------------------

    def _symbol_dir(self, symbol: str) -> Path:
        return self.ticks_dir / _check_own_symbol(symbol)

    def _month_files(self, symbol: str, start_ts: int | None, end_ts: int | None) -> list[Path]:
        directory = self._symbol_dir(symbol)
        files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
        if start_ts is not None and end_ts is not None:
            first, last = _year_month(_as_ms(start_ts)), _year_month(_as_ms(end_ts))
            files = [f for f in files if first <= f.stem <= last]
        return files

    def _write_month(self, path: Path, frame: pl.DataFrame) -> None:
        with file_lock(path.with_name(f".{path.name}.lock")):
            remove_temp_files(path)
            if path.exists():
                frame = pl.concat([pl.read_parquet(path), frame])
            atomic_write(
                path,
                lambda handle: frame.write_parquet(
                    handle, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL
                ),
            )

    # --- the API ----------------------------------------------------------------------------------

    def write_ticks(
        self, symbol: str, ticks: pl.DataFrame | pd.DataFrame, *, timestamp_col: str = "timestamp"
    ) -> int:
        """Append ``ticks`` to the months they fall in; return the number of rows written.

        Your own symbols: 7.1.3's month files (a datetime ``timestamp_col`` stored as epoch ms,
        duplicates kept). Cache symbols: merged into the tick cache's day files (any column
        names/units :func:`process_trades_polars` accepts; exact duplicates removed).
        """
        series = cache_series(symbol)
        if series is not None:
            return self._write_cache(series, ticks, timestamp_col)
        directory = self._symbol_dir(symbol)
        frame = ticks if isinstance(ticks, pl.DataFrame) else pl.from_pandas(ticks)
        if frame.is_empty():
            return 0
        if frame.schema[timestamp_col] in (pl.Datetime, pl.Date):
            frame = frame.with_columns(pl.col(timestamp_col).dt.epoch(time_unit="ms"))
        months = frame[timestamp_col].map_elements(_year_month, return_dtype=pl.String)
        written = 0
        for (month,), part in frame.with_columns(months.alias("_year_month")).group_by("_year_month"):
            self._write_month(directory / f"{month}.parquet", part.drop("_year_month"))
            written += part.height
        return written

    def read_ticks(
        self,
        symbol: str,
        start_ts: int | None = None,
        end_ts: int | None = None,
        *,
        timestamp_col: str = "timestamp",
    ) -> pl.DataFrame:
        """Stored ticks with ``start_ts <= timestamp <= end_ts`` (epoch ms, or datetimes), sorted."""
        series = cache_series(symbol)
        if series is not None:
            frame = self._scan(series, self._bounds(series, start_ts, end_ts))
            millis = pl.col(timestamp_col).dt.epoch("ms")
            if start_ts is not None:
                frame = frame.filter(millis >= _as_ms(start_ts))
            if end_ts is not None:
                frame = frame.filter(millis <= _as_ms(end_ts))
            return frame.collect()
        files = self._month_files(symbol, start_ts, end_ts)
        if not files:
            return pl.DataFrame()
        lazy = pl.concat([pl.scan_parquet(f) for f in files])
        if start_ts is not None:
            lazy = lazy.filter(pl.col(timestamp_col) >= _as_ms(start_ts))
        if end_ts is not None:
            lazy = lazy.filter(pl.col(timestamp_col) <= _as_ms(end_ts))
        return lazy.sort(timestamp_col).collect()

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
        """:meth:`read_ticks` in chunks of at most ``chunk_size`` rows (a month, or a cached day, at a
        time; each chunk sorted)."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        series = cache_series(symbol)
        if series is not None:
            for day in self._bounds(series, start_ts, end_ts):
                start = max(_as_ms(day), _as_ms(start_ts)) if start_ts is not None else None
                frame = self.read_ticks(symbol, start, end_ts, timestamp_col=timestamp_col)
                frame = frame.filter(pl.col(timestamp_col).dt.date() == day)
                yield from frame.iter_slices(chunk_size)
            return
        import pyarrow.parquet as pq

        for path in self._month_files(symbol, start_ts, end_ts):
            reader = pq.ParquetFile(path)
            held: list[pl.DataFrame] = []
            count = 0
            for group in range(reader.metadata.num_row_groups):
                chunk = pl.from_arrow(reader.read_row_group(group))
                assert isinstance(chunk, pl.DataFrame)
                if start_ts is not None:
                    chunk = chunk.filter(pl.col(timestamp_col) >= pl.lit(_as_ms(start_ts)))
                if end_ts is not None:
                    chunk = chunk.filter(pl.col(timestamp_col) <= pl.lit(_as_ms(end_ts)))
                if chunk.is_empty():
                    continue
                held.append(chunk)
                count += chunk.height
                while count >= chunk_size:
                    combined = pl.concat(held).sort(timestamp_col)
                    yield combined.slice(0, chunk_size)
                    rest = combined.slice(chunk_size)
                    held, count = ([rest], rest.height) if rest.height else ([], 0)
            if held:
                combined = pl.concat(held).sort(timestamp_col)
                if not combined.is_empty():
                    yield combined

    def has_ticks(
        self,
        symbol: str,
        start_ts: int,
        end_ts: int,
        *,
        min_coverage: float = 0.95,
        timestamp_col: str = "timestamp",
    ) -> bool:
        """Whether stored ticks cover at least ``min_coverage`` of ``[start_ts, end_ts]``.

        Your own symbols: the span of the stored timestamps, as 7.1.3 measured it. Cache symbols:
        the share of the UTC days touched that are stored.
        """
        series = cache_series(symbol)
        if series is not None:
            wanted = days(_day_of_ms(_as_ms(start_ts)), _day_of_ms(_as_ms(end_ts)))
            stored = set(self._store.list_days(series))
            return sum(d in stored for d in wanted) >= min_coverage * len(wanted)
        data = self.read_ticks(symbol, start_ts, end_ts, timestamp_col=timestamp_col)
        if data.is_empty():
            return False
        first, last = data[timestamp_col].min(), data[timestamp_col].max()
        if first is None or last is None:
            return False
        requested = _as_ms(end_ts) - _as_ms(start_ts)
        if requested == 0:
            return data.height > 0
        return bool((last - first) / requested >= min_coverage)  # type: ignore[operator]

    def list_symbols(self) -> list[str]:
        """Your own symbols with stored files, and the cache symbols (``SOURCE_MARKET_SYMBOL``)."""
        own = (
            {d.name for d in self.ticks_dir.iterdir() if d.is_dir() and d.name.lower() not in SOURCES}
            if self.ticks_dir.is_dir()
            else set()
        )
        cached = {_cache_symbol(Series(s.source, s.market, s.symbol)) for s in self._store.status().series}  # type: ignore[arg-type]
        return sorted(own | cached)

    def list_months(self, symbol: str) -> list[str]:
        """``YYYY-MM`` months with stored ticks."""
        series = cache_series(symbol)
        if series is not None:
            return sorted({d.strftime("%Y-%m") for d in self._store.list_days(series)})
        directory = self._symbol_dir(symbol)
        return sorted(f.stem for f in directory.glob("*.parquet")) if directory.is_dir() else []

    def delete_ticks(self, symbol: str, year_month: str | None = None) -> bool:
        """Delete one month (``"2024-01"``) or every month of ``symbol``; True if anything was deleted."""
        series = cache_series(symbol)
        if series is not None:
            stored = self._store.list_days(series)
            gone = [d for d in stored if year_month is None or d.strftime("%Y-%m") == year_month]
            return any([self._store.delete_day(series, d) for d in gone])
        directory = self._symbol_dir(symbol)
        if year_month is not None:
            path = directory / f"{year_month}.parquet"
            if path.exists():
                path.unlink()
                return True
            return False
        if directory.exists():
            shutil.rmtree(directory)
            return True
        return False

    def get_stats(self, symbol: str) -> dict[str, Any]:
        """7.1.3's statistics dict (cache symbols: ``file_count`` counts day files, plus ``days``)."""
        series = cache_series(symbol)
        if series is not None:
            return self._cache_stats(symbol, series)
        directory = self._symbol_dir(symbol)
        if not directory.exists():
            return _absent(symbol)
        files = list(directory.glob("*.parquet"))
        size = sum(f.stat().st_size for f in files)
        return {
            "symbol": symbol,
            "exists": True,
            "file_count": len(files),
            "total_size_bytes": size,
            "total_size_mb": size / 1024 / 1024,
            "total_rows": sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files),
            "months": sorted(f.stem for f in files),
            "compression": f"{COMPRESSION}-{COMPRESSION_LEVEL}",
        }

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
        series = cache_series(symbol)
        if series is not None:
            if force_refresh:
                return pl.LazyFrame(schema=tick_schema(series))
            stored = [d for d in self._store.list_days(series) if (d.year, d.month) == (year, month)]
            return self._scan(series, stored)
        path = self._symbol_dir(symbol) / f"{year}-{month:02d}.parquet"
        if force_refresh or not path.exists():
            return pl.LazyFrame()
        return pl.scan_parquet(path)

    def fetch_date_range(
        self, symbol: str, start_date: str, end_date: str, *, timestamp_col: str = "timestamp"
    ) -> Iterator[pl.LazyFrame]:
        """One lazy frame per month of ``[start_date, end_date]`` that has stored ticks."""
        first, last = parse_day(start_date, name="start_date"), parse_day(end_date, name="end_date")
        series = cache_series(symbol)
        if series is not None:
            stored = [d for d in self._store.list_days(series) if first <= d <= last]
            for year, month in sorted({(d.year, d.month) for d in stored}):
                yield self._scan(series, [d for d in stored if (d.year, d.month) == (year, month)])
            return
        months = sorted({(d.year, d.month) for d in days(first.replace(day=1), last)})
        for year, month in months:
            if (self._symbol_dir(symbol) / f"{year}-{month:02d}.parquet").exists():
                yield self.fetch_month(symbol, year, month, timestamp_col=timestamp_col)

    # --- cache symbols: the tick cache ------------------------------------------------------------

    def _bounds(self, series: Series, start_ts: int | None, end_ts: int | None) -> list[date]:
        lo = None if start_ts is None else _day_of_ms(_as_ms(start_ts))
        hi = None if end_ts is None else _day_of_ms(_as_ms(end_ts))
        stored = self._store.list_days(series)
        return [d for d in stored if (lo is None or d >= lo) and (hi is None or d <= hi)]

    def _scan(self, series: Series, stored: list[date]) -> pl.LazyFrame:
        if not stored:
            return pl.LazyFrame(schema=tick_schema(series))
        frame = self._store.get_ticks(series, stored[0], stored[-1], fetch_if_missing=False, lazy=True)
        assert isinstance(frame, pl.LazyFrame)
        return frame

    def _write_cache(self, series: Series, ticks: pl.DataFrame | pd.DataFrame, timestamp_col: str) -> int:
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
                merged = pl.concat([self._store.read_day(series, day, refetch_corrupt=False), part])
            self._store.write_day(series, day, merged)
        return canonical.height

    def _cache_stats(self, symbol: str, series: Series) -> dict[str, Any]:
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
        return _absent(symbol)


def _absent(symbol: str) -> dict[str, Any]:
    return {"symbol": symbol, "exists": False, "file_count": 0, "total_size_bytes": 0, "total_rows": 0}
