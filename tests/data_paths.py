"""Locations of the shared test data (``../shared/data`` beside the repository) and fixture readers."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Final

import polars as pl

from rangebar_pipeline.schema import PRICE_DECIMAL

SHARED_DATA: Final = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BINANCE_ROOT: Final = SHARED_DATA / "binance_vision"
GOLDEN_DIR: Final = SHARED_DATA / "golden"
REAL_BNB: Final = SHARED_DATA / "real" / "BNBUSDT-aggTrades-2023-06-01-slice.parquet"

MARKET_PATHS: Final = {"spot": "spot", "um": "futures/um", "cm": "futures/cm"}
GOLDEN_SYMBOLS: Final = {
    "spot": ("BTCUSDT", "ETHUSDT"),
    "um": ("BTCUSDT", "ETHUSDT"),
    "cm": ("BTCUSD_PERP", "ETHUSD_PERP"),
}
GOLDEN_THRESHOLDS: Final = (5, 10, 25, 50, 100, 250)
FIXTURE_DAYS: Final = ("2024-08-08", "2024-08-09")
_COLUMNS: Final = [
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "timestamp",
    "is_buyer_maker",
]


def fixture_zip(market: str, symbol: str, day: str) -> Path:
    """Path of a Binance Vision daily aggTrades zip in the shared fixtures."""
    return (
        BINANCE_ROOT
        / "data"
        / MARKET_PATHS[market]
        / "daily"
        / "aggTrades"
        / symbol
        / f"{symbol}-aggTrades-{day}.zip"
    )


def read_fixture_trades(market: str, symbol: str) -> pl.DataFrame:
    """All fixture days of a series as one frame (exact decimals, ms timestamps, all id columns)."""
    frames = []
    for day in FIXTURE_DAYS:
        path = fixture_zip(market, symbol, day)
        if not path.exists():  # um BTCUSDT has only the first day
            continue
        with zipfile.ZipFile(path) as archive:
            data = archive.read(archive.namelist()[0])
        has_header = data[:12] == b"agg_trade_id"
        frame = pl.read_csv(
            io.BytesIO(data),
            has_header=has_header,
            new_columns=None if has_header else [*_COLUMNS, "is_best_match"],
            schema_overrides={"price": PRICE_DECIMAL, "quantity": PRICE_DECIMAL},
        ).rename({"transact_time": "timestamp"}, strict=False)
        frames.append(frame.select(_COLUMNS))
    return pl.concat(frames)


def golden_cases() -> list[tuple[str, str, int]]:
    """(market, symbol, threshold) of every golden series."""
    return [(m, s, t) for m, symbols in GOLDEN_SYMBOLS.items() for s in symbols for t in GOLDEN_THRESHOLDS]
