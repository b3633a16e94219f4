"""The tick cache: one zstd Parquet file per (source, market, symbol, UTC day).

Layout under the cache root (``RANGEBAR_CACHE_DIR``, else the platform cache dir)::

    <root>/ticks/<source>/<market>/<SYMBOL>/<YYYY-MM-DD>.parquet

Each file holds that day's ticks in the source's tick schema (Exness adds ``bid``/``ask``), sorted by
``(timestamp, agg_trade_id)`` with exact duplicates removed, and a JSON footer entry
(``rangebar.tick_store``) with its provenance (:mod:`.tick_files`). Files are written atomically under
a per-day lock (``.<YYYY-MM-DD>.parquet.lock``), carry Parquet page checksums, and are verified when
read: a corrupt file is deleted and fetched again. What a source's archive holds (a day, a month),
its schema and its symbols come from its :class:`~rangebar_pipeline.sources.TickSource`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

import polars as pl

from rangebar_pipeline._lazy import lazy_module
from rangebar_pipeline.calendar import US_PER_DAY, day_start_us, days, parse_day
from rangebar_pipeline.exceptions import DataNotFoundError, StoreError
from rangebar_pipeline.paths import CACHE_DIR_ENV, default_cache_dir
from rangebar_pipeline.series import Market, Series, Source
from rangebar_pipeline.sources.base import Fetched, TickSource, source_for, source_type
from rangebar_pipeline.storage._atomic import fsync_directory, remove_temp_files
from rangebar_pipeline.storage._lock import file_lock
from rangebar_pipeline.storage.tick_files import (
    CorruptFileError,
    DayWriteResult,
    StreamedDay,
    day_meta,
    day_result,
    existing_result,
    read_verified,
    write_frame,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rangebar_pipeline.sources import binance_vision, http
    from rangebar_pipeline.sources.http import HttpClient
else:  # imported on first use: reading the cache needs no download client nor parser
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")
    binance_vision = lazy_module("rangebar_pipeline.sources.binance_vision")
    http = lazy_module("rangebar_pipeline.sources.http")

__all__ = [
    "CACHE_DIR_ENV",
    "DayWriteResult",
    "FetchOutcome",
    "Market",
    "Source",
    "TickCacheStatus",
    "TickSeriesStatus",
    "TickStore",
    "default_cache_dir",
    "tick_schema",
]


def tick_schema(series: Series | Source) -> dict[str, pl.DataType]:
    """The stored tick schema of a series' source (Exness adds ``bid`` and ``ask``)."""
    return dict(source_type(series).tick_schema)


@dataclass(frozen=True, slots=True)
class TickSeriesStatus:
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
class TickCacheStatus:
    """What the tick cache holds: per series and in total; ``corrupt`` lists unreadable files."""

    root: Path
    series: tuple[TickSeriesStatus, ...]
    days: int
    rows: int
    bytes: int
    corrupt: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """What :meth:`TickStore.fetch_days` stored, and why the other days failed."""

    series: Series
    stored: dict[date, DayWriteResult] = field(default_factory=dict)
    failed: dict[date, Exception] = field(default_factory=dict)

    def raise_for_failures(self) -> None:
        """Raise the first failure other than a missing day, else one ``DataNotFoundError`` naming
        every missing day; nothing when every day is stored."""
        others = [exc for exc in self.failed.values() if not isinstance(exc, DataNotFoundError)]
        if others:
            raise others[0]
        if self.failed:
            missing = list(self.failed.items())
            listed = ", ".join(str(d) for d, _ in missing)
            s = self.series
            raise DataNotFoundError(
                f"{s.source} {s.market} {s.symbol}: no data for {len(missing)} day(s): {listed} "
                f"(first: {missing[0][1]})"
            ) from missing[0][1]


