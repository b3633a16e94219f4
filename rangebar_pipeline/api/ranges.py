"""Range bars by symbol, UTC dates and threshold, served from the two stores through the day engine."""

from __future__ import annotations

import tempfile
import warnings
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from rangebar_pipeline.api.arguments import (
    ContinuityAction,
    Frame,
    check_continuity,
    day_list,
    day_span,
    exness_source,
    incomplete_bars,
    output_frame,
    parse_day,
)
from rangebar_pipeline.api.materialize import materialize_days
from rangebar_pipeline.calendar import days
from rangebar_pipeline.constants import resolve_threshold
from rangebar_pipeline.frames import OutputFormat
from rangebar_pipeline.options import BarOptions
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources.exness import Strictness
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.ticks import TickStore

__all__ = ["get_cached_bars", "get_n_range_bars", "get_range_bars"]

_NO_CACHE_NO_FETCH = "Cache disabled and fetch_if_missing=False."


def _unavailable_days(
    store: BarStore,
    ticks: TickStore,
    series: Series,
    threshold: int,
    span: tuple[date, date],
    *,
    options: BarOptions,
) -> list[date]:
    """Days neither covered by the bar store nor present in the tick cache."""
    start, end = span
    covered = store.covered_days(series, threshold, start, end, options=options)
    return [d for d in days(start, end) if d not in covered and not ticks.has_day(series, d)]


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
    intra_bar: bool = False,
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
    ``same_timestamp_gate``, ``min_duration_us``, ``lookback_trades`` and ``intra_bar`` are the bar
    options of :class:`RangeBarProcessor` (docs/bar-options.md); bars of each combination are
    stored apart.
    Stored days produced by an older bar schema or kernel are recomputed when their ticks are
    cached (else served with a :class:`StaleBarsWarning`).

    >>> get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", 250, market="um")  # doctest: +SKIP
    """
    series = Series.of(symbol, source=source, market=market)
    threshold = resolve_threshold(threshold_decimal_bps)
    start, end = day_span(start_date, end_date)
    exness = exness_source(validation)
    options = BarOptions(same_timestamp_gate, min_duration_us, lookback_trades, intra_bar)
    if use_cache:
        ticks = TickStore(cache_dir, exness=exness)
        with BarStore(cache_dir=cache_dir) as store:
            if not fetch_if_missing and (
                absent := _unavailable_days(store, ticks, series, threshold, (start, end), options=options)
            ):
                warnings.warn(
                    f"no cached bars or ticks for {series} {threshold} dbps on {day_list(absent)} and "
                    "fetch_if_missing=False: returning an empty frame",
                    UserWarning,
                    stacklevel=2,
                )
                return output_frame(options.empty_bars(), output, include_microstructure)
            run = materialize_days(
                series, threshold, start, end, store=store, ticks=ticks, fetch_if_missing=fetch_if_missing,
                options=options,
            )  # fmt: skip
    elif not fetch_if_missing:  # no store to read and no download allowed: nothing (7.1.3: the same)
        return output_frame(options.empty_bars(), output, include_microstructure)
    else:
        with tempfile.TemporaryDirectory(prefix="rangebar-no-cache-") as scratch:
            run = materialize_days(
                series, threshold, start, end, store=None, ticks=TickStore(scratch, exness=exness),
                fetch_if_missing=True, options=options,
            )  # fmt: skip
    bars = run.bars
    if include_incomplete:
        bars = pl.concat([bars, incomplete_bars(run.checkpoint)], how="diagonal_relaxed")
    return output_frame(bars, output, include_microstructure)


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
    intra_bar: bool = False,
) -> Frame | None:
    """Bars from the bar cache only: the full answer when the range is covered, else None."""
    series = Series.of(symbol, source=source, market=market)
    threshold = resolve_threshold(threshold_decimal_bps)
    start, end = day_span(start_date, end_date)
    options = BarOptions(same_timestamp_gate, min_duration_us, lookback_trades, intra_bar)
    with BarStore(cache_dir=cache_dir) as store:
        if not store.is_covered(series, threshold, start, end, options=options):
            return None
        bars = store.read_bars(series, threshold, start, end, options=options)
    return output_frame(bars, output, include_microstructure)


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
    intra_bar: bool = False,
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
    options = BarOptions(same_timestamp_gate, min_duration_us, lookback_trades, intra_bar)
    end = parse_day(end_date, name="end_date") if end_date is not None else datetime.now(UTC).date()
    if max_lookback_days == 0 or not (use_cache or fetch_if_missing):
        if warn_if_fewer:
            why = "max_lookback_days=0" if max_lookback_days == 0 else _NO_CACHE_NO_FETCH
            warnings.warn(fewer_bars(0, n_bars, why), UserWarning, stacklevel=2)
        return output_frame(options.empty_bars(), output, include_microstructure)
    bars = _last_n_bars(
        series, threshold, n_bars, end, max_lookback_days, use_cache=use_cache,
        fetch_if_missing=fetch_if_missing, warn_if_fewer=warn_if_fewer, cache_dir=cache_dir, options=options,
    )  # fmt: skip
    if validate_on_return and bars.height > 1:
        check_continuity(bars, series, threshold, None, continuity_action)
    return output_frame(bars, output, include_microstructure)


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
            present = [d for d in days(start, end) if d not in run.missing]
            if present and start in run.missing:
                reason = f"No data for {series} before {min(present)} (the source has no day {start})."
                break
            if start == floor:
                reason = (
                    f"Insufficient data available within max_lookback_days={max_lookback_days} "
                    f"(back to {floor})."
                )
                break
            window *= 2
    finally:
        if store is not None:
            store.close()
        if scratch is not None:
            scratch.cleanup()
    if warn_if_fewer:
        warnings.warn(fewer_bars(run.bars.height, n_bars, reason), UserWarning, stacklevel=3)
    return run.bars


def fewer_bars(found: int, n_bars: int, reason: str) -> str:
    """The "fewer bars" warning, in 7.1.3's words first (code matches ``bars instead of requested``)."""
    return f"Returning {found} bars instead of requested {n_bars}. {reason}"
