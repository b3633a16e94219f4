"""Continuity: batch-rule junctions (ids, times), price-gap tiers in the right unit, presets."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import polars as pl
import pytest

from rangebar_pipeline.exceptions import ContinuityError, ContinuityWarning, MissingColumnError
from rangebar_pipeline.validation import (
    VALIDATION_PRESETS,
    AssetClass,
    GapTier,
    TierThresholds,
    ValidationPreset,
    detect_asset_class,
    validate_continuity,
    validate_continuity_tiered,
)
from tests.data_paths import GOLDEN_SERIES, Market, kernel_days, load_golden


def _ohlc(closes_and_opens: list[tuple[float, float]]) -> pd.DataFrame:
    """Bars as (open, close) pairs, in the reference's pandas layout."""
    index = pd.date_range("2024-01-01", periods=len(closes_and_opens), freq="min", tz="UTC", name="timestamp")
    opens = [o for o, _ in closes_and_opens]
    closes = [c for _, c in closes_and_opens]
    return pd.DataFrame(
        {
            "Open": opens,
            "High": [max(o, c) for o, c in closes_and_opens],
            "Low": [min(o, c) for o, c in closes_and_opens],
            "Close": closes,
            "Volume": 1.0,
        },
        index=index,
    )


@pytest.mark.parametrize(("market", "symbol", "dbps"), GOLDEN_SERIES)
def test_every_golden_series_is_continuous(market: Market, symbol: str, dbps: int) -> None:
    bars = load_golden(market, symbol, dbps)
    assert validate_continuity(bars, threshold_decimal_bps=dbps).passed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no tolerance warning either
        tiered = validate_continuity_tiered(bars, dbps, validation="strict", symbol=symbol)
    assert tiered.is_valid
    assert tiered.asset_class_detected is AssetClass.CRYPTO
    assert sum(tiered.summary_dict().values()) == max(bars.height - 1, 0)


def test_unit_slip_of_the_reference_is_fixed_at_250_dbps() -> None:
    import rangebar

    # close 100.0, next open 100.6: a 0.6 % gap, above the 0.25 % threshold + 0.1 % tolerance
    frame = _ohlc([(99.75, 100.0), (100.6, 100.85)])
    reference = rangebar.validate_continuity(frame, tolerance_pct=0.001, threshold_decimal_bps=250)
    assert reference["is_valid"] is True  # the reference reads 250 dbps as 2.5 %
    ours = validate_continuity(frame, tolerance_pct=0.001, threshold_decimal_bps=250)
    assert ours["is_valid"] is False
    assert ours.discontinuities[0].kind == "price_gap"
    assert ours.discontinuities[0].gap_pct == pytest.approx(0.006)
    assert "0.0035" in ours.discontinuities[0].detail  # the limit: 0.0025 + 0.001
    assert ours.failures == ["price_gaps_within_tolerance"]

    tiered = validate_continuity_tiered(frame, 250, validation="skip")
    assert tiered.threshold_used_pct == 0.0025
    ref_tiered = rangebar.validate_continuity_tiered(frame, 250, validation="permissive")
    assert ref_tiered.threshold_used_pct == pytest.approx(0.025)
    # 0.6 % >= 2 x 0.25 %: a session-boundary gap for us, a microstructure gap for the reference
    ours_tiered = validate_continuity_tiered(frame, 250, validation="research")  # tolerance 2 %: no warning
    assert ours_tiered.has_session_breaks
    assert not ours_tiered.is_valid
    assert ref_tiered.is_valid
    with pytest.warns(ContinuityWarning, match="1 gap"):
        validate_continuity_tiered(frame, 250, validation={"tolerance_pct": 0.005, "mode": "warn"})


def test_kernel_bars_are_continuous_across_the_day_boundary() -> None:
    days = kernel_days("spot", "ETHUSDT", 25)
    (_, day1, _), (_, day2, _) = days
    assert validate_continuity(day1, threshold_decimal_bps=25).passed
    joined = validate_continuity(day2, threshold_decimal_bps=25, previous_bar=day1.tail(1))
    assert joined.passed
    assert joined.check("ids_contiguous").status == "passed"
    # also as a dict (e.g. read back from the bar store)
    assert validate_continuity(day2, threshold_decimal_bps=25, previous_bar=day1.row(-1, named=True)).passed


def test_lost_state_at_the_day_boundary_is_caught() -> None:
    from rangebar_pipeline.processing import RangeBarProcessor

    days = kernel_days("spot", "ETHUSDT", 25)
    (_, day1, incomplete), (ticks2, _, _) = days
    assert incomplete is not None
    restarted = RangeBarProcessor(25).process(ticks2)  # the trailing bar of day 1 was dropped
    result = validate_continuity(restarted, threshold_decimal_bps=25, previous_bar=day1.tail(1))
    assert result.failures == ["ids_contiguous"]
    (gap,) = result.discontinuities
    assert gap.bar_index == 0
    assert gap.expected_first_id == day1["last_agg_trade_id"][-1] + 1
    assert gap.actual_first_id == incomplete["last_agg_trade_id"] + 1
    assert f"{incomplete['agg_record_count']} missing trade(s)" in gap.detail