class TickStore:
    """The tick cache: fetch each day once, read it many times.

    Args:
        root: Cache root; ticks live under ``<root>/ticks``. Default :func:`default_cache_dir`.
        binance: The Binance Vision source (default: from ``RANGEBAR_BINANCE_BASE_URL``).
        exness: The Exness source (default: from ``RANGEBAR_EXNESS_BASE_URL``, strict validation).
        sources: Further configured sources (one per source name; they win over the two above).
        max_workers: Days downloaded concurrently by :meth:`fetch_days` (and :meth:`get_ticks`).
        lock_timeout: Seconds to wait for another writer of the same day (``None``: for ever).

    Example:
        >>> store = TickStore("/data/rangebar")  # doctest: +SKIP
        >>> um = Series("binance", "um", "BTCUSDT")
        >>> ticks = store.get_ticks(um, "2024-08-01", "2024-08-31")  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        binance: TickSource | None = None,
        exness: TickSource | None = None,
        sources: Iterable[TickSource] = (),
        max_workers: int = 4,
        lock_timeout: float | None = 600.0,
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.max_workers = max_workers
        self.lock_timeout = lock_timeout
        given = [s for s in (binance, exness, *sources) if s is not None]
        self._sources: dict[Source, TickSource] = {s.name: s for s in given}
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

    def source(self, series: Series | Source) -> TickSource:
        """The configured source of ``series`` (a default one, sharing the store's client, if none)."""
        name = series.source if isinstance(series, Series) else series
        if name not in self._sources:
            if self._client is None:
                self._client = http.HttpClient(pool_size=self.max_workers)
            self._sources[name] = source_for(name, client=self._client)
        return self._sources[name]

    # --- paths ----------------------------------------------------------------------------------

    @property
    def ticks_dir(self) -> Path:
        """``<root>/ticks``."""
        return self.root / "ticks"

    def series_dir(self, series: Series) -> Path:
        """Directory of one series' day files."""
        symbol = source_type(series).instrument(series.symbol)
        return self.ticks_dir / series.source / series.market / symbol

    def day_path(self, series: Series, day: date | str) -> Path:
        """Path of the file holding ``day`` (which may not exist)."""
        return self.series_dir(series) / f"{parse_day(day, strict=True).isoformat()}.parquet"

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        with file_lock(path.with_name(f".{path.name}.lock"), timeout=self.lock_timeout):
            yield

    # --- queries --------------------------------------------------------------------------------

    def has_day(self, series: Series, day: date | str) -> bool:
        """Whether ``day`` is stored (the file exists; it is verified when read)."""
        return self.day_path(series, day).is_file()

    def list_days(self, series: Series) -> list[date]:
        """Stored days of a series, ascending."""
        directory = self.series_dir(series)
        return sorted(d for d in (_day_of(p) for p in directory.glob("*.parquet")) if d is not None)

    def last_tick_id(self, series: Series, day: date) -> int | None:
        """The last ``agg_trade_id`` stored for ``day`` (None when the day is not stored or empty)."""
        path = self.day_path(series, day)
        if not path.is_file():
            return None
        value = pl.scan_parquet(path).select(pl.col("agg_trade_id").max()).collect().item()
        return None if value is None else int(value)

    def status(self) -> TickCacheStatus:
        """Days, rows and bytes per series and in total (rows from the Parquet footers)."""
        series: list[TickSeriesStatus] = []
        corrupt: list[Path] = []
        for source_dir in _subdirs(self.ticks_dir):
            for market_dir in _subdirs(source_dir):
                for symbol_dir in _subdirs(market_dir):
                    stored: list[date] = []
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
                        stored.append(day)
                        size += path.stat().st_size
                    if stored:
                        series.append(
                            TickSeriesStatus(
                                source_dir.name, market_dir.name, symbol_dir.name, len(stored), rows, size,
                                stored[0], stored[-1],
                            )
                        )  # fmt: skip
        return TickCacheStatus(
            root=self.root,
            series=tuple(series),
            days=sum(s.days for s in series),
            rows=sum(s.rows for s in series),
            bytes=sum(s.bytes for s in series),
            corrupt=tuple(corrupt),
        )

    # --- reading --------------------------------------------------------------------------------

    def read_day(self, series: Series, day: date | str, *, refetch_corrupt: bool = True) -> pl.DataFrame:
        """The stored ticks of one day, verified (page checksums, schema, row count).

        A corrupt file is deleted and, with ``refetch_corrupt``, fetched again.

        Raises:
            DataNotFoundError: The day is not stored.
            StoreError: The file is corrupt (and was not, or could not be, re-fetched).
        """
        day = parse_day(day, strict=True)
        path = self.day_path(series, day)
        if not path.is_file():
            s = series
            raise DataNotFoundError(
                f"{s.source} {s.market} {s.symbol} {day} is not in the tick store ({path})"
            )
        try:
            return read_verified(path, tick_schema(series))
        except CorruptFileError as exc:
            self._discard(path)
            if not refetch_corrupt:
                raise StoreError(f"{exc}; the file was deleted") from exc
        self.fetch_day(series, day)  # only the deleted day is missing: no other rewrites
        try:
            return read_verified(path, tick_schema(series))
        except CorruptFileError as exc:
            raise StoreError(f"{exc} (again, after re-fetching)") from exc

    @overload
    def get_ticks(
        self,
        series: Series,
        start: date | str,
        end: date | str,
        *,
        fetch_if_missing: bool = ...,
        lazy: Literal[False] = ...,
    ) -> pl.DataFrame: ...
    @overload
    def get_ticks(
        self,
        series: Series,
        start: date | str,
        end: date | str,
        *,
        fetch_if_missing: bool = ...,
        lazy: Literal[True],
    ) -> pl.LazyFrame: ...
    @overload
    def get_ticks(
        self, series: Series, start: date | str, end: date | str, *, fetch_if_missing: bool = ..., lazy: bool
    ) -> pl.DataFrame | pl.LazyFrame: ...
    def get_ticks(
        self,
        series: Series,
        start: date | str,
        end: date | str,
        *,
        fetch_if_missing: bool = True,
        lazy: bool = False,
    ) -> pl.DataFrame | pl.LazyFrame:
        """Ticks of the UTC days ``[start 00:00, end+1 00:00)``, sorted by ``(timestamp, agg_trade_id)``.

        Missing days are downloaded (several at once) unless ``fetch_if_missing=False``, in which case
        they are simply absent. ``lazy=True`` returns a ``pl.LazyFrame`` over the verified days.

        Raises:
            DataNotFoundError: The source has no data for some missing day (all days that could be
                fetched are stored nevertheless).
            ChecksumMismatchError, CorruptArchiveError, DownloadError: A download failed.
        """
        first, last = parse_day(start, name="start", strict=True), parse_day(end, name="end", strict=True)
        if first > last:
            raise ValueError(f"start ({first}) must be <= end ({last})")
        wanted = days(first, last)
        schema = tick_schema(series)
        if fetch_if_missing:
            missing = [d for d in wanted if not self.has_day(series, d)]
            if missing:
                self.fetch_days(series, missing).raise_for_failures()
        present = [d for d in wanted if self.has_day(series, d)]
        frames = [self.read_day(series, d, refetch_corrupt=fetch_if_missing) for d in present]
        if not frames:
            return pl.LazyFrame(schema=schema) if lazy else pl.DataFrame(schema=schema)
        frame = pl.concat(frames, how="vertical", rechunk=False)
        # lazy: over the verified frames, never a scan of the files (a scan would parse each file again
        # with another reader, which a damaged byte the verified read tolerated can still trip)
        return frame.lazy() if lazy else frame

    # --- fetching and writing -------------------------------------------------------------------

    def fetch_day(self, series: Series, day: date | str, *, force: bool = False) -> DayWriteResult:
        """Download, verify and store one day (no download if stored already, unless ``force``).

        When the source's archive holds more days (Exness: a month), it is downloaded once and every
        UTC day of it is stored (days without ticks as empty files), so later days need no download.

        Raises:
            DataNotFoundError: The source has no data for that day.
            ChecksumMismatchError, CorruptArchiveError, DownloadError: The download failed; nothing
                was written.
        """
        day = parse_day(day, strict=True)
        path = self.day_path(series, day)
        source = self.source(series)
        covered = source.archive_days(day)
        if covered == [day]:
            with self._locked(path):
                if not force and (existing := existing_result(path, day)) is not None:
                    return existing
                return self._fetch_streamed(source, series, path, day)
        with self._locked(path.with_name(f"{source.archive_key(day)}.archive")):
            if not force and (existing := existing_result(path, day)) is not None:
                return existing
            fetched = source.fetch(series, day)
            by_day = source.split_days(fetched.frame)
            schema = tick_schema(series)
            result: DayWriteResult | None = None
            for other in covered:
                other_path = path.with_name(f"{other.isoformat()}.parquet")
                with self._locked(other_path):
                    if other != day and not force and existing_result(other_path, other) is not None:
                        continue
                    frame = by_day.get(other, pl.DataFrame(schema=schema))
                    written = self._write_locked(other_path, series, frame, day=other, fetched=fetched)
                if other == day:
                    result = written
            assert result is not None
            return result

    def fetch_days(self, series: Series, wanted: Sequence[date], *, force: bool = False) -> FetchOutcome:
        """Fetch ``wanted`` days concurrently (one download per archive), as :meth:`fetch_day` each.

        Never raises for a day: each day is either stored or failed in the outcome (see
        :meth:`FetchOutcome.raise_for_failures`); what succeeded stays stored.
        """
        from tqdm import tqdm

        source = source_type(series)
        archives: dict[str, list[date]] = {}
        for day in wanted:
            archives.setdefault(source.archive_key(day), []).append(day)
        outcome = FetchOutcome(series)
        if not archives:
            return outcome
        workers = min(self.max_workers, len(archives))
        show = len(archives) > 1 and sys.stderr.isatty()
        desc = f"{series.source} {series.market} {series.symbol}"

        def fetch_archive(group: list[date]) -> dict[date, DayWriteResult | Exception]:
            done: dict[date, DayWriteResult | Exception] = {}
            fresh = force
            for day in group:  # the first download stores the archive's other days too
                try:
                    done[day] = self.fetch_day(series, day, force=fresh)
                    fresh = False
                except Exception as exc:  # the archive failed: so does each of its days
                    return done | dict.fromkeys(group[len(done) :], exc)
            return done

        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rangebar-fetch") as pool,
            tqdm(total=len(archives), unit="day", desc=desc, disable=not show) as bar,
        ):
            futures: list[Future[dict[date, DayWriteResult | Exception]]] = [
                pool.submit(fetch_archive, group) for group in archives.values()
            ]
            for future in futures:
                for day, result in future.result().items():
                    if isinstance(result, Exception):
                        outcome.failed[day] = result
                    else:
                        outcome.stored[day] = result
                bar.update(1)
        return outcome

    def write_day(
        self,
        series: Series,
        day: date | str,
        ticks: pl.DataFrame,
        *,
        checksum: str | None = None,
        url: str | None = None,
    ) -> DayWriteResult:
        """Store ``ticks`` (the source's tick schema, all inside UTC ``day``) as that day, atomically.

        Rows are sorted and exact duplicates removed as for downloaded days; an existing file is
        replaced. Intended for ticks obtained elsewhere (and for tests).

        Raises:
            ValueError: Wrong columns or dtypes, or a row outside ``day``.
        """
        day = parse_day(day, strict=True)
        schema = tick_schema(series)
        found = dict(ticks.schema)
        if found != schema:
            raise ValueError(f"write_day: expected columns {schema}, found {found}")
        start = day_start_us(day)
        outside = ~ticks["timestamp"].cast(pl.Int64).is_between(start, start + US_PER_DAY, closed="left")
        if outside.any():
            row = ticks.filter(outside).row(0, named=True)
            raise ValueError(f"write_day: {int(outside.sum())} row(s) outside UTC day {day}, e.g. {row}")
        s = series
        frame, duplicates = binance_vision.sort_and_deduplicate(
            ticks, origin=f"write_day({s.source} {s.market} {s.symbol} {day})"
        )
        path = self.day_path(series, day)
        with self._locked(path):
            return self._write_locked(
                path, series, frame, day=day, checksum=checksum, url=url, duplicates_removed=duplicates
            )

    def delete_day(self, series: Series, day: date | str) -> bool:
        """Delete a stored day; return whether there was one."""
        path = self.day_path(series, day)
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

    def _fetch_streamed(self, source: TickSource, series: Series, path: Path, day: date) -> DayWriteResult:
        """Download and store a one-day archive, its row groups written while it is still being
        parsed (when the source streams); when the parsed rows are not the day as stored (an
        unsorted file, a source that does not stream), write it again."""
        remove_temp_files(path)
        stream = StreamedDay(path)
        try:
            fetched = source.fetch(series, day, emit=stream.add)
            if fetched.streamed:
                meta = day_meta(series.source, fetched.frame, day, fetched)
                return day_result(path, meta, stream.commit(meta))
        finally:
            stream.discard()
        return self._write_locked(path, series, fetched.frame, day=day, fetched=fetched)

    def _write_locked(
        self,
        path: Path,
        series: Series,
        frame: pl.DataFrame,
        *,
        day: date,
        fetched: Fetched | None = None,
        checksum: str | None = None,
        url: str | None = None,
        duplicates_removed: int | None = None,
    ) -> DayWriteResult:
        """Write ``frame`` as ``path`` in one piece (caller holds the day lock)."""
        meta = day_meta(
            series.source,
            frame,
            day,
            fetched,
            checksum=checksum,
            url=url,
            duplicates_removed=duplicates_removed,
        )
        return day_result(path, meta, write_frame(path, frame, tick_schema(series), meta))


def _subdirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []


def _day_of(path: Path) -> date | None:
    if path.name.startswith("."):
        return None
    try:
        return date.fromisoformat(path.stem) if len(path.stem) == 10 else None
    except ValueError:
        return None
