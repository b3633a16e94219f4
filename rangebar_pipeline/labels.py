"""Labels that cross day boundaries, and cross-validation folds that do not leak them.

Both label functions take the bars of **one series in time order** (columns ``close_time`` and
``close``; a polars ``DataFrame``/``LazyFrame`` or a pandas ``DataFrame``) and return the same kind of
frame with the label columns added. A label is null only where the bars it needs do not exist yet;
once they exist it never changes (a non-null label is final).

- :func:`forward_returns`: ``fwd_return_{k} = ln(close[i+k] / close[i])``.
- :func:`triple_barrier`: with ``t = threshold_decimal_bps / 100 000``, the upper barrier of bar i is
  ``close[i] * (1 + upper * t)`` and the lower ``close[i] * (1 - lower * t)``; the first of bars
  ``i+1 .. i+horizon_bars`` whose close reaches the upper (``>=``) or the lower (``<=``) barrier gives
  ``tb_label`` +1 or -1, none gives 0 (the vertical barrier). ``tb_exit_close_time`` is the close time
  of the bar that ended the label and ``tb_return = ln(exit close / close[i])``.

:class:`PurgedKFold` and :class:`PurgedWalkForward` are scikit-learn splitters (``cv=`` of
``cross_val_score``) that purge from training every sample whose label interval
``[close_time, label end]`` overlaps the test fold's span, and embargo the samples right after it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

import numpy as np
import polars as pl

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BASIS_POINTS",
    "LabelSpec",
    "PurgedKFold",
    "PurgedWalkForward",
    "TripleBarrier",
    "add_labels",
    "forward_return_exprs",
    "forward_returns",
    "label_end",
    "triple_barrier",
    "triple_barrier_exprs",
]

#: A threshold in decimal basis points is this fraction's numerator: t = threshold / 100 000.
BASIS_POINTS: Final = 100_000

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame, "pd.DataFrame")


@dataclass(frozen=True, slots=True)
class TripleBarrier:
    """Triple-barrier parameters: the horizon in bars and the barrier multiples of the threshold."""

    horizon_bars: int = 20
    upper: float = 2.0
    lower: float = 2.0

    def __post_init__(self) -> None:
        if self.horizon_bars < 1:
            raise ValueError(f"horizon_bars must be >= 1, found {self.horizon_bars}")
        for name in ("upper", "lower"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive finite multiple of the threshold, found {value}")


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """Which labels a dataset carries (``labels`` in pipeline.yaml)."""

    horizons: tuple[int, ...] = (1, 5)
    triple_barrier: TripleBarrier | None = field(default_factory=TripleBarrier)

    def __post_init__(self) -> None:
        if any(h < 1 for h in self.horizons) or len(set(self.horizons)) != len(self.horizons):
            raise ValueError(f"horizons must be distinct positive bar counts, found {self.horizons}")

    @property
    def columns(self) -> tuple[str, ...]:
        """The label columns this spec adds, in order."""
        barrier = ("tb_label", "tb_exit_close_time", "tb_return") if self.triple_barrier else ()
        return (*(f"fwd_return_{k}" for k in self.horizons), *barrier)

    def describe(self) -> dict[str, Any]:
        """A JSON-able record of the spec (dataset metadata)."""
        barrier = self.triple_barrier
        return {
            "horizons": list(self.horizons),
            "triple_barrier": None
            if barrier is None
            else {"horizon_bars": barrier.horizon_bars, "upper": barrier.upper, "lower": barrier.lower},
        }


def _over(expr: pl.Expr, over: Sequence[str]) -> pl.Expr:
    return expr.over(over) if over else expr


def forward_return_exprs(horizons: Sequence[int], *, over: Sequence[str] = ()) -> list[pl.Expr]:
    """``fwd_return_{k}`` expressions (rows in time order, within the groups ``over``)."""
    close = pl.col("close")
    return [
        _over((close.shift(-k) / close).log(), over).alias(f"fwd_return_{k}")
        for k in _positive(horizons, "horizons")
    ]


def triple_barrier_exprs(
    threshold_decimal_bps: int, barrier: TripleBarrier, *, over: Sequence[str] = ()
) -> list[pl.Expr]:
    """``tb_label``, ``tb_exit_close_time`` and ``tb_return`` expressions (see the module docstring)."""
    if threshold_decimal_bps <= 0:
        raise ValueError(f"threshold_decimal_bps must be positive, found {threshold_decimal_bps}")
    t = threshold_decimal_bps / BASIS_POINTS
    close, time = pl.col("close"), pl.col("close_time")
    upper = close * (1 + barrier.upper * t)
    lower = close * (1 - barrier.lower * t)
    labels, exits, exit_closes = [], [], []
    for k in range(1, barrier.horizon_bars + 1):
        ahead = _over(close.shift(-k), over)
        hit_up, hit_down = ahead >= upper, ahead <= lower
        labels.append(pl.when(hit_up).then(pl.lit(1, pl.Int8)).when(hit_down).then(pl.lit(-1, pl.Int8)))
        exits.append(pl.when(hit_up | hit_down).then(_over(time.shift(-k), over)))
        exit_closes.append(pl.when(hit_up | hit_down).then(ahead))
    h = barrier.horizon_bars
    vertical = _over(close.shift(-h), over)
    label = pl.coalesce(*labels, pl.when(vertical.is_not_null()).then(pl.lit(0, pl.Int8)))
    exit_time = pl.coalesce(*exits, _over(time.shift(-h), over))
    exit_close = pl.coalesce(*exit_closes, vertical)
    return [
        label.cast(pl.Int8).alias("tb_label"),
        exit_time.alias("tb_exit_close_time"),
        (exit_close / close).log().alias("tb_return"),
    ]


def forward_returns(bars: Frame, horizons: Sequence[int]) -> Frame:
    """``bars`` with ``fwd_return_{k}`` = ln(close[i+k] / close[i]) for each k in ``horizons``.

    Null only where bar i+k does not exist (yet) in ``bars``.
    """
    return _apply(bars, forward_return_exprs(horizons))


def triple_barrier(
    bars: Frame, threshold_decimal_bps: int, *, horizon_bars: int, upper: float, lower: float
) -> Frame:
    """``bars`` with ``tb_label`` (Int8: +1, -1, 0), ``tb_exit_close_time`` and ``tb_return``.

    All three are null where fewer than ``horizon_bars`` bars follow and no barrier was reached yet.
    """
    barrier = TripleBarrier(horizon_bars, upper, lower)
    return _apply(bars, triple_barrier_exprs(threshold_decimal_bps, barrier))


def add_labels(bars: Frame, threshold_decimal_bps: int, spec: LabelSpec) -> Frame:
    """``bars`` with every label column of ``spec`` (:attr:`LabelSpec.columns`)."""
    exprs = forward_return_exprs(spec.horizons)
    if spec.triple_barrier is not None:
        exprs += triple_barrier_exprs(threshold_decimal_bps, spec.triple_barrier)
    return _apply(bars, exprs)


def label_end(horizon: int, *, over: Sequence[str] = ()) -> pl.Expr:
    """The close time of bar i+``horizon`` (the end of ``fwd_return_{horizon}``'s interval)."""
    return _over(pl.col("close_time").shift(-horizon), over).alias(f"label_end_{horizon}")


def _positive(values: Sequence[int], name: str) -> Sequence[int]:
    if any(int(v) < 1 for v in values):
        raise ValueError(f"{name} must be positive bar counts, found {list(values)}")
    return values


def _apply(bars: Frame, exprs: list[pl.Expr]) -> Frame:
    if isinstance(bars, pl.DataFrame | pl.LazyFrame):
        _require(bars.collect_schema().names())
        return bars.with_columns(exprs)
    names = [str(c) for c in bars.columns]
    _require(names)
    added = pl.from_pandas(bars[["close_time", "close"]].reset_index(drop=True)).with_columns(exprs)
    out = bars.copy()
    for column in added.columns[2:]:
        out[column] = added[column].to_pandas().to_numpy()
    return out


def _require(columns: Sequence[str]) -> None:
    missing = [c for c in ("close_time", "close") if c not in columns]
    if missing:
        raise ValueError(
            f"labels need the columns close_time and close; missing {missing} in {list(columns)}"
        )


# --- folds ------------------------------------------------------------------------------------------

Embargo = int | timedelta | np.timedelta64


def _as_int_times(values: Any, name: str) -> tuple[np.ndarray[Any, Any], bool]:
    """Times as int64 (microseconds for datetimes) and whether they were datetimes."""
    if isinstance(values, pl.Series):
        values = values.to_numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, found shape {array.shape}")
    if array.dtype.kind == "M":
        return array.astype("datetime64[us]").astype(np.int64), True
    if array.dtype.kind == "O" and array.size and hasattr(array[0], "tzinfo"):
        return pl.Series(array).dt.epoch("us").to_numpy().astype(np.int64), True
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be datetimes or numbers, found dtype {array.dtype}")
    return array.astype(np.int64), False


class _Purged:
    """Shared state of the purged splitters: label intervals in time order and the embargo."""

    def __init__(self, n_splits: int, embargo: Embargo, times: Any, end_times: Any) -> None:
        if int(n_splits) < 2:
            raise ValueError(f"n_splits must be at least 2, found {n_splits}")
        self.n_splits = int(n_splits)
        self.embargo = embargo
        self.start, dated = _as_int_times(times, "times")
        self.end, end_dated = _as_int_times(end_times, "end_times")
        if len(self.start) != len(self.end) or dated != end_dated:
            raise ValueError(
                f"times and end_times must be alike: {len(self.start)} vs {len(self.end)} values, "
                f"datetimes {dated} vs {end_dated}"
            )
        if np.any(self.end < self.start):
            first = int(np.argmax(self.end < self.start))
            raise ValueError(f"a label ends before it starts (sample {first}): end_times must be >= times")
        self.order = np.argsort(self.start, kind="stable")
        self.embargo_time: int | None = None
        self.embargo_samples = 0
        if isinstance(embargo, timedelta | np.timedelta64):
            if not dated:
                raise ValueError("a time embargo needs datetime times; give an int (samples) instead")
            self.embargo_time = int(np.timedelta64(embargo).astype("timedelta64[us]").astype(np.int64))
        elif isinstance(embargo, int | np.integer) and not isinstance(embargo, bool) and embargo >= 0:
            self.embargo_samples = int(embargo)
        else:
            raise ValueError(f"embargo must be samples (int >= 0) or a timedelta, found {embargo!r}")
        if self.embargo_time is not None and self.embargo_time < 0:
            raise ValueError(f"embargo must not be negative, found {embargo!r}")

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:  # noqa: N803
        """The number of folds (scikit-learn's protocol)."""
        return self.n_splits

    def _check(self, X: Any) -> None:  # noqa: N803
        if X is not None and len(X) != len(self.start):
            raise ValueError(f"X has {len(X)} samples but the splitter has {len(self.start)} label intervals")

    def _blocks(self, count: int) -> list[np.ndarray[Any, Any]]:
        """``count`` contiguous blocks of positions in time order."""
        if count > len(self.order):
            raise ValueError(f"cannot make {count} folds of {len(self.order)} samples")
        return list(np.array_split(np.arange(len(self.order)), count))

    def _forbidden(self, test: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Mask over samples that may not train with ``test`` (positions in time order): every label
        interval intersecting [test start, test end + embargo]."""
        ordered_start, ordered_end = self.start[self.order], self.end[self.order]
        span_start = int(ordered_start[test].min())
        span_end = int(ordered_end[test].max())
        if self.embargo_time is not None:
            span_end = span_end + self.embargo_time
        elif self.embargo_samples:
            last = min(int(test.max()) + self.embargo_samples, len(self.order) - 1)
            span_end = max(span_end, int(ordered_start[last]))
        forbidden: np.ndarray[Any, Any] = (ordered_start <= span_end) & (ordered_end >= span_start)
        return forbidden


class PurgedKFold(_Purged):
    """K contiguous test folds in time order; training purged of overlapping labels and embargoed.

    Args:
        n_splits: Number of folds (>= 2); every sample is in exactly one test fold.
        embargo: Samples (``int``) or a duration (``timedelta``, datetime times only) after each test
            fold's span whose samples are kept out of training.
        times: Each sample's label start (the bar's ``close_time``: when its features are known).
        end_times: Each sample's label end (``tb_exit_close_time``, or the forward horizon's end).

    Training for a test fold excludes every sample whose interval ``[times, end_times]`` intersects
    ``[first test start, last test end + embargo]``.
    """

    def __init__(self, n_splits: int = 5, embargo: Embargo = 0, *, times: Any, end_times: Any) -> None:
        super().__init__(n_splits, embargo, times, end_times)

    def __repr__(self) -> str:
        return f"PurgedKFold(n_splits={self.n_splits}, embargo={self.embargo!r}, samples={len(self.start)})"

    def split(
        self,
        X: Any = None,  # noqa: N803
        y: Any = None,
        groups: Any = None,
    ) -> Iterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        """Yield ``(train, test)`` index arrays (into the samples as given), folds in time order."""
        self._check(X)
        for test in self._blocks(self.n_splits):
            train = ~self._forbidden(test)
            yield np.sort(self.order[train]), np.sort(self.order[test])


class PurgedWalkForward(_Purged):
    """Walk-forward folds: the samples are cut into ``n_splits + 1`` blocks in time order; fold k tests
    block k+1 and trains on earlier samples only, purged of labels reaching into the test span (and
    of the ``embargo`` before it is irrelevant: training is strictly before the test).

    Args:
        n_splits: Number of test folds (>= 2).
        embargo: As :class:`PurgedKFold`.
        times, end_times: As :class:`PurgedKFold`.
        max_train_size: Keep at most this many of the latest training samples (a rolling window).
    """

    def __init__(
        self,
        n_splits: int = 5,
        embargo: Embargo = 0,
        *,
        times: Any,
        end_times: Any,
        max_train_size: int | None = None,
    ) -> None:
        super().__init__(n_splits, embargo, times, end_times)
        self.max_train_size = max_train_size

    def __repr__(self) -> str:
        return (
            f"PurgedWalkForward(n_splits={self.n_splits}, embargo={self.embargo!r}, "
            f"samples={len(self.start)}, max_train_size={self.max_train_size})"
        )

    def split(
        self,
        X: Any = None,  # noqa: N803
        y: Any = None,
        groups: Any = None,
    ) -> Iterator[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
        """Yield ``(train, test)`` index arrays; every training label ends before its test span starts."""
        self._check(X)
        blocks = self._blocks(self.n_splits + 1)
        for test in blocks[1:]:
            allowed = ~self._forbidden(test)
            allowed[int(test.min()) :] = False
            train = np.flatnonzero(allowed)
            if self.max_train_size is not None:
                train = train[-self.max_train_size :]
            yield np.sort(self.order[train]), np.sort(self.order[test])
