"""The dataset reader: feature rows of a Delta feature table at a version, with labels across days.

>>> lazy = read_dataset(250, "binance-spot-BTCUSDT", "2024-01-01", "2024-12-31")  # doctest: +SKIP
>>> train = lazy.collect()  # doctest: +SKIP

The rows are the visible feature rows of the series (one row per bar, in bar order) at ``version`` of
the threshold's feature table (default: the current version), with the label columns of ``labels``
(:mod:`rangebar_pipeline.labels`) computed over each series' contiguous bars, including bars after
``end``: a label is null only where its future bars do not exist in that version. The same call with
the same version returns the same rows (Delta time travel), so a dataset is reproducible from the
version recorded with it. pandas: ``.collect().to_pandas()``; pyarrow and DuckDB:
``pyarrow.dataset.dataset(lazy.collect().to_arrow())``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import polars as pl

from rangebar_pipeline.labels import LabelSpec, forward_return_exprs, triple_barrier_exprs
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.datasets import DatasetStore

__all__ = [
    "HIDDEN_COLUMNS",
    "DatasetRecipe",
    "When",
    "feature_table_version",
    "last_bars_recipe",
    "read_dataset",
]

When = date | datetime | str
#: Store columns the reader leaves out (the partition helper).
HIDDEN_COLUMNS: Final = ("month",)
_ORDER: Final = ("series", "day", "bar_index")


def _store(store: DatasetStore | str | Path | None) -> DatasetStore:
    return store if isinstance(store, DatasetStore) else DatasetStore(store)


def feature_table_version(threshold: int, *, store: DatasetStore | str | Path | None = None) -> int:
    """The current version of a threshold's feature table (pin it to read a dataset reproducibly).

    Raises:
        LookupError: No feature table exists for ``threshold``.
    """
    resolved = _store(store)
    version = resolved.features_version(threshold)
    if version is None:
        raise LookupError(f"no feature table at {resolved.features_uri(threshold)}")
    return version


def _series_keys(series: str | Series | Sequence[str | Series] | None) -> list[str] | None:
    if series is None:
        return None
    items = [series] if isinstance(series, str | Series) else list(series)
    return [s.key if isinstance(s, Series) else Series.from_key(s).key for s in items]


def _bound(value: When | None, name: str) -> date | datetime | None:
    """A date (whole days) or a UTC datetime (close-time bound) from what users pass."""
    if value is None or isinstance(value, date):
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
    try:
        return date.fromisoformat(value) if len(value) == 10 else _bound(datetime.fromisoformat(value), name)
    except ValueError:
        raise ValueError(f"{name} must be a date, a datetime or an ISO string, found {value!r}") from None


def _day_of(bound: date | datetime) -> date:
    return bound.date() if isinstance(bound, datetime) else bound


def _within(bound: date | datetime, *, lower: bool) -> pl.Expr:
    if isinstance(bound, datetime):
        column = pl.col("close_time")
        return column >= bound if lower else column <= bound
    return pl.col("day") >= bound if lower else pl.col("day") <= bound


def read_dataset(
    threshold: int,
    series: str | Series | Sequence[str | Series] | None = None,
    start: When | None = None,
    end: When | None = None,
    version: int | None = None,
    *,
    labels: LabelSpec | None = None,
    store: DatasetStore | str | Path | None = None,
) -> pl.LazyFrame:
    """Feature rows with labels from ``threshold``'s feature table at ``version`` (module docstring).

    Args:
        threshold: The feature table (decimal basis points).
        series: Series keys (``"binance-spot-BTCUSDT"``) or :class:`Series`; ``None``: every series.
        start, end: Inclusive bounds: dates (or ``YYYY-MM-DD``) bound the UTC day, datetimes the close time.
        version: The Delta version to read (time travel); ``None``: the current one.
        labels: The label columns; ``None``: :class:`LabelSpec`'s defaults (those of pipeline.yaml's).
        store: The feature store or its root; ``None``: ``RANGEBAR_PIPELINE_DIR`` or the default.

    Returns:
        A LazyFrame ordered by series, day and bar; columns as the table's, then the labels.

    Raises:
        LookupError: No feature table (or not at ``version``).
    """
    spec = labels if labels is not None else LabelSpec()
    resolved = _store(store)
    pinned = version if version is not None else feature_table_version(threshold, store=resolved)
    scan = resolved.scan_features(threshold, pinned)
    keys = _series_keys(series)
    if keys is not None:
        scan = scan.filter(pl.col("series").is_in(keys))
    low, high = _bound(start, "start"), _bound(end, "end")
    if low is not None:  # labels look forward only: rows before start are never needed
        scan = scan.filter(pl.col("day") >= _day_of(low))
    if high is not None:
        last = _last_day_needed(scan, _day_of(high), _reach(spec))
        if last is not None:
            scan = scan.filter(pl.col("day") <= last)
    exprs = forward_return_exprs(spec.horizons, over=["series"])
    if spec.triple_barrier is not None:
        exprs += triple_barrier_exprs(threshold, spec.triple_barrier, over=["series"])
    columns = [c for c in scan.collect_schema().names() if c not in HIDDEN_COLUMNS]
    frame = scan.sort(*_ORDER).with_columns(exprs)
    if low is not None:
        frame = frame.filter(_within(low, lower=True))
    if high is not None:
        frame = frame.filter(_within(high, lower=False))
    return frame.select(*columns, *spec.columns)


def _reach(spec: LabelSpec) -> int:
    """How many bars ahead the labels look."""
    barrier = spec.triple_barrier.horizon_bars if spec.triple_barrier is not None else 0
    return max(*spec.horizons, barrier)


def _last_day_needed(scan: pl.LazyFrame, end: date, reach: int) -> date | None:
    """The last day whose bars a label of a row up to ``end`` can need (``None``: every later day),
    from the row counts of the days after ``end`` (only the series and day columns are read)."""
    after = (
        scan.filter(pl.col("day") > end)
        .group_by("series", "day")
        .len()
        .sort("series", "day")
        .with_columns(pl.col("len").cum_sum().over("series").alias("held"))
        .collect()
    )
    if after.height == 0:
        return end
    enough = after.filter(pl.col("held") >= reach).group_by("series").agg(pl.col("day").min())
    if enough.height < after["series"].n_unique():  # a series runs out before the labels do
        return None
    latest = enough["day"].max()
    return latest if isinstance(latest, date) else None


@dataclass(frozen=True, slots=True)
class DatasetRecipe:
    """How a dataset was read: enough to read it again, row for row (:meth:`read`)."""

    threshold: int
    series: str
    version: int
    labels: LabelSpec
    start: date | None = None
    end: date | None = None
    #: Keep only the last this many rows (``None``: all).
    last_n: int | None = None

    def read(self, store: DatasetStore | str | Path | None = None) -> pl.LazyFrame:
        """The dataset's rows, read from the recorded version of the feature table."""
        frame = read_dataset(
            self.threshold, self.series, self.start, self.end, self.version, labels=self.labels, store=store
        )
        return frame if self.last_n is None else frame.tail(self.last_n)

    def describe(self) -> dict[str, Any]:
        """The recipe as JSON-able values."""
        return {
            "threshold": self.threshold,
            "series": self.series,
            "version": self.version,
            "start": None if self.start is None else self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "last_n": self.last_n,
            "labels": self.labels.describe(),
        }

    def code(self) -> str:
        """A Python snippet that rebuilds the dataset (for metadata and docs)."""
        barrier = self.labels.triple_barrier
        spec = f"LabelSpec(horizons={self.labels.horizons!r}, triple_barrier=" + (
            "None)"
            if barrier is None
            else f"TripleBarrier({barrier.horizon_bars}, {barrier.upper!r}, {barrier.lower!r}))"
        )
        bounds = ", ".join(
            f"{name}={value.isoformat()!r}"
            for name, value in (("start", self.start), ("end", self.end))
            if value
        )
        tail = "" if self.last_n is None else f".tail({self.last_n})"
        return (
            "from rangebar_pipeline import read_dataset\n"
            "from rangebar_pipeline.labels import LabelSpec, TripleBarrier\n\n"
            f"dataset = read_dataset(\n    {self.threshold}, series={self.series!r}, "
            f"{bounds + ', ' if bounds else ''}version={self.version},\n    labels={spec},\n)"
            f"{tail}.collect()\n"
        )


def last_bars_recipe(
    threshold: int,
    series: str | Series,
    n: int,
    *,
    version: int,
    labels: LabelSpec,
    store: DatasetStore | str | Path | None = None,
) -> DatasetRecipe:
    """The recipe of a series' last ``n`` feature rows at ``version``: from the latest day that still
    holds them (rows per day counted at that version) to the series' last day."""
    key = _series_keys(series)
    assert key is not None
    counts = (
        _store(store)
        .scan_features(threshold, version)
        .filter(pl.col("series") == key[0])
        .group_by("day")
        .len()
        .sort("day", descending=True)
        .with_columns(pl.col("len").cum_sum().alias("held"))
        .collect()
    )
    if counts.height == 0:
        return DatasetRecipe(threshold, key[0], version, labels, last_n=n)
    enough = counts.filter(pl.col("held") >= n)
    first = enough["day"][0] if enough.height else counts["day"][-1]
    return DatasetRecipe(threshold, key[0], version, labels, start=first, end=counts["day"][0], last_n=n)
