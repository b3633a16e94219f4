"""Binance Vision aggTrades: daily zips for spot, USD-M (``um``) and COIN-M (``cm``) futures.

Layout (SPEC §5)::

    {base}/data/{spot|futures/um|futures/cm}/daily/aggTrades/{SYM}/{SYM}-aggTrades-{YYYY-MM-DD}.zip
    {base}/data/.../{SYM}-aggTrades-{YYYY-MM-DD}.zip.CHECKSUM      # "<sha256>  <file name>"

Spot files have no header and an 8th column (``is_best_match``, dropped); futures files have a header
whose time column is ``transact_time``. Timestamps are milliseconds or (spot since 2025) microseconds;
the unit is detected per file (values below 1e14 are milliseconds) and stored as microseconds.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from typing import Final

import polars as pl

from rangebar_pipeline.exceptions import ChecksumMismatchError, CorruptArchiveError, DataNotFoundError
from rangebar_pipeline.schema import TICK_SCHEMA, UTC_US
from rangebar_pipeline.sources._parsing import (
    exact_decimals,
    read_zip_member,
    require_no_nulls,
    row_error,
)
from rangebar_pipeline.sources.base import MARKETS, Fetched, Market, normalize_symbol
from rangebar_pipeline.sources.http import HttpClient, join_url

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_BASE_URL",
    "BinanceVision",
    "parse_agg_trades",
    "parse_checksum_file",
]

DEFAULT_BASE_URL: Final = "https://data.binance.vision"
ENV_BASE_URL: Final = "RANGEBAR_BINANCE_BASE_URL"

_MARKET_PATH: Final[dict[str, str]] = {"spot": "spot", "um": "futures/um", "cm": "futures/cm"}
_COLUMNS: Final = (
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "timestamp",
    "is_buyer_maker",
)
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
_READ_DTYPES: Final[dict[str, pl.DataType]] = {
    "agg_trade_id": pl.Int64(),
    "price": pl.String(),
    "quantity": pl.String(),
    "first_trade_id": pl.Int64(),
    "last_trade_id": pl.Int64(),
    "timestamp": pl.Int64(),
    "is_buyer_maker": pl.Boolean(),
    "is_best_match": pl.String(),
}
#: Timestamps below this are milliseconds, at or above it microseconds (1e14 ms is year 5138).
_US_THRESHOLD: Final = 10**14
_US_PER_DAY: Final = 86_400_000_000


class BinanceVision:
    """Binance Vision aggTrades downloader.

    Args:
        base_url: Mirror root (``http(s)://`` or ``file://``); default ``$RANGEBAR_BINANCE_BASE_URL``,
            else ``https://data.binance.vision``.
        client: The download client (retries, pool, progress); a default one is created if omitted.
        verify_checksum: Check every zip against its ``.CHECKSUM`` file (default and recommended).
    """

    def __init__(
        self, base_url: str | None = None, *, client: HttpClient | None = None, verify_checksum: bool = True
    ) -> None:
        self.base_url = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        self.client = client or HttpClient()
        self.verify_checksum = verify_checksum

    def __repr__(self) -> str:
        return f"BinanceVision({self.base_url!r})"

    def archive_url(self, market: Market, symbol: str, day: date) -> str:
        """URL of the daily aggTrades zip of ``symbol`` on ``market`` for UTC ``day``."""
        if market not in _MARKET_PATH:
            raise ValueError(f"unknown Binance market {market!r}: expected one of {MARKETS}")
        sym = normalize_symbol(symbol)
        name = f"{sym}-aggTrades-{day.isoformat()}.zip"
        return join_url(self.base_url, "data", _MARKET_PATH[market], "daily", "aggTrades", sym, name)

    def fetch_day(self, market: Market, symbol: str, day: date) -> Fetched:
        """Download, verify and parse one day of aggTrades.

        Raises:
            DataNotFoundError: Binance Vision has no file for that day (HTTP 404).
            ChecksumMismatchError: The zip does not match its ``.CHECKSUM``.
            CorruptArchiveError: The zip is truncated/corrupt or its CSV does not parse.
            DownloadError: The download failed after its retries.
        """
        url = self.archive_url(market, symbol, day)
        try:
            archive = self.client.get(url)
            expected = (
                parse_checksum_file(self.client.get(url + ".CHECKSUM").content, origin=url + ".CHECKSUM")
                if self.verify_checksum
                else None
            )
        except DataNotFoundError as exc:
            raise DataNotFoundError(
                f"Binance Vision has no {market} aggTrades for {normalize_symbol(symbol)} on {day}: {exc}"
            ) from exc
        if expected is not None and archive.sha256 != expected:
            raise ChecksumMismatchError(
                f"{url}: sha256 {archive.sha256} does not match the published checksum {expected}"
            )
        member = url.rsplit("/", 1)[-1].removesuffix(".zip") + ".csv"
        name, csv = read_zip_member(archive.content, origin=url, member=member)
        frame, duplicates = parse_agg_trades(csv, origin=f"{url}!{name}", day=day)
        return Fetched(frame=frame, url=url, checksum=archive.sha256, duplicates_removed=duplicates)


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
    first_line = csv[: csv.find(b"\n")] if b"\n" in csv else csv
    first_line = first_line.strip()
    if not first_line:
        return pl.DataFrame(schema=TICK_SCHEMA), 0
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
    columns = [*_COLUMNS, "is_best_match"][:fields]
    header_lines = int(has_header)
    try:
        raw = pl.read_csv(
            csv,
            has_header=has_header,
            new_columns=columns,
            schema_overrides={c: _READ_DTYPES[c] for c in columns},
            infer_schema=False,
            raise_if_empty=False,
        )
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise CorruptArchiveError(_parse_failure(csv, columns, has_header, origin=origin, error=exc)) from exc
    if raw.width != fields:
        raise CorruptArchiveError(f"{origin}: expected {fields} columns, parsed {raw.width}")
    raw = raw.select(_COLUMNS)
    if raw.height == 0:
        return pl.DataFrame(schema=TICK_SCHEMA), 0
    require_no_nulls(raw, origin=origin, header_lines=header_lines)
    frame = exact_decimals(raw, ("price", "quantity"), origin=origin, header_lines=header_lines)
    bad = frame["price"] <= 0
    if bad.any():
        raise CorruptArchiveError(
            row_error(origin, frame, bad, "price must be > 0", header_lines=header_lines)
        )
    frame = frame.with_columns(_timestamp_us(frame, origin=origin, header_lines=header_lines))
    if day is not None:
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
        outside = ~frame["timestamp"].is_between(start, start + _US_PER_DAY, closed="left")
        if outside.any():
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
    return sort_and_deduplicate(frame, origin=origin)


def _parse_failure(csv: bytes, columns: list[str], has_header: bool, *, origin: str, error: Exception) -> str:
    """Name the first line and field that made the typed CSV read fail."""
    summary = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    try:
        text = pl.read_csv(csv, has_header=has_header, new_columns=columns, infer_schema=False)
    except (pl.exceptions.PolarsError, ValueError):
        return f"{origin}: CSV does not parse as aggTrades: {summary}"
    for column in columns:
        dtype = _READ_DTYPES[column]
        if dtype == pl.String():
            continue
        values = text[column]
        if dtype == pl.Boolean():
            bad = values.is_not_null() & ~values.str.to_lowercase().is_in(["true", "false"])
        else:
            bad = values.is_not_null() & values.cast(dtype, strict=False).is_null()
        if bad.any():
            return row_error(origin, text, bad, f"{column} is not {dtype}", header_lines=int(has_header))
    return f"{origin}: CSV does not parse as aggTrades: {summary}"


def _timestamp_us(frame: pl.DataFrame, *, origin: str, header_lines: int) -> pl.Expr:
    ts = frame["timestamp"]
    low, high = ts.min(), ts.max()
    assert isinstance(low, int) and isinstance(high, int)
    if high < _US_THRESHOLD:
        return pl.col("timestamp") * 1000
    if low >= _US_THRESHOLD:
        return pl.col("timestamp")
    raise CorruptArchiveError(
        row_error(
            origin,
            frame,
            (ts < _US_THRESHOLD) != (ts[0] < _US_THRESHOLD),
            f"timestamp unit differs from line {1 + header_lines}'s: mixed timestamp units "
            f"(values from {low} to {high}; one file must be all ms or all us)",
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
