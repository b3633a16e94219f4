"""Tier 1: the Parquet tick store, one zstd file per (source, market, symbol, UTC day).

Layout under the cache root (``RANGEBAR_CACHE_DIR``, else the platform cache dir)::

    <root>/ticks/<source>/<market>/<SYMBOL>/<YYYY-MM-DD>.parquet

Each file holds that day's ticks in ``schema.TICK_SCHEMA`` (Exness adds ``bid``/``ask``), sorted by
``(timestamp, agg_trade_id)`` with exact duplicates removed, and a JSON footer entry
(``rangebar.tick_store``) with its provenance. Files are written atomically under a per-day lock
(``.<YYYY-MM-DD>.parquet.lock``), carry Parquet page checksums, and are verified when read: a corrupt
file is deleted and fetched again.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Literal, overload

import polars as pl

from rangebar_pipeline._lazy import lazy_module
from rangebar_pipeline.exceptions import DataNotFoundError, StoreError
from rangebar_pipeline.paths import CACHE_DIR_ENV, default_cache_dir
from rangebar_pipeline.schema import TICK_SCHEMA
from rangebar_pipeline.sources.base import (
    MARKETS,
    SOURCES,
    Fetched,
    Market,
    Source,
    normalize_symbol,
    parse_day,
)
from rangebar_pipeline.storage._atomic import AtomicFile, atomic_write, fsync_directory, remove_temp_files
from rangebar_pipeline.storage._lock import file_lock

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rangebar_pipeline.sources import binance_vision, exness, http
    from rangebar_pipeline.sources.binance_vision import BinanceVision
    from rangebar_pipeline.sources.exness import ExnessSource
    from rangebar_pipeline.sources.http import HttpClient
else:  # imported on first use: reading the cache needs no download client nor parser
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")
    binance_vision = lazy_module("rangebar_pipeline.sources.binance_vision")
    exness = lazy_module("rangebar_pipeline.sources.exness")
    http = lazy_module("rangebar_pipeline.sources.http")

__all__ = [
    "CACHE_DIR_ENV",
    "DayWriteResult",
    "Market",
    "SeriesStatus",
    "Source",
    "StoreStatus",
    "TickStore",
    "default_cache_dir",
    "tick_schema",
]

_META_KEY: Final = b"rangebar.tick_store"
#: Where pyarrow keeps the (IPC-serialized, base64) Arrow schema in a Parquet footer.
_ARROW_SCHEMA_KEY: Final = b"ARROW:schema"
_FORMAT_VERSION: Final = 1
_COMPRESSION: Final = "zstd"
_COMPRESSION_LEVEL: Final = 1  # level 3 saves ~4 % on real days and costs ~10 % more write time
_ROW_GROUP_ROWS: Final = 1 << 20
_US_PER_DAY: Final = 86_400_000_000
#: Parquet encodings (decimals are stored as INT64, see ``store_decimal_as_integer``): delta for
#: ids, timestamps and prices, byte-stream-split for quantities. Against plain decimals this
#: halves the write time; the real fixtures take about the same space (7.6 bytes a trade).
_ENCODINGS: Final = {
    **dict.fromkeys(
        ("timestamp", "agg_trade_id", "first_trade_id", "last_trade_id", "price", "bid", "ask"),
        "DELTA_BINARY_PACKED",
    ),
    "quantity": "BYTE_STREAM_SPLIT",
}


def tick_schema(source: Source) -> dict[str, pl.DataType]:
    """The Tier 1 schema of ``source`` (Exness adds ``bid`` and ``ask``)."""
    return dict(exness.EXNESS_TICK_SCHEMA if source == "exness" else TICK_SCHEMA)


@dataclass(frozen=True, slots=True)
class DayWriteResult:
    """One stored day: its file and what it holds."""

    path: Path
    rows: int
    bytes: int
    duplicates_removed: int
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    #: sha256 of the source archive the day came from (``None`` for ticks written directly).
    checksum: str | None
    day: date | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class SeriesStatus:
    """Stored days of one (source, market, symbol)."""

    source: str
    market: str
    symbol: str
    days: int
    rows: int
    bytes: int
    first_day: date | None
    last_day: date | None


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """What the tick store holds: per series and in total; ``corrupt`` lists unreadable files."""

    root: Path
    series: tuple[SeriesStatus, ...]
    days: int
    rows: int
    bytes: int
    corrupt: tuple[Path, ...] = ()


class _CorruptFileError(StoreError):
    """A stored day file that cannot be read back as written."""


class TickStore:
    """The Tier 1 tick cache: fetch each day once, read it many times.

    Args:
        root: Cache root; ticks live under ``<root>/ticks``. Default :func:`default_cache_dir`.
        binance: The Binance Vision source (default: from ``RANGEBAR_BINANCE_BASE_URL``).
        exness: The Exness source (default: from ``RANGEBAR_EXNESS_BASE_URL``, strict validation).
        max_workers: Days downloaded concurrently by :meth:`get_ticks`.
        lock_timeout: Seconds to wait for another writer of the same day (``None``: for ever).

    Example:
        >>> store = TickStore("/data/rangebar")  # doctest: +SKIP
        >>> ticks = store.get_ticks("binance", "um", "BTCUSDT", "2024-08-01", "2024-08-31")  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        binance: BinanceVision | None = None,
        exness: ExnessSource | None = None,
        max_workers: int = 4,
        lock_timeout: float | None = 600.0,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.max_workers = max_workers
        self.lock_timeout = lock_timeout
        self._binance = binance
        self._exness = exness
        self._client: HttpClient | None = None

    def __repr__(self) -> str:
        return f"TickStore({str(self.root)!r})"

    def close(self) -> None:
        """Close the download connections the store opened itself."""
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> TickStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- sources --------------------------------------------------------------------------------

    @property
    def binance(self) -> BinanceVision:
        """The Binance Vision source (created on first use)."""
        if self._binance is None:
            self._binance = binance_vision.BinanceVision(client=self._shared_client())
        return self._binance

    @property
    def exness(self) -> ExnessSource:
        """The Exness source (created on first use)."""
        if self._exness is None:
            self._exness = exness.ExnessSource(client=self._shared_client())
        return self._exness

    def _shared_client(self) -> HttpClient:
        if self._client is None:
            self._client = http.HttpClient(pool_size=self.max_workers)
        return self._client

    # --- paths ----------------------------------------------------------------------------------

    @property
    def ticks_dir(self) -> Path:
        """``<root>/ticks``."""
        return self.root / "ticks"

    def series_dir(self, source: Source, market: Market, symbol: str) -> Path:
        """Directory of one series' day files."""
        return self.ticks_dir / source / market / _series_symbol(source, market, symbol)

    def day_path(self, source: Source, market: Market, symbol: str, day: date | str) -> Path:
        """Path of the file holding ``day`` (which may not exist)."""
        return self.series_dir(source, market, symbol) / f"{parse_day(day).isoformat()}.parquet"

    @staticmethod
    def _lock_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.lock")

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        with file_lock(self._lock_path(path), timeout=self.lock_timeout):
            yield

    # --- queries --------------------------------------------------------------------------------

    def has_day(self, source: Source, market: Market, symbol: str, day: date | str) -> bool:
        """Whether ``day`` is stored (the file exists; it is verified when read)."""
        return self.day_path(source, market, symbol, day).is_file()

    def list_days(self, source: Source, market: Market, symbol: str) -> list[date]:
        """Stored days of a series, ascending."""
        directory = self.series_dir(source, market, symbol)
        return sorted(d for d in (_day_of(p) for p in directory.glob("*.parquet")) if d is not None)

    def status(self) -> StoreStatus:
        """Days, rows and bytes per series and in total (rows from the Parquet footers)."""
        series: list[SeriesStatus] = []
        corrupt: list[Path] = []
        for source_dir in _subdirs(self.ticks_dir):
            for market_dir in _subdirs(source_dir):
                for symbol_dir in _subdirs(market_dir):
                    days: list[date] = []
                    rows = size = 0
                    for path in sorted(symbol_dir.glob("*.parquet")):
                        day = _day_of(path)
                        if day is None:
                            continue
                        try:
                            rows += pq.read_metadata(path).num_rows
                        except (OSError, pa.ArrowException):
                            corrupt.append(path)
                            continue
                        days.append(day)
                        size += path.stat().st_size
                    if days:
                        series.append(
                            SeriesStatus(
                                source_dir.name, market_dir.name, symbol_dir.name, len(days), rows, size,
                                days[0], days[-1],
                            )
                        )  # fmt: skip
        return StoreStatus(
            root=self.root,
            series=tuple(series),
            days=sum(s.days for s in series),
            rows=sum(s.rows for s in series),
            bytes=sum(s.bytes for s in series),
            corrupt=tuple(corrupt),
        )

    # --- reading --------------------------------------------------------------------------------

    def read_day(
        self, source: Source, market: Market, symbol: str, day: date | str, *, refetch_corrupt: bool = True
    ) -> pl.DataFrame:
        """The stored ticks of one day, verified (page checksums, schema, row count).

        A corrupt file is deleted and, with ``refetch_corrupt``, fetched again.

        Raises:
            DataNotFoundError: The day is not stored.
            StoreError: The file is corrupt (and was not, or could not be, re-fetched).
        """
        day = parse_day(day)
        path = self.day_path(source, market, symbol, day)
        if not path.is_file():
            raise DataNotFoundError(f"{source} {market} {symbol} {day} is not in the tick store ({path})")
        try:
            return _read_verified(path, tick_schema(source))
        except _CorruptFileError as exc:
            self._discard(path)
            if not refetch_corrupt:
                raise StoreError(f"{exc}; the file was deleted") from exc
        self.fetch_day(source, market, symbol, day)  # only the deleted day is missing: no other rewrites
        try:
            return _read_verified(path, tick_schema(source))
        except _CorruptFileError as exc:
            raise StoreError(f"{exc} (again, after re-fetching)") from exc

    @overload
    def get_ticks(
        self,
        source: Source,
        market: Market,
        symbol: str,
        start: date | str,
        end: date | str,
        *,
        fetch_if_missing: bool = ...,
        lazy: Literal[False] = ...,
    ) -> pl.DataFrame: ...
    @overload
    def get_ticks(
        self,
        source: Source,
        market: Market,
        symbol: str,
        start: date | str,
        end: date | str,
        *,
        fetch_if_missing: bool = ...,
        lazy: Literal[True],
    ) -> pl.LazyFrame: ...
    @overload
    def get_ticks(
        self,
        source: Source,
        market: Market,
        symbol: str,
        start: date | str,
        end: date | str,
        *,
        fetch_if_missing: bool = ...,
        lazy: bool,
    ) -> pl.DataFrame | pl.LazyFrame: ...
    def get_ticks(
        self,
        source: Source,
        market: Market,
        symbol: str,
        start: date | str,
        end: date | str,
        *,
        fetch_if_missing: bool = True,
        lazy: bool = False,
    ) -> pl.DataFrame | pl.LazyFrame:
        """Ticks of the UTC days ``[start 00:00, end+1 00:00)``, sorted by ``(timestamp, agg_trade_id)``.

        Missing days are downloaded (several at once) unless ``fetch_if_missing=False``, in which case
        they are simply absent. ``lazy=True`` returns a ``pl.LazyFrame`` scanning the day files.

        Raises:
            DataNotFoundError: The source has no data for some missing day (all days that could be
                fetched are stored nevertheless).
            ChecksumMismatchError, CorruptArchiveError, DownloadError: A download failed.
        """
        first, last = parse_day(start, name="start"), parse_day(end, name="end")
        if first > last:
            raise ValueError(f"start ({first}) must be <= end ({last})")
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        schema = tick_schema(source)
        if fetch_if_missing:
            missing = [d for d in days if not self.has_day(source, market, symbol, d)]
            if missing:
                self._fetch_many(source, market, symbol, missing)
        present = [d for d in days if self.has_day(source, market, symbol, d)]
        if lazy:
            paths = [self._checked_path(source, market, symbol, d, refetch=fetch_if_missing) for d in present]
            if not paths:
                return pl.LazyFrame(schema=schema)
            return pl.scan_parquet(paths, schema=schema)
        frames = [self.read_day(source, market, symbol, d, refetch_corrupt=fetch_if_missing) for d in present]
        if not frames:
            return pl.DataFrame(schema=schema)
        return pl.concat(frames, how="vertical", rechunk=False)

    def _checked_path(self, source: Source, market: Market, symbol: str, day: date, *, refetch: bool) -> Path:
        """The day's path after a footer check (a truncated or foreign file is replaced or refused)."""
        path = self.day_path(source, market, symbol, day)
        try:
            _read_footer(path)
        except _CorruptFileError:
            self.read_day(source, market, symbol, day, refetch_corrupt=refetch)
        return path

    # --- fetching and writing -------------------------------------------------------------------

    def fetch_day(
        self, source: Source, market: Market, symbol: str, day: date | str, *, force: bool = False
    ) -> DayWriteResult:
        """Download, verify and store one day (no download if stored already, unless ``force``).

        For Exness the whole month is downloaded once and every UTC day of it is stored (days
        without ticks as empty files), so later days of that month need no download.

        Raises:
            DataNotFoundError: The source has no data for that day.
            ChecksumMismatchError, CorruptArchiveError, DownloadError: The download failed; nothing
                was written.
        """
        day = parse_day(day)
        path = self.day_path(source, market, symbol, day)
        if source == "binance":
            with self._locked(path):
                if not force and (existing := _existing_result(path, day)) is not None:
                    return existing
                return self._fetch_binance_day(path, market, symbol, day)
        month_lock = path.with_name(f"{day:%Y-%m}.month")
        with self._locked(month_lock):
            if not force and (existing := _existing_result(path, day)) is not None:
                return existing
            fetched = self.exness.fetch_month(symbol, day.year, day.month)
            by_day = exness.split_by_day(fetched.frame)
            result: DayWriteResult | None = None
            for other in _month_days(day):
                other_path = path.with_name(f"{other.isoformat()}.parquet")
                with self._locked(other_path):
                    if other != day and not force and _existing_result(other_path, other) is not None:
                        continue
                    frame = by_day.get(other, pl.DataFrame(schema=exness.EXNESS_TICK_SCHEMA))
                    written = self._write_locked(other_path, source, frame, day=other, fetched=fetched)
                if other == day:
                    result = written
            assert result is not None
            return result

    def write_day(
        self,
        source: Source,
        market: Market,
        symbol: str,
        day: date | str,
        ticks: pl.DataFrame,
        *,
        checksum: str | None = None,
        url: str | None = None,
    ) -> DayWriteResult:
        """Store ``ticks`` (the source's Tier 1 schema, all inside UTC ``day``) as that day, atomically.

        Rows are sorted and exact duplicates removed as for downloaded days; an existing file is
        replaced. Intended for ticks obtained elsewhere (and for tests).

        Raises:
            ValueError: Wrong columns or dtypes, or a row outside ``day``.
        """
        day = parse_day(day)
        schema = tick_schema(source)
        found = dict(ticks.schema)
        if found != schema:
            raise ValueError(f"write_day: expected columns {schema}, found {found}")
        start = _day_start_us(day)
        outside = ~ticks["timestamp"].cast(pl.Int64).is_between(start, start + _US_PER_DAY, closed="left")
        if outside.any():
            row = ticks.filter(outside).row(0, named=True)
            raise ValueError(f"write_day: {int(outside.sum())} row(s) outside UTC day {day}, e.g. {row}")
        frame, duplicates = binance_vision.sort_and_deduplicate(
            ticks, origin=f"write_day({source} {market} {symbol} {day})"
        )
        path = self.day_path(source, market, symbol, day)
        with self._locked(path):
            return self._write_locked(
                path, source, frame, day=day, checksum=checksum, url=url, duplicates_removed=duplicates
            )

    def delete_day(self, source: Source, market: Market, symbol: str, day: date | str) -> bool:
        """Delete a stored day; return whether there was one."""
        path = self.day_path(source, market, symbol, day)
        with self._locked(path):
            remove_temp_files(path)
            if not path.exists():
                return False
            path.unlink()
            fsync_directory(path.parent)
            return True

    def _discard(self, path: Path) -> None:
        with self._locked(path):
            path.unlink(missing_ok=True)

    def _fetch_many(self, source: Source, market: Market, symbol: str, days: Sequence[date]) -> None:
        """Fetch ``days`` concurrently; raise after all finished (what succeeded stays stored)."""
        from tqdm import tqdm

        if source == "exness":  # one download per month
            days = list({(d.year, d.month): d for d in reversed(days)}.values())[::-1]
        workers = min(self.max_workers, len(days))
        show = len(days) > 1 and sys.stderr.isatty()
        not_found: list[tuple[date, DataNotFoundError]] = []
        failures: list[BaseException] = []
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rangebar-fetch") as pool,
            tqdm(total=len(days), unit="day", desc=f"{source} {market} {symbol}", disable=not show) as bar,
        ):
            futures: dict[Future[DayWriteResult], date] = {
                pool.submit(self.fetch_day, source, market, symbol, d): d for d in days
            }
            for future, day in futures.items():
                try:
                    future.result()
                except DataNotFoundError as exc:
                    not_found.append((day, exc))
                except Exception as exc:
                    failures.append(exc)
                bar.update(1)
        if failures:
            raise failures[0]
        if not_found:
            listed = ", ".join(str(d) for d, _ in not_found)
            raise DataNotFoundError(
                f"{source} {market} {symbol}: no data for {len(not_found)} day(s): {listed} "
                f"(first: {not_found[0][1]})"
            ) from not_found[0][1]

    def _write_locked(
        self,
        path: Path,
        source: Source,
        frame: pl.DataFrame,
        *,
        day: date,
        fetched: Fetched | None = None,
        checksum: str | None = None,
        url: str | None = None,
        duplicates_removed: int | None = None,
    ) -> DayWriteResult:
        """Write ``frame`` as ``path`` (caller holds the day lock)."""
        meta = _day_meta(
            source, frame, day, fetched, checksum=checksum, url=url, duplicates_removed=duplicates_removed
        )
        remove_temp_files(path)
        table = frame.select(list(tick_schema(source))).to_arrow()
        table = table.replace_schema_metadata({_META_KEY: json.dumps(meta, sort_keys=True).encode()})

        def write(handle: BinaryIO) -> None:
            pq.write_table(table, handle, row_group_size=_ROW_GROUP_ROWS, **_write_options(table.schema))

        size = atomic_write(path, write)
        return _result(path, meta, size)

    def _fetch_binance_day(self, path: Path, market: Market, symbol: str, day: date) -> DayWriteResult:
        """Download and store a Binance day, its row groups written while the CSV is still being
        parsed; when the parsed rows are not the day as stored (an unsorted file), write it again."""
        remove_temp_files(path)
        stream = _StreamedDay(path)
        try:
            fetched = self.binance.fetch_day(market, symbol, day, emit=stream.add)
            if fetched.streamed:
                meta = _day_meta("binance", fetched.frame, day, fetched)
                return _result(path, meta, stream.commit(meta))
        finally:
            stream.discard()
        return self._write_locked(path, "binance", fetched.frame, day=day, fetched=fetched)


