"""Column names and dtypes shared by the kernel output, the stores and the validation code."""

from __future__ import annotations

from typing import Final

import polars as pl

#: Fixed-point scale of prices and quantities inside the kernel (8 decimals).
SCALE: Final[int] = 100_000_000
#: Version of the bar record (BAR_SCHEMA and its meaning); part of the pipeline's code versions.
SCHEMA_VERSION: Final[int] = 1
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

#: The 10 microstructure features (SPEC §3), in output order.
FEATURE_COLUMNS: Final[tuple[str, ...]] = (
    "duration_us",
    "ofi",
    "vwap_close_deviation",
    "price_impact",
    "kyle_lambda_proxy",
    "trade_intensity",
    "volume_per_trade",
    "aggression_ratio",
    "aggregation_efficiency",
    "turnover_imbalance",
)

#: Bar columns (SPEC §2) of the polars/Arrow output, in order, with their dtypes.
BAR_SCHEMA: Final[dict[str, pl.DataType]] = {
    "open_time": UTC_US,
    "close_time": UTC_US,
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "vwap": pl.Float64(),
    "buy_volume": pl.Float64(),
    "sell_volume": pl.Float64(),
    "turnover": pl.Float64(),
    "buy_turnover": pl.Float64(),
    "sell_turnover": pl.Float64(),
    "individual_trade_count": pl.Int64(),
    "agg_record_count": pl.Int64(),
    "buy_trade_count": pl.Int64(),
    "sell_trade_count": pl.Int64(),
    "first_agg_trade_id": pl.Int64(),
    "last_agg_trade_id": pl.Int64(),
    "first_trade_id": pl.Int64(),
    "last_trade_id": pl.Int64(),
    "duration_us": pl.Int64(),
    "ofi": pl.Float64(),
    "vwap_close_deviation": pl.Float64(),
    "price_impact": pl.Float64(),
    "kyle_lambda_proxy": pl.Float64(),
    "trade_intensity": pl.Float64(),
    "volume_per_trade": pl.Float64(),
    "aggression_ratio": pl.Float64(),
    "aggregation_efficiency": pl.Float64(),
    "turnover_imbalance": pl.Float64(),
}

BAR_COLUMNS: Final[tuple[str, ...]] = tuple(BAR_SCHEMA)

#: Per-bar spread statistics of quote sources (Exness), appended to their bars; nullable in storage.
SPREAD_SCHEMA: Final[dict[str, pl.DataType]] = {
    "spread_min": pl.Float64(),
    "spread_max": pl.Float64(),
    "spread_avg": pl.Float64(),
    "spread_tick_count": pl.Int64(),
}

#: backtesting.py column names of the pandas output.
OHLCV_COLUMNS: Final[tuple[str, ...]] = ("Open", "High", "Low", "Close", "Volume")
