"""Trade input normalisation: any tabular input -> the kernel's fixed-point NumPy columns.

Accepts polars (eager or lazy), pandas, pyarrow tables/batches, any object exporting the Arrow
PyCapsule stream interface, NumPy structured arrays, dicts of columns and lists of trade dicts.
No Python object is created per row: columns are converted with polars/NumPy vector operations and
handed to the kernel as contiguous arrays (zero-copy where the Arrow layout allows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import polars as pl

from rangebar_pipeline import _core
from rangebar_pipeline._lazy import lazy_module
from rangebar_pipeline.exceptions import InvalidTradeError, MissingColumnError, TimestampUnitError
from rangebar_pipeline.schema import SCALE

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
else:  # imported on first use
    pa = lazy_module("pyarrow")

TimestampUnit: TypeAlias = Literal["s", "ms", "us", "ns"]
TradesLike: TypeAlias = Any
"""polars DataFrame/LazyFrame, pandas DataFrame, pyarrow Table/RecordBatch, any object exporting the
Arrow PyCapsule interface (``__arrow_c_stream__``/``__arrow_c_array__``: DuckDB relations, arro3,
...), a NumPy structured array, a mapping of column name -> array, or a sequence of trade mappings."""

I64: TypeAlias = npt.NDArray[np.int64]

#: Accepted column names per canonical column, in order of preference.
COLUMN_ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "timestamp": ("timestamp", "transact_time", "T"),
    "price": ("price", "p"),
    "quantity": ("quantity", "volume", "qty", "q"),
    "agg_trade_id": ("agg_trade_id", "a"),
    "first_trade_id": ("first_trade_id", "f"),
    "last_trade_id": ("last_trade_id", "l"),
    "is_buyer_maker": ("is_buyer_maker", "m"),
}
REQUIRED: Final = ("timestamp", "price", "quantity")

_UNIT_TO_US: Final[Mapping[str, tuple[int, int]]] = {  # (multiply, divide)
    "s": (1_000_000, 1),
    "ms": (1_000, 1),
    "us": (1, 1),
    "ns": (1, 1_000),
}
# Integer timestamps are classified by magnitude: ms from 1e11 (1973) up to 1e14, us up to 1e17,
# ns above. Smaller values (seconds, synthetic clocks) need an explicit unit.
_MS_FLOOR: Final = 10**11
_US_FLOOR: Final = 10**14
_NS_FLOOR: Final = 10**17


@dataclass(frozen=True, slots=True)
class TradeArrays:
    """Kernel-ready columns: microseconds and fixed point (x1e8); optional columns may be None."""

    timestamp_us: I64
    price: I64
    quantity: I64
    agg_trade_id: I64 | None
    first_trade_id: I64 | None
    last_trade_id: I64 | None
    is_buyer_maker: npt.NDArray[np.bool_] | None

    def __len__(self) -> int:
        return len(self.timestamp_us)

    def kernel_args(self) -> tuple[Any, ...]:
        """Positional arguments of ``_core.Processor.process``."""
        return (
            self.timestamp_us,
            self.price,
            self.quantity,
            self.agg_trade_id,
            self.first_trade_id,
            self.last_trade_id,
            self.is_buyer_maker,
        )


def to_polars(trades: TradesLike) -> pl.DataFrame:
    """Any supported trade container -> an eager polars DataFrame (no per-row objects for columnar input)."""
    if isinstance(trades, pl.DataFrame):
        return trades
    if isinstance(trades, pl.LazyFrame):
        names = trades.collect_schema().names()
        wanted = [n for aliases in COLUMN_ALIASES.values() for n in aliases if n in names]
        return trades.select(wanted).collect()
    module = type(trades).__module__.split(".", 1)[0]
    if module == "pandas":
        return _from_pandas(trades)
    if module == "pyarrow":
        frame = pl.from_arrow(trades)
        return frame if isinstance(frame, pl.DataFrame) else frame.to_frame()
    if isinstance(trades, np.ndarray):
        if trades.dtype.names is None:
            raise InvalidTradeError("a NumPy input must be a structured array with named fields")
        return pl.DataFrame(trades)
    if isinstance(trades, Mapping):
        return pl.DataFrame(dict(trades))
    if hasattr(trades, "__arrow_c_stream__") or hasattr(trades, "__arrow_c_array__"):
        return pl.DataFrame(trades)  # the Arrow PyCapsule interface (DuckDB, arro3, ...): no copies
    if isinstance(trades, Sequence) and not isinstance(trades, str | bytes):
        if not trades:
            return pl.DataFrame()
        if not all(isinstance(t, Mapping) for t in trades):
            raise InvalidTradeError("a list input must contain one mapping per trade")
        return pl.DataFrame(list(trades), infer_schema_length=None)
    raise InvalidTradeError(
        f"unsupported trades type {type(trades).__name__}; expected a polars/pandas/pyarrow frame, "
        "an object exporting the Arrow PyCapsule interface, a NumPy structured array, a dict of "
        "columns or a list of trade dicts"
    )


def _from_pandas(frame: pd.DataFrame) -> pl.DataFrame:
    """pandas -> polars; a timestamp held in the index (e.g. a DatetimeIndex) becomes a column."""
    names = [str(c) for c in frame.columns]
    aliases = COLUMN_ALIASES["timestamp"]
    if not any(a in names for a in aliases) and frame.index.name in aliases:
        frame = frame.reset_index()
    return pl.from_pandas(frame)


def resolve_columns(frame: pl.DataFrame) -> dict[str, str]:
    """Map canonical column names to the frame's actual names (aliases), checking required ones."""
    names = set(frame.columns)
    found = {
        canonical: next(a for a in aliases if a in names)
        for canonical, aliases in COLUMN_ALIASES.items()
        if any(a in names for a in aliases)
    }
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        wanted = "; ".join(f"{c} (or {', '.join(COLUMN_ALIASES[c][1:])})" for c in missing)
        raise MissingColumnError(f"missing required columns: {wanted}; found {sorted(names)}")
    return found


