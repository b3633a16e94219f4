"""High-level API over a loopback mirror of the shared fixtures, with real chDB as Tier 2."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rangebar_pipeline.api import (
    PrecomputeProgress,
    count_bars,
    get_cached_bars,
    get_n_range_bars,
    get_range_bars,
    invalidate,
    precompute_range_bars,
)
from rangebar_pipeline.exceptions import (
    ContinuityError,
    ContinuityWarning,
    DataNotFoundError,
    InvalidThresholdError,
)
from rangebar_pipeline.processing import RangeBarProcessor
from rangebar_pipeline.schema import BAR_COLUMNS, FEATURE_COLUMNS, OHLCV_COLUMNS
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.bars import engine as engine_module
from rangebar_pipeline.storage.ticks import TickStore
from tests.api_support import SHARED, Mirror, loopback_env

GOLDEN = SHARED / "golden"
#: (market, symbol, threshold): series with both fixture days and a useful number of golden bars.
CASES = [("spot", "BTCUSDT", 25), ("um", "ETHUSDT", 25), ("cm", "BTCUSD_PERP", 50)]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Mirror]]:
    yield from loopback_env(tmp_path, monkeypatch)


def golden(market: str, symbol: str, dbps: int) -> pl.DataFrame:
    return pl.read_parquet(GOLDEN / f"{market}_{symbol}_{dbps}.parquet")


def assert_matches_golden(bars: pd.DataFrame, expected: pl.DataFrame) -> None:
    assert len(bars) == expected.height > 0
    close_us = pd.DatetimeIndex(bars.index).as_unit("us").asi8
    assert np.array_equal(close_us, expected["close_time_us"].to_numpy())
    assert np.array_equal(bars["open_time"].dt.as_unit("us").astype("int64"), expected["open_time_us"])
    for upper, lower in zip(OHLCV_COLUMNS, ("open", "high", "low", "close", "volume"), strict=True):
        np.testing.assert_allclose(bars[upper], expected[lower], rtol=0, atol=1e-8)
    for name in ("vwap", "buy_volume", "sell_volume"):
        np.testing.assert_allclose(bars[name], expected[name], rtol=0, atol=1e-8)
    for name in ("individual_trade_count", "agg_record_count", "duration_us"):
        assert bars[name].tolist() == expected[name].to_list()
    for name in FEATURE_COLUMNS:
        np.testing.assert_allclose(bars[name], expected[name], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("market", "symbol", "dbps"), CASES)
def test_get_range_bars_equals_golden_and_second_call_is_served_from_cache(
    env: tuple[Path, Mirror], market: str, symbol: str, dbps: int
) -> None:
    _, mirror = env
    first = get_range_bars(
        symbol, "2024-08-08", "2024-08-09", dbps, market=market, include_microstructure=True
    )
    assert isinstance(first, pd.DataFrame)
    assert_matches_golden(first, golden(market, symbol, dbps))
    assert pd.DatetimeIndex(first.index).tz is not None and first.index.is_monotonic_increasing
    served = len(mirror.requests)
    assert served >= 2
    second = get_range_bars(
        symbol, "2024-08-08", "2024-08-09", dbps, market=market, include_microstructure=True
    )
    assert len(mirror.requests) == served, "the second call must not touch the network"
    assert isinstance(second, pd.DataFrame)
    pd.testing.assert_frame_equal(first, second)
    fresh = get_range_bars(
        symbol, "2024-08-08", "2024-08-09", dbps, market=market, include_microstructure=True, use_cache=False
    )
    assert isinstance(fresh, pd.DataFrame)
    pd.testing.assert_frame_equal(first, fresh)


def test_incomplete_bar_comes_from_the_stored_checkpoint(env: tuple[Path, Mirror]) -> None:
    ticks = TickStore().get_ticks(Series("binance", "spot", "ETHUSDT"), "2024-08-08", "2024-08-09")
    processor = RangeBarProcessor(50)
    direct = pl.concat([processor.process(ticks), processor.incomplete_bar_frame()])
    get_range_bars("ETHUSDT", "2024-08-08", "2024-08-09", 50)  # stores both days
    cached = get_range_bars(
        "ETHUSDT", "2024-08-08", "2024-08-09", "tight", include_incomplete=True, output="polars"
    )
    assert isinstance(cached, pl.DataFrame)
    assert_frame_equal(cached, direct, check_exact=True)


def test_get_n_range_bars_returns_exactly_n_with_the_golden_tail(env: tuple[Path, Mirror]) -> None:
    expected = golden("spot", "BTCUSDT", 10)
    bars = get_n_range_bars("BTCUSDT", 40, 10, end_date="2024-08-09", include_microstructure=True)
    assert isinstance(bars, pd.DataFrame)
    assert_matches_golden(bars, expected.tail(40))
    with pytest.warns(UserWarning, match=r"^Returning 333 bars instead of requested 5000\. No data"):
        everything = get_n_range_bars("BTCUSDT", 5_000, 10, end_date="2024-08-10")
    assert len(everything) == expected.height


def test_precompute_then_get_equals_golden_and_is_idempotent(env: tuple[Path, Mirror]) -> None:
    _, mirror = env
    events: list[PrecomputeProgress] = []
    result = precompute_range_bars(
        "ETHUSD_PERP", "2024-08-08", "2024-08-09", 25, market="cm", progress_callback=events.append
    )
    expected = golden("cm", "ETHUSD_PERP", 25)
    assert (result.days_computed, result.days_cached, result.total_bars) == (2, 0, expected.height)
    assert result.continuity_valid is True and result.total_ticks > 0
    assert [(e.phase, e.days_completed, e.days_total) for e in events] == [
        ("computed", 1, 2),
        ("computed", 2, 2),
    ]
    again = precompute_range_bars("ETHUSD_PERP", "2024-08-08", "2024-08-09", 25, market="cm")
    assert (again.days_computed, again.days_cached) == (0, 2)
    redone = precompute_range_bars(
        "ETHUSD_PERP", "2024-08-09", "2024-08-09", 25, market="cm", invalidate_existing="overlap"
    )
    assert redone.days_computed == 1
    assert count_bars("ETHUSD_PERP", 25, market="futures-cm") == expected.height, "one copy of each bar"
    served = len(mirror.requests)
    cached = get_cached_bars(
        "ETHUSD_PERP", "2024-08-08", "2024-08-09", 25, market="cm", include_microstructure=True
    )
    assert isinstance(cached, pd.DataFrame)
    assert_matches_golden(cached, expected)
    assert len(mirror.requests) == served
    skipped = precompute_range_bars(
        "ETHUSD_PERP", "2024-08-09", "2024-08-09", 25, market="cm", invalidate_existing="none"
    )
    assert (skipped.days_computed, skipped.days_cached, skipped.continuity_valid) == (0, 0, None)
    # "full" forgets every stored day of the series at this threshold, then computes the range
    full = precompute_range_bars(
        "ETHUSD_PERP", "2024-08-09", "2024-08-09", 25, market="cm", invalidate_existing="full"
    )
    assert (full.days_computed, full.days_cached) == (1, 0)
    assert count_bars("ETHUSD_PERP", 25, market="cm", start_date="2024-08-08", end_date="2024-08-08") == 0
    assert count_bars("ETHUSD_PERP", 25, market="cm") == full.total_bars


def test_a_range_with_a_missing_day_is_not_answered_from_cache(env: tuple[Path, Mirror]) -> None:
    _, mirror = env
    get_range_bars("ETHUSDT", "2024-08-08", "2024-08-08", 25, market="um")
    assert get_cached_bars("ETHUSDT", "2024-08-08", "2024-08-09", 25, market="um") is None
    assert get_cached_bars("ETHUSDT", "2024-08-08", "2024-08-08", 25, market="um") is not None
    full = get_range_bars("ETHUSDT", "2024-08-08", "2024-08-09", 25, market="um", include_microstructure=True)
    assert isinstance(full, pd.DataFrame)
    assert_matches_golden(full, golden("um", "ETHUSDT", 25))
    # um BTCUSDT has no 2024-08-09 file: the error names the day, nothing partial is returned
    with pytest.raises(DataNotFoundError, match="2024-08-09"):
        get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", 25, market="um")
    assert invalidate("ETHUSDT", 25, market="um", start_date="2024-08-09", end_date="2024-08-09") == 1
    assert get_cached_bars("ETHUSDT", "2024-08-08", "2024-08-09", 25, market="um") is None
    # nothing stored and fetch_if_missing=False: an empty frame and a warning naming the days (7.1.3)
    served = len(mirror.requests)
    with pytest.warns(UserWarning, match=r"on 2024-08-08, 2024-08-09 and fetch_if_missing=False"):
        empty = get_range_bars("ETHUSDT", "2024-08-08", "2024-08-09", 25, market="cm", fetch_if_missing=False)
    assert isinstance(empty, pd.DataFrame) and empty.empty and list(empty.columns) == list(OHLCV_COLUMNS)
    assert len(mirror.requests) == served


def test_day_by_day_requests_continue_the_stream(env: tuple[Path, Mirror]) -> None:
    """Bars asked one day at a time (via checkpoints) equal the two days in one go (split invariance)."""
    get_range_bars("BTCUSDT", "2024-08-08", "2024-08-08", 10)
    day2 = get_range_bars("BTCUSDT", "2024-08-09", "2024-08-09", 10, include_microstructure=True)
    both = get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", 10, include_microstructure=True)
    assert isinstance(both, pd.DataFrame) and isinstance(day2, pd.DataFrame)
    assert_matches_golden(both, golden("spot", "BTCUSDT", 10))
    pd.testing.assert_frame_equal(both[both.index >= "2024-08-09"], day2)


def test_exness_bars_carry_spread_statistics(env: tuple[Path, Mirror]) -> None:
    start, end = "2023-06-23", "2023-06-27"
    bars = get_range_bars("EURGBP", start, end, 10, source="exness", output="polars")
    assert isinstance(bars, pl.DataFrame)
    ticks = TickStore().get_ticks(Series("exness", "spot", "EURGBP"), start, end)
    direct = RangeBarProcessor(10).process(ticks)
    assert bars.height == direct.height > 100
    assert_frame_equal(bars.select(BAR_COLUMNS), direct, check_exact=True)
    # spread statistics against a plain per-bar computation over the ticks each bar consumed
    spread = (ticks["ask"] - ticks["bid"]).cast(pl.Float64).to_numpy()  # exact decimal difference
    ids = ticks["agg_trade_id"].to_numpy()
    for row in bars.sample(20, seed=1).iter_rows(named=True):
        inside = spread[(ids >= row["first_agg_trade_id"]) & (ids <= row["last_agg_trade_id"])]
        assert row["spread_tick_count"] == inside.size == row["agg_record_count"]
        assert row["spread_min"] == inside.min() and row["spread_max"] == inside.max()
        assert row["spread_avg"] == pytest.approx(inside.mean(), rel=1e-12)
    again = get_range_bars("EURGBP", start, end, 10, source="exness", output="polars")
    assert isinstance(again, pl.DataFrame)
    assert_frame_equal(again, bars, check_exact=True)


def test_argument_validation_messages(env: tuple[Path, Mirror]) -> None:
    with pytest.raises(InvalidThresholdError, match=r"^Unknown threshold preset: 'huge'"):
        get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", "huge")
    with pytest.raises(InvalidThresholdError, match="between 1 and 100000"):
        get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", 0)
    with pytest.raises(ValueError, match=r"^Invalid date format: .*expected YYYY-MM-DD"):
        get_range_bars("BTCUSDT", "08/08/2024", "2024-08-09")
    with pytest.raises(ValueError, match="start_date must be <= end_date"):
        get_range_bars("BTCUSDT", "2024-08-09", "2024-08-08")
    with pytest.raises(ValueError, match=r"^Unknown source: 'kraken'"):
        get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", source="kraken")
    with pytest.raises(ValueError, match=r"^Unknown market: 'margin'"):
        get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", market="margin")
    with pytest.raises(ValueError, match="only market 'spot'"):
        get_range_bars("EURGBP", "2023-06-23", "2023-06-23", source="exness", market="um")
    with pytest.raises(ValueError, match=r"^n_bars must be > 0"):
        get_n_range_bars("BTCUSDT", 0)
    with pytest.raises(ValueError, match="invalidate_existing must be one of"):
        precompute_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", invalidate_existing="some")  # type: ignore[call-overload]
    assert Series.of("btcusdt", market="FUTURES-UM").key == "binance-um-BTCUSDT"


def test_store_is_released_after_each_call(env: tuple[Path, Mirror]) -> None:
    tmp, _ = env
    get_range_bars("BTCUSDT", "2024-08-08", "2024-08-08", 100)
    with BarStore(cache_dir=tmp / "other") as other:  # a different chDB directory opens: nothing is held
        assert other.status().series == ()
    assert count_bars("BTCUSDT", 100, end_date=date(2024, 8, 8)) > 0


def test_calls_inside_a_held_store_boot_the_engine_once(
    env: tuple[Path, Mirror], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop of API calls inside ``with BarStore()`` shares that store's engine (docs/storage.md)."""
    connects: list[str] = []
    connect = engine_module._connect

    def counted(dsn: str) -> Any:
        connects.append(dsn)
        return connect(dsn)

    monkeypatch.setattr(engine_module, "_connect", counted)
    with BarStore() as held:
        for threshold in (100, 250):
            precompute_range_bars("BTCUSDT", "2024-08-08", "2024-08-08", threshold)
        assert held.count_bars(Series.of("BTCUSDT"), 250) > 0
    assert len(connects) == 1, "each call booted the engine again"
    count_bars("BTCUSDT", 100)
    assert len(connects) == 2, "the engine closed with the last store"


