"""The shared test data (``../shared/data`` beside the repository): paths, fixture ticks, golden bars."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

from rangebar_pipeline.schema import BAR_SCHEMA, TICK_SCHEMA

Market = Literal["spot", "um", "cm"]

SHARED_DATA: Final = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BINANCE_ROOT: Final = SHARED_DATA / "binance_vision"
GOLDEN_DIR: Final = SHARED_DATA / "golden"
REAL_BNB: Final = SHARED_DATA / "real" / "BNBUSDT-aggTrades-2023-06-01-slice.parquet"

MARKET_PATHS: Final[dict[Market, str]] = {"spot": "spot", "um": "futures/um", "cm": "futures/cm"}
FIXTURE_SYMBOLS: Final[dict[Market, tuple[str, str]]] = {
    "spot": ("BTCUSDT", "ETHUSDT"),
    "um": ("BTCUSDT", "ETHUSDT"),
    "cm": ("BTCUSD_PERP", "ETHUSD_PERP"),
}
#: Every fixture series: (market, symbol).
FIXTURE_SERIES: Final[tuple[tuple[Market, str], ...]] = tuple(
    (market, symbol) for market, symbols in FIXTURE_SYMBOLS.items() for symbol in symbols
)
GOLDEN_THRESHOLDS: Final[tuple[int, ...]] = (5, 10, 25, 50, 100, 250)
#: Every golden series: (market, symbol, threshold in decimal bps); 36 in all.
GOLDEN_SERIES: Final[tuple[tuple[Market, str, int], ...]] = tuple(
    (market, symbol, dbps) for market, symbol in FIXTURE_SERIES for dbps in GOLDEN_THRESHOLDS
)
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


def fixture_zip(market: Market, symbol: str, day: str) -> Path:
    """Path of a Binance Vision daily aggTrades zip in the shared fixtures."""
    folder = BINANCE_ROOT / "data" / MARKET_PATHS[market] / "daily" / "aggTrades" / symbol
    return folder / f"{symbol}-aggTrades-{day}.zip"


def fixture_zips(market: Market, symbol: str) -> list[Path]:
    """The daily aggTrades zips of one fixture series, in date order (um BTCUSDT has one day only)."""
    return sorted(fixture_zip(market, symbol, "x").parent.glob(f"{symbol}-aggTrades-*.zip"))


def read_fixture_day(path: Path, market: Market) -> pl.DataFrame:
    """One Binance Vision zip as ticks in ``TICK_SCHEMA`` (decimals parsed exactly from the CSV text).

    Deliberately independent of ``rangebar_pipeline.sources`` so that it can serve as their oracle.
    """
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


def read_fixture_trades(market: Market, symbol: str) -> pl.DataFrame:
    """All fixture days of a series as one stream."""
    return pl.concat(fixture_ticks(market, symbol))


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


def golden_path(market: Market, symbol: str, dbps: int) -> Path:
    """Path of one golden parquet file."""
    return GOLDEN_DIR / f"{market}_{symbol}_{dbps}.parquet"


def load_golden(market: Market, symbol: str, dbps: int) -> pl.DataFrame:
    """One golden series as our bar frame: the BAR_SCHEMA columns it has, in BAR_SCHEMA order.

    The golden files carry ``open_time_us``/``close_time_us`` (int64 us) and no ids, turnover or
    buy/sell counts; those columns are simply absent from the result.
    """
    raw = pl.read_parquet(golden_path(market, symbol, dbps))
    frame = raw.with_columns(
        pl.col("open_time_us").cast(pl.Datetime("us", "UTC")).alias("open_time"),
        pl.col("close_time_us").cast(pl.Datetime("us", "UTC")).alias("close_time"),
    )
    return frame.select(pl.col(c).cast(t) for c, t in BAR_SCHEMA.items() if c in frame.columns)


def load_golden_incomplete(market: Market, symbol: str, dbps: int) -> dict[str, Any] | None:
    """The golden trailing (incomplete) bar as the reference's dict, or None if absent."""
    path = GOLDEN_DIR / f"{market}_{symbol}_{dbps}_incomplete.json"
    if not path.exists():
        return None
    loaded: dict[str, Any] | None = json.loads(path.read_text())
    return loaded


def round_tripped(processor: Any, via: str) -> Any:
    """``processor`` after a round trip through its checkpoint as ``via``: bytes, json, dict or pickle."""
    from rangebar_pipeline import RangeBarProcessor

    if via == "bytes":
        return RangeBarProcessor.from_checkpoint(processor.checkpoint().to_bytes())
    if via == "json":
        return RangeBarProcessor.from_checkpoint(processor.checkpoint().to_json())
    if via == "dict":
        return RangeBarProcessor.from_checkpoint(json.loads(json.dumps(processor.create_checkpoint())))
    if via == "pickle":
        return pickle.loads(pickle.dumps(processor))
    return processor
