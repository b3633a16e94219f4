"""High-level API: range bars by symbol, UTC dates and threshold, served from the two-tier cache.

One rule everywhere (SPEC §1, batch). Bars of a series are one continuous stream computed day by day:
day D is processed with the processor restored from the checkpoint stored at the end of D-1, or with a
fresh processor when D-1 is not stored (or is not in the source). A range is answered from Tier 2 only
when every day is stored *and* continues the stored previous day (``BarStore.covered_days``); otherwise
the uncovered days are computed in date order from Tier 1 ticks (downloaded if missing), stored, and
the answer is read back from Tier 2, so a cached answer and a fresh one are the same rows. A day that
started fresh is recorded as such and recomputed once its previous day gets stored; days outside the
requested range are never recomputed implicitly.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import polars as pl

from rangebar_pipeline.backfill import DayFailedError, iter_series_days
from rangebar_pipeline.constants import resolve_threshold, resolve_tolerance
from rangebar_pipeline.exceptions import (
    ContinuityError,
    ContinuityWarning,
    DataNotFoundError,
    StaleBarsWarning,
)
from rangebar_pipeline.frames import OutputFormat, convert_bars, empty_bars
from rangebar_pipeline.options import DEFAULT_OPTIONS, BarOptions
from rangebar_pipeline.processing import RangeBarProcessor
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources.exness import STRICTNESS_LEVELS, ExnessSource, Strictness
from rangebar_pipeline.storage.bars import BarStore, DayWrite, checkpoint_sha256
from rangebar_pipeline.storage.ticks import TickStore

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "MaterializedDays",
    "PrecomputeProgress",
    "PrecomputeResult",
    "count_bars",
    "get_cached_bars",
    "get_n_range_bars",
    "get_range_bars",
    "invalidate",
    "materialize_days",
    "precompute_range_bars",
]

Frame: TypeAlias = "pd.DataFrame | pl.DataFrame | pa.Table"
InvalidateMode = Literal["smart", "overlap", "full", "none"]
ValidateMode = Literal["error", "warn", "skip"]
ContinuityAction = Literal["warn", "raise", "log"]
_log = logging.getLogger("rangebar_pipeline")


# --- arguments ----------------------------------------------------------------------------------------


def parse_day(value: date | datetime | str, *, name: str = "date") -> date:
    """A UTC calendar day from ``YYYY-MM-DD``, a date, or a datetime (converted to UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo is None else value.astimezone(UTC)).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return datetime.strptime(value.strip(), "%Y-%m-%d").date()
        except ValueError:
            raise ValueError(f"Invalid date format: {name} {value!r}; expected YYYY-MM-DD") from None
    raise TypeError(f"{name} must be a YYYY-MM-DD string or a date, got {type(value).__name__}")


def _range(start_date: date | str, end_date: date | str) -> tuple[date, date]:
    start = parse_day(start_date, name="start_date")
    end = parse_day(end_date, name="end_date")
    if start > end:
        raise ValueError(f"start_date must be <= end_date, got {start} > {end}")
    return start, end


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


# --- computing days --------------------------------------------------------------------------------


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


