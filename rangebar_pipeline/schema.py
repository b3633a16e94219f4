"""Column names and dtypes shared by the kernel output, the stores and the validation code."""

from __future__ import annotations

from typing import Final

import polars as pl

from rangebar_pipeline.manifest import Dtype, columns_of

#: Fixed-point scale of prices and quantities inside the kernel (8 decimals).
SCALE: Final[int] = 100_000_000
#: Version of the bar record (BAR_SCHEMA and its meaning); part of the pipeline's code versions.
SCHEMA_VERSION: Final[int] = 2
#: Divisor of thresholds: 1 decimal basis point = 1e-5.
BASIS_POINTS_SCALE: Final[int] = 100_000

UTC_US: Final = pl.Datetime("us", "UTC")
PRICE_DECIMAL: Final = pl.Decimal(18, 8)

#: Canonical Tier 1 tick schema (what sources produce and the kernel reads).
TICK_SCHEMA: Final[dict[str, pl.DataType]] = {
    "timestamp": UTC_US,
    "price": PRICE_DECIMAL,
    "quantity": PRICE_DECIMAL,
    "agg_trade_id": pl.Int64(),
    "first_trade_id": pl.Int64(),
    "last_trade_id": pl.Int64(),
    "is_buyer_maker": pl.Boolean(),
}

_DTYPES: Final[dict[Dtype, pl.DataType]] = {
    "int64": pl.Int64(),
    "float64": pl.Float64(),
    "timestamp_us": UTC_US,
}

#: The 10 microstructure features (SPEC §3), in output order (from ``features.toml``).
FEATURE_COLUMNS: Final[tuple[str, ...]] = tuple(c.name for c in columns_of("microstructure"))

#: Bar columns (SPEC §2) of the polars/Arrow output, in order, with their dtypes (from ``features.toml``).
BAR_SCHEMA: Final[dict[str, pl.DataType]] = {
    c.name: _DTYPES[c.dtype] for c in columns_of("core", "microstructure")
}

#: The opt-in lookback group (``lookback_trades=N``), appended after the bar columns; nullable.
LOOKBACK_SCHEMA: Final[dict[str, pl.DataType]] = {c.name: _DTYPES[c.dtype] for c in columns_of("lookback")}

#: The opt-in intra group (``intra_bar=True``), appended after the lookback group; nullable.
INTRA_SCHEMA: Final[dict[str, pl.DataType]] = {c.name: _DTYPES[c.dtype] for c in columns_of("intra")}

#: Every opt-in group's columns (lookback, then intra), in output order.
GROUP_SCHEMAS: Final[dict[str, pl.DataType]] = LOOKBACK_SCHEMA | INTRA_SCHEMA

BAR_COLUMNS: Final[tuple[str, ...]] = tuple(BAR_SCHEMA)


def bar_schema(*, lookback: bool, intra: bool = False) -> dict[str, pl.DataType]:
    """Columns and dtypes of a kernel bar frame: BAR_SCHEMA, then the lookback group and the intra
    group when they are on."""
    schema = dict(BAR_SCHEMA)
    if lookback:
        schema |= LOOKBACK_SCHEMA
    if intra:
        schema |= INTRA_SCHEMA
    return schema


#: Per-bar spread statistics of quote sources (Exness), appended to their bars; nullable in storage.
SPREAD_SCHEMA: Final[dict[str, pl.DataType]] = {
    "spread_min": pl.Float64(),
    "spread_max": pl.Float64(),
    "spread_avg": pl.Float64(),
    "spread_tick_count": pl.Int64(),
}

#: backtesting.py column names of the pandas output.
OHLCV_COLUMNS: Final[tuple[str, ...]] = ("Open", "High", "Low", "Close", "Volume")