def _first_null(series: pl.Series) -> int | None:
    if series.null_count() == 0:
        return None
    return int(series.is_null().arg_max() or 0)


def _check_no_nulls(series: pl.Series, column: str) -> None:
    row = _first_null(series)
    if row is not None:
        raise InvalidTradeError(f"invalid {column} at row {row}: null")


def _contiguous(series: pl.Series) -> I64:
    return np.ascontiguousarray(series.to_numpy(), dtype=np.int64)


def detect_timestamp_unit(values: pl.Series) -> Literal["ms", "us", "ns"]:
    """Classify integer epoch timestamps by magnitude; raise when ambiguous or mixed."""
    lo, hi = values.min(), values.max()
    assert isinstance(lo, int) and isinstance(hi, int)

    def unit_of(v: int) -> Literal["ms", "us", "ns"] | None:
        v = abs(v)
        if v >= _NS_FLOOR:
            return "ns"
        if v >= _US_FLOOR:
            return "us"
        if v >= _MS_FLOOR:
            return "ms"
        return None

    lo_unit, hi_unit = unit_of(lo), unit_of(hi)
    if lo_unit is None or hi_unit is None:
        raise TimestampUnitError(
            f"cannot infer the unit of integer timestamps in [{lo}, {hi}] (values below 1e11 are not "
            "epoch ms/us/ns); pass timestamp_unit='s', 'ms', 'us' or 'ns'"
        )
    if lo_unit != hi_unit:
        raise TimestampUnitError(
            f"timestamps mix units: {lo} looks like {lo_unit} and {hi} like {hi_unit}; "
            "convert them to one unit or pass timestamp_unit"
        )
    return lo_unit


def frame_timestamp_unit(frame: pl.DataFrame, unit: TimestampUnit | None) -> TimestampUnit | None:
    """The unit of a whole frame's integer timestamps, so that its slices share one unit.

    ``unit`` when given; None when the column is not integer (datetimes carry their unit; other
    dtypes and nulls are reported by the slice that holds them).
    """
    if unit is not None or frame.height == 0:
        return unit
    column = frame[resolve_columns(frame)["timestamp"]]
    if not column.dtype.is_integer() or column.null_count() == len(column):
        return None
    return detect_timestamp_unit(column.cast(pl.Int64, strict=True))