def _compute_day(
    series: Series,
    threshold: int,
    day: date,
    ticks: TickStore,
    parent: bytes | None,
    *,
    fetch_if_missing: bool,
    options: BarOptions,
) -> tuple[pl.DataFrame, bytes, int]:
    """Bars closed by the ticks of ``day``, the checkpoint after them, and the tick count (one day of
    the backfill engine, :func:`~rangebar_pipeline.backfill.iter_series_days`)."""
    try:
        (computed,) = iter_series_days(
            series, [threshold], day, day, ticks=ticks, parents={threshold: parent},
            fetch_if_missing=fetch_if_missing, options=options,
        )  # fmt: skip
    except DayFailedError as exc:  # the API raises the cause itself (DataNotFoundError, ...)
        cause = exc.__cause__
        raise cause if isinstance(cause, Exception) else exc from None
    result = computed.thresholds[threshold]
    return result.bars, result.checkpoint, computed.tick_count


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
    on_day: Callable[[date, str, int, int], None] | None = None,
    options: BarOptions = DEFAULT_OPTIONS,
) -> MaterializedDays:
    """Bars of ``[start, end]`` following the chain rule; computes and stores what is not covered.

    Days are processed in date order, each from the checkpoint stored for its previous day (or a
    fresh processor); ``recompute`` recomputes covered days too; ``on_day(day, phase, bars, ticks)``
    is called after each day. Computed days are stored in batches of up to ``FLUSH_DAYS`` (one
    insert, no per-day mutation); when a day fails, the days computed before it are stored first.
    A stored day produced by an older bar schema or kernel (stale) is recomputed when its ticks are
    in the tick cache, else served as stored with a :class:`StaleBarsWarning`. ``options`` are
    the bar options (part of the store key).
    """
    stored = (
        store.coverage(series, threshold, start - timedelta(days=1), end, options=options) if store else {}
    )
    before = stored.get(start - timedelta(days=1))
    prev_sha = before.checkpoint_sha256 if before else ""
    prev_day = start - timedelta(days=1)
    run = MaterializedDays(empty_bars(), None)
    frames: list[pl.DataFrame] = []
    todo = [d for d in _days(start, end) if recompute or store is None or d not in stored]
    if fetch_if_missing and len(todo) > 1:  # download the missing days concurrently up front
        try:
            ticks.get_ticks(series.source, series.market, series.symbol, todo[0], todo[-1], lazy=True)
        except DataNotFoundError:
            if not skip_missing:
                raise
    pending: list[DayWrite] = []
    try:
        last_cp, last_sha, last_day = _walk_days(
            series, threshold, start, end, store=store, ticks=ticks, stored=stored, run=run, frames=frames,
            pending=pending, prev=(prev_sha, prev_day), fetch_if_missing=fetch_if_missing,
            skip_missing=skip_missing, recompute=recompute, on_day=on_day, options=options,
        )  # fmt: skip
    finally:
        if store is not None and pending:
            store.write_days(pending)
    if run.stale_served:
        warnings.warn(
            f"{series} {threshold} dbps: {len(run.stale_served)} stored day(s) were produced by an older bar "
            f"schema or kernel and their ticks are not cached ({_day_list(run.stale_served)}); served as "
            "stored. Fetch the ticks or pass fetch_if_missing=True with invalidate() to recompute them.",
            StaleBarsWarning,
            stacklevel=3,
        )
    if store is not None:
        run.bars = store.read_bars(series, threshold, start, end, options=options)
        if last_sha and last_cp is None:
            last_cp = store.checkpoint_for(series, threshold, last_day, options=options)
    elif frames:
        run.bars = pl.concat(frames, how="diagonal_relaxed")
    run.checkpoint = last_cp if last_sha else None
    return run


#: Days computed by :func:`materialize_days` per Tier 2 write.
FLUSH_DAYS = 32


def _walk_days(
    series: Series,
    threshold: int,
    start: date,
    end: date,
    *,
    store: BarStore | None,
    ticks: TickStore,
    stored: dict[date, Any],
    run: MaterializedDays,
    frames: list[pl.DataFrame],
    pending: list[DayWrite],
    prev: tuple[str, date],
    fetch_if_missing: bool,
    skip_missing: bool,
    recompute: bool,
    on_day: Callable[[date, str, int, int], None] | None,
    options: BarOptions,
) -> tuple[bytes | None, str, date]:
    """The day loop of :func:`materialize_days`; returns the last day's (checkpoint if in memory, its
    sha, the day). Computed days go to ``pending`` (flushed every ``FLUSH_DAYS``) or ``frames``."""
    prev_sha, prev_day = prev
    prev_cp: bytes | None = None
    for day in _days(start, end):
        record = stored.get(day)
        if (
            store is not None
            and not recompute
            and record
            and record.parent_checkpoint_sha256 == prev_sha
            and not (record.stale and _ticks_cached(ticks, series, day))
        ):
            if record.stale:
                run.stale_served.append(day)
            run.cached.append(day)
            prev_sha, prev_cp, prev_day = record.checkpoint_sha256, None, day
            if on_day:
                on_day(day, "cached", record.bar_count, record.tick_count)
            continue
        if prev_sha and prev_cp is None:
            assert store is not None
            prev_cp = store.checkpoint_for(series, threshold, prev_day, options=options)
        try:
            bars, checkpoint, n_ticks = _compute_day(
                series,
                threshold,
                day,
                ticks,
                prev_cp if prev_sha else None,
                fetch_if_missing=fetch_if_missing,
                options=options,
            )
        except DataNotFoundError:
            if not skip_missing:
                raise
            run.missing.append(day)
            prev_sha, prev_cp, prev_day = "", None, day
            continue
        if store is not None:
            pending.append(
                DayWrite(
                    series, threshold, day, bars, checkpoint, n_ticks, prev_cp if prev_sha else None, options
                )
            )
            if len(pending) >= FLUSH_DAYS:
                store.write_days(pending)
                pending.clear()
        else:
            frames.append(bars)
        run.computed.append(day)
        run.ticks += n_ticks
        prev_sha, prev_cp, prev_day = checkpoint_sha256(checkpoint), checkpoint, day
        if on_day:
            on_day(day, "computed", bars.height, n_ticks)
    return prev_cp, prev_sha, prev_day