# --- module helpers -----------------------------------------------------------------------------


def _day_meta(
    source: Source,
    frame: pl.DataFrame,
    day: date,
    fetched: Fetched | None,
    *,
    checksum: str | None = None,
    url: str | None = None,
    duplicates_removed: int | None = None,
) -> dict[str, Any]:
    """The footer entry of a stored day (provenance, row count, time range)."""
    if fetched is not None:
        checksum, url = fetched.checksum, fetched.url
        if duplicates_removed is None:
            duplicates_removed = fetched.duplicates_removed if frame.height else 0
    return {
        "version": _FORMAT_VERSION,
        "source": source,
        "day": day.isoformat(),
        "rows": frame.height,
        "duplicates_removed": duplicates_removed or 0,
        "first_timestamp_us": _to_us(frame["timestamp"].min()) if frame.height else None,
        "last_timestamp_us": _to_us(frame["timestamp"].max()) if frame.height else None,
        "checksum": checksum,
        "url": url,
    }


def _write_options(schema: pa.Schema) -> dict[str, Any]:
    """Parquet writer options of every tick file (zstd, encodings per column, page checksums)."""
    return {
        "compression": _COMPRESSION,
        "compression_level": _COMPRESSION_LEVEL,
        "use_dictionary": False,
        "column_encoding": {c: _ENCODINGS[c] for c in schema.names if c in _ENCODINGS},
        "store_decimal_as_integer": True,
        "write_page_checksum": True,
        "write_statistics": True,
    }


