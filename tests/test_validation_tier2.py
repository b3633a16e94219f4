"""Tier 2: a planted predictive signal is found and passes; pure noise fails the rule."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from rangebar_pipeline.validation import validate_tier2
from rangebar_pipeline.validation._frames import as_bar_frame
from rangebar_pipeline.validation.tier2 import TABLE_SCHEMA
from tests.data_paths import load_golden

N_BARS = 3000
PLANTED = ("ofi", "turnover_imbalance", "vwap_close_deviation")


def synthetic_bars(*, predictive: bool, seed: int = 7) -> pl.DataFrame:
    """A long series of consistent bars whose planted features lead the next bar's return."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, 0.002, N_BARS + 1)
    close = 100.0 * np.cumprod(1.0 + returns[1:])
    open_ = np.concatenate([[100.0], close[:-1]])
    forward = np.concatenate([returns[2:], [0.0]])  # close[i+1]/close[i] - 1
    signal = forward / 0.002 if predictive else np.zeros(N_BARS)

    def planted() -> np.ndarray:
        return np.tanh(0.5 * signal + rng.normal(0.0, 1.0, N_BARS))

    buy = rng.integers(1, 10**8, N_BARS)
    sell = rng.integers(1, 10**8, N_BARS)
    times = np.arange(N_BARS, dtype=np.int64) * 60_000_000
    counts = rng.integers(2, 50, N_BARS)
    frame = pl.DataFrame(
        {
            "open_time": times,
            "close_time": times + 1_000_000,
            "open": np.round(open_, 8),
            "high": np.round(np.maximum(open_, close), 8),
            "low": np.round(np.minimum(open_, close), 8),
            "close": np.round(close, 8),
            "volume": (buy + sell) / 1e8,
            "buy_volume": buy / 1e8,
            "sell_volume": sell / 1e8,
            "individual_trade_count": counts,
            "agg_record_count": counts,
            "duration_us": np.full(N_BARS, 1_000_000),
            "ofi": planted(),
            "turnover_imbalance": planted(),
            "vwap_close_deviation": planted(),
            "price_impact": rng.exponential(1.0, N_BARS),
            "trade_intensity": rng.exponential(10.0, N_BARS),
            "aggression_ratio": rng.exponential(1.0, N_BARS),
        }
    )
    return frame.with_columns(
        pl.col("open_time", "close_time").cast(pl.Datetime("us", "UTC")),
        ((pl.col("high") + pl.col("low")) / 2).round(8).alias("vwap"),
    )


def test_planted_predictive_features_are_found_and_pass() -> None:
    result = validate_tier2(synthetic_bars(predictive=True))
    assert result.tier1.passed, result.tier1.failures
    assert result.passed
    assert set(result.significant_features) == set(PLANTED)
    assert result.significant_feature_count == 3
    table = result.table
    assert table.schema == pl.Schema(TABLE_SCHEMA)
    assert table.height == 7
    ofi = table.filter(pl.col("feature") == "ofi").row(0, named=True)
    assert ofi["spearman_rho"] > 0.2 and ofi["spearman_p_value"] < 1e-10
    assert ofi["adf_stationary"] and ofi["kpss_stationary"]
    assert ofi["mutual_info"] > table.filter(pl.col("feature") == "price_impact")["mutual_info"][0]


def test_pure_noise_fails_the_rule() -> None:
    result = validate_tier2(synthetic_bars(predictive=False))
    assert result.tier1.passed
    assert not result.passed
    assert result.failures == ["significant_features"]
    assert "found" in result.check("significant_features").detail


def test_deterministic_and_json_metadata() -> None:
    bars = synthetic_bars(predictive=True)
    first, second = validate_tier2(bars), validate_tier2(bars)
    assert first.table.equals(second.table)
    meta = json.loads(json.dumps(first.to_metadata()))
    assert meta["significant_feature_count"] == 3
    assert len(meta["feature_table"]) == 7
    assert meta["feature_table_markdown"].startswith("| feature |")
    as_dict = first.to_dict()
    assert as_dict["tier2_passed"] is True
    power = as_dict["predictive_power"]
    assert isinstance(power, dict)
    assert power["ofi"] == {
        "spearman_rho": pytest.approx(0.3, abs=0.2),
        "p_value": pytest.approx(0, abs=1e-9),
        "significant": True,
    }


def test_tier1_failure_fails_tier2() -> None:
    bars = synthetic_bars(predictive=True).with_columns(pl.lit(1.5).alias("ofi"))
    result = validate_tier2(bars)
    assert "tier1_passed" in result.failures
    assert "ofi_bounded" in result.check("tier1_passed").detail


def test_golden_series_reports_every_feature_and_correlated_pairs() -> None:
    result = validate_tier2(load_golden("spot", "ETHUSDT", 5), threshold_decimal_bps=5)
    assert result.tier1.passed
    assert result.table["feature"].to_list()[:2] == ["duration_us", "ofi"]
    assert result.table["n"].min() == 739
    # ofi and turnover_imbalance carry the same sign information: rank-identical here
    pairs = {(a, b): r for a, b, r in result.high_correlation_pairs}
    assert pairs[("ofi", "turnover_imbalance")] == pytest.approx(1.0)
    short = validate_tier2(load_golden("spot", "BTCUSDT", 100))  # 9 bars: too few for the tests
    assert short.table["adf_p_value"].null_count() == short.table.height
    assert short.failures == ["significant_features"]


def test_mutual_information_on_threads_equals_the_serial_estimate() -> None:
    """The estimate runs a feature per thread; the scores are those of one thread, bit for bit."""
    from sklearn.feature_selection import mutual_info_regression

    bars = synthetic_bars(predictive=True)
    table = validate_tier2(bars).table
    frame = as_bar_frame(bars)
    frame = frame.with_columns((pl.col("close").shift(-1) / pl.col("close") - 1).alias("forward_return"))
    names = table["feature"].to_list()
    aligned = frame.select(pl.col(c).cast(pl.Float64) for c in [*names, "forward_return"]).fill_nan(None)
    aligned = aligned.drop_nulls()
    serial = mutual_info_regression(
        aligned.select(names).to_numpy(), aligned["forward_return"].to_numpy(), random_state=42
    )
    assert table["mutual_info"].to_list() == [float(s) for s in serial]
