"""Real fixture ticks (Binance Vision zips in ../shared/data) in TICK_SCHEMA, and bars built from them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

from rangebar_pipeline.schema import TICK_SCHEMA

Market = Literal["spot", "um", "cm"]

SHARED_DATA: Final[Path] = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_MARKET_DIRS: Final[dict[Market, str]] = {"spot": "spot", "um": "futures/um", "cm": "futures/cm"}
_SPOT_COLUMNS: Final = (
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
    "is_best_match",
)


def fixture_zips(market: Market, symbol: str) -> list[Path]:
    """The daily aggTrades zips of one fixture series, in date order."""
    folder = SHARED_DATA / "binance_vision" / "data" / _MARKET_DIRS[market] / "daily" / "aggTrades" / symbol
    return sorted(folder.glob(f"{symbol}-aggTrades-*.zip"))


def read_fixture_day(path: Path, market: Market) -> pl.DataFrame:
    """One Binance Vision zip as ticks in ``TICK_SCHEMA`` (decimals parsed exactly from the CSV text)."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read(archive.namelist()[0])
    header = market != "spot"
    raw = pl.read_csv(
        io.BytesIO(data),
        has_header=header,
        new_columns=None if header else list(_SPOT_COLUMNS),
        schema_overrides={"price": pl.String, "quantity": pl.String},
    )
    return raw.select(
        pl.col("transact_time").cast(pl.Int64).cast(pl.Datetime("ms", "UTC")).alias("timestamp"),
        pl.col("price").str.to_decimal(scale=8),
        pl.col("quantity").str.to_decimal(scale=8),
        pl.col("agg_trade_id"),
        pl.col("first_trade_id"),
        pl.col("last_trade_id"),
        pl.col("is_buyer_maker").cast(pl.String).str.to_lowercase() == "true",
    ).cast(TICK_SCHEMA)  # type: ignore[arg-type]


def fixture_ticks(market: Market, symbol: str) -> list[pl.DataFrame]:
    """Every day of one fixture series, one frame a day."""
    return [read_fixture_day(p, market) for p in fixture_zips(market, symbol)]


FIXTURE_SERIES: Final[tuple[tuple[Market, str], ...]] = (
    ("spot", "BTCUSDT"),
    ("spot", "ETHUSDT"),
    ("um", "BTCUSDT"),
    ("um", "ETHUSDT"),
    ("cm", "BTCUSD_PERP"),
    ("cm", "ETHUSD_PERP"),
)


def kernel_days(
    market: Market, symbol: str, dbps: int
) -> list[tuple[pl.DataFrame, pl.DataFrame, dict[str, Any] | None]]:
    """(ticks, closed bars, trailing bar) per day, one processor carried across the days."""
    from rangebar_pipeline.processing import RangeBarProcessor

    processor = RangeBarProcessor(dbps)
    out = []
    for ticks in fixture_ticks(market, symbol):
        bars = processor.process(ticks)
        out.append((ticks, bars, processor.incomplete_bar()))
    return out
