"""Backfill engine: many days of one series at every threshold, each day's ticks decoded once.

The bars of a series are one stream cut into UTC days (SPEC §1): day D continues the processor state
at the end of D-1. :func:`iter_series_days` walks ``[first, last]`` in date order, reads each day's
ticks from Tier 1 once and feeds them to one processor per threshold, so N thresholds cost one
decode and N kernel passes. It yields a :class:`SeriesDay` per day (bars, checkpoints, the bar
carried in and out); :func:`day_writes` turns days into one batched Tier 2 write. The library's
``materialize_days`` and the Dagster bar assets are both built on it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import polars as pl

from rangebar_pipeline.exceptions import DataNotFoundError, RangeBarError
from rangebar_pipeline.options import DEFAULT_OPTIONS, BarOptions
from rangebar_pipeline.processing import RangeBarProcessor
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources.base import source_type
from rangebar_pipeline.storage.bars import BarStore, DayWrite
from rangebar_pipeline.storage.ticks import TickStore

__all__ = [
    "DayFailedError",
    "SeriesDay",
    "ThresholdDay",
    "day_writes",
    "iter_series_days",
    "last_tick_id",
    "stored_series_days",
    "with_spreads",
]


class DayFailedError(RangeBarError):
    """Computing one day of a series failed; the days before it are complete."""

    def __init__(self, series: Series, day: date, cause: BaseException) -> None:
        super().__init__(f"{series} {day}: {type(cause).__name__}: {cause}")
        self.series = series
        self.day = day


@dataclass(frozen=True, slots=True)
class ThresholdDay:
    """One day of one series at one threshold."""

    threshold: int
    bars: pl.DataFrame
    checkpoint: bytes
    #: The state the day started from (None: a fresh processor).
    parent_checkpoint: bytes | None
    #: The unfinished bar the day started with (the previous day's trailing bar), if any.
    carried_in: dict[str, Any] | None
    #: The unfinished bar at the end of the day, if any.
    incomplete: dict[str, Any] | None
    seconds: float


@dataclass(frozen=True, slots=True)
class SeriesDay:
    """One UTC day of a series: its ticks (kept for the day's checks) and every threshold's bars."""

    series: Series
    day: date
    ticks: pl.DataFrame
    read_seconds: float
    thresholds: dict[int, ThresholdDay]

    @property
    def tick_count(self) -> int:
        return self.ticks.height

    @property
    def tick_id_range(self) -> tuple[int | None, int | None]:
        """The first and last ``agg_trade_id`` of the day's ticks (None, None without ticks)."""
        if self.ticks.is_empty():
            return None, None
        ids = self.ticks["agg_trade_id"]
        return int(ids[0]), int(ids[-1])


def with_spreads(
    series: Series, day: date, bars: pl.DataFrame, frame: pl.DataFrame, ticks: TickStore
) -> pl.DataFrame:
    """Exness bars with their spread statistics (other sources: ``bars`` unchanged).

    A bar that began on an earlier day (carried through a quiet weekend, say) takes its spreads from
    the ticks of every day it spans.
    """
    source = source_type(series)
    if not source.spread_schema:
        return bars
    context = frame
    if bars.height and bars["open_time"][0].date() < day:
        earlier = ticks.get_ticks(series, bars["open_time"][0].date(), day - timedelta(days=1))
        assert isinstance(earlier, pl.DataFrame)
        context = pl.concat([earlier, frame], how="vertical_relaxed")
    return source.add_spread_stats(bars, context)


def iter_series_days(
    series: Series,
    thresholds: Sequence[int],
    first: date,
    last: date,
    *,
    ticks: TickStore,
    parents: Mapping[int, bytes | None],
    fetch_if_missing: bool = False,
    options: BarOptions = DEFAULT_OPTIONS,
) -> Iterator[SeriesDay]:
    """Days ``[first, last]`` of ``series`` in date order, every threshold from its parent checkpoint.

    ``parents[thr]`` is the checkpoint at the end of ``first - 1`` (None or absent: a fresh
    processor with ``options``; a parent carries its own options, which must be ``options``).
    Raises :class:`DayFailedError` naming the day whose ticks are missing or whose computation
    failed; every day yielded before it is complete.
    """
    walk = _Walk(series, ticks, fetch_if_missing)
    for threshold in thresholds:
        parent = parents.get(threshold)
        processor = (
            options.processor(threshold) if parent is None else RangeBarProcessor.from_checkpoint(parent)
        )
        if BarOptions.of(processor) != options:
            raise ValueError(
                f"{series} {threshold} dbps: the checkpoint before {first} was made with "
                f"{BarOptions.of(processor)}, not {options}"
            )
        walk.processors[threshold] = processor
        walk.states[threshold] = parent
    day = first
    while day <= last:
        try:
            yield walk.day(day)
        except DayFailedError:
            raise
        except (RangeBarError, OSError, ValueError) as exc:
            raise DayFailedError(series, day, exc) from exc
        day += timedelta(days=1)


@dataclass
class _Walk:
    """The processors of one series (one per threshold) and the state each day started from."""

    series: Series
    ticks: TickStore
    fetch_if_missing: bool
    processors: dict[int, RangeBarProcessor] = field(default_factory=dict)
    states: dict[int, bytes | None] = field(default_factory=dict)

    def day(self, day: date) -> SeriesDay:
        started = time.perf_counter()
        frame = _read_day(self.series, day, self.ticks, self.fetch_if_missing)
        read_seconds = time.perf_counter() - started
        out: dict[int, ThresholdDay] = {}
        for threshold, processor in self.processors.items():
            began = time.perf_counter()
            carried_in = processor.incomplete_bar() if self.states[threshold] is not None else None
            bars = with_spreads(self.series, day, processor.process(frame), frame, self.ticks)
            state: Any = processor.checkpoint()  # _core.Checkpoint
            checkpoint: bytes = state.to_bytes()
            out[threshold] = ThresholdDay(
                threshold=threshold,
                bars=bars,
                checkpoint=checkpoint,
                parent_checkpoint=self.states[threshold],
                carried_in=carried_in,
                incomplete=processor.incomplete_bar(),
                seconds=time.perf_counter() - began,
            )
            self.states[threshold] = checkpoint
        return SeriesDay(self.series, day, frame, read_seconds, out)


def _read_day(series: Series, day: date, ticks: TickStore, fetch_if_missing: bool) -> pl.DataFrame:
    if fetch_if_missing:
        fetched = ticks.get_ticks(series, day, day)
        assert isinstance(fetched, pl.DataFrame)
        return fetched
    if not ticks.has_day(series, day):
        raise DataNotFoundError(
            f"{series} {day}: no ticks in the tick store {ticks.root} and "
            "fetching is off (fetch them: fetch_if_missing=True in the API, or materialize `ticks` for "
            "this partition in Dagster)"
        )
    return ticks.read_day(series, day)


def stored_series_days(
    series: Series,
    thresholds: Sequence[int],
    first: date,
    last: date,
    *,
    store: BarStore,
    ticks: TickStore,
    options: BarOptions = DEFAULT_OPTIONS,
) -> Iterator[SeriesDay]:
    """Days ``[first, last]`` as stored in Tier 2 (bars and checkpoints) with their Tier 1 ticks.

    For steps that need a stored day again (feature tables of bars computed in an earlier run).
    Raises :class:`DayFailedError` naming the first day that is not stored.
    """
    day = first
    while day <= last:
        try:
            yield _stored_day(series, thresholds, day, store, ticks, options=options)
        except DayFailedError:
            raise
        except (RangeBarError, OSError, ValueError) as exc:
            raise DayFailedError(series, day, exc) from exc
        day += timedelta(days=1)


def _stored_day(
    series: Series,
    thresholds: Sequence[int],
    day: date,
    store: BarStore,
    ticks: TickStore,
    *,
    options: BarOptions,
) -> SeriesDay:
    started = time.perf_counter()
    frame = _read_day(series, day, ticks, False)
    read_seconds = time.perf_counter() - started
    out: dict[int, ThresholdDay] = {}
    for threshold in thresholds:
        record = store.coverage(series, threshold, day, day, options=options).get(day)
        checkpoint = store.checkpoint_for(series, threshold, day, options=options)
        if record is None or checkpoint is None:
            raise DataNotFoundError(f"no stored bars of {series} {day} at {threshold} dbps ({options})")
        parent = (
            None
            if record.fresh_start
            else store.checkpoint_for(series, threshold, day - timedelta(days=1), options=options)
        )
        out[threshold] = ThresholdDay(
            threshold=threshold,
            bars=store.read_bars(series, threshold, day, day, options=options),
            checkpoint=checkpoint,
            parent_checkpoint=parent,
            carried_in=None if parent is None else RangeBarProcessor.from_checkpoint(parent).incomplete_bar(),
            incomplete=RangeBarProcessor.from_checkpoint(checkpoint).incomplete_bar(),
            seconds=0.0,
        )
    return SeriesDay(series, day, frame, read_seconds, out)


def last_tick_id(ticks: TickStore, series: Series, day: date) -> int | None:
    """The last ``agg_trade_id`` stored for ``day`` (None when the day is not stored or empty)."""
    return ticks.last_tick_id(series, day)


def day_writes(
    days: Sequence[SeriesDay], thresholds: Sequence[int] | None = None, options: BarOptions = DEFAULT_OPTIONS
) -> list[DayWrite]:
    """The Tier 2 writes of ``days`` (every threshold, or only ``thresholds``), computed with ``options``."""
    return [
        DayWrite(
            item.series,
            result.threshold,
            item.day,
            result.bars,
            result.checkpoint,
            item.tick_count,
            result.parent_checkpoint,
            options,
        )
        for item in days
        for result in item.thresholds.values()
        if thresholds is None or result.threshold in thresholds
    ]
