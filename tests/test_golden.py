"""Golden tests: our bars equal the reference's (rangebar 7.1.3, batch rule) on real trades."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pytest

from rangebar_pipeline.processing import RangeBarProcessor
from tests.data_paths import GOLDEN_DIR, GOLDEN_SERIES, Market, read_fixture_trades

EXACT_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "buy_volume", "sell_volume")
COUNT_COLUMNS = ("individual_trade_count", "agg_record_count", "duration_us")
FEATURE_COLUMNS = (
    "ofi", "vwap_close_deviation", "price_impact", "kyle_lambda_proxy", "trade_intensity",
    "volume_per_trade", "aggression_ratio", "aggregation_efficiency", "turnover_imbalance",
)  # fmt: skip


def _run(market: Market, symbol: str, threshold: int) -> tuple[pl.DataFrame, RangeBarProcessor]:
    processor = RangeBarProcessor(threshold)
    return processor.process(read_fixture_trades(market, symbol)), processor


@pytest.mark.parametrize(("market", "symbol", "threshold"), GOLDEN_SERIES)
def test_bars_equal_golden(market: Market, symbol: str, threshold: int) -> None:
    golden = pl.read_parquet(GOLDEN_DIR / f"{market}_{symbol}_{threshold}.parquet")
    bars, _ = _run(market, symbol, threshold)
    assert bars.height == golden.height
    np.testing.assert_array_equal(
        bars["close_time"].dt.epoch("us").to_numpy(), golden["close_time_us"].to_numpy()
    )
    np.testing.assert_array_equal(
        bars["open_time"].dt.epoch("us").to_numpy(), golden["open_time_us"].to_numpy()
    )
    for column in EXACT_COLUMNS:
        np.testing.assert_allclose(
            bars[column].to_numpy(), golden[column].to_numpy(), rtol=0, atol=1e-8, err_msg=column
        )
    for column in COUNT_COLUMNS:
        np.testing.assert_array_equal(bars[column].to_numpy(), golden[column].to_numpy(), err_msg=column)
    for column in FEATURE_COLUMNS:
        np.testing.assert_allclose(
            bars[column].to_numpy(), golden[column].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=column
        )
    # Trade ids are kept: agg ids contiguous from bar to bar (batch rule: next bar opens at the next trade).
    first, last = bars["first_agg_trade_id"].to_numpy(), bars["last_agg_trade_id"].to_numpy()
    np.testing.assert_array_equal(first[1:], last[:-1] + 1)


@pytest.mark.parametrize(("market", "symbol", "threshold"), GOLDEN_SERIES)
def test_trailing_bar_equals_golden_incomplete(market: Market, symbol: str, threshold: int) -> None:
    expected = json.loads((GOLDEN_DIR / f"{market}_{symbol}_{threshold}_incomplete.json").read_text())
    _, processor = _run(market, symbol, threshold)
    bar = processor.incomplete_bar()
    if expected is None:
        assert bar is None
        return
    assert bar is not None
    # The reference prints close times through a float (a few hundred ns off): compare to the microsecond.
    reference_close_ns = pd.Timestamp(expected["timestamp"]).value
    ours_ns = pd.Timestamp(bar["close_time"]).value
    assert abs(ours_ns - reference_close_ns) < 1_000
    for column in EXACT_COLUMNS:
        assert bar[column] == pytest.approx(expected[column], abs=1e-8), column
    assert bar["individual_trade_count"] == expected["individual_trade_count"]
    assert bar["agg_record_count"] == expected["agg_record_count"]
    # The reference leaves the trailing bar's features at 0; ours computes them like any bar's.
    assert bar["duration_us"] == int((bar["close_time"] - bar["open_time"]).total_seconds() * 1e6)
    assert -1.0 <= bar["ofi"] <= 1.0
