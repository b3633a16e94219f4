"""The great-expectations suite: golden series pass; planted defects fail the named expectation."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pytest

from rangebar_pipeline.validation import CheckOutcome, validate_expectations
from rangebar_pipeline.validation._frames import as_bar_frame
from rangebar_pipeline.validation.column_rules import column_rules
from rangebar_pipeline.validation.expectations import _check_name, _outcome, build_expectations
from tests.data_paths import GOLDEN_SERIES, Market, fixture_ticks, kernel_days, load_golden


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


# --- differential: the polars column rules + GX table suite against the whole suite through GX ---

_GX_STATE: dict[str, Any] = {}
_SUITE_IDS = itertools.count()


def _full_suite_through_gx(bars: pl.DataFrame, **options: Any) -> list[CheckOutcome]:
    """The old path: every expectation of :func:`build_expectations` validated by GX on the pandas
    frame, each result summarised as the gate does; in GX's result order."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if not _GX_STATE:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = context.data_sources.add_pandas("differential").add_dataframe_asset("table")
        _GX_STATE.update(context=context, batches=asset.add_batch_definition_whole_dataframe("whole"))
    frame = as_bar_frame(bars)
    suite = gx.ExpectationSuite(name=f"full_suite_{next(_SUITE_IDS)}")
    for expectation in build_expectations(frame.columns, **options):
        suite.add_expectation(expectation)
    suite = _GX_STATE["context"].suites.add(suite)
    batch = _GX_STATE["batches"].get_batch(batch_parameters={"dataframe": frame.to_pandas()})
    return [_outcome(r) for r in batch.validate(suite, result_format="SUMMARY").results]


Corruption = Callable[[pl.DataFrame], pl.DataFrame]
NAN, INF = float("nan"), float("inf")
KERNEL_KEYS = ("symbol", "threshold_decimal_bps")


def _put(column: str, rows: list[int], value: Any, dtype: Any = None) -> Corruption:
    """Set ``column`` to ``value`` (cast to ``dtype``) in ``rows``."""
    hit = pl.int_range(pl.len()).is_in(rows)
    expr = pl.when(hit).then(pl.lit(value, dtype)).otherwise(pl.col(column)).alias(column)
    return lambda f: f.with_columns(expr)


def _cast(column: str, dtype: Any) -> Corruption:
    return lambda f: f.with_columns(pl.col(column).cast(dtype))


def _replace(column: str, expr: pl.Expr) -> Corruption:
    return lambda f: f.with_columns(expr.alias(column))


def _drop(column: str) -> Corruption:
    return lambda f: f.drop(column)


def _duplicate(*rows: int) -> Corruption:
    return lambda f: pl.concat([f, *(f[r] for r in rows)])


@dataclass(frozen=True)
class Case:
    """A corruption of a base table: "golden" (cm ETHUSD_PERP at 10 dbps: no ids, no lookback or
    intra columns) or "kernel" (a day of um BTCUSDT bars with every group and series columns)."""

    name: str
    steps: tuple[Corruption, ...]
    base: str = "golden"
    options: dict[str, Any] = field(default_factory=dict)
    passes: bool = False

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        return functools.reduce(lambda acc, step: step(acc), self.steps, frame)


def _golden(name: str, *steps: Corruption, passes: bool = False, **options: Any) -> Case:
    return Case(name, steps, "golden", options, passes)


def _kernel(name: str, *steps: Corruption, passes: bool = False, **options: Any) -> Case:
    return Case(name, steps, "kernel", {"series_columns": KERNEL_KEYS, **options}, passes)


