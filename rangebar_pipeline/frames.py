"""Kernel output (an Arrow record batch) -> polars, Arrow and backtesting.py-ready pandas frames."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import polars as pl

from rangebar_pipeline._lazy import lazy_module
from rangebar_pipeline.schema import BAR_SCHEMA, GROUP_SCHEMAS, OHLCV_COLUMNS, bar_schema

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from rangebar_pipeline import _core
else:  # imported on first use
    pd = lazy_module("pandas")

OutputFormat: TypeAlias = Literal["pandas", "polars", "arrow"]

_TIME_COLUMNS = ("open_time", "close_time")
_OHLCV_SOURCE = ("open", "high", "low", "close", "volume")
#: Lower-case columns added to the pandas output by ``include_microstructure=True``.
MICROSTRUCTURE_COLUMNS: tuple[str, ...] = tuple(
    c for c in BAR_SCHEMA if c not in (*_OHLCV_SOURCE, "close_time")
)


def empty_bars(*, lookback: bool = False, intra: bool = False) -> pl.DataFrame:
    """A bar frame with no rows and the full schema (with the lookback and intra groups when asked)."""
    return pl.DataFrame(schema=bar_schema(lookback=lookback, intra=intra))


def bars_from_batch(batch: _core.BarBatch) -> pl.DataFrame:
    """The kernel's Arrow record batch as a polars frame (no copies: the Arrow PyCapsule
    interface); the group columns' nulls come as Arrow validity bitmaps."""
    return pl.DataFrame(batch)


def bars_to_pandas(bars: pl.DataFrame, *, include_microstructure: bool = False) -> pd.DataFrame:
    """backtesting.py-ready frame: index ``timestamp`` (close time, tz-aware UTC, microseconds),
    ``Open High Low Close Volume`` (float64), on request the lower-case bar/feature columns, and the
    lookback and intra groups whenever the bars carry them (nullable: ``NaN`` / ``<NA>`` where
    undefined)."""
    index = pd.DatetimeIndex(
        bars["close_time"].to_numpy().astype("datetime64[us]"), name="timestamp"
    ).tz_localize("UTC")
    data: dict[str, Any] = {
        upper: bars[lower].to_numpy() for upper, lower in zip(OHLCV_COLUMNS, _OHLCV_SOURCE, strict=True)
    }
    if include_microstructure:
        for name in MICROSTRUCTURE_COLUMNS:
            values = bars[name]
            if name in _TIME_COLUMNS:
                data[name] = pd.DatetimeIndex(values.to_numpy().astype("datetime64[us]")).tz_localize("UTC")
            else:
                data[name] = values.to_numpy()
        for name in bars.columns:  # source-specific extras (e.g. Exness spread statistics)
            if name not in BAR_SCHEMA and name not in GROUP_SCHEMAS:
                data[name] = bars[name].to_numpy()
    for name in GROUP_SCHEMAS:
        if name in bars.columns:
            column = bars[name].to_pandas().set_axis(index)
            data[name] = column.astype("Int64") if bars[name].dtype.is_integer() else column
    return pd.DataFrame(data, index=index)


def convert_bars(
    bars: pl.DataFrame, output: OutputFormat, *, include_microstructure: bool
) -> pd.DataFrame | pl.DataFrame | pa.Table:
    """Return bars in the requested container."""
    if output == "pandas":
        return bars_to_pandas(bars, include_microstructure=include_microstructure)
    if output == "polars":
        return bars
    if output == "arrow":
        return bars.to_arrow()
    raise ValueError(f"unknown output format {output!r}; expected 'pandas', 'polars' or 'arrow'")
