"""The one day engine: walk a series over a date range for one or many thresholds, with the store.

For each day and threshold, :class:`SeriesWalk` decides between the stored day and a computation:

- the **chain rule**: a stored day is served as stored only when it continues the state the walk
  holds for the previous day (:meth:`Coverage.continues`); otherwise it is recomputed, from the
  previous day's checkpoint (in memory when the walk computed that day, else the stored one) or from a
  fresh processor when the previous day is not stored;
- **stale days** (an older bar schema or kernel) are recomputed when their ticks are in the tick
  cache, else served as stored and listed in :attr:`SeriesWalk.stale_served`;
- ``recompute`` computes every day; ``skip_missing`` turns a day without ticks into a gap (the next
  day starts fresh) instead of an error.

Each day's ticks are read once for every threshold computed that day. Days are produced in a
background thread (reading, kernel, and the caller's ``annotate``, e.g. the day's checks), batched
and written in a second one, while the caller handles the previous batch. Computed days are written
to the bar store in batches of at most :data:`BATCH_DAYS` days or :data:`BATCH_BARS` bars (one insert
each, no per-day mutation), and each batch is yielded once written. When a day fails, the days before
it are written and yielded first, then :class:`~rangebar_pipeline.engine.days.DayFailedError`
propagates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final, Generic, TypeVar

import polars as pl

from rangebar_pipeline.calendar import days
from rangebar_pipeline.engine.days import DayFailedError, ReadAhead, SeriesDay, SeriesProcessors
from rangebar_pipeline.exceptions import DataNotFoundError, RangeBarError
from rangebar_pipeline.options import DEFAULT_OPTIONS, BarOptions
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore, Coverage, DayWrite, checkpoint_sha256
from rangebar_pipeline.storage.ticks import TickStore
from rangebar_pipeline.streaming import prefetch

__all__ = ["BATCH_BARS", "BATCH_DAYS", "Batch", "SeriesWalk", "WalkedDay", "batched"]

#: A batch (one bar-store insert; one great-expectations validation in the pipeline) closes after
#: this many days ...
BATCH_DAYS: Final = 32
#: ... or once it holds this many bars over all thresholds (bounds the memory of long backfills).
BATCH_BARS: Final = 250_000

A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class WalkedDay(Generic[A]):
    """One day of the walk: the thresholds computed (with the day's ticks), those served as stored,
    or a gap (``missing``: the source has no ticks for the day)."""

    series: Series
    day: date
    computed: SeriesDay | None
    cached: dict[int, Coverage]
    missing: bool = False
    #: What the walk's ``annotate`` made of the computed day (None for days without computation).
    note: A | None = None

    @property
    def bar_count(self) -> int:
        """Bars of the day over every threshold, computed or stored."""
        computed = sum(r.bars.height for r in self.computed.thresholds.values()) if self.computed else 0
        return computed + sum(c.bar_count for c in self.cached.values())


@dataclass(frozen=True, slots=True)
class Batch(Generic[A]):
    """Consecutive days written to the bar store together (``write_seconds`` for the whole batch)."""

    days: list[WalkedDay[A]]
    write_seconds: float


@dataclass
class _Chain:
    """What the walk holds for one threshold: the state at the end of the last day it passed."""

    sha: str
    day: date


@dataclass
class SeriesWalk:
    """Walk ``series`` over days for ``thresholds`` (see the module docstring).

    ``store`` None computes every day and writes nothing (the bars stay in the yielded days).
    The outcome accumulates in :attr:`computed`, :attr:`cached`, :attr:`missing`,
    :attr:`stale_served` and :attr:`tick_count`.
    """

    series: Series
    thresholds: Sequence[int]
    ticks: TickStore
    store: BarStore | None
    options: BarOptions = DEFAULT_OPTIONS
    fetch_if_missing: bool = False
    recompute: bool = False
    skip_missing: bool = False
    #: Fetch a corrupt tick file again (else refuse it, naming the file); implied by fetch_if_missing.
    refetch_corrupt: bool = True
    computed: list[date] = field(default_factory=list)
    cached: list[date] = field(default_factory=list)
    missing: list[date] = field(default_factory=list)
    stale_served: list[date] = field(default_factory=list)
    tick_count: int = 0
    _chains: dict[int, _Chain] = field(default_factory=dict)
    _last: dict[int, bytes | None] = field(default_factory=dict)

    def batches(
        self,
        first: date,
        last: date,
        *,
        annotate: Callable[[SeriesDay], A] | None = None,
        on_day: Callable[[WalkedDay[A]], None] | None = None,
        before_write: Callable[[Sequence[WalkedDay[A]]], None] | None = None,
    ) -> Iterator[Batch[A]]:
        """Walk ``[first, last]``; yield the written batches (see the module docstring).

        Three stages overlap: a worker reads and computes the days (and runs ``annotate`` on each
        computed day), a second worker batches and writes them (and calls ``on_day`` as each day
        arrives, in day order, before its batch is written: progress reporting; and
        ``before_write`` with each batch's days just before writing them), and the caller handles
        the written batches.
        """
        if first > last:
            raise ValueError(f"start day {first} is after end day {last}")
        processors = SeriesProcessors(
            self.series, self.ticks, options=self.options, fetch_if_missing=self.fetch_if_missing,
            refetch_corrupt=self.refetch_corrupt,
        )  # fmt: skip
        stored = self._coverage(first, last)
        before = first - timedelta(days=1)
        self._chains = {
            t: _Chain(c.checkpoint_sha256 if (c := stored[t].get(before)) else "", before)
            for t in self.thresholds
        }
        self._prefetch_ticks(first, last, stored)
        days = prefetch(self._days(first, last, stored, processors, annotate), depth=2)
        # a second worker writes each batch while the caller handles the one before
        written = batched(days, self.store, self.options, on_day=on_day, before_write=before_write)
        yield from prefetch(written, depth=1)

    def last_checkpoint(self, threshold: int) -> bytes | None:
        """The checkpoint at the end of the walk's last day (None: the walk ended on a gap)."""
        if threshold in self._last:
            return self._last[threshold]
        chain = self._chains[threshold]
        if not chain.sha or self.store is None:
            return None
        return self.store.checkpoint_for(self.series, threshold, chain.day, options=self.options)

    # --- the day loop (runs in the prefetch thread) -------------------------------------------------

    def _coverage(self, first: date, last: date) -> dict[int, dict[date, Coverage]]:
        if self.store is None:
            return {t: {} for t in self.thresholds}
        before = first - timedelta(days=1)
        return {
            t: self.store.coverage(self.series, t, before, last, options=self.options)
            for t in self.thresholds
        }

    def _may_compute(self, day: date, stored: dict[int, dict[date, Coverage]]) -> bool:
        """Whether ``day`` may be computed (not every threshold of it is stored)."""
        return self.recompute or self.store is None or any(day not in stored[t] for t in self.thresholds)

    def _prefetch_ticks(self, first: date, last: date, stored: dict[int, dict[date, Coverage]]) -> None:
        """Download the missing days that may be computed concurrently, up front."""
        if not self.fetch_if_missing:
            return
        todo = [d for d in days(first, last) if self._may_compute(d, stored)]
        if len(todo) > 1:
            absent = [d for d in todo if not self.ticks.has_day(self.series, d)]
            outcome = self.ticks.fetch_days(self.series, absent)
            if others := [e for e in outcome.failed.values() if not isinstance(e, DataNotFoundError)]:
                raise others[0]
            if not self.skip_missing:
                outcome.raise_for_failures()

    def _days(
        self,
        first: date,
        last: date,
        stored: dict[int, dict[date, Coverage]],
        processors: SeriesProcessors,
        annotate: Callable[[SeriesDay], A] | None,
    ) -> Iterator[WalkedDay[A]]:
        expected = [d for d in days(first, last) if self._may_compute(d, stored)]
        with ReadAhead(processors.read, expected) as reader:
            for day in days(first, last):
                try:
                    yield self._day(day, stored, processors, reader, annotate)
                except DayFailedError:
                    raise
                except (RangeBarError, OSError, ValueError) as exc:
                    raise DayFailedError(self.series, day, exc) from exc

    def _day(
        self,
        day: date,
        stored: dict[int, dict[date, Coverage]],
        processors: SeriesProcessors,
        reader: ReadAhead,
        annotate: Callable[[SeriesDay], A] | None,
    ) -> WalkedDay[A]:
        cached: dict[int, Coverage] = {}
        todo: list[int] = []
        for threshold in self.thresholds:
            record = stored[threshold].get(day)
            if record is not None and self._serves(record, self._chains[threshold].sha):
                cached[threshold] = record
            else:
                todo.append(threshold)
        for threshold, record in cached.items():
            processors.stop(threshold)  # a later computed day restores the stored checkpoint
            self._chains[threshold] = _Chain(record.checkpoint_sha256, day)
            self._last.pop(threshold, None)
        if any(r.stale for r in cached.values()):
            self.stale_served.append(day)
        if not todo:
            self.cached.append(day)
            return WalkedDay(self.series, day, None, cached)
        try:
            frame, seconds = reader.read(day)
        except DataNotFoundError:
            if not self.skip_missing:
                raise
            self.missing.append(day)  # a gap: the thresholds computed here start fresh after it
            for threshold in todo:
                processors.stop(threshold)
                self._chains[threshold] = _Chain("", day)
                self._last[threshold] = None
            return WalkedDay(self.series, day, None, cached, missing=True)
        for threshold in todo:
            if not processors.running(threshold):
                processors.start(threshold, self._parent(threshold))
        computed = processors.compute(day, todo, frame, seconds)
        self.tick_count += computed.tick_count
        self.computed.append(day)
        for threshold, result in computed.thresholds.items():
            self._chains[threshold] = _Chain(checkpoint_sha256(result.checkpoint), day)
            self._last[threshold] = result.checkpoint
        note = annotate(computed) if annotate is not None else None
        # the ticks served the day's checks (annotate): the batch holds the day without them
        return WalkedDay(self.series, day, computed.released(), cached, note=note)

    def _serves(self, record: Coverage, previous_sha: str) -> bool:
        """Whether a stored day is served as stored (not recomputed)."""
        if self.recompute or not record.continues(previous_sha):
            return False
        return not (record.stale and self.ticks.has_day(self.series, record.day))

    def _parent(self, threshold: int) -> bytes | None:
        """The checkpoint a (not running) threshold starts from: the stored previous day's, if any."""
        chain = self._chains[threshold]
        if not chain.sha:
            return None
        assert self.store is not None
        return self.store.checkpoint_for(self.series, threshold, chain.day, options=self.options)


def batched(
    days: Iterable[WalkedDay[A]],
    store: BarStore | None,
    options: BarOptions,
    *,
    on_day: Callable[[WalkedDay[A]], None] | None = None,
    before_write: Callable[[Sequence[WalkedDay[A]]], None] | None = None,
) -> Iterator[Batch[A]]:
    """Group ``days`` into batches of at most :data:`BATCH_DAYS` days or :data:`BATCH_BARS` bars,
    write each batch's computed days to ``store`` (when given), and yield it; when the days fail,
    the batch in progress is written and yielded before the error propagates. ``before_write`` gets
    each batch's days before they are written (work on them that may overlap the write). A day's
    bars are validated and shaped as table rows as it arrives (``BarStore.prepare``), while the next
    day is computed, so that the batch's write only stamps and inserts them."""
    pending: list[WalkedDay[A]] = []
    writes: list[DayWrite] = []
    held = 0

    def flush() -> Batch[A]:
        if before_write is not None:
            before_write(pending)
        started = time.perf_counter()
        if store is not None and writes:
            store.write_days(writes)
        return Batch(list(pending), time.perf_counter() - started)

    try:
        for day in days:
            pending.append(day)
            if on_day is not None:
                on_day(day)
            if day.computed is not None:
                held += sum(r.bars.height for r in day.computed.thresholds.values())
                if store is not None:
                    writes.extend(store.prepare(day.computed.writes(options)))
            if len(pending) >= BATCH_DAYS or held >= BATCH_BARS:
                yield flush()
                pending, writes, held = [], [], 0
    except DayFailedError:
        if pending:
            yield flush()
        raise
    if pending:
        yield flush()


def frames_of(batches: Iterable[Batch[A]], threshold: int) -> list[pl.DataFrame]:
    """The computed bars of ``threshold`` in ``batches`` (for walks without a store)."""
    return [
        d.computed.thresholds[threshold].bars
        for b in batches
        for d in b.days
        if d.computed is not None and threshold in d.computed.thresholds
    ]