class _StreamedDay:
    """A day written while it is parsed: rows arrive in pieces (:meth:`add`), leave as row groups
    of ``_ROW_GROUP_ROWS`` rows, the same as :func:`pyarrow.parquet.write_table` would cut them,
    encoded and compressed by a writer thread (outside the GIL) into a temp file that
    :meth:`commit` completes with the footer entry and renames into place."""

    def __init__(self, path: Path) -> None:
        self._file = AtomicFile(path)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rangebar-parquet")
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._writes: list[Future[None]] = []
        self._committed = False

    def add(self, rows: pa.RecordBatch | None) -> None:
        """Queue ``rows`` (final form, file order); full row groups go to the writer thread, and
        the last rows once ``rows`` is ``None`` (the end of the day)."""
        if rows is None:
            if self._buffered:
                self._submit(pa.Table.from_batches(self._buffer))
                self._buffer, self._buffered = [], 0
            return
        self._buffer.append(rows)
        self._buffered += rows.num_rows
        if self._buffered >= _ROW_GROUP_ROWS:
            pending = pa.Table.from_batches(self._buffer)  # no copies, nor in the slices
            at = 0
            while self._buffered - at >= _ROW_GROUP_ROWS:
                self._submit(pending.slice(at, _ROW_GROUP_ROWS))
                at += _ROW_GROUP_ROWS
            self._buffer, self._buffered = pending.slice(at).to_batches(), self._buffered - at

    def _submit(self, rows: pa.Table) -> None:
        self._writes.append(self._pool.submit(self._write, rows))

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            # by path, so that writing needs no GIL either (fsynced through the handle on commit);
            # the Arrow schema is stored on commit, with the footer entry, as write_day stores it
            self._writer = pq.ParquetWriter(
                str(self._file.tmp), table.schema, store_schema=False, **_write_options(table.schema)
            )
        self._writer.write_table(table, row_group_size=_ROW_GROUP_ROWS)

    def commit(self, meta: dict[str, Any]) -> int:
        """Write the last rows and the footer, rename the file into place; return its size."""
        self.add(None)
        for write in self._writes:
            write.result()
        self._pool.shutdown()
        if self._writer is None:
            raise StoreError(f"no rows were streamed to {self._file.path}")
        entry = json.dumps(meta, sort_keys=True).encode()
        schema = _stored_schema(self._writer.schema).with_metadata({_META_KEY: entry})
        self._writer.add_key_value_metadata(  # in write_table's order
            {_META_KEY: entry, _ARROW_SCHEMA_KEY: base64.b64encode(schema.serialize().to_pybytes())}
        )
        self._writer.close()
        self._committed = True
        return self._file.commit()

    def discard(self) -> None:
        """Stop writing and delete the temp file (no-op after :meth:`commit`)."""
        if self._committed:
            return
        self._pool.shutdown(cancel_futures=True)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._file.discard()


