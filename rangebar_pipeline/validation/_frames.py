"""Input normalisation and vectorised helpers shared by the validation checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import polars as pl

from rangebar_pipeline.schema import SCALE
from rangebar_pipeline.validation.results import CheckOutcome, failed_check, passed_check

_PANDAS_RENAMES: Mapping[str, str] = {
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Volume": "volume",
    "timestamp": "close_time",
}
_TIME_COLUMNS = ("open_time", "close_time")
#: How many offending rows a check detail lists.
SHOWN_ROWS = 3


def as_bar_frame(bars: Any) -> pl.DataFrame:
    """Return ``bars`` as our polars bar frame.

    Accepts the polars frame (eager or lazy), a pyarrow table, or the pandas output frame
    (``DatetimeIndex`` ``timestamp`` = close time, ``Open..Volume`` and lower-case columns).
    Time columns become ``Datetime("us", "UTC")``; other columns keep their dtypes.
    """
    if isinstance(bars, pl.LazyFrame):
        frame = bars.collect()
    elif isinstance(bars, pl.DataFrame):
        frame = bars
    elif type(bars).__module__.startswith("pandas"):
        frame = _from_pandas(bars)
    elif hasattr(bars, "__arrow_c_stream__"):
        frame = pl.DataFrame(bars)
    else:
        raise TypeError(
            "expected bars as a polars DataFrame/LazyFrame, a pandas DataFrame or an Arrow table, "
            f"found {type(bars).__name__}"
        )
    casts = [
        pl.col(c).dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        for c in _TIME_COLUMNS
        if c in frame.columns and isinstance(frame.schema[c], pl.Datetime)
    ]
    return frame.with_columns(casts) if casts else frame


def _from_pandas(df: Any) -> pl.DataFrame:
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, found {type(df).__name__}")
    if isinstance(df.index, pd.DatetimeIndex):
        index_name = str(df.index.name or "timestamp")
        df = df.reset_index(names=index_name)
        if index_name != "timestamp" and "close_time" not in df.columns:
            df = df.rename(columns={index_name: "close_time"})
    renames = {k: v for k, v in _PANDAS_RENAMES.items() if k in df.columns and v not in df.columns}
    frame: pl.DataFrame = pl.from_pandas(df.rename(columns=renames))
    if frame.height == 0:  # pandas types the columns of an empty frame as object: make them numbers
        frame = frame.with_columns(pl.col(pl.String, pl.Null).cast(pl.Float64))
    naive = [
        c
        for c in _TIME_COLUMNS
        if c in frame.columns
        and isinstance(dtype := frame.schema[c], pl.Datetime)
        and dtype.time_zone is None
    ]
    return frame.with_columns(pl.col(c).dt.replace_time_zone("UTC") for c in naive) if naive else frame


def to_raw(column: str) -> pl.Expr:
    """A float column as fixed-point int128 (value x 1e8, rounded): exact for 8-decimal values."""
    return (pl.col(column) * SCALE).round().cast(pl.Int128)


def raw_tolerance(raw: pl.Expr) -> pl.Expr:
    """Fixed-point units a float64 round trip may lose: 0 below 2**49 units (5.6 M at 1e-8)."""
    return raw.abs() // (1 << 49)


def missing(frame: pl.DataFrame, columns: Sequence[str]) -> list[str]:
    """Columns of ``columns`` absent from ``frame``."""
    return [c for c in columns if c not in frame.columns]


def float_columns(frame: pl.DataFrame) -> list[str]:
    """Names of the float columns of ``frame``."""
    return [c for c, t in frame.schema.items() if t.is_float()]


def row_label(frame: pl.DataFrame, row: int) -> str:
    """``row 17 (close_time 2024-08-08 00:01:02.123456+00:00)`` or ``row 17``."""
    if "close_time" in frame.columns and 0 <= row < frame.height:
        return f"row {row} (close_time {frame['close_time'][row]})"
    return f"row {row}"


def violation_check(
    frame: pl.DataFrame,
    name: str,
    violated: pl.Expr,
    rule: str,
    show: Sequence[str],
    *,
    blocking: bool = True,
) -> CheckOutcome:
    """Evaluate ``violated`` (a boolean expression, null = not violated) and build the outcome.

    A failure names the rule, the count of offending rows, and the first rows with the values of
    the ``show`` columns.
    """
    hits = (
        frame.with_row_index("__row")
        .filter(violated.fill_null(value=False))
        .select(["__row", *[c for c in show if c in frame.columns]])
    )
    if hits.height == 0:
        return passed_check(name, blocking=blocking)
    rows = [int(r) for r in hits["__row"].head(SHOWN_ROWS)]
    shown = "; ".join(
        row_label(frame, r) + ": " + ", ".join(f"{c}={hits[c][i]!r}" for c in hits.columns[1:])
        for i, r in enumerate(rows)
    )
    return failed_check(
        name,
        f"expected {rule}; {hits.height} of {frame.height} bar(s) violate it, first at {shown}",
        violations=hits.height,
        rows=rows,
        blocking=blocking,
    )


@dataclass(frozen=True, slots=True)
class Violation:
    """A :func:`violation_check` to evaluate later, with others of its frame (:func:`resolve`)."""

    frame: pl.DataFrame
    name: str
    violated: pl.Expr
    rule: str
    show: Sequence[str]
    blocking: bool = True


def resolve(items: Sequence[CheckOutcome | Violation]) -> list[CheckOutcome]:
    """``items`` with each :class:`Violation` evaluated: the violations of one frame are counted in
    one polars pass, and only those with offending rows are evaluated again (:func:`violation_check`)
    for their details. The outcomes are the ones :func:`violation_check` gives, in ``items``' order.
    """
    out: list[CheckOutcome | Violation] = list(items)
    by_frame: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        if isinstance(item, Violation):
            by_frame.setdefault(id(item.frame), []).append(i)
    for positions in by_frame.values():
        group = [cast(Violation, items[i]) for i in positions]
        counts = (
            group[0]
            .frame.select(
                v.violated.fill_null(value=False).sum().alias(f"__{j}") for j, v in enumerate(group)
            )
            .row(0)
        )
        for i, v, count in zip(positions, group, counts, strict=True):
            out[i] = (
                violation_check(v.frame, v.name, v.violated, v.rule, v.show, blocking=v.blocking)
                if count
                else passed_check(v.name, blocking=v.blocking)
            )
    return cast(list[CheckOutcome], out)


__all__ = [
    "SHOWN_ROWS",
    "Violation",
    "as_bar_frame",
    "float_columns",
    "missing",
    "raw_tolerance",
    "resolve",
    "row_label",
    "to_raw",
    "violation_check",
]