def _exness_source(series: Series, validation: str) -> ExnessSource | None:
    """The Exness source with quote checks at ``validation`` (None for other sources)."""
    if validation not in STRICTNESS_LEVELS:
        raise ValueError(
            f"Unknown validation level: {validation!r}; expected one of {list(STRICTNESS_LEVELS)}"
        )
    return ExnessSource(strictness=validation) if series.source == "exness" else None


def _ticks_cached(ticks: TickStore, series: Series, day: date) -> bool:
    return ticks.has_day(series.source, series.market, series.symbol, day)


def _unavailable_days(
    store: BarStore,
    ticks: TickStore,
    series: Series,
    threshold: int,
    *,
    start: date,
    end: date,
    options: BarOptions,
) -> list[date]:
    """Days neither covered by the bar store nor present in the tick cache."""
    covered = store.covered_days(series, threshold, start, end, options=options)
    return [d for d in _days(start, end) if d not in covered and not _ticks_cached(ticks, series, d)]


def _day_list(days: list[date]) -> str:
    shown = ", ".join(d.isoformat() for d in days[:10])
    return shown + (f" (+{len(days) - 10} more)" if len(days) > 10 else "")


def _check_continuity(
    bars: pl.DataFrame, series: Series, threshold: int, tolerance: float | None, action: str
) -> bool:
    """Run :func:`validate_continuity` on ``bars``; act on breaks (``raise``/``error``, ``warn``, ``log``).

    Trade ids are checked for Binance only (Exness ids are synthetic: timestamp x 1000 + rank).
    """
    from rangebar_pipeline.validation.continuity import validate_continuity

    what = f"{series} {threshold} dbps"
    result = validate_continuity(bars, tolerance, threshold, check_ids=series.source == "binance")
    if result.is_valid:
        return True
    found = [d.to_dict() for d in result.discontinuities[:10]]
    message = f"Found {result.discontinuity_count} discontinuities in {result.bar_count} bars of {what}"
    if action in ("raise", "error"):
        raise ContinuityError(message, found)
    if action == "warn":
        warnings.warn(message, ContinuityWarning, stacklevel=3)
    else:
        _log.warning(message)
    return False


def _incomplete(checkpoint: bytes | None) -> pl.DataFrame:
    if checkpoint is None:
        return empty_bars()
    return RangeBarProcessor.from_checkpoint(checkpoint).incomplete_bar_frame()


def _output(bars: pl.DataFrame, output: OutputFormat, include_microstructure: bool) -> Frame:
    return convert_bars(bars, output, include_microstructure=include_microstructure)


# --- public API -------------------------------------------------------------------------------------