def _stored_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with decimal64 columns as decimal128: the Arrow schema that ``write_day`` stores
    (polars exports decimals as decimal128); both are written as the same Parquet INT64 decimal."""
    return pa.schema(
        [
            field.with_type(pa.decimal128(field.type.precision, field.type.scale))
            if isinstance(field.type, pa.Decimal64Type)
            else field
            for field in schema
        ]
    )


def _series_symbol(source: Source, market: Market, symbol: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: expected one of {SOURCES}")
    if market not in MARKETS:
        raise ValueError(f"unknown market {market!r}: expected one of {MARKETS}")
    if source == "exness":
        if market != "spot":
            raise ValueError(f"Exness has only market 'spot', got {market!r}")
        return normalize_symbol(symbol).removesuffix("_RAW_SPREAD")
    return normalize_symbol(symbol)


def _subdirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []


def _day_of(path: Path) -> date | None:
    if path.name.startswith("."):
        return None
    try:
        return date.fromisoformat(path.stem) if len(path.stem) == 10 else None
    except ValueError:
        return None


def _month_days(day: date) -> list[date]:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return [first + timedelta(days=i) for i in range((following - first).days)]


def _day_start_us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000


def _to_us(value: object) -> int:
    assert isinstance(value, datetime)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(value: int | None) -> datetime | None:
    return None if value is None else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


def _result(path: Path, meta: dict[str, Any], size: int) -> DayWriteResult:
    return DayWriteResult(
        path=path,
        rows=int(meta["rows"]),
        bytes=size,
        duplicates_removed=int(meta["duplicates_removed"]),
        first_timestamp=_from_us(meta["first_timestamp_us"]),
        last_timestamp=_from_us(meta["last_timestamp_us"]),
        checksum=meta["checksum"],
        day=date.fromisoformat(meta["day"]),
        url=meta["url"],
    )


def _read_footer(path: Path) -> dict[str, Any]:
    """The store's footer entry of ``path``, checked against the file's row count."""
    try:
        metadata = pq.read_metadata(path)
        raw = (metadata.metadata or {}).get(_META_KEY)
        meta: dict[str, Any] = json.loads(raw) if raw else {}
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise _CorruptFileError(f"corrupt tick file {path}: {exc}") from exc
    if meta.get("version") != _FORMAT_VERSION:
        raise _CorruptFileError(
            f"corrupt tick file {path}: no tick-store footer of version {_FORMAT_VERSION}"
        )
    if meta.get("rows") != metadata.num_rows:
        raise _CorruptFileError(
            f"corrupt tick file {path}: footer says {meta.get('rows')} rows, file has {metadata.num_rows}"
        )
    return meta


def _existing_result(path: Path, day: date) -> DayWriteResult | None:
    """The stored day's result if ``path`` holds a valid file for ``day``, else ``None``."""
    if not path.is_file():
        return None
    try:
        meta = _read_footer(path)
    except _CorruptFileError:
        return None
    if meta.get("day") != day.isoformat():
        return None
    return _result(path, meta, path.stat().st_size)


def _read_verified(path: Path, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Read ``path`` with page-checksum verification and check schema and row count."""
    meta = _read_footer(path)
    try:
        table = pq.read_table(path, page_checksum_verification=True)
        frame = pl.from_arrow(table)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise _CorruptFileError(f"corrupt tick file {path}: {exc}") from exc
    assert isinstance(frame, pl.DataFrame)
    if dict(frame.schema) != schema:
        raise _CorruptFileError(
            f"corrupt tick file {path}: expected columns {schema}, found {dict(frame.schema)}"
        )
    if frame.height != meta["rows"]:
        raise _CorruptFileError(f"corrupt tick file {path}: {frame.height} rows read, {meta['rows']} written")
    return frame