def test_precompute_validate_on_complete_paths(env: tuple[Path, Mirror]) -> None:
    """Real junction price gaps exceed 10 dbps + 0 tolerance 9 times in the spot BTCUSDT fixture days."""
    args = ("BTCUSDT", "2024-08-08", "2024-08-09", 10)
    with pytest.raises(ContinuityError, match=r"^Found 9 discontinuities in 333 bars") as raised:
        precompute_range_bars(*args, continuity_tolerance_pct=0.0)
    assert len(raised.value.discontinuities) == 9 and raised.value.discontinuities[0]["kind"] == "price_gap"
    assert count_bars("BTCUSDT", 10) == 333, "the bars are stored before they are validated"
    with pytest.warns(ContinuityWarning, match="Found 9 discontinuities"):
        warned = precompute_range_bars(*args, continuity_tolerance_pct=0.0, validate_on_complete="warn")
    assert warned.continuity_valid is False and warned.days_cached == 2
    skipped = precompute_range_bars(*args, continuity_tolerance_pct=0.0, validate_on_complete="skip")
    assert skipped.continuity_valid is None
    assert precompute_range_bars(*args).continuity_valid is True  # default tolerance 0.001


def test_exness_bar_spanning_several_days(env: tuple[Path, Mirror]) -> None:
    """At 100 dbps a EURGBP bar opens on Friday 2023-06-23 and closes on Monday 06-26: asked day by
    day, it is carried by checkpoints across the weekend and its spread statistics cover all its ticks."""
    start, end = "2023-06-22", "2023-06-27"
    for day in ("2023-06-22", "2023-06-23", "2023-06-24", "2023-06-25", "2023-06-26", "2023-06-27"):
        get_range_bars("EURGBP", day, day, 100, source="exness")
    cached = get_range_bars("EURGBP", start, end, 100, source="exness", output="polars")
    fresh = get_range_bars("EURGBP", start, end, 100, source="exness", output="polars", use_cache=False)
    assert isinstance(cached, pl.DataFrame) and isinstance(fresh, pl.DataFrame)
    assert_frame_equal(cached, fresh, check_exact=True)
    days = (pl.col("close_time").dt.date() - pl.col("open_time").dt.date()).dt.total_days()
    long = cached.filter(days >= 3).row(0, named=True)
    assert (long["open_time"].date(), long["close_time"].date()) == (date(2023, 6, 23), date(2023, 6, 26))
    ticks = TickStore().get_ticks(Series("exness", "spot", "EURGBP"), "2023-06-23", "2023-06-26")
    inside = ticks.filter(
        pl.col("agg_trade_id").is_between(long["first_agg_trade_id"], long["last_agg_trade_id"])
    )
    spread = (inside["ask"] - inside["bid"]).cast(pl.Float64)
    assert long["spread_tick_count"] == inside.height == long["agg_record_count"]
    assert inside["timestamp"].dt.date().n_unique() >= 3
    assert (long["spread_min"], long["spread_max"]) == (spread.min(), spread.max())
    assert long["spread_avg"] == pytest.approx(spread.mean(), rel=1e-12)
    # validate_on_complete="error" (default) passes: Exness ids are synthetic and not checked as contiguous
    assert precompute_range_bars("EURGBP", start, end, 10, source="exness").continuity_valid is True