def timestamps_us(series: pl.Series, unit: TimestampUnit | None) -> I64:
    """Epoch microseconds (int64) from a datetime or integer column."""
    _check_no_nulls(series, "timestamp")
    dtype = series.dtype
    if isinstance(dtype, pl.Datetime):
        # Naive datetimes are taken as UTC; ns values are truncated to whole microseconds.
        return _contiguous(series.dt.cast_time_unit("us").to_physical())
    if not dtype.is_integer():
        raise InvalidTradeError(
            f"timestamp column has dtype {dtype}; expected integer epoch values or datetimes "
            "(float timestamps are refused: they cannot be exact)"
        )
    ints = series.cast(pl.Int64, strict=True)
    if unit is None:
        unit = detect_timestamp_unit(ints) if len(ints) else "us"
    try:
        mul, div = _UNIT_TO_US[unit]
    except KeyError:
        raise TimestampUnitError(
            f"unknown timestamp_unit {unit!r}; expected 's', 'ms', 'us' or 'ns'"
        ) from None
    values = ints.to_numpy().astype(np.int64, copy=False)
    if mul != 1:
        limit = np.iinfo(np.int64).max // mul
        bad = np.flatnonzero(np.abs(values) > limit)
        if len(bad):
            raise TimestampUnitError(
                f"timestamp at row {bad[0]} ({values[bad[0]]}) overflows when converted from {unit} to us"
            )
        return np.ascontiguousarray(values * mul)
    if div != 1:
        return np.ascontiguousarray(values // div)
    return np.ascontiguousarray(values)


def fixed_point(series: pl.Series, column: str) -> I64:
    """Prices/quantities -> int64 fixed point x1e8, exactly for decimals, integers and strings."""
    _check_no_nulls(series, column)
    dtype = series.dtype
    if isinstance(dtype, pl.Decimal):
        return _decimal_to_fixed(series, column)
    if dtype == pl.String:
        return _decimal_to_fixed(series.cast(pl.Decimal(38, 18), strict=True), column)
    if dtype.is_integer():
        values = series.cast(pl.Int64, strict=True).to_numpy()
        limit = np.iinfo(np.int64).max // SCALE
        bad = np.flatnonzero(np.abs(values) > limit)
        if len(bad):
            raise InvalidTradeError(
                f"invalid {column} at row {bad[0]}: {values[bad[0]]} exceeds the fixed-point range"
            )
        return np.ascontiguousarray(values * SCALE)
    if dtype.is_float():
        floats = np.ascontiguousarray(series.cast(pl.Float64).to_numpy(), dtype=np.float64)
        return np.asarray(_core.to_fixed_point(floats, column), dtype=np.int64)
    raise InvalidTradeError(
        f"{column} column has dtype {dtype}; expected a number, decimal or decimal string"
    )


def _decimal_to_fixed(series: pl.Series, column: str) -> I64:
    """Decimal -> fixed point by reading the Arrow decimal128 words directly (no Int128 temporaries)."""
    dtype = series.dtype
    assert isinstance(dtype, pl.Decimal)
    scale = dtype.scale or 0
    if scale > 8:
        return _rescale_wide(series, scale, column)
    array = series.to_arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)
    words = words[2 * array.offset : 2 * (array.offset + len(array))]
    return np.asarray(_core.decimal128_to_fixed_point(words, scale, column), dtype=np.int64)