def get_range_bars(
    symbol: str,
    start_date: date | str,
    end_date: date | str,
    threshold_decimal_bps: int | str = 250,
    *,
    source: str = "binance",
    market: str = "spot",
    validation: Strictness = "strict",
    include_incomplete: bool = False,
    include_microstructure: bool = False,
    use_cache: bool = True,
    fetch_if_missing: bool = True,
    cache_dir: str | Path | None = None,
    output: OutputFormat = "pandas",
    same_timestamp_gate: bool = False,
    min_duration_us: int = 0,
    lookback_trades: int = 0,
) -> Frame:
    """Range bars of ``symbol`` closed during the UTC days ``[start_date, end_date]``.

    Served from the bar cache when the whole range is covered, else computed from the tick cache
    (days downloaded when missing and ``fetch_if_missing``), stored, and returned. With
    ``fetch_if_missing=False`` a range that neither store can answer gives an empty frame and a
    ``UserWarning`` naming the missing days. ``use_cache=False`` neither reads nor writes any store:
    the range is downloaded into a throw-away directory and processed as one stream from a fresh
    processor. ``validation`` is the Exness quote check (``permissive``/``strict``/``paranoid``).
    ``include_incomplete`` appends the trailing unfinished bar (features computed). Output: a
    backtesting.py-ready pandas frame (``output="polars"``/``"arrow"`` for every column).
    ``same_timestamp_gate``, ``min_duration_us`` and ``lookback_trades`` are the bar options of
    :class:`RangeBarProcessor` (docs/bar-options.md); bars of each combination are stored apart.
    Stored days produced by an older bar schema or kernel are recomputed when their ticks are
    cached (else served with a :class:`StaleBarsWarning`).

    >>> get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", 250, market="um")  # doctest: +SKIP
    """
    series = Series.of(symbol, source=source, market=market)
    threshold = resolve_threshold(threshold_decimal_bps)
    start, end = _range(start_date, end_date)
    exness = _exness_source(series, validation)
    options = BarOptions(same_timestamp_gate, min_duration_us, lookback_trades)
    if use_cache:
        ticks = TickStore(cache_dir, exness=exness)
        with BarStore(cache_dir=cache_dir) as store:
            if not fetch_if_missing and (
                absent := _unavailable_days(
                    store, ticks, series, threshold, start=start, end=end, options=options
                )
            ):
                warnings.warn(
                    f"no cached bars or ticks for {series} {threshold} dbps on {_day_list(absent)} and "
                    "fetch_if_missing=False: returning an empty frame",
                    UserWarning,
                    stacklevel=2,
                )
                return _output(options.empty_bars(), output, include_microstructure)
            run = materialize_days(
                series, threshold, start, end, store=store, ticks=ticks, fetch_if_missing=fetch_if_missing,
                options=options,
            )  # fmt: skip
    else:
        with tempfile.TemporaryDirectory(prefix="rangebar-no-cache-") as scratch:
            run = materialize_days(
                series, threshold, start, end, store=None, ticks=TickStore(scratch, exness=exness),
                fetch_if_missing=True, options=options,
            )  # fmt: skip
    bars = run.bars
    if include_incomplete:
        bars = pl.concat([bars, _incomplete(run.checkpoint)], how="diagonal_relaxed")
    return _output(bars, output, include_microstructure)


def get_cached_bars(
    symbol: str,
    start_date: date | str,
    end_date: date | str,
    threshold_decimal_bps: int | str = 250,
    *,
    source: str = "binance",
    market: str = "spot",
    include_microstructure: bool = False,
    cache_dir: str | Path | None = None,
    output: OutputFormat = "pandas",
    same_timestamp_gate: bool = False,
    min_duration_us: int = 0,
    lookback_trades: int = 0,
) -> Frame | None:
    """Bars from the bar cache only: the full answer when the range is covered, else None."""
    series = Series.of(symbol, source=source, market=market)
    threshold = resolve_threshold(threshold_decimal_bps)
    start, end = _range(start_date, end_date)
    options = BarOptions(same_timestamp_gate, min_duration_us, lookback_trades)
    with BarStore(cache_dir=cache_dir) as store:
        if not store.is_covered(series, threshold, start, end, options=options):
            return None
        bars = store.read_bars(series, threshold, start, end, options=options)
    return _output(bars, output, include_microstructure)


