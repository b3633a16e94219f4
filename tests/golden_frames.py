"""Load the golden reference series of ``../shared/data/golden/`` as our polars bar frame."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

from rangebar_pipeline.schema import BAR_SCHEMA

Market = Literal["spot", "um", "cm"]

SHARED_DATA: Final[Path] = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GOLDEN_DIR: Final[Path] = SHARED_DATA / "golden"
_SYMBOLS: Final[dict[Market, tuple[str, str]]] = {
    "spot": ("BTCUSDT", "ETHUSDT"),
    "um": ("BTCUSDT", "ETHUSDT"),
    "cm": ("BTCUSD_PERP", "ETHUSD_PERP"),
}
GOLDEN_THRESHOLDS: Final[tuple[int, ...]] = (5, 10, 25, 50, 100, 250)
#: Every golden series: (market, symbol, threshold in decimal bps); 36 in all.
GOLDEN_SERIES: Final[tuple[tuple[Market, str, int], ...]] = tuple(
    (market, symbol, dbps)
    for market, symbols in _SYMBOLS.items()
    for symbol in symbols
    for dbps in GOLDEN_THRESHOLDS
)


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
