"""One series' days through the kernel: each day's ticks decoded once, one processor per threshold.

The bars of a series are one stream cut into UTC days (SPEC §1): day D continues the processor state
at the end of D-1. :class:`SeriesProcessors` holds one processor per threshold and computes a day for
any subset of them from a single read of the day's ticks, so N thresholds cost one decode and N
kernel passes. :func:`compute_days` and :func:`stored_days` are the plain iterators over a range;
:class:`~rangebar_pipeline.engine.walk.SeriesWalk` drives :class:`SeriesProcessors` with the store.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, timedelta
from types import TracebackType
from typing import Any

import polars as pl

from rangebar_pipeline.calendar import days
from rangebar_pipeline.exceptions import DataNotFoundError, RangeBarError
from rangebar_pipeline.options import DEFAULT_OPTIONS, BarOptions
from rangebar_pipeline.processing import RangeBarProcessor
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources.base import source_type
from rangebar_pipeline.storage.bars import BarStore, DayWrite
from rangebar_pipeline.storage.ticks import TickStore

__all__ = [
    "DayFailedError",
    "ReadAhead",
    "SeriesDay",
    "SeriesProcessors",
    "ThresholdDay",
    "compute_days",
    "stored_days",
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
    """One UTC day of a series: its ticks (kept for the day's checks) and the computed thresholds."""

    series: Series
    day: date
    ticks: pl.DataFrame
    read_seconds: float
    thresholds: dict[int, ThresholdDay]
    #: The day's number of ticks, and its first and last ``agg_trade_id`` (None, None without
    #: ticks): kept when :meth:`released` lets the ticks go.
    tick_count: int
    tick_id_range: tuple[int | None, int | None]

    @classmethod
    def of(
        cls,
        series: Series,
        day: date,
        ticks: pl.DataFrame,
        read_seconds: float,
        thresholds: dict[int, ThresholdDay],
    ) -> SeriesDay:
        """The day with its ticks' count and id range taken from ``ticks``."""
        ids = ticks["agg_trade_id"]
        first_last = (None, None) if ticks.is_empty() else (int(ids[0]), int(ids[-1]))
        return cls(series, day, ticks, read_seconds, thresholds, ticks.height, first_last)

    def released(self) -> SeriesDay:
        """The day without its ticks (an empty frame; counts and id range kept). A batch holds its
        days until they are written, and a day's ticks (~60 MB a million trades) serve only its checks."""
        return replace(self, ticks=self.ticks.clear())

    def writes(self, options: BarOptions) -> list[DayWrite]:
        """The bar-store writes of the day's thresholds, computed with ``options``."""
        return [
            DayWrite(
                self.series,
                r.threshold,
                self.day,
                r.bars,
                r.checkpoint,
                self.tick_count,
                r.parent_checkpoint,
                options,
            )
            for r in self.thresholds.values()
        ]


class SeriesProcessors:
    """One processor per threshold of a series, each continued day after day from its own state."""

    def __init__(
        self,
        series: Series,
        ticks: TickStore,
        *,
        options: BarOptions,
        fetch_if_missing: bool = False,
        refetch_corrupt: bool = True,
    ) -> None:
        self.series = series
        self.ticks = ticks
        self.options = options
        self.fetch_if_missing = fetch_if_missing
        #: A corrupt tick file is fetched again (else refused, naming the file): off for callers that
        #: must not touch the network (``fetch_if_missing=False`` in the library).
        self.refetch_corrupt = refetch_corrupt or fetch_if_missing
        self._processors: dict[int, RangeBarProcessor] = {}
        self._parents: dict[int, bytes | None] = {}

    def start(self, threshold: int, parent: bytes | None) -> None:
        """Continue ``threshold`` from the checkpoint ``parent`` (None: a fresh processor)."""
        processor = (
            self.options.processor(threshold) if parent is None else RangeBarProcessor.from_checkpoint(parent)
        )
        if BarOptions.of(processor) != self.options:
            raise ValueError(
                f"{self.series} {threshold} dbps: a stored checkpoint was made with "
                f"{BarOptions.of(processor)}, not {self.options}"
            )
        self._processors[threshold] = processor
        self._parents[threshold] = parent

    def running(self, threshold: int) -> bool:
        """Whether ``threshold`` has a processor (started, or continued from a computed day)."""
        return threshold in self._processors

    def stop(self, threshold: int) -> None:
        """Forget ``threshold``'s processor (its next day starts from what the caller gives)."""
        self._processors.pop(threshold, None)
        self._parents.pop(threshold, None)

    def read(self, day: date) -> tuple[pl.DataFrame, float]:
        """The day's ticks and the seconds the read took.

        Raises:
            DataNotFoundError: The day is not in the tick cache (and fetching is off, or the source
                has no such day).
        """
        started = time.perf_counter()
        if self.fetch_if_missing:
            frame = self.ticks.get_ticks(self.series, day, day)
            assert isinstance(frame, pl.DataFrame)
        elif not self.ticks.has_day(self.series, day):
            raise DataNotFoundError(
                f"{self.series} {day}: no ticks in the tick cache {self.ticks.root} and fetching is off "
                "(fetch them: fetch_if_missing=True in the API, or materialize `ticks` for this partition "
                "in Dagster)"
            )
        else:
            frame = self.ticks.read_day(self.series, day, refetch_corrupt=self.refetch_corrupt)
        return frame, time.perf_counter() - started

    def compute(
        self, day: date, thresholds: Iterable[int], frame: pl.DataFrame, read_seconds: float
    ) -> SeriesDay:
        """Run the day's ticks through the processors of ``thresholds`` (all started)."""
        out: dict[int, ThresholdDay] = {}
        for threshold in thresholds:
            processor = self._processors[threshold]
            began = time.perf_counter()
            parent = self._parents[threshold]
            carried_in = processor.incomplete_bar() if parent is not None else None
            bars = self._with_spreads(day, processor.process(frame), frame)
            state: Any = processor.checkpoint()  # _core.Checkpoint
            checkpoint: bytes = state.to_bytes()
            out[threshold] = ThresholdDay(
                threshold, bars, checkpoint, parent, carried_in, processor.incomplete_bar(),
                time.perf_counter() - began,
            )  # fmt: skip
            self._parents[threshold] = checkpoint
        return SeriesDay.of(self.series, day, frame, read_seconds, out)

    def _with_spreads(self, day: date, bars: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
        """Exness bars with their spread statistics (other sources: ``bars`` unchanged); a bar that
        began on an earlier day takes its spreads from the ticks of every day it spans."""
        source = source_type(self.series)
        if not source.spread_schema:
            return bars
        context = frame
        if bars.height and (opened := bars["open_time"][0].date()) < day:
            before = days(opened, day - timedelta(days=1))
            if not self.fetch_if_missing and (
                absent := [d for d in before if not self.ticks.has_day(self.series, d)]
            ):
                raise DataNotFoundError(
                    f"{self.series} {day}: the bar open since {opened} needs the ticks of "
                    f"{', '.join(map(str, absent))} for its spreads; they are not in the tick cache "
                    f"{self.ticks.root} and fetching is off"
                )
            earlier = self.ticks.get_ticks(
                self.series, opened, before[-1], fetch_if_missing=self.fetch_if_missing
            )
            assert isinstance(earlier, pl.DataFrame)
            context = pl.concat([earlier, frame], how="vertical_relaxed")
        return source.add_spread_stats(bars, context)


class ReadAhead:
    """Days' ticks read one day ahead on a worker thread while the caller computes the day before.

    ``expected`` lists the days the caller may ask for, in any order; asking for a day starts the
    read of the next expected one. Reading and decoding run outside the GIL, so on a second core a
    day's read overlaps the previous day's kernel passes and checks. Only a prefetch: a day's errors
    are raised to the caller that asks for it, a day read ahead and not asked for is dropped, and at
    most one day is held ahead.
    """

    def __init__(self, read: Callable[[date], tuple[pl.DataFrame, float]], expected: Iterable[date]) -> None:
        self._read = read
        self._expected = sorted(set(expected))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rangebar-read-ahead")
        self._ahead: tuple[date, Future[tuple[pl.DataFrame, float]]] | None = None

    def read(self, day: date) -> tuple[pl.DataFrame, float]:
        """``day``'s ticks and the seconds their read took (as ``SeriesProcessors.read``)."""
        ahead, self._ahead = self._ahead, None
        following = bisect.bisect_right(self._expected, day)
        if following < len(self._expected):
            upcoming = self._expected[following]
            if ahead is not None and ahead[0] == upcoming:  # asked for a day in between: kept
                self._ahead, ahead = ahead, None
            else:
                self._ahead = (upcoming, self._pool.submit(self._read, upcoming))
        if ahead is not None and ahead[0] == day:
            return ahead[1].result()
        if ahead is not None:
            ahead[1].cancel()  # not asked for: dropped (a read in flight ends unused)
        return self._read(day)

    def close(self) -> None:
        """Drop the day read ahead (waiting for a read in flight) and end the worker."""
        if self._ahead is not None:
            self._ahead[1].cancel()
            self._ahead = None
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def compute_days(
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

    ``parents[thr]`` is the checkpoint at the end of ``first - 1`` (None or absent: a fresh processor
    with ``options``). Raises :class:`DayFailedError` naming the day whose ticks are missing or whose
    computation failed; every day yielded before it is complete.
    """
    processors = SeriesProcessors(series, ticks, options=options, fetch_if_missing=fetch_if_missing)
    for threshold in thresholds:
        processors.start(threshold, parents.get(threshold))
    with ReadAhead(processors.read, days(first, last)) as reader:
        for day in days(first, last):
            try:
                frame, seconds = reader.read(day)
                yield processors.compute(day, thresholds, frame, seconds)
            except (RangeBarError, OSError, ValueError) as exc:
                raise DayFailedError(series, day, exc) from exc


def stored_days(
    series: Series,
    thresholds: Sequence[int],
    first: date,
    last: date,
    *,
    store: BarStore,
    ticks: TickStore,
    options: BarOptions = DEFAULT_OPTIONS,
) -> Iterator[SeriesDay]:
    """Days ``[first, last]`` as stored in the bar store (bars and checkpoints) with their ticks.

    For steps that need a stored day again (feature tables of bars computed in an earlier run).
    Raises :class:`DayFailedError` naming the first day that is not stored.
    """
    reader = SeriesProcessors(series, ticks, options=options)
    for day in days(first, last):
        try:
            frame, seconds = reader.read(day)
            out = {t: _stored_threshold(store, series, t, day, options) for t in thresholds}
            yield SeriesDay.of(series, day, frame, seconds, out)
        except (RangeBarError, OSError, ValueError) as exc:
            raise DayFailedError(series, day, exc) from exc


def _stored_threshold(
    store: BarStore, series: Series, threshold: int, day: date, options: BarOptions
) -> ThresholdDay:
    record = store.coverage(series, threshold, day, day, options=options).get(day)
    checkpoint = store.checkpoint_for(series, threshold, day, options=options)
    if record is None or checkpoint is None:
        raise DataNotFoundError(f"no stored bars of {series} {day} at {threshold} dbps ({options})")
    parent = (
        None
        if record.fresh_start
        else store.checkpoint_for(series, threshold, day - timedelta(days=1), options=options)
    )
    return ThresholdDay(
        threshold=threshold,
        bars=store.read_bars(series, threshold, day, day, options=options),
        checkpoint=checkpoint,
        parent_checkpoint=parent,
        carried_in=None if parent is None else RangeBarProcessor.from_checkpoint(parent).incomplete_bar(),
        incomplete=RangeBarProcessor.from_checkpoint(checkpoint).incomplete_bar(),
        seconds=0.0,
    )