def test_precompute_of_several_thresholds_decodes_each_day_once_and_equals_single_runs(
    env: tuple[Path, Mirror], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, _ = env
    reads: list[date] = []
    read_day = TickStore.read_day

    def counting(self: TickStore, series: Series, day: date | str, **kwargs: bool) -> pl.DataFrame:
        reads.append(date.fromisoformat(str(day)))
        return read_day(self, series, day, **kwargs)

    monkeypatch.setattr(TickStore, "read_day", counting)
    results = precompute_range_bars("ETHUSDT", "2024-08-08", "2024-08-09", [25, 50], market="um")
    assert [r.threshold_decimal_bps for r in results] == [25, 50]
    assert [(r.days_computed, r.total_bars > 0) for r in results] == [(2, True), (2, True)], results
    assert sorted(reads) == [date(2024, 8, 8), date(2024, 8, 9)]  # one decode per day (the next read ahead)

    monkeypatch.setattr(TickStore, "read_day", read_day)
    for result in results:  # the same bars as one threshold at a time, from a fresh store
        alone = get_range_bars(
            "ETHUSDT", "2024-08-08", "2024-08-09", result.threshold_decimal_bps, market="um",
            use_cache=False, output="polars",
        )  # fmt: skip
        stored = get_cached_bars(
            "ETHUSDT", "2024-08-08", "2024-08-09", result.threshold_decimal_bps, market="um", output="polars"
        )
        assert isinstance(alone, pl.DataFrame) and isinstance(stored, pl.DataFrame)
        assert_frame_equal(stored, alone)
        assert stored.height == result.total_bars
    del cache
