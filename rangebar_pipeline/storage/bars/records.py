"""Records of the bar store: the key of a stored series, its stored days and what a write carries.

:class:`BarKey` names one (series, threshold, bar options); :class:`Coverage` is the current stored
version of one of its days; :class:`DayWrite` is a day to store; :class:`SeriesStatus` and
:class:`StoreStatus` summarise the store. Every stored day records the bar schema version and the
kernel build (:data:`KERNEL_VERSION`) that produced it; a day produced by other ones is *stale*.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

import polars as pl

from rangebar_pipeline import _core
from rangebar_pipeline.options import DEFAULT_OPTIONS, BarOptions
from rangebar_pipeline.schema import SCHEMA_VERSION
from rangebar_pipeline.series import Series

__all__ = [
    "COVERAGE_COLUMNS",
    "COVERAGE_SCHEMA",
    "KERNEL_VERSION",
    "BarKey",
    "Coverage",
    "DayWrite",
    "SeriesStatus",
    "StoreStatus",
    "check_range",
    "check_threshold",
    "checkpoint_sha256",
    "coverage_row",
    "coverage_table",
    "write_time",
]

#: The kernel build that computes bars in this process (recorded with every stored day). The store
#: reads it from this module at call time (tests patch it here to simulate a kernel upgrade).
KERNEL_VERSION: Final[str] = _core.__version__


def check_threshold(threshold: int) -> int:
    """``threshold`` when it is an integer in 1..=100000 decimal bps, else ``ValueError``."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= 100_000:
        raise ValueError(f"threshold must be an integer in 1..=100000 decimal bps, got {threshold!r}")
    return threshold


def check_range(start: date, end: date) -> None:
    """``ValueError`` when ``start`` is after ``end``."""
    if start > end:
        raise ValueError(f"start day {start} is after end day {end}")


def checkpoint_sha256(checkpoint: bytes | None) -> str:
    """Hex sha256 of a checkpoint blob; ``""`` for None (a fresh processor)."""
    return "" if checkpoint is None else hashlib.sha256(checkpoint).hexdigest()


