"""Exness Raw_Spread tick archives: monthly zips of bid/ask quotes turned into synthetic trades.

Layout (SPEC §5)::

    {base}/ticks/{SYM}_Raw_Spread/{YYYY}/{MM}/Exness_{SYM}_Raw_Spread_{YYYY}_{MM}.zip

with exactly one CSV inside: ``"Exness","Symbol","Timestamp","Bid","Ask"`` and timestamps such as
``2023-06-23 00:00:00.335Z`` (UTC). Each quote becomes a trade at the exact mid price
``(bid + ask) / 2`` (fixed point, half away from zero at the 8th decimal), quantity 0,
``is_buyer_maker`` false, and the synthetic id ``timestamp_us * 1000 + rank`` (rank of the quote among
those with the same timestamp, in file order), which is deterministic, strictly increasing and
independent of how the month is split into days. ``bid``/``ask`` are kept for the spread statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import ClassVar, Final, Literal, get_args

import polars as pl

from rangebar_pipeline.exceptions import CorruptArchiveError, DataNotFoundError, InvalidTradeError
from rangebar_pipeline.schema import PRICE_DECIMAL, SPREAD_SCHEMA, TICK_SCHEMA
from rangebar_pipeline.series import SOURCE_MARKETS, Series
from rangebar_pipeline.sources._parsing import exact_decimals, read_zip_member, require_no_nulls, row_error
from rangebar_pipeline.sources.base import (
    Emit,
    Fetched,
    Market,
    Source,
    TickSource,
    normalize_symbol,
    split_by_day,
)
from rangebar_pipeline.sources.http import HttpClient, join_url

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_BASE_URL",
    "EXNESS_RANK_LIMIT",
    "EXNESS_TICK_SCHEMA",
    "SPREAD_COLUMNS",
    "ExnessSource",
    "Strictness",
    "add_spread_stats",
    "parse_exness_ticks",
    "split_by_day",
]

DEFAULT_BASE_URL: Final = "https://ticks.ex2archive.com"
ENV_BASE_URL: Final = "RANGEBAR_EXNESS_BASE_URL"

Strictness = Literal["permissive", "strict", "paranoid"]
STRICTNESS_LEVELS: Final[tuple[Strictness, ...]] = get_args(Strictness)
#: Largest spread allowed as a percentage of the bid, per strictness (permissive: no limit).
_MAX_SPREAD_PCT: Final[dict[str, int | None]] = {"permissive": None, "strict": 10, "paranoid": 1}

#: Tier 1 schema of Exness ticks: the trade columns plus the quote.
EXNESS_TICK_SCHEMA: Final[dict[str, pl.DataType]] = {
    **TICK_SCHEMA,
    "bid": PRICE_DECIMAL,
    "ask": PRICE_DECIMAL,
}
SPREAD_COLUMNS: Final = tuple(SPREAD_SCHEMA)

_HEADER: Final = ["Exness", "Symbol", "Timestamp", "Bid", "Ask"]
#: Synthetic ids are ``timestamp_us * EXNESS_RANK_LIMIT + rank`` (rank among equal timestamps).
EXNESS_RANK_LIMIT: Final = 1000
_ONE_UNIT: Final = Decimal("0.00000001")


class ExnessSource(TickSource):
    """Exness tick archives: one archive a month, synthetic ids, the price at the mid, spreads kept.

    Args:
        base_url: Archive root (``http(s)://`` or ``file://``); default ``$RANGEBAR_EXNESS_BASE_URL``,
            else ``https://ticks.ex2archive.com``.
        client: The download client (retries, pool, progress); a default one is created on first use.
        strictness: Quote validation as in the reference: every level refuses ``bid <= 0``,
            ``ask <= 0`` and ``bid > ask``; ``"strict"`` also a spread above 10 % of the bid,
            ``"paranoid"`` above 1 %.
    """

    name: ClassVar[Source] = "exness"
    markets: ClassVar[tuple[Market, ...]] = SOURCE_MARKETS["exness"]
    tick_schema: ClassVar[Mapping[str, pl.DataType]] = EXNESS_TICK_SCHEMA
    spread_schema: ClassVar[Mapping[str, pl.DataType]] = SPREAD_SCHEMA
    contiguous_ids: ClassVar[bool] = False  # timestamp_us * EXNESS_RANK_LIMIT + rank
    archive: ClassVar[Literal["day", "month"]] = "month"
    price: ClassVar[str] = "the exact mid (bid + ask) / 2"
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    base_url_env: ClassVar[str] = ENV_BASE_URL

    def __init__(
        self,
        base_url: str | None = None,
        *,
        client: HttpClient | None = None,
        strictness: Strictness = "strict",
    ) -> None:
        if strictness not in STRICTNESS_LEVELS:
            raise ValueError(f"unknown strictness {strictness!r}: expected one of {STRICTNESS_LEVELS}")
        super().__init__(base_url, client=client)
        self.strictness: Strictness = strictness

    def __repr__(self) -> str:
        return f"ExnessSource({self.base_url!r}, strictness={self.strictness!r})"

    @classmethod
    def instrument(cls, symbol: str) -> str:
        """``symbol`` without the archive's ``_RAW_SPREAD`` suffix (``"EURGBP"``)."""
        return _instrument(symbol)

    @classmethod
    def add_spread_stats(cls, bars: pl.DataFrame, ticks: pl.DataFrame) -> pl.DataFrame:
        """:func:`add_spread_stats`."""
        return add_spread_stats(bars, ticks)

    def probe_url(self, series: Series, day: date) -> str:
        """The month's archive (published once the month is complete)."""
        return self.archive_url(series.symbol, day.year, day.month)

    def fetch(self, series: Series, day: date, *, emit: Emit | None = None) -> Fetched:
        """:meth:`fetch_month` of the month holding ``day`` (``emit`` is not used)."""
        return self.fetch_month(series.symbol, day.year, day.month)

    def archive_url(self, symbol: str, year: int, month: int) -> str:
        """URL of the monthly tick zip of ``symbol`` (e.g. ``"EURGBP"``)."""
        sym = _instrument(symbol)
        if not 1 <= month <= 12:
            raise ValueError(f"month must be 1..12, got {month}")
        name = f"Exness_{sym}_Raw_Spread_{year:04d}_{month:02d}.zip"
        return join_url(self.base_url, "ticks", f"{sym}_Raw_Spread", f"{year:04d}", f"{month:02d}", name)

    def fetch_month(self, symbol: str, year: int, month: int) -> Fetched:
        """Download and parse one month of ticks (``EXNESS_TICK_SCHEMA``, sorted).

        Raises:
            DataNotFoundError: The archive has no file for that month (HTTP 404).
            CorruptArchiveError: The zip is truncated/corrupt, does not hold exactly one CSV, or a row
                does not parse; InvalidTradeError: a quote fails validation (the line is named).
            DownloadError: The download failed after its retries.
        """
        url = self.archive_url(symbol, year, month)
        try:
            archive = self.client.get(url)
        except DataNotFoundError as exc:
            raise DataNotFoundError(
                f"Exness has no ticks for {_instrument(symbol)} in {year:04d}-{month:02d}: {exc}"
            ) from exc
        name, csv = read_zip_member(archive.content, origin=url)
        frame = parse_exness_ticks(
            csv, origin=f"{url}!{name}", symbol=symbol, strictness=self.strictness, month=(year, month)
        )
        return Fetched(frame=frame, url=url, checksum=archive.sha256, duplicates_removed=0)


def _instrument(symbol: str) -> str:
    sym = normalize_symbol(symbol)
    return sym.removesuffix("_RAW_SPREAD")


def parse_exness_ticks(
    csv: bytes,
    *,
    origin: str,
    symbol: str | None = None,
    strictness: Strictness = "strict",
    month: tuple[int, int] | None = None,
) -> pl.DataFrame:
    """Parse an Exness tick CSV into an ``EXNESS_TICK_SCHEMA`` frame (synthetic trades at the mid).

    Raises:
        CorruptArchiveError: Wrong header, a field that does not parse, a symbol other than
            ``symbol``, decreasing timestamps, a tick outside ``month``, or >= 1000 quotes in one
            microsecond.
        InvalidTradeError: ``bid <= 0``, ``ask <= 0``, ``bid > ask``, or (strict/paranoid) a spread
            above the strictness limit; the message names the line.
    """
    try:
        raw = pl.read_csv(csv, infer_schema=False, raise_if_empty=False)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise CorruptArchiveError(f"{origin}: CSV does not parse as Exness ticks: {exc}") from exc
    if raw.columns != _HEADER:
        if raw.width == 0:
            return pl.DataFrame(schema=EXNESS_TICK_SCHEMA)
        raise CorruptArchiveError(f"{origin}: expected header {_HEADER}, found {raw.columns}")
    if raw.height == 0:
        return pl.DataFrame(schema=EXNESS_TICK_SCHEMA)
    require_no_nulls(raw, origin=origin, header_lines=1)
    if symbol is not None:
        expected = f"{_instrument(symbol)}_RAW_SPREAD"
        bad = raw["Symbol"].str.to_uppercase() != expected
        if bad.any():
            raise CorruptArchiveError(
                row_error(origin, raw, bad, f"symbol is not {expected}", header_lines=1)
            )
    quotes = exact_decimals(raw, ("Bid", "Ask"), origin=origin, header_lines=1, signed=True)
    quotes = quotes.with_columns(
        pl.col("Timestamp")
        .str.strip_suffix("Z")
        .str.replace("T", " ", literal=True)
        .str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S%.f", strict=False)
        .dt.replace_time_zone("UTC")
        .alias("timestamp")
    )
    bad = quotes["timestamp"].is_null()
    if bad.any():
        raise CorruptArchiveError(row_error(origin, raw, bad, "timestamp does not parse", header_lines=1))
    _validate_quotes(quotes, origin=origin, strictness=strictness, raw=raw)
    bad = (quotes["timestamp"].cast(pl.Int64).diff() < 0).fill_null(False)
    if bad.any():
        raise CorruptArchiveError(
            row_error(origin, raw, bad, "timestamp earlier than the line before", header_lines=1)
        )
    if month is not None:
        year, mon = month
        start = datetime(year, mon, 1, tzinfo=UTC)
        end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
        bad = ~quotes["timestamp"].is_between(start, end, closed="left")
        if bad.any():
            raise CorruptArchiveError(
                row_error(origin, raw, bad, f"tick outside {year:04d}-{mon:02d}", header_lines=1)
            )
    return _to_trades(quotes, origin=origin, raw=raw)


def _validate_quotes(quotes: pl.DataFrame, *, origin: str, strictness: Strictness, raw: pl.DataFrame) -> None:
    bid = quotes["Bid"].to_physical().cast(pl.Int64)
    ask = quotes["Ask"].to_physical().cast(pl.Int64)
    checks: list[tuple[pl.Series, str]] = [
        (bid <= 0, "invalid bid price (must be > 0)"),
        (ask <= 0, "invalid ask price (must be > 0)"),
        (bid > ask, "crossed market (bid > ask)"),
    ]
    limit = _MAX_SPREAD_PCT[strictness]
    if limit is not None:
        # spread / bid * 100 > limit, in exact integers
        checks.append(
            ((ask - bid) * 100 > bid * limit, f"excessive spread (> {limit}% of bid, {strictness})")
        )
    for bad, what in checks:
        if bad.any():
            raise InvalidTradeError(row_error(origin, raw, bad, what, header_lines=1))


def _to_trades(quotes: pl.DataFrame, *, origin: str, raw: pl.DataFrame) -> pl.DataFrame:
    odd = (pl.col("Bid").to_physical() + pl.col("Ask").to_physical()) % 2
    half_up = odd.cast(pl.Decimal(38, 0)) * pl.lit(_ONE_UNIT, dtype=PRICE_DECIMAL)
    rank = pl.int_range(pl.len(), dtype=pl.Int64).over("timestamp")
    frame = quotes.select(
        pl.col("timestamp"),
        ((pl.col("Bid") + pl.col("Ask") + half_up) / 2).cast(PRICE_DECIMAL).alias("price"),
        pl.lit(0, dtype=PRICE_DECIMAL).alias("quantity"),
        rank.alias("rank"),
        pl.lit(value=False).alias("is_buyer_maker"),
        pl.col("Bid").alias("bid"),
        pl.col("Ask").alias("ask"),
    )
    bad = frame["rank"] >= EXNESS_RANK_LIMIT
    if bad.any():
        raise CorruptArchiveError(
            row_error(
                origin, raw, bad, f"more than {EXNESS_RANK_LIMIT} ticks share one timestamp", header_lines=1
            )
        )
    agg_id = pl.col("timestamp").cast(pl.Int64) * EXNESS_RANK_LIMIT + pl.col("rank")
    return frame.with_columns(
        agg_id.alias("agg_trade_id"), agg_id.alias("first_trade_id"), agg_id.alias("last_trade_id")
    ).select(list(EXNESS_TICK_SCHEMA))


def add_spread_stats(bars: pl.DataFrame, ticks: pl.DataFrame) -> pl.DataFrame:
    """Append ``spread_min``, ``spread_max``, ``spread_avg`` (Float64) and ``spread_tick_count`` (Int64).

    Each tick (with ``agg_trade_id``, ``bid``, ``ask``) counts in the bar whose
    ``[first_agg_trade_id, last_agg_trade_id]`` contains its id; ticks outside every bar are ignored, and a
    bar without ticks gets a count of 0 and null statistics. Spreads ``ask - bid`` are aggregated as
    exact decimals (min/max/sum) and converted to float at the end.
    """
    missing = [c for c in ("first_agg_trade_id", "last_agg_trade_id") if c not in bars.columns]
    missing += [f"ticks.{c}" for c in ("agg_trade_id", "bid", "ask") if c not in ticks.columns]
    if missing:
        raise ValueError(f"add_spread_stats: missing column(s) {missing}")
    bars = bars.drop([c for c in SPREAD_COLUMNS if c in bars.columns])
    spreads = ticks.select(
        pl.col("agg_trade_id").cast(pl.Int64),
        (pl.col("ask").cast(PRICE_DECIMAL) - pl.col("bid").cast(PRICE_DECIMAL)).alias("_spread"),
    ).sort("agg_trade_id")
    keys = bars.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_bar"),
        pl.col("first_agg_trade_id").cast(pl.Int64),
        pl.col("last_agg_trade_id").cast(pl.Int64).alias("_last"),
    ).sort("first_agg_trade_id")
    matched = (
        spreads.join_asof(keys, left_on="agg_trade_id", right_on="first_agg_trade_id", strategy="backward")
        .filter(pl.col("agg_trade_id") <= pl.col("_last"))
        .group_by("_bar")
        .agg(
            pl.col("_spread").min().cast(pl.Float64).alias("spread_min"),
            pl.col("_spread").max().cast(pl.Float64).alias("spread_max"),
            (pl.col("_spread").sum().cast(pl.Float64) / pl.len().cast(pl.Float64)).alias("spread_avg"),
            pl.len().cast(pl.Int64).alias("spread_tick_count"),
        )
    )
    out = (
        bars.with_row_index("_bar")
        .with_columns(pl.col("_bar").cast(pl.Int64))
        .join(matched, on="_bar", how="left", maintain_order="left")
        .drop("_bar")
    )
    return out.with_columns(pl.col("spread_tick_count").fill_null(0))
