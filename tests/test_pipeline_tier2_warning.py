"""The tier2 warning: green on real bars, and a planted defect names statistic, feature, value, threshold."""

from __future__ import annotations

import polars as pl
import pytest

from rangebar_pipeline import process_trades_polars
from rangebar_pipeline.assets.features import LEAK_RHO, feature_table, tier2_verdict
from rangebar_pipeline.series import Series
from tests.api_support import SHARED

BNB = Series("binance", "spot", "BNBUSDT")


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    """The feature table of 572 real bars (BNBUSDT, 10 dbps)."""
    trades = pl.read_parquet(SHARED / "real" / "BNBUSDT-aggTrades-2023-06-01-slice.parquet")
    bars = process_trades_polars(
        trades.rename({"close": "price"}), 10, include_microstructure=True, output="polars"
    )
    assert isinstance(bars, pl.DataFrame)
    return feature_table(bars, BNB, 10, (1, 5))


def test_real_bars_pass_and_the_description_reports_significance_without_judging_it(
    table: pl.DataFrame,
) -> None:
    passed, description, metadata = tier2_verdict([table], 10)
    assert passed, description
    assert f"{table.height} bars of 1 day(s)" in description
    assert "significant against fwd_return_1" in description
    assert metadata["findings"].value == "(none)"


def test_a_leaking_feature_fails_naming_statistic_feature_value_and_threshold(table: pl.DataFrame) -> None:
    leaked = table.with_columns(pl.col("fwd_return_1").fill_null(0.0).alias("ofi"))
    passed, description, _ = tier2_verdict([leaked], 10)
    assert not passed
    assert f"|spearman_rho(ofi, fwd_return_1)| = 1.000 >= {LEAK_RHO}" in description


def test_a_random_walk_feature_fails_as_non_stationary(table: pl.DataFrame) -> None:
    drifting = table.with_columns(pl.col("ofi").cum_sum().alias("ofi"))
    passed, description, metadata = tier2_verdict([drifting], 10)
    assert not passed
    assert "adf_p_value(ofi) = " in description and "(non-stationary by both tests)" in description
    assert "> 0.05 and kpss_p_value = " in metadata["findings"].value


def test_too_few_bars_is_no_warning(table: pl.DataFrame) -> None:
    passed, description, _ = tier2_verdict([table.head(10)], 10)
    assert passed and "too few for the statistics" in description