def test_missing_trade_is_caught_as_an_id_gap() -> None:
    from rangebar_pipeline.processing import RangeBarProcessor

    ticks, bars, _ = kernel_days("um", "ETHUSDT", 10)[0]
    victim = int(bars["first_agg_trade_id"][20])  # the opening trade of bar 20
    gappy = RangeBarProcessor(10).process(ticks.filter(pl.col("agg_trade_id") != victim))
    result = validate_continuity(gappy, threshold_decimal_bps=10)
    assert "ids_contiguous" in result.failures
    hit = next(d for d in result.discontinuities if d.kind == "id_gap")
    assert hit.expected_first_id == victim
    assert hit.actual_first_id == victim + 1
    assert "1 missing trade(s)" in hit.detail


def test_duplicated_bar_breaks_ids_and_times() -> None:
    _, bars, _ = kernel_days("um", "ETHUSDT", 10)[0]
    doubled = pl.concat([bars.head(11), bars[10], bars.tail(-11)])
    result = validate_continuity(doubled, threshold_decimal_bps=10)
    assert "ids_contiguous" in result.failures
    assert result.discontinuities[0].bar_index == 11
    assert "overlapping trades" in result.discontinuities[0].detail
    assert json.loads(json.dumps(result.to_metadata()))["discontinuity_count"] >= 1


def test_tiered_modes_and_classification() -> None:
    # gaps: 0 (precision), 0.00005 (noise), 0.0005 (market move), 0.004 (microstructure at 250 dbps)
    frame = _ohlc([(100.0, 100.0), (100.0, 100.0), (100.005, 100.0), (100.05, 100.0), (100.4, 100.0)])
    result = validate_continuity_tiered(frame, 250, validation="permissive")
    assert result.summary_dict() == {
        "PRECISION": 1,
        "NOISE": 1,
        "MARKET_MOVE": 1,
        "MICROSTRUCTURE": 1,
        "SESSION_BOUNDARY": 0,
    }
    assert result.is_valid and result.has_microstructure_events and not result.has_session_breaks
    assert [g.tier for g in result.all_gaps] == [GapTier.NOISE, GapTier.MARKET_MOVE, GapTier.MICROSTRUCTURE]
    with pytest.raises(ContinuityError, match="Continuity tolerance exceeded: 1 gap") as raised:
        validate_continuity_tiered(frame, 250, validation="paranoid")
    assert raised.value.discontinuities[0]["bar_index"] == 4
    with pytest.raises(ContinuityError):
        validate_continuity_tiered(frame, 250, validation={"tolerance_pct": 0.0001, "mode": "error"})
    custom = ValidationPreset(0.5, "error", TierThresholds(session_factor=1.0))
    assert validate_continuity_tiered(frame, 250, validation=custom).has_session_breaks
    with pytest.raises(ValueError, match="Unknown validation preset: 'nope'"):
        validate_continuity_tiered(frame, 250, validation="nope")
    with pytest.raises(TypeError, match="found int"):
        validate_continuity_tiered(frame, 250, validation=3)  # type: ignore[arg-type]


def test_presets_and_asset_classes_as_the_reference() -> None:
    names = "permissive research standard strict paranoid crypto forex equities skip audit"
    assert set(VALIDATION_PRESETS) == set(names.split())
    assert VALIDATION_PRESETS["strict"] == ValidationPreset(
        0.005, "error", description="Raise on gaps above 0.5%"
    )
    cases = {"XAUUSD": "forex", "AAPL": "unknown", "SOLBTC": "crypto", "ETHUSD": "crypto", "EURGBP": "forex"}
    for symbol, expected in cases.items():
        assert detect_asset_class(symbol).value == expected
    result = validate_continuity_tiered(
        _ohlc([(1.0, 1.0), (1.0, 1.0)]), 250, validation="auto", symbol="EURGBP"
    )
    assert result.preset_used == "forex"  # "auto" resolved
    assert result.asset_class_detected is AssetClass.FOREX


def test_missing_columns_and_empty_input() -> None:
    with pytest.raises(MissingColumnError, match="'open' and 'close'"):
        validate_continuity(pl.DataFrame({"high": [1.0]}))
    empty = load_golden("um", "ETHUSDT", 250)
    assert validate_continuity(empty, threshold_decimal_bps=250).passed
    one = load_golden("spot", "BTCUSDT", 250)
    assert validate_continuity_tiered(one, 250).is_valid
