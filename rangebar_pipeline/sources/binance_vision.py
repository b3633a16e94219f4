"""Binance Vision aggTrades: daily zips for spot, USD-M (``um``) and COIN-M (``cm``) futures.

Layout (SPEC §5)::

    {base}/data/{spot|futures/um|futures/cm}/daily/aggTrades/{SYM}/{SYM}-aggTrades-{YYYY-MM-DD}.zip
    {base}/data/.../{SYM}-aggTrades-{YYYY-MM-DD}.zip.CHECKSUM      # "<sha256>  <file name>"

Spot files have no header and an 8th column (``is_best_match``, dropped); futures files have a header
whose time column is ``transact_time``. Timestamps are milliseconds or (spot since 2025) microseconds;
the unit is detected per file (values below 1e14 are milliseconds) and stored as microseconds.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any, ClassVar, Final, Literal

import numpy.typing as npt
import polars as pl
import pyarrow as pa

from rangebar_pipeline._core import AggTradesCsvParser
from rangebar_pipeline.calendar import US_PER_DAY, day_start_us
from rangebar_pipeline.exceptions import ChecksumMismatchError, CorruptArchiveError, DataNotFoundError
from rangebar_pipeline.schema import TICK_SCHEMA, UTC_US
from rangebar_pipeline.series import SOURCE_MARKETS, Series
from rangebar_pipeline.sources._parsing import iter_zip_member, row_error
from rangebar_pipeline.sources.base import (
    MARKETS,
    Emit,
    Fetched,
    Market,
    Source,
    TickSource,
    normalize_symbol,
)
from rangebar_pipeline.sources.http import HttpClient, join_url

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_BASE_URL",
    "BinanceVision",
    "parse_agg_trades",
    "parse_agg_trades_pieces",
    "parse_checksum_file",
]

DEFAULT_BASE_URL: Final = "https://data.binance.vision"
ENV_BASE_URL: Final = "RANGEBAR_BINANCE_BASE_URL"

_MARKET_PATH: Final[dict[str, str]] = {"spot": "spot", "um": "futures/um", "cm": "futures/cm"}
#: Accepted header names per position (futures headers say ``transact_time``).
_HEADER_NAMES: Final = (
    {"agg_trade_id", "a"},
    {"price", "p"},
    {"quantity", "q"},
    {"first_trade_id", "f"},
    {"last_trade_id", "l"},
    {"transact_time", "timestamp", "t"},
    {"is_buyer_maker", "m"},
    {"is_best_match", "M"},
)
#: Timestamps below this are milliseconds, at or above it microseconds (1e14 ms is year 5138).
_US_THRESHOLD: Final = 10**14
#: Pieces parsed or waiting while the next one is inflated (bounds the memory held).
_PIECES_IN_FLIGHT: Final = 2
#: Prices and quantities as parsed: fixed point x1e8 in an int64, i.e. Arrow decimal64 (polars
#: reads it as its Decimal(18, 8); the tick store writes it as the Parquet INT64 decimal it is).
_ARROW_DECIMAL: Final = pa.decimal64(18, 8)
_Column = npt.NDArray[Any]
#: ``TICK_SCHEMA`` as Arrow types (what ``pl.DataFrame.to_arrow`` gives for it).
_ARROW_TIMESTAMP: Final = pa.timestamp("us", tz="UTC")


class BinanceVision(TickSource):
    """Binance Vision aggTrades: one archive a UTC day, trade ids contiguous across days.

    Args:
        base_url: Mirror root (``http(s)://`` or ``file://``); default ``$RANGEBAR_BINANCE_BASE_URL``,
            else ``https://data.binance.vision``.
        client: The download client (retries, pool, progress); a default one is created on first use.
        verify_checksum: Check every zip against its ``.CHECKSUM`` file (default and recommended).
    """

    name: ClassVar[Source] = "binance"
    markets: ClassVar[tuple[Market, ...]] = SOURCE_MARKETS["binance"]
    tick_schema: ClassVar[Mapping[str, pl.DataType]] = TICK_SCHEMA
    contiguous_ids: ClassVar[bool] = True
    archive: ClassVar[Literal["day", "month"]] = "day"
    price: ClassVar[str] = "the trade price"
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    base_url_env: ClassVar[str] = ENV_BASE_URL

    def __init__(
        self, base_url: str | None = None, *, client: HttpClient | None = None, verify_checksum: bool = True
    ) -> None:
        super().__init__(base_url, client=client)
        self.verify_checksum = verify_checksum

    def __repr__(self) -> str:
        return f"BinanceVision({self.base_url!r})"

    def probe_url(self, series: Series, day: date) -> str:
        """The day's ``.CHECKSUM`` file: published with (and after) the zip."""
        return self.archive_url(series.market, series.symbol, day) + ".CHECKSUM"

    def fetch(self, series: Series, day: date, *, emit: Emit | None = None) -> Fetched:
        """:meth:`fetch_day` of ``series`` (rows also handed to ``emit`` while parsed)."""
        return self.fetch_day(series.market, series.symbol, day, emit=emit)

    def archive_url(self, market: Market, symbol: str, day: date) -> str:
        """URL of the daily aggTrades zip of ``symbol`` on ``market`` for UTC ``day``."""
        if market not in _MARKET_PATH:
            raise ValueError(f"unknown Binance market {market!r}: expected one of {MARKETS}")
        sym = normalize_symbol(symbol)
        name = f"{sym}-aggTrades-{day.isoformat()}.zip"
        return join_url(self.base_url, "data", _MARKET_PATH[market], "daily", "aggTrades", sym, name)

    def fetch_day(self, market: Market, symbol: str, day: date, *, emit: Emit | None = None) -> Fetched:
        """Download, verify and parse one day of aggTrades.

        With ``emit``, the rows are also handed over in pieces as they are parsed (while the zip's
        sha256 is computed: keep them only if this returns); ``Fetched.streamed`` says whether
        those pieces are exactly ``frame``.

        Raises:
            DataNotFoundError: Binance Vision has no file for that day (HTTP 404).
            ChecksumMismatchError: The zip does not match its ``.CHECKSUM``.
            CorruptArchiveError: The zip is truncated/corrupt or its CSV does not parse.
            DownloadError: The download failed after its retries.
        """
        url = self.archive_url(market, symbol, day)
        try:
            archive = self.client.get(url, sha256=False)  # hashed below, while it is parsed
            expected = (
                parse_checksum_file(self.client.get(url + ".CHECKSUM").content, origin=url + ".CHECKSUM")
                if self.verify_checksum
                else None
            )
        except DataNotFoundError as exc:
            raise DataNotFoundError(
                f"Binance Vision has no {market} aggTrades for {normalize_symbol(symbol)} on {day}: {exc}"
            ) from exc

        def verified(digest: str) -> str:
            if expected is not None and digest != expected:
                raise ChecksumMismatchError(
                    f"{url}: sha256 {digest} does not match the published checksum {expected}"
                )
            return digest

        member = url.rsplit("/", 1)[-1].removesuffix(".zip") + ".csv"
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rangebar-sha256") as hasher:
            digest = hasher.submit(_sha256, archive.content)
            try:
                name, pieces = iter_zip_member(archive.content, origin=url, member=member)
                frame, duplicates, streamed = _parse_pieces(
                    pieces, origin=f"{url}!{name}", day=day, emit=emit
                )
            except CorruptArchiveError:
                verified(digest.result())  # a download that is not the published file says so first
                raise
            checksum = verified(digest.result())
        return Fetched(
            frame=frame, url=url, checksum=checksum, duplicates_removed=duplicates, streamed=streamed
        )


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()  # without the GIL


def parse_checksum_file(content: bytes, *, origin: str) -> str:
    """The sha256 hex digest in a Binance ``.CHECKSUM`` file (``"<hex>  <file name>"``)."""
    token = content.decode("ascii", errors="replace").strip().split(maxsplit=1)[0:1]
    digest = token[0].lower() if token else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise CorruptArchiveError(f"{origin}: expected a sha256 hex digest, found {content[:80]!r}")
    return digest


def parse_agg_trades(csv: bytes, *, origin: str, day: date | None = None) -> tuple[pl.DataFrame, int]:
    """Parse a Binance aggTrades CSV (spot or futures layout) into a ``TICK_SCHEMA`` frame.

    Prices and quantities are parsed exactly (values needing more than 8 decimals are refused).
    Rows are sorted by ``(timestamp, agg_trade_id)`` and exact duplicates removed; the second value
    returned is how many. With ``day`` given, every row must fall inside that UTC day.

    Raises:
        CorruptArchiveError: Unknown header or column count, a field that does not parse, an empty
            field, a price <= 0, mixed timestamp units, a row outside ``day``, or two different rows
            sharing one ``agg_trade_id``. The message names the line.
    """
    return parse_agg_trades_pieces([csv], origin=origin, day=day)


def parse_agg_trades_pieces(
    pieces: Iterable[bytes], *, origin: str, day: date | None = None
) -> tuple[pl.DataFrame, int]:
    """:func:`parse_agg_trades` of a CSV given in pieces split anywhere (e.g. as it is inflated).

    The Rust parser (``_core.AggTradesCsvParser``, exact fixed point, no GIL) works on one piece
    in a background thread while the next one is produced, so inflating and parsing overlap. It
    also tracks the timestamp range and the row order, so whole-column checks only run (to name
    the offending line) when something is wrong, and sorting only when the file is unsorted.
    """
    frame, duplicates, _ = _parse_pieces(pieces, origin=origin, day=day, emit=None)
    return frame, duplicates


def _parse_pieces(
    pieces: Iterable[bytes], *, origin: str, day: date | None, emit: Emit | None
) -> tuple[pl.DataFrame, int, bool]:
    """:func:`parse_agg_trades_pieces`, also emitting rows as parsed; True when they are the frame."""
    stream = iter(pieces)
    head = b""
    for piece in stream:  # the first line decides the layout
        head += piece
        if b"\n" in head:
            break
    line_end = head.find(b"\n")
    first_line = (head if line_end < 0 else head[:line_end]).strip()
    if not first_line:
        if head.strip() or any(piece.strip() for piece in stream):
            raise CorruptArchiveError(f"{origin}: line 1 is empty; expected a header or a trade")
        return pl.DataFrame(schema=TICK_SCHEMA), 0, False
    fields = first_line.count(b",") + 1
    if fields not in (7, 8):
        raise CorruptArchiveError(
            f"{origin}: expected 7 or 8 columns, found {fields} in {first_line[:200]!r}"
        )
    has_header = not first_line[:1].isdigit()
    if has_header:
        names = [n.strip().strip('"') for n in first_line.decode("utf-8", errors="replace").split(",")]
        if any(name not in accepted for name, accepted in zip(names, _HEADER_NAMES, strict=False)):
            raise CorruptArchiveError(f"{origin}: unexpected aggTrades header {names}")
    header_lines = int(has_header)
    parser = AggTradesCsvParser(fields, first_line=1 + header_lines)
    start = line_end + 1 if has_header and line_end >= 0 else len(head) if has_header else 0
    emitter = None if emit is None else _Emitter(emit)
    frames = _parse_overlapped(parser, head, start, stream, origin=origin, on_chunk=emitter)
    if emit is not None:
        emit(None)
    frame = pl.concat([f for f in frames if f.height] or frames[:1], how="vertical", rechunk=False)
    if frame.height == 0:
        return pl.DataFrame(schema=TICK_SCHEMA), 0, False
    low, high = parser.timestamp_range or (0, 0)
    # The emitted rows are the result when the file is sorted and the unit guessed from the first
    # rows holds for the whole file (any other case is an error below, or sorts the frame).
    streamed = emitter is not None and emitter.valid and emitter.ms == (high < _US_THRESHOLD)
    if high < _US_THRESHOLD:
        frame, low, high = frame.with_columns(pl.col("timestamp") * 1000), low * 1000, high * 1000
    elif low < _US_THRESHOLD:
        raise _mixed_units(frame, origin=origin, header_lines=header_lines)
    if day is not None:
        start_us = day_start_us(day)
        if low < start_us or high >= start_us + US_PER_DAY:
            outside = ~frame["timestamp"].is_between(start_us, start_us + US_PER_DAY, closed="left")
            raise CorruptArchiveError(
                row_error(
                    origin,
                    frame,
                    outside,
                    f"timestamp outside the file's UTC day {day} (to {day + timedelta(days=1)})",
                    header_lines=header_lines,
                )
            )
    frame = frame.with_columns(pl.col("timestamp").cast(UTC_US)).select(list(TICK_SCHEMA))
    if parser.is_sorted:  # strictly increasing (timestamp, agg_trade_id): no duplicates either
        return frame, 0, streamed
    return (*sort_and_deduplicate(frame, origin=origin), False)


class _Emitter:
    """Hands each parsed chunk to ``emit`` in its final form, the timestamp unit taken from the
    first rows; stops (``valid`` False) at the first chunk that contradicts that unit."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.ms: bool | None = None
        self.valid = True

    def __call__(self, chunk: dict[str, _Column]) -> None:
        timestamps = chunk["timestamp"]
        if not self.valid or len(timestamps) == 0:
            return
        low, high = int(timestamps.min()), int(timestamps.max())
        if self.ms is None:
            self.ms = high < _US_THRESHOLD
        if (high >= _US_THRESHOLD) if self.ms else (low < _US_THRESHOLD):
            self.valid = False
            return
        self.emit(_record_batch(chunk, ms=self.ms))


def _parse_overlapped(
    parser: AggTradesCsvParser,
    head: bytes,
    start: int,
    rest: Iterator[bytes],
    *,
    origin: str,
    on_chunk: Callable[[dict[str, _Column]], None] | None = None,
) -> list[pl.DataFrame]:
    """Feed ``head[start:]``, then every piece of ``rest``, to ``parser`` in a worker thread while
    the next piece is produced (e.g. inflated); the parsed columns of each piece, in order, each
    passed to ``on_chunk`` (in this thread) as soon as it is parsed, and made a frame (polars
    widens the decimals to its 128 bits here, while the next pieces are parsed, rather than at
    the end).

    The pieces are produced here rather than in a worker: glibc reuses the memory of a freed
    piece for the next one in the main thread's arena, not in a worker's (there every inflated
    piece was fresh memory: a page fault per 4 KB, a third of the inflate time).
    """

    def feed(piece: bytes | None, offset: int = 0) -> dict[str, _Column]:
        try:
            return parser.finish() if piece is None else parser.feed(piece, offset)
        except CorruptArchiveError as exc:  # the parser names the line; add the file
            raise CorruptArchiveError(f"{origin}: {exc}") from exc

    frames: list[pl.DataFrame] = []

    def done(chunk: dict[str, _Column]) -> None:
        if on_chunk is not None:
            on_chunk(chunk)
        frames.append(_frame(chunk))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rangebar-csv") as pool:
        pending: deque[Future[dict[str, _Column]]] = deque([pool.submit(feed, head, start)])
        try:
            for piece in rest:
                pending.append(pool.submit(feed, piece))
                while len(pending) > _PIECES_IN_FLIGHT:
                    done(pending.popleft().result())
                while pending and pending[0].done():
                    done(pending.popleft().result())
            while pending:
                done(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()
    done(feed(None))
    return frames


def _record_batch(chunk: dict[str, _Column], *, ms: bool) -> pa.RecordBatch:
    """One parsed chunk in final form (``TICK_SCHEMA`` order, us timestamps), without copies
    (but for the booleans, which Arrow packs into bits, and millisecond timestamps)."""
    rows = len(chunk["timestamp"])
    timestamps = chunk["timestamp"] * 1000 if ms else chunk["timestamp"]
    arrays = {
        "timestamp": pa.Array.from_buffers(_ARROW_TIMESTAMP, rows, [None, pa.py_buffer(timestamps)]),
        "price": _decimal_array(chunk["price"]),
        "quantity": _decimal_array(chunk["quantity"]),
        "agg_trade_id": pa.array(chunk["agg_trade_id"]),
        "first_trade_id": pa.array(chunk["first_trade_id"]),
        "last_trade_id": pa.array(chunk["last_trade_id"]),
        "is_buyer_maker": pa.array(chunk["is_buyer_maker"]),
    }
    return pa.RecordBatch.from_arrays([arrays[name] for name in TICK_SCHEMA], names=list(TICK_SCHEMA))


def _frame(chunk: dict[str, _Column]) -> pl.DataFrame:
    """A parsed chunk as a frame (timestamps still raw Int64)."""
    table = pa.table(
        {
            "agg_trade_id": chunk["agg_trade_id"],
            "price": _decimal_array(chunk["price"]),
            "quantity": _decimal_array(chunk["quantity"]),
            "first_trade_id": chunk["first_trade_id"],
            "last_trade_id": chunk["last_trade_id"],
            "timestamp": chunk["timestamp"],
            "is_buyer_maker": chunk["is_buyer_maker"],
        }
    )
    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _decimal_array(raw: _Column) -> pa.Array:
    """Fixed-point values (x1e8) as a decimal64(18, 8) array, without copies."""
    return pa.Array.from_buffers(_ARROW_DECIMAL, len(raw), [None, pa.py_buffer(raw)])


def _mixed_units(frame: pl.DataFrame, *, origin: str, header_lines: int) -> CorruptArchiveError:
    """The error for a file mixing millisecond and microsecond timestamps, naming the first line."""
    ts = frame["timestamp"]
    return CorruptArchiveError(
        row_error(
            origin,
            frame,
            (ts < _US_THRESHOLD) != (ts[0] < _US_THRESHOLD),
            f"timestamp unit differs from line {1 + header_lines}'s: mixed timestamp units "
            f"(values from {ts.min()!r} to {ts.max()!r}; one file must be all ms or all us)",
            header_lines=header_lines,
        )
    )


def sort_and_deduplicate(frame: pl.DataFrame, *, origin: str) -> tuple[pl.DataFrame, int]:
    """Sort by ``(timestamp, agg_trade_id)`` and drop exact duplicate rows; return the count dropped.

    Raises:
        CorruptArchiveError: Two different rows share an ``agg_trade_id``.
    """
    ordered = frame.select(
        (
            (pl.col("timestamp").diff() > 0)
            | ((pl.col("timestamp").diff() == 0) & (pl.col("agg_trade_id").diff() > 0))
        )
        .slice(1)
        .all()
    ).item()
    if ordered:
        return frame, 0
    frame = frame.sort("timestamp", "agg_trade_id", maintain_order=True)
    unique = frame.unique(maintain_order=True)
    conflicting = unique["agg_trade_id"].is_duplicated()
    if conflicting.any():
        agg_id = unique.filter(conflicting)["agg_trade_id"][0]
        rows = unique.filter(pl.col("agg_trade_id") == agg_id).rows(named=True)
        raise CorruptArchiveError(f"{origin}: different rows share agg_trade_id {agg_id}: {rows}")
    return unique, frame.height - unique.height
