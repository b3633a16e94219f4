"""Tier 1: every golden series and kernel output passes; each planted defect is named."""

from __future__ import annotations

import json

import polars as pl
import pytest

from rangebar_pipeline.exceptions import InvalidThresholdError
from rangebar_pipeline.validation import validate_tier1
from tests.data_paths import GOLDEN_SERIES, Market, kernel_days, load_golden

DBPS = 25


@pytest.fixture(scope="module")
def golden() -> pl.DataFrame:
    return load_golden("spot", "ETHUSDT", DBPS)


def _set(frame: pl.DataFrame, row: int, **values: float) -> pl.DataFrame:
    at_row = pl.int_range(pl.len()) == row
    return frame.with_columns(
        pl.when(at_row).then(pl.lit(v, pl.Float64)).otherwise(pl.col(c)).alias(c) for c, v in values.items()
    )


@pytest.mark.parametrize(("market", "symbol", "dbps"), GOLDEN_SERIES)
def test_every_golden_series_passes(market: Market, symbol: str, dbps: int) -> None:
    result = validate_tier1(load_golden(market, symbol, dbps), threshold_decimal_bps=dbps)
    assert result.passed, result.to_dict()
    assert result.check("breach_consistent").status == "passed"
    # the golden files have no ids, turnover or buy/sell counts: those checks say so
    assert result.check("turnover_split").status == "not_applicable"
    assert "turnover" in result.check("turnover_split").detail


def test_kernel_bars_pass_every_check() -> None:
    for _, bars, _ in kernel_days("um", "BTCUSDT", 10):
        result = validate_tier1(bars, threshold_decimal_bps=10)
        assert result.passed, result.failures
        assert result.skipped == [] or set(result.skipped) <= {"ofi_corr_sane"}
        assert result.check("turnover_split").status == "passed"
        assert result.check("trade_counts_consistent").status == "passed"


@pytest.mark.parametrize(
    ("defect", "expected_check"),
    [
        ({"ofi": float("nan")}, "no_nan"),
        ({"kyle_lambda_proxy": float("inf")}, "no_inf"),
        ({"high": 1000.0, "low": 1000.5}, "high_ge_low"),
        ({"ofi": 1.5}, "ofi_bounded"),
        ({"turnover_imbalance": -1.0000001}, "turnover_imbalance_bounded"),
    ],
)
def test_planted_value_defects_are_named(
    golden: pl.DataFrame, defect: dict[str, float], expected_check: str
) -> None:
    result = validate_tier1(_set(golden, 17, **defect), threshold_decimal_bps=DBPS)
    assert not result.passed
    assert expected_check in result.failures
    outcome = result.check(expected_check)
    assert outcome.rows == (17,)
    assert "row 17" in outcome.detail


def test_close_outside_range_is_named(golden: pl.DataFrame) -> None:
    bar = golden.row(40, named=True)
    result = validate_tier1(_set(golden, 40, close=bar["high"] + 0.5), threshold_decimal_bps=DBPS)
    assert "close_within_range" in result.failures
    assert result.check("close_within_range").rows == (40,)
    assert f"close={bar['high'] + 0.5!r}" in result.check("close_within_range").detail


def test_range_not_reaching_threshold_is_named(golden: pl.DataFrame) -> None:
    bar = golden.row(5, named=True)
    # squeeze the bar to a range of 0.01 around its open: 25 dbps of ~2700 is ~6.7, never reached
    squeezed = {
        "high": bar["open"] + 0.01,
        "low": bar["open"],
        "close": bar["open"] + 0.01,
        "vwap": bar["open"],
    }
    result = validate_tier1(_set(golden, 5, **squeezed), threshold_decimal_bps=DBPS)
    assert result.failures == ["threshold_reached"]
    assert result.check("threshold_reached").rows == (5,)


def test_breach_rule_uses_fixed_point_threshold(golden: pl.DataFrame) -> None:
    # the same bars are not breaches of a 10x larger threshold (and the check says which rows)
    result = validate_tier1(golden, threshold_decimal_bps=DBPS * 10)
    assert "threshold_reached" in result.failures
    assert result.check("threshold_reached").violations == golden.height


