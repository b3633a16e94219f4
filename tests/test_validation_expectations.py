"""The great-expectations suite: golden series pass; planted defects fail the named expectation."""

from __future__ import annotations

import json

import polars as pl
import pytest

from rangebar_pipeline.validation import validate_expectations
from tests.data_paths import GOLDEN_SERIES, Market, kernel_days, load_golden


@pytest.fixture(scope="module")
def golden() -> pl.DataFrame:
    return load_golden("cm", "ETHUSD_PERP", 10)


@pytest.mark.parametrize(("market", "symbol", "dbps"), GOLDEN_SERIES)
def test_every_golden_series_passes(market: Market, symbol: str, dbps: int) -> None:
    result = validate_expectations(load_golden(market, symbol, dbps))
    assert result.passed, result.failures
    assert result.evaluated == result.successful > 40


def test_kernel_feature_table_with_series_columns_passes() -> None:
    _, bars, _ = kernel_days("um", "BTCUSDT", 25)[0]
    table = bars.with_columns(pl.lit("BTCUSDT").alias("symbol"), pl.lit(25).alias("threshold_decimal_bps"))
    result = validate_expectations(table, series_columns=("symbol", "threshold_decimal_bps"), min_rows=1)
    assert result.passed, result.failures
    assert "expect_compound_columns_to_be_unique:symbol,threshold_decimal_bps,...(4 columns)" in [
        c.name for c in result.checks
    ]
    doubled = pl.concat([table, table.tail(1)])
    dup = validate_expectations(doubled, series_columns=("symbol", "threshold_decimal_bps"))
    assert dup.failures == [
        "expect_compound_columns_to_be_unique:symbol,threshold_decimal_bps,...(4 columns)"
    ]


def _set(frame: pl.DataFrame, row: int, column: str, value: float) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )


def test_out_of_range_feature_is_named(golden: pl.DataFrame) -> None:
    result = validate_expectations(_set(golden, 9, "ofi", 1.5))
    assert result.failures == ["expect_column_values_to_be_between:ofi"]
    outcome = result.check("expect_column_values_to_be_between:ofi")
    assert outcome.rows == (9,)
    assert "1.5" in outcome.detail


def test_nan_feature_is_named(golden: pl.DataFrame) -> None:
    result = validate_expectations(_set(golden, 4, "price_impact", float("nan")))
    assert "expect_column_values_to_not_be_null:price_impact" in result.failures


def test_duplicated_bar_is_named(golden: pl.DataFrame) -> None:
    result = validate_expectations(pl.concat([golden, golden[10]]))
    assert len(result.failures) == 1
    assert result.failures[0].startswith("expect_compound_columns_to_be_unique:close_time")


def test_column_set_types_and_row_count(golden: pl.DataFrame) -> None:
    missing = validate_expectations(golden.drop("ofi"))
    assert "expect_table_columns_to_match_set:table" in missing.failures
    assert "ofi" in missing.check("expect_table_columns_to_match_set:table").detail
    wrong_type = validate_expectations(golden.with_columns(pl.col("agg_record_count").cast(pl.Float64)))
    assert wrong_type.failures == ["expect_column_type_to_be:agg_record_count"]
    too_few = validate_expectations(golden, min_rows=golden.height + 1)
    assert too_few.failures == ["expect_table_row_count_to_be_between:table"]


def test_pandas_input_and_json_summary(golden: pl.DataFrame) -> None:
    pdf = golden.to_pandas().set_index("close_time").rename_axis("timestamp")
    pdf = pdf.rename(
        columns={"open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}
    )
    result = validate_expectations(pdf)
    assert result.passed
    meta = json.loads(json.dumps(result.to_metadata()))
    assert meta["evaluated_expectations"] == meta["successful_expectations"] == result.evaluated
    assert result.to_dict()["success"] is True