def write_time(write_id: int) -> datetime:
    """The wall-clock time a write id was taken (ids are nanosecond clock readings)."""
    return datetime.fromtimestamp(write_id // 1000 / 1e6, tz=UTC)


@dataclass(frozen=True, slots=True)
class BarKey:
    """One stored series of bars: (series, threshold in decimal bps, bar options)."""

    series: Series
    threshold: int
    options: BarOptions = DEFAULT_OPTIONS

    def __post_init__(self) -> None:
        check_threshold(self.threshold)

    def __str__(self) -> str:
        suffix = f" [{self.options.key}]" if self.options.key else ""
        return f"{self.series} {self.threshold} dbps{suffix}"


@dataclass(frozen=True, slots=True)
class Coverage:
    """The current stored version of one (series, threshold, day)."""

    series: Series
    threshold: int
    day: date
    write_id: int
    bar_count: int
    tick_count: int
    first_agg_trade_id: int | None
    last_agg_trade_id: int | None
    checkpoint_sha256: str
    parent_checkpoint_sha256: str
    created_at: datetime
    options: BarOptions = DEFAULT_OPTIONS
    #: Bar schema version and kernel version that produced the day (1 and "" before schema 2).
    schema_version: int = SCHEMA_VERSION
    kernel_version: str = KERNEL_VERSION

    @property
    def key(self) -> BarKey:
        return BarKey(self.series, self.threshold, self.options)

    @property
    def fresh_start(self) -> bool:
        """True when the day was computed with a fresh processor (no previous-day checkpoint)."""
        return self.parent_checkpoint_sha256 == ""

    def continues(self, previous_sha: str) -> bool:
        """The chain rule: the day was computed from the state ``previous_sha`` names (the stored
        previous day's checkpoint sha256, ``""`` when the previous day is not stored)."""
        return self.parent_checkpoint_sha256 == previous_sha

    @property
    def stale(self) -> bool:
        """True when an older bar schema or another kernel build produced the day."""
        return self.schema_version != SCHEMA_VERSION or self.kernel_version != KERNEL_VERSION


@dataclass(frozen=True, slots=True)
class DayWrite:
    """One (series, threshold, day) to store: its bars and the checkpoints around them."""

    series: Series
    threshold: int
    day: date
    bars: pl.DataFrame
    checkpoint: bytes
    tick_count: int
    parent_checkpoint: bytes | None = None
    options: BarOptions = DEFAULT_OPTIONS
    #: The bars already validated and shaped as table rows (``BarStore.prepare``); None: at the write.
    rows: pl.DataFrame | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> BarKey:
        return BarKey(self.series, self.threshold, self.options)


@dataclass(frozen=True, slots=True)
class SeriesStatus:
    """Stored days and bars of one (series, threshold, options)."""

    series: Series
    threshold: int
    days: int
    first_day: date
    last_day: date
    bars: int
    ticks: int
    options: BarOptions = DEFAULT_OPTIONS
    #: Days produced by an older bar schema or another kernel build (recomputed on request).
    stale_days: int = 0

    @property
    def key(self) -> BarKey:
        return BarKey(self.series, self.threshold, self.options)


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """What the bar store holds (DSN with credentials redacted)."""

    dsn: str
    series: tuple[SeriesStatus, ...]

    @property
    def total_bars(self) -> int:
        return sum(s.bars for s in self.series)

    @property
    def total_days(self) -> int:
        return sum(s.days for s in self.series)


#: Columns of a ``bar_coverage`` row as :func:`coverage_row` lays them out.
#: The ``bar_coverage`` columns a write sends, with the types it sends them as.
COVERAGE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "source": pl.String(),
    "market": pl.String(),
    "symbol": pl.String(),
    "threshold_decimal_bps": pl.UInt32(),
    "options": pl.String(),
    "day": pl.Date(),
    "write_id": pl.UInt64(),
    "bar_count": pl.UInt64(),
    "tick_count": pl.UInt64(),
    "first_agg_trade_id": pl.Int64(),
    "last_agg_trade_id": pl.Int64(),
    "checkpoint": pl.Binary(),
    "checkpoint_sha256": pl.String(),
    "parent_checkpoint_sha256": pl.String(),
    "created_at": pl.Datetime("ms", "UTC"),
    "is_deleted": pl.UInt8(),
    "schema_version": pl.UInt16(),
    "kernel_version": pl.String(),
}
COVERAGE_COLUMNS: Final = tuple(COVERAGE_SCHEMA)


def coverage_row(
    series: Series,
    threshold: int,
    options: str,
    day: date,
    write_id: int,
    *,
    bar_count: int = 0,
    tick_count: int = 0,
    first_id: int | None = None,
    last_id: int | None = None,
    checkpoint: bytes = b"",
    checkpoint_sha: str = "",
    parent_sha: str = "",
    is_deleted: bool = False,
) -> list[Any]:
    """One ``bar_coverage`` row: a stored day, or with ``is_deleted`` a tombstone."""
    return [
        series.source,
        series.market,
        series.symbol,
        threshold,
        options,
        day,
        write_id,
        bar_count,
        tick_count,
        first_id,
        last_id,
        checkpoint,
        checkpoint_sha,
        parent_sha,
        write_time(write_id),
        int(is_deleted),
        SCHEMA_VERSION,
        KERNEL_VERSION,
    ]


def coverage_table(rows: list[list[Any]]) -> Any:
    """``bar_coverage`` rows (from :func:`coverage_row`) as the Arrow table an insert sends (a plain
    row insert would make the ClickHouse client import pandas: 0.35 s of a short script)."""
    return pl.DataFrame(rows, schema=COVERAGE_SCHEMA, orient="row").to_arrow(
        compat_level=pl.CompatLevel.oldest()
    )