def test_close_below_high_on_upward_breach_is_inconsistent(golden: pl.DataFrame) -> None:
    up = golden.filter(pl.col("close") == pl.col("high")).row(0, named=True)
    row = golden["close_time"].to_list().index(up["close_time"])
    result = validate_tier1(_set(golden, row, high=up["high"] + 0.01), threshold_decimal_bps=DBPS)
    assert result.failures == ["breach_consistent"]
    gated = validate_tier1(
        _set(golden, row, high=up["high"] + 0.01), threshold_decimal_bps=DBPS, same_timestamp_gate=True
    )
    assert gated.passed
    assert gated.check("breach_consistent").status == "not_applicable"


def test_duplicated_bar_is_named(golden: pl.DataFrame) -> None:
    doubled = pl.concat([golden.head(30), golden[29], golden.tail(-30)])
    result = validate_tier1(doubled, threshold_decimal_bps=DBPS)
    assert "no_duplicate_bars" in result.failures
    assert result.check("no_duplicate_bars").rows == (29, 30)


def test_shuffled_row_is_named(golden: pl.DataFrame) -> None:
    order = list(range(golden.height))
    order[50], order[80] = order[80], order[50]
    result = validate_tier1(golden[order], threshold_decimal_bps=DBPS)
    assert "close_time_ascending" in result.failures
    assert 51 in result.check("close_time_ascending").rows or 50 in result.check("close_time_ascending").rows


def test_volume_changed_by_one_unit_is_named(golden: pl.DataFrame) -> None:
    bar = golden.row(12, named=True)
    result = validate_tier1(_set(golden, 12, volume=bar["volume"] + 1e-8), threshold_decimal_bps=DBPS)
    assert result.failures == ["volume_split"]
    assert result.check("volume_split").rows == (12,)


def test_pandas_output_frame_is_accepted(golden: pl.DataFrame) -> None:
    pdf = golden.drop("open_time").to_pandas().set_index("close_time").rename_axis("timestamp")
    pdf = pdf.rename(
        columns={"open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}
    )
    result = validate_tier1(pdf, threshold_decimal_bps=DBPS)
    assert result.passed
    assert result.check("close_time_ascending").status == "passed"
    broken = pdf.copy()
    broken.loc[broken.index[3], "High"] = 1.0
    assert "high_ge_low" in validate_tier1(broken, threshold_decimal_bps=DBPS).failures


def test_result_converts_to_dict_and_json_metadata(golden: pl.DataFrame) -> None:
    result = validate_tier1(_set(golden, 3, ofi=float("nan")), threshold_decimal_bps=DBPS)
    as_dict = result.to_dict()
    assert as_dict["tier1_passed"] is False
    assert as_dict["no_nan"] is False
    assert as_dict["ofi_bounded"] is True
    assert set(as_dict) >= {"ofi_return_corr", "ofi_mean", "aggression_ratio_median", "features_found"}
    meta = json.loads(json.dumps(result.to_metadata()))
    assert meta["failures"] == ["no_nan"]
    assert "ofi" in meta["failure_details"]["no_nan"]


def test_statistics_are_informational(golden: pl.DataFrame) -> None:
    skewed = golden.with_columns(pl.lit(0.9).alias("ofi"))
    result = validate_tier1(skewed, threshold_decimal_bps=DBPS)
    assert result.passed
    assert "ofi_mean_near_zero" in result.warnings
    assert result.statistics["ofi_mean"] == pytest.approx(0.9)


def test_empty_frame_and_missing_features() -> None:
    empty = load_golden("um", "ETHUSDT", 250)
    assert empty.height == 0
    assert validate_tier1(empty, threshold_decimal_bps=250).passed
    ohlc_only = load_golden("spot", "BTCUSDT", 5).select("close_time", "open", "high", "low", "close")
    result = validate_tier1(ohlc_only, threshold_decimal_bps=5)
    assert result.failures == ["features_present"]
    assert "found none" in result.check("features_present").detail


def test_threshold_out_of_range_is_refused(golden: pl.DataFrame) -> None:
    with pytest.raises(InvalidThresholdError, match="found 0"):
        validate_tier1(golden, threshold_decimal_bps=0)