def get_n_range_bars(
    symbol: str,
    n_bars: int,
    threshold_decimal_bps: int | str = 250,
    *,
    end_date: date | str | None = None,
    source: str = "binance",
    market: str = "spot",
    include_microstructure: bool = False,
    use_cache: bool = True,
    fetch_if_missing: bool = True,
    max_lookback_days: int = 90,
    warn_if_fewer: bool = True,
    validate_on_return: bool = False,
    continuity_action: ContinuityAction = "warn",
    chunk_size: int = 100_000,
    cache_dir: str | Path | None = None,
    output: OutputFormat = "pandas",
    same_timestamp_gate: bool = False,
    min_duration_us: int = 0,
    lookback_trades: int = 0,
) -> Frame:
    """Exactly ``n_bars`` most recent bars closed at or before ``end_date`` (default: today, UTC).

    Walks back from ``end_date`` over a window that doubles (1, 2, 4, ... days, at most
    ``max_lookback_days``) until it holds ``n_bars`` bars. Days the source does not have at the recent
    end (not yet published) are skipped; a missing day before data was found ends the walk. Fewer bars
    only when the data or the lookback runs out, with a ``UserWarning`` saying which
    (``max_lookback_days=0``: an empty frame and the warning). ``validate_on_return`` checks the
    returned bars with :func:`validate_continuity` and then warns, raises
    :class:`ContinuityError` or logs, per ``continuity_action``. ``chunk_size`` is accepted for
    7.1.3 callers; the kernel streams each day without chunking, so it changes nothing. The bar
    options are those of :func:`get_range_bars`.
    """
    if isinstance(n_bars, bool) or not isinstance(n_bars, int) or n_bars <= 0:
        raise ValueError(f"n_bars must be > 0 (a positive integer), got {n_bars!r}")
    if max_lookback_days < 0:
        raise ValueError(f"max_lookback_days must be >= 0, got {max_lookback_days}")
    if continuity_action not in ("warn", "raise", "log"):
        raise ValueError(
            f"continuity_action must be one of ['warn', 'raise', 'log'], got {continuity_action!r}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    series = Series.of(symbol, source=source, market=market)
    threshold = resolve_threshold(threshold_decimal_bps)
    options = BarOptions(same_timestamp_gate, min_duration_us, lookback_trades)
    end = parse_day(end_date, name="end_date") if end_date is not None else datetime.now(UTC).date()
    if max_lookback_days == 0:
        if warn_if_fewer:
            warnings.warn(
                f"returning 0 bars instead of the requested {n_bars}: max_lookback_days=0",
                UserWarning,
                stacklevel=2,
            )
        return _output(options.empty_bars(), output, include_microstructure)
    bars = _last_n_bars(
        series, threshold, n_bars, end, max_lookback_days, use_cache=use_cache,
        fetch_if_missing=fetch_if_missing, warn_if_fewer=warn_if_fewer, cache_dir=cache_dir, options=options,
    )  # fmt: skip
    if validate_on_return and bars.height > 1:
        _check_continuity(bars, series, threshold, None, continuity_action)
    return _output(bars, output, include_microstructure)


def _last_n_bars(
    series: Series,
    threshold: int,
    n_bars: int,
    end: date,
    max_lookback_days: int,
    *,
    use_cache: bool,
    fetch_if_missing: bool,
    warn_if_fewer: bool,
    cache_dir: str | Path | None,
    options: BarOptions,
) -> pl.DataFrame:
    """The walk of :func:`get_n_range_bars`; ``use_cache=False`` uses a throw-away tick directory."""
    floor = end - timedelta(days=max_lookback_days - 1)
    scratch = None if use_cache else tempfile.TemporaryDirectory(prefix="rangebar-no-cache-")
    ticks = TickStore(cache_dir if scratch is None else scratch.name)
    store = BarStore(cache_dir=cache_dir) if use_cache else None
    fetch_if_missing = fetch_if_missing or scratch is not None
    try:
        window, reason = 1, ""
        while True:
            start = max(end - timedelta(days=window - 1), floor)
            run = materialize_days(
                series, threshold, start, end, store=store, ticks=ticks,
                fetch_if_missing=fetch_if_missing, skip_missing=True, options=options,
            )  # fmt: skip
            if run.bars.height >= n_bars:
                return run.bars.tail(n_bars)
            present = [d for d in _days(start, end) if d not in run.missing]
            if present and start in run.missing:
                reason = f"no data for {series} before {min(present)} (source has no day {start})"
                break
            if start == floor:
                reason = f"max_lookback_days={max_lookback_days} reached (back to {floor})"
                break
            window *= 2
    finally:
        if store is not None:
            store.close()
        if scratch is not None:
            scratch.cleanup()
    if warn_if_fewer:
        warnings.warn(
            f"returning {run.bars.height} bars instead of the requested {n_bars}: {reason}",
            UserWarning,
            stacklevel=3,
        )
    return run.bars


@dataclass(frozen=True, slots=True)
class PrecomputeProgress:
    """One progress event of :func:`precompute_range_bars` (one per day; 7.1.3 reported months)."""

    phase: Literal["cached", "computed", "missing"]
    current_day: date
    days_completed: int
    days_total: int
    bars_generated: int
    ticks_processed: int
    elapsed_seconds: float
    months_completed: int = 0
    months_total: int = 0

    @property
    def current_month(self) -> str:
        """``YYYY-MM`` of :attr:`current_day` (7.1.3's field)."""
        return self.current_day.strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class PrecomputeResult:
    """What :func:`precompute_range_bars` did."""

    series: str
    threshold_decimal_bps: int
    start_date: date
    end_date: date
    days_computed: int
    days_cached: int
    total_bars: int
    total_ticks: int
    elapsed_seconds: float
    continuity_valid: bool | None

    @property
    def symbol(self) -> str:
        """The symbol of :attr:`series` (7.1.3's field)."""
        return Series.from_key(self.series).symbol

    @property
    def cache_key(self) -> str:
        """``<symbol>_<threshold>``, 7.1.3's key (the store itself keys by series, threshold and day)."""
        return f"{self.symbol}_{self.threshold_decimal_bps}"


def precompute_range_bars(
    symbol: str,
    start_date: date | str,
    end_date: date | str,
    threshold_decimal_bps: int | str = 250,
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
) -> PrecomputeResult:
    """Compute and store the bars of ``[start_date, end_date]`` day by day (resumable).

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
    threshold = resolve_threshold(threshold_decimal_bps)
    start, end = _range(start_date, end_date)
    options = BarOptions(same_timestamp_gate, min_duration_us, lookback_trades)
    total_days = (end - start).days + 1
    began = time.perf_counter()
    counters = {"days": 0, "bars": 0, "ticks": 0}
    bar: Any = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=total_days, unit="day", desc=f"{series} {threshold} dbps")

    months = sorted({d.strftime("%Y-%m") for d in _days(start, end)})

    def on_day(day: date, phase: str, n_bars: int, n_ticks: int) -> None:
        counters["days"] += 1
        counters["bars"] += n_bars
        counters["ticks"] += n_ticks if phase == "computed" else 0
        if bar is not None:
            bar.update(1)
            bar.set_postfix(day=str(day), bars=counters["bars"])
        if progress_callback is not None:
            progress_callback(
                PrecomputeProgress(
                    phase,  # type: ignore[arg-type]
                    day, counters["days"], total_days, counters["bars"], counters["ticks"],
                    time.perf_counter() - began,
                    months.index(day.strftime("%Y-%m")) + (day == end or (day + timedelta(days=1)).day == 1),
                    len(months),
                )
            )  # fmt: skip

    ticks = TickStore(cache_dir)
    try:
        with BarStore(cache_dir=cache_dir) as store:
            if invalidate_existing == "full":
                store.invalidate(series, threshold, options=options)
            if invalidate_existing == "none" and store.count_bars(series, threshold, options=options) > 0:
                return PrecomputeResult(
                    series.key, threshold, start, end, 0, 0, 0, 0, time.perf_counter() - began, None
                )
            run = materialize_days(
                series, threshold, start, end, store=store, ticks=ticks, fetch_if_missing=fetch_if_missing,
                recompute=invalidate_existing in ("overlap", "full"), on_day=on_day, options=options,
            )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    valid: bool | None = None
    if validate_on_complete != "skip":
        valid = _check_continuity(run.bars, series, threshold, tolerance, validate_on_complete)
    return PrecomputeResult(
        series.key, threshold, start, end, len(run.computed), len(run.cached), run.bars.height,
        run.ticks, time.perf_counter() - began, valid,
    )  # fmt: skip


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
) -> int:
    """Number of cached bars of a series, threshold and bar options (optionally within UTC days)."""
    series = Series.of(symbol, source=source, market=market)
    threshold = resolve_threshold(threshold_decimal_bps)
    options = BarOptions(same_timestamp_gate, min_duration_us, lookback_trades)
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