def _rescale_wide(series: pl.Series, scale: int, column: str) -> I64:
    """Decimals with more than 8 decimals (e.g. parsed strings): check exactness in 128 bits, rescale."""
    frame = pl.DataFrame({"raw": series.to_physical()})  # unscaled Int128
    step = pl.lit(10 ** (scale - 8), dtype=pl.Int128)
    inexact = frame.select((pl.col("raw") % step != 0).alias("bad"))["bad"]
    if inexact.any():
        row = int(inexact.arg_max() or 0)
        raise InvalidTradeError(f"invalid {column} at row {row}: {series[row]} has more than 8 decimals")
    try:
        return _contiguous(frame.select(pl.col("raw") // step)["raw"].cast(pl.Int64, strict=True))
    except pl.exceptions.InvalidOperationError:
        raise InvalidTradeError(
            f"{column} values exceed the fixed-point range (|value| < 92233720368)"
        ) from None


def integer_ids(series: pl.Series, column: str) -> I64:
    """Trade ids as int64; float or null ids are refused."""
    _check_no_nulls(series, column)
    if not series.dtype.is_integer():
        raise InvalidTradeError(
            f"{column} column has dtype {series.dtype}; ids must be integers (floats are refused)"
        )
    try:
        return _contiguous(series.cast(pl.Int64, strict=True))
    except pl.exceptions.InvalidOperationError:
        raise InvalidTradeError(f"{column} values exceed the int64 range") from None


_TRUE: Final = ("true", "t", "1")
_FALSE: Final = ("false", "f", "0")


def buyer_maker_flags(series: pl.Series) -> npt.NDArray[np.bool_]:
    """``is_buyer_maker`` as bool: booleans, 0/1 integers or 'true'/'false' strings."""
    _check_no_nulls(series, "is_buyer_maker")
    dtype = series.dtype
    if dtype == pl.Boolean:
        flags = series
    elif dtype == pl.String:
        lowered = series.str.strip_chars().str.to_lowercase()
        bad = ~(lowered.is_in(_TRUE) | lowered.is_in(_FALSE))
        if bad.any():
            row = int(bad.arg_max() or 0)
            raise InvalidTradeError(
                f"invalid is_buyer_maker at row {row}: {series[row]!r}; expected true/false"
            )
        flags = lowered.is_in(_TRUE)
    elif dtype.is_integer():
        bad = ~series.is_in([0, 1])
        if bad.any():
            row = int(bad.arg_max() or 0)
            raise InvalidTradeError(f"invalid is_buyer_maker at row {row}: {series[row]}; expected 0 or 1")
        flags = series == 1
    else:
        raise InvalidTradeError(f"is_buyer_maker column has dtype {dtype}; expected booleans")
    return np.ascontiguousarray(flags.to_numpy(), dtype=np.bool_)


def arrow_trades(
    frame: pl.DataFrame, unit: TimestampUnit | None
) -> tuple[dict[str, pl.Series], int, int] | None:
    """The fast path's arguments of ``_core.Processor.process_arrow``: the frame's trade columns
    under their canonical names (polars Series: the kernel reads their Arrow chunks in place, so
    no column is copied or concatenated) and the timestamp unit of integer timestamps as a
    multiplier and divisor. None for an empty frame or an unknown unit (the general path). The
    kernel takes what it can read exactly (Int64 or Datetime timestamps, Float64/Int64/Decimal
    prices and quantities, Int64 ids, a Boolean side, no nulls) and declines the rest, which the
    general path converts and diagnoses. Raises what the general path raises for a missing column
    or a timestamp unit that cannot be inferred."""
    if frame.height == 0:
        return None
    cols = resolve_columns(frame)
    timestamp = frame[cols["timestamp"]]
    if isinstance(timestamp.dtype, pl.Datetime):
        unit = "us"  # the kernel reads the Arrow timestamp's own unit
    elif timestamp.dtype == pl.Int64 and timestamp.null_count() == 0:
        if unit is None:
            unit = detect_timestamp_unit(timestamp)
    else:
        return None
    if unit not in _UNIT_TO_US:
        return None
    mul, div = _UNIT_TO_US[unit]
    return {canonical: frame[actual] for canonical, actual in cols.items()}, mul, div


def normalize_trades(trades: TradesLike, *, timestamp_unit: TimestampUnit | None = None) -> TradeArrays:
    """Convert trades to kernel-ready arrays (aliases resolved, units and fixed point applied)."""
    frame = to_polars(trades)
    if frame.height == 0:
        empty = np.empty(0, dtype=np.int64)
        return TradeArrays(empty, empty, empty, None, None, None, None)
    cols = resolve_columns(frame)

    def optional_ids(name: str) -> I64 | None:
        return integer_ids(frame[cols[name]], name) if name in cols else None

    return TradeArrays(
        timestamp_us=timestamps_us(frame[cols["timestamp"]], timestamp_unit),
        price=fixed_point(frame[cols["price"]], "price"),
        quantity=fixed_point(frame[cols["quantity"]], "quantity"),
        agg_trade_id=optional_ids("agg_trade_id"),
        first_trade_id=optional_ids("first_trade_id"),
        last_trade_id=optional_ids("last_trade_id"),
        is_buyer_maker=buyer_maker_flags(frame[cols["is_buyer_maker"]]) if "is_buyer_maker" in cols else None,
    )
