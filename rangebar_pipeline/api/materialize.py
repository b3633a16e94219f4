"""The library's adapter over the day engine: bars of a range as one frame, from the stores.

One rule everywhere (SPEC §1, batch). Bars of a series are one continuous stream computed day by day
by :class:`~rangebar_pipeline.engine.SeriesWalk`, which serves a stored day only when it continues
the stored previous day (the chain rule) and computes the rest from the tick cache (downloaded when
missing), storing them; the answer is then read back from the bar store, so a cached answer and a
fresh one are the same rows. Days outside the requested range are never recomputed implicitly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from rangebar_pipeline.api.arguments import day_list
from rangebar_pipeline.engine import DayFailedError, SeriesWalk, WalkedDay
from rangebar_pipeline.exceptions import StaleBarsWarning
from rangebar_pipeline.frames import empty_bars
from rangebar_pipeline.options import DEFAULT_OPTIONS, BarOptions
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.ticks import TickStore

__all__ = ["MaterializedDays", "materialize_days", "walk_range"]


@dataclass
class MaterializedDays:
    """Outcome of :func:`materialize_days`: the range's bars, the final checkpoint, what was done."""

    bars: pl.DataFrame
    checkpoint: bytes | None
    computed: list[date] = field(default_factory=list)
    cached: list[date] = field(default_factory=list)
    missing: list[date] = field(default_factory=list)
    ticks: int = 0
    #: Stale stored days served as stored (their ticks were not cached).
    stale_served: list[date] = field(default_factory=list)


def walk_range(
    walk: SeriesWalk,
    start: date,
    end: date,
    *,
    on_day: Callable[[WalkedDay[None]], None] | None = None,
) -> dict[int, list[pl.DataFrame]]:
    """Run ``walk`` over ``[start, end]``; return the computed bars per threshold when it has no store.

    The library raises what made a day fail (``DataNotFoundError``, ...), not the engine's wrapper;
    the days before it are stored all the same.
    """
    frames: dict[int, list[pl.DataFrame]] = {t: [] for t in walk.thresholds}
    try:
        for batch in walk.batches(start, end, on_day=on_day):
            if walk.store is None:
                for item in batch.days:
                    if item.computed is not None:
                        for threshold, result in item.computed.thresholds.items():
                            frames[threshold].append(result.bars)
    except DayFailedError as exc:
        cause = exc.__cause__
        raise cause if isinstance(cause, Exception) else exc from None
    if walk.stale_served:
        warnings.warn(
            f"{walk.series} {'/'.join(map(str, walk.thresholds))} dbps: {len(walk.stale_served)} stored "
            "day(s) were produced by an older bar schema or kernel and their ticks are not cached "
            f"({day_list(walk.stale_served)}); served as stored. Fetch the ticks or pass "
            "fetch_if_missing=True with invalidate() to recompute them.",
            StaleBarsWarning,
            stacklevel=4,
        )
    return frames


def materialize_days(
    series: Series,
    threshold: int,
    start: date,
    end: date,
    *,
    store: BarStore | None,
    ticks: TickStore,
    fetch_if_missing: bool,
    skip_missing: bool = False,
    recompute: bool = False,
    on_day: Callable[[WalkedDay[None]], None] | None = None,
    options: BarOptions = DEFAULT_OPTIONS,
) -> MaterializedDays:
    """Bars of ``[start, end]`` at one threshold through the day engine (see the module docstring).

    ``store`` None computes the range from a fresh processor and keeps the bars in memory.
    """
    walk = SeriesWalk(
        series, [threshold], ticks, store, options, fetch_if_missing=fetch_if_missing,
        recompute=recompute, skip_missing=skip_missing, refetch_corrupt=fetch_if_missing,
    )  # fmt: skip
    frames = walk_range(walk, start, end, on_day=on_day)
    run = MaterializedDays(
        empty_bars(), walk.last_checkpoint(threshold), walk.computed, walk.cached, walk.missing,
        walk.tick_count, walk.stale_served,
    )  # fmt: skip
    if store is not None:
        run.bars = store.read_bars(series, threshold, start, end, options=options)
    elif frames[threshold]:
        run.bars = pl.concat(frames[threshold], how="diagonal_relaxed")
    return run


def thresholds_of(value: int | str | Sequence[int | str]) -> tuple[list[int], bool]:
    """The thresholds of a scalar or a sequence argument, and whether it was a sequence."""
    from rangebar_pipeline.constants import resolve_threshold

    if isinstance(value, (int, str)):
        return [resolve_threshold(value)], False
    resolved = [resolve_threshold(v) for v in value]
    if not resolved:
        raise ValueError("threshold_decimal_bps: expected at least one threshold, got an empty sequence")
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"threshold_decimal_bps: duplicate thresholds in {resolved}")
    return resolved, True