CASES: tuple[Case, ...] = (
    _golden("intact", passes=True),
    _golden("ofi above 1 in five rows", _put("ofi", [2, 5, 7, 9, 30], 1.5)),
    _golden("strict minimum: open == 0", _put("open", [3], 0.0)),
    _golden("strict minimum: vwap -0.0, high below 0", _put("vwap", [1], -0.0), _put("high", [4], -1.0)),
    _golden("inclusive minimum: volume == 0", _put("volume", [3, 4], 0.0), passes=True),
    _golden(
        "inclusive minimum: efficiency 1 passes, 0.999 fails",
        _put("aggregation_efficiency", [3], 1.0),
        _put("aggregation_efficiency", [6], 0.999),
    ),
    _golden("integer minimum: trade count 0", _put("individual_trade_count", [0, 8], 0)),
    _golden(
        "maximum: aggression 100 passes, above fails",
        _put("aggression_ratio", [1], 100.0),
        _put("aggression_ratio", [2], 100.000001),
    ),
    _golden("NaN feature", _put("price_impact", [4, 11], NAN)),
    _golden("null feature", _put("price_impact", [4, 6, 8, 10], None, pl.Float64)),
    _golden("NaN and null in one column", _put("ofi", [1], NAN), _put("ofi", [2], None, pl.Float64)),
    _golden("null integer (pandas float64)", _put("agg_record_count", [3], None, pl.Int64)),
    _golden(
        "null integer, another below its minimum",
        _put("duration_us", [3], None, pl.Int64),
        _put("duration_us", [5], -1),
    ),
    _golden("null timestamp", _put("open_time", [1], None, pl.Datetime("us", "UTC"))),
    _golden(
        "infinities",
        _put("volume", [1], INF),
        _put("ofi", [2], -INF),
        _put("price_impact", [3], -INF),
    ),
    _golden("Float32 feature out of range", _put("ofi", [2], 1.5), _cast("ofi", pl.Float32)),
    _golden("integer as Float64", _cast("agg_record_count", pl.Float64)),
    _golden("Int32 below its minimum", _put("duration_us", [2], -5), _cast("duration_us", pl.Int32)),
    _golden("float as Int64", _replace("price_impact", pl.col("price_impact").round().cast(pl.Int64))),
    _golden("feature as strings", _cast("ofi", pl.String)),
    _golden("feature as null strings", _replace("ofi", pl.lit(None, pl.String))),
    _golden("feature as booleans", _replace("aggression_ratio", pl.col("aggression_ratio") > 50)),
    _golden("feature all null (Null dtype)", _replace("turnover_imbalance", pl.lit(None))),
    _golden("missing feature column", _drop("ofi")),
    _golden("missing high", _drop("high")),
    _golden("duplicated bars", _duplicate(10, 20)),
    _golden("high below low", _put("high", [1, 2], 1.0)),
    _golden("too few rows", min_rows=10_000),
    _golden("too many rows", max_rows=5),
    _golden("empty table", lambda f: f.head(0), min_rows=1),
    _golden(
        "everything at once",
        _put("ofi", [0], 2.0),
        _put("volume", [1], NAN),
        _put("close", [2], 0.0),
        _duplicate(5),
        _drop("vwap_close_deviation"),
    ),
    _kernel("kernel intact", passes=True, min_rows=1),
    _kernel(
        "nullable lookback: NaN ignored, out of range fails",
        _put("lookback_ofi", [3], NAN),
        _put("lookback_ofi", [4, 6], 1.5),
    ),
    _kernel("nullable integer below its minimum", _put("lookback_duration_us", [5], -1)),
    _kernel(
        "intra ranges",
        _put("intra_ofi", [3], 1.5),
        _put("intra_max_drawdown", [4], -0.1),
        _put("intra_trade_count", [5], 0),
    ),
    _kernel(
        "intra NaN and null", _put("intra_intensity", [2], NAN), _put("intra_ofi", [3], None, pl.Float64)
    ),
    _kernel("missing intra column, duplicated id", _duplicate(7), _drop("intra_hurst")),
)


@pytest.fixture(scope="module")
def kernel_table() -> pl.DataFrame:
    from rangebar_pipeline.options import BarOptions

    ticks = fixture_ticks("um", "BTCUSDT")[0]
    bars = BarOptions(lookback_trades=10, intra_bar=True).processor(25).process(ticks)
    return bars.with_columns(pl.lit("BTCUSDT").alias("symbol"), pl.lit(25).alias("threshold_decimal_bps"))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_same_verdicts_as_the_full_suite_through_gx(
    case: Case, golden: pl.DataFrame, kernel_table: pl.DataFrame
) -> None:
    table = case.apply(golden if case.base == "golden" else kernel_table)
    result = validate_expectations(table, **case.options)
    expected = _full_suite_through_gx(table, **case.options)

    # Same checks, statuses, counts, rows and details; in build_expectations' order.
    order = [_check_name(e.configuration) for e in build_expectations(table.columns, **case.options)]
    assert [c.name for c in result.checks] == order
    assert sorted(result.checks, key=lambda c: c.name) == sorted(expected, key=lambda c: c.name)
    assert result.evaluated == len(expected)
    assert result.successful == sum(c.passed for c in expected)
    assert result.passed is case.passes


def test_the_table_subset_and_the_column_rules_make_the_full_suite(kernel_table: pl.DataFrame) -> None:
    columns = kernel_table.columns
    full = [e.configuration for e in build_expectations(columns, series_columns=KERNEL_KEYS)]
    table = [
        e.configuration for e in build_expectations(columns, series_columns=KERNEL_KEYS, table_only=True)
    ]
    rules = [r.expectation().configuration for r in column_rules(columns)]
    assert full == [*table[:2], *rules, *table[2:]]
    assert len(rules) > 100
    assert [_check_name(c) for c in rules] == [r.name for r in column_rules(columns)]
    assert [c.kwargs for c in rules] == [dict(r.kwargs) for r in column_rules(columns)]
