"""Precomputing bars into the bar store (resumable, several thresholds from one decode), counting
and forgetting them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal, overload

from rangebar_pipeline.api.arguments import (
    InvalidateMode,
    ValidateMode,
    check_continuity,
    day_span,
    parse_day,
)
from rangebar_pipeline.api.materialize import thresholds_of, walk_range
from rangebar_pipeline.calendar import days
from rangebar_pipeline.constants import resolve_threshold, resolve_tolerance
from rangebar_pipeline.engine import SeriesWalk, WalkedDay
from rangebar_pipeline.options import BarOptions
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.ticks import TickStore

__all__ = ["PrecomputeProgress", "PrecomputeResult", "count_bars", "invalidate", "precompute_range_bars"]


@dataclass(frozen=True, slots=True)
class PrecomputeProgress:
    """One progress event of :func:`precompute_range_bars`: one per UTC day (7.1.3: one per month).

    7.1.3's fields first, in its order (``phase`` is this package's: ``cached``, ``computed`` or
    ``missing``), then the day's.
    """

    phase: str
    current_month: str
    months_completed: int
    months_total: int
    bars_generated: int
    ticks_processed: int
    elapsed_seconds: float
    current_day: date | None = None
    days_completed: int = 0
    days_total: int = 0


@dataclass(frozen=True, slots=True)
class PrecomputeResult:
    """What :func:`precompute_range_bars` did: 7.1.3's fields first, in its order, then this package's.

    ``cache_key`` defaults to 7.1.3's ``<symbol>_<threshold>`` and ``series`` to the Binance spot
    series of ``symbol`` (the store itself keys by series, threshold and day).
    """

    symbol: str
    threshold_decimal_bps: int
    start_date: date
    end_date: date
    total_bars: int
    total_ticks: int
    elapsed_seconds: float
    continuity_valid: bool | None
    cache_key: str = ""
    series: str = ""
    days_computed: int = 0
    days_cached: int = 0

    def __post_init__(self) -> None:
        if not self.cache_key:
            object.__setattr__(self, "cache_key", f"{self.symbol}_{self.threshold_decimal_bps}")
        if not self.series:
            object.__setattr__(self, "series", Series.of(self.symbol).key)


@overload
def precompute_range_bars(
    symbol: str,
    start_date: date | str,
    end_date: date | str,
    threshold_decimal_bps: int | str = ...,
    *,
    source: str = ...,
    market: str = ...,
    chunk_size: int = ...,
    invalidate_existing: InvalidateMode = ...,
    progress_callback: Callable[[PrecomputeProgress], None] | None = ...,
    include_microstructure: bool = ...,
    validate_on_complete: ValidateMode = ...,
    continuity_tolerance: float | None = ...,
    continuity_tolerance_pct: float | None = ...,
    show_progress: bool = ...,
    fetch_if_missing: bool = ...,
    cache_dir: str | Path | None = ...,
    same_timestamp_gate: bool = ...,
    min_duration_us: int = ...,
    lookback_trades: int = ...,
    intra_bar: bool = ...,
) -> PrecomputeResult: ...
@overload
def precompute_range_bars(
    symbol: str,
    start_date: date | str,
    end_date: date | str,
    threshold_decimal_bps: list[int | str] | list[int] | tuple[int | str, ...],
    *,
    source: str = ...,
    market: str = ...,
    chunk_size: int = ...,
    invalidate_existing: InvalidateMode = ...,
    progress_callback: Callable[[PrecomputeProgress], None] | None = ...,
    include_microstructure: bool = ...,
    validate_on_complete: ValidateMode = ...,
    continuity_tolerance: float | None = ...,
    continuity_tolerance_pct: float | None = ...,
    show_progress: bool = ...,
    fetch_if_missing: bool = ...,
    cache_dir: str | Path | None = ...,
    same_timestamp_gate: bool = ...,
    min_duration_us: int = ...,
    lookback_trades: int = ...,
    intra_bar: bool = ...,
) -> list[PrecomputeResult]: ...
def precompute_range_bars(
    symbol: str,
    start_date: date | str,
    end_date: date | str,
    threshold_decimal_bps: int | str | list[int | str] | list[int] | tuple[int | str, ...] = 250,
    *,
    source: str = "binance",
    market: str = "spot",
    chunk_size: int = 100_000,
    invalidate_existing: InvalidateMode = "smart",
    progress_callback: Callable[[PrecomputeProgress], None] | None = None,
    include_microstructure: bool = False,
    validate_on_complete: ValidateMode = "error",
    continuity_tolerance: float | None = None,
    continuity_tolerance_pct: float | None = None,
    show_progress: bool = False,
    fetch_if_missing: bool = True,
    cache_dir: str | Path | None = None,
    same_timestamp_gate: bool = False,
    min_duration_us: int = 0,
    lookback_trades: int = 0,
    intra_bar: bool = False,
) -> PrecomputeResult | list[PrecomputeResult]:
    """Compute and store the bars of ``[start_date, end_date]`` day by day (resumable).

    ``threshold_decimal_bps`` may be a list: every threshold is then computed in the same walk, each
    day's ticks decoded once, and a list of results (one per threshold, in that order) is returned.
    ``invalidate_existing``: ``"smart"`` keeps covered days and computes the rest (an interrupted
    run resumes where it stopped); ``"overlap"`` recomputes every day of the range; ``"full"`` first
    forgets every stored day of the series at this threshold, then computes the range;
    ``"none"`` does nothing when the series already has bars at this threshold.
    ``validate_on_complete`` checks the stored bars of the range with :func:`validate_continuity`
    (trade ids contiguous, times ordered, price gaps within threshold + ``continuity_tolerance``, a
    fraction, default 0.001; 7.1.3's ``continuity_tolerance_pct`` is accepted for it): ``"error"``
    raises :class:`ContinuityError`, ``"warn"`` warns. ``chunk_size`` and
    ``include_microstructure`` are accepted for 7.1.3 callers: days are processed whole, and every
    column, features included, is always stored. The bar options are those of
    :func:`get_range_bars`; ``"full"`` forgets only the days of these options.
    ``progress_callback`` gets one :class:`PrecomputeProgress` per day, in day order, from the
    engine's writer thread.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if invalidate_existing not in ("smart", "overlap", "full", "none"):
        raise ValueError(
            "invalidate_existing must be one of ['smart', 'overlap', 'full', 'none'], "
            f"got {invalidate_existing!r}"
        )
    if validate_on_complete not in ("error", "warn", "skip"):
        raise ValueError(
            f"validate_on_complete must be one of ['error', 'warn', 'skip'], got {validate_on_complete!r}"
        )
    tolerance = resolve_tolerance(continuity_tolerance, continuity_tolerance_pct, "continuity_tolerance_pct")
    series = Series.of(symbol, source=source, market=market)
    thresholds, many = thresholds_of(threshold_decimal_bps)
    start, end = day_span(start_date, end_date)
    options = BarOptions(same_timestamp_gate, min_duration_us, lookback_trades, intra_bar)
    began = time.perf_counter()
    progress = _Progress(series, thresholds, (start, end), callback=progress_callback, show=show_progress)
    results: dict[int, PrecomputeResult] = {}
    try:
        with BarStore(cache_dir=cache_dir) as store:
            todo = []
            for threshold in thresholds:
                if invalidate_existing == "full":
                    store.invalidate(series, threshold, options=options)
                if invalidate_existing == "none" and store.count_bars(series, threshold, options=options) > 0:
                    results[threshold] = PrecomputeResult(
                        series.symbol, threshold, start, end, 0, 0, time.perf_counter() - began, None,
                        series=series.key,
                    )  # fmt: skip
                else:
                    todo.append(threshold)
            if todo:
                walk = SeriesWalk(
                    series, todo, TickStore(cache_dir), store, options, fetch_if_missing=fetch_if_missing,
                    recompute=invalidate_existing in ("overlap", "full"), refetch_corrupt=fetch_if_missing,
                )  # fmt: skip
                walk_range(walk, start, end, on_day=progress.day)
            for threshold in todo:
                valid: bool | None = None
                if validate_on_complete == "skip":
                    total = store.count_bars(series, threshold, start, end, options=options)
                else:
                    from rangebar_pipeline.validation.continuity import JUNCTION_COLUMNS

                    bars = store.read_bars(
                        series, threshold, start, end, options=options, columns=JUNCTION_COLUMNS
                    )
                    total = bars.height
                    valid = check_continuity(bars, series, threshold, tolerance, validate_on_complete)
                done, cached = progress.computed[threshold], progress.cached[threshold]
                results[threshold] = PrecomputeResult(
                    series.symbol, threshold, start, end, total, walk.tick_count,
                    time.perf_counter() - began, valid, series=series.key, days_computed=done,
                    days_cached=cached,
                )  # fmt: skip
    finally:
        progress.close()
    ordered = [results[t] for t in thresholds]
    return ordered if many else ordered[0]


class _Progress:
    """Per-day progress of a precomputation: counters per threshold, the callback, a progress bar."""

    def __init__(
        self,
        series: Series,
        thresholds: list[int],
        span: tuple[date, date],
        *,
        callback: Callable[[PrecomputeProgress], None] | None,
        show: bool,
    ) -> None:
        start, end = span
        self.began = time.perf_counter()
        self.end = end
        self.total = (end - start).days + 1
        self.callback = callback
        self.months = sorted({d.strftime("%Y-%m") for d in days(start, end)})
        self.days = self.bars = self.ticks = 0
        self.computed = dict.fromkeys(thresholds, 0)
        self.cached = dict.fromkeys(thresholds, 0)
        self.bar: Any = None
        if show:
            from tqdm import tqdm

            label = "/".join(map(str, thresholds))
            self.bar = tqdm(total=self.total, unit="day", desc=f"{series} {label} dbps")

    def day(self, item: WalkedDay[None]) -> None:
        """Count one walked day and report it."""
        self.days += 1
        phase: Literal["cached", "computed", "missing"] = "cached"
        if item.computed is not None:
            phase = "computed"
            self.ticks += item.computed.tick_count
            for threshold in item.computed.thresholds:
                self.computed[threshold] += 1
        elif item.missing:
            phase = "missing"
        for threshold in item.cached:
            self.cached[threshold] += 1
        self.bars += item.bar_count
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(day=str(item.day), bars=self.bars)
        if self.callback is not None:
            day = item.day
            month_done = day == self.end or (day + timedelta(days=1)).day == 1
            month = day.strftime("%Y-%m")
            self.callback(
                PrecomputeProgress(
                    phase, month, self.months.index(month) + month_done, len(self.months), self.bars,
                    self.ticks, time.perf_counter() - self.began, day, self.days, self.total,
                )
            )  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def count_bars(
    symbol: str,
    threshold_decimal_bps: int | str = 250,
    *,
    source: str = "binance",
    market: str = "spot",
    start_date: date | str | None = None,
    end_date: date | str | None = None,
    cache_dir: str | Path | None = None,
    same_timestamp_gate: bool = False,
    min_duration_us: int = 0,
    lookback_trades: int = 0,
    intra_bar: bool = False,
) -> int:
    """Number of cached bars of a series, threshold and bar options (optionally within UTC days)."""
    series = Series.of(symbol, source=source, market=market)
    threshold = resolve_threshold(threshold_decimal_bps)
    options = BarOptions(same_timestamp_gate, min_duration_us, lookback_trades, intra_bar)
    start = parse_day(start_date, name="start_date") if start_date is not None else None
    end = parse_day(end_date, name="end_date") if end_date is not None else None
    with BarStore(cache_dir=cache_dir) as store:
        return store.count_bars(series, threshold, start, end, options=options)


def invalidate(
    symbol: str,
    threshold_decimal_bps: int | str | None = None,
    *,
    source: str = "binance",
    market: str = "spot",
    start_date: date | str | None = None,
    end_date: date | str | None = None,
    cache_dir: str | Path | None = None,
    options: BarOptions | None = None,
) -> int:
    """Forget cached bars of a series (one threshold or all; the bars of one :class:`BarOptions` or,
    by default, of every options; optional UTC day bounds); return the days."""
    series = Series.of(symbol, source=source, market=market)
    threshold = None if threshold_decimal_bps is None else resolve_threshold(threshold_decimal_bps)
    start = parse_day(start_date, name="start_date") if start_date is not None else None
    end = parse_day(end_date, name="end_date") if end_date is not None else None
    with BarStore(cache_dir=cache_dir) as store:
        return store.invalidate(series, threshold, start, end, options=options)
