"""Conservation: kernel bars built from the real fixture ticks cover every tick exactly once."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from rangebar_pipeline.exceptions import MissingColumnError
from rangebar_pipeline.schema import BAR_SCHEMA
from rangebar_pipeline.validation import validate_conservation
from tests.data_paths import FIXTURE_SERIES, Market, kernel_days, load_golden


@pytest.mark.parametrize(("market", "symbol"), FIXTURE_SERIES)
@pytest.mark.parametrize("dbps", [5, 50])
def test_kernel_bars_conserve_every_tick_across_days(market: Market, symbol: str, dbps: int) -> None:
    carried = None
    for ticks, bars, incomplete in kernel_days(market, symbol, dbps):
        result = validate_conservation(bars, ticks, incomplete_bar=incomplete, carried_in=carried)
        assert result.passed, result.to_dict()
        expected = ticks["quantity"].cast(pl.Decimal(38, 8)).sum()
        assert result.tick_volume == result.bar_volume == Decimal(str(expected))
        carried = incomplete


@pytest.fixture(scope="module")
def day() -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    ticks, bars, incomplete = kernel_days("spot", "BTCUSDT", 10)[0]
    assert incomplete is not None
    return ticks, bars, incomplete


def test_missing_tick_is_named(day: tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]) -> None:
    ticks, bars, incomplete = day
    inside = int(bars["first_agg_trade_id"][7]) + 1  # a tick inside bar 7
    result = validate_conservation(
        bars, ticks.filter(pl.col("agg_trade_id") != inside), incomplete_bar=incomplete
    )
    assert "record_counts_match" in result.failures
    assert "volume_conserved" in result.failures
    assert result.check("record_counts_match").rows == (7,)
    assert "bar 7" in result.check("record_counts_match").detail


def test_volume_changed_by_one_unit_is_named(
    day: tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]],
) -> None:
    ticks, bars, incomplete = day
    bumped = bars.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.col("volume") + 1e-8)
        .otherwise(pl.col("volume"))
        .alias("volume")
    )
    result = validate_conservation(bumped, ticks, incomplete_bar=incomplete)
    assert result.failures == ["volume_conserved", "totals_match"]
    assert result.check("volume_conserved").rows == (3,)
    assert "diff +1 units" in result.check("volume_conserved").detail


def test_trade_id_gap_between_bars_is_named(
    day: tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]],
) -> None:
    ticks, bars, incomplete = day
    dropped = pl.concat([bars.head(5), bars.tail(-6)])  # bar 5 lost: its ticks are covered by nobody
    result = validate_conservation(dropped, ticks, incomplete_bar=incomplete)
    assert "ids_contiguous" in result.failures
    assert result.check("ids_contiguous").rows == (5,)
    assert f"({int(bars['agg_record_count'][5]):+d} tick(s) between)" in result.check("ids_contiguous").detail


@pytest.mark.parametrize(
    ("column", "named"),
    [
        ("first_agg_trade_id", "ids_in_ticks"),
        ("last_agg_trade_id", "ids_in_ticks"),
        ("agg_record_count", "record_counts_match"),
    ],
)
def test_a_null_id_or_count_is_a_violation_of_its_bar(
    day: tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]], column: str, named: str
) -> None:
    ticks, bars, incomplete = day
    blanked = bars.with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise(pl.col(column)).alias(column)
    )
    result = validate_conservation(blanked, ticks, incomplete_bar=incomplete)
    assert result.check(named).rows == (2,)
    assert "bar 2" in result.check(named).detail


def test_duplicated_bar_is_named(day: tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]) -> None:
    ticks, bars, incomplete = day
    doubled = pl.concat([bars.head(9), bars[8], bars.tail(-9)])
    result = validate_conservation(doubled, ticks, incomplete_bar=incomplete)
    assert {"ids_contiguous", "totals_match"} <= set(result.failures)
    assert result.check("ids_contiguous").rows == (9,)


def test_trailing_ticks_need_the_incomplete_bar(
    day: tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]],
) -> None:
    ticks, bars, incomplete = day
    result = validate_conservation(bars, ticks)
    assert "ticks_covered" in result.failures
    detail = result.check("ticks_covered").detail
    assert f"{incomplete['agg_record_count']} tick(s) after bar {bars.height - 1}" in detail
    assert "pass incomplete_bar" in detail


def test_first_bar_must_continue_the_carried_bar() -> None:
    (_, _, incomplete1), (ticks2, bars2, incomplete2) = kernel_days("spot", "ETHUSDT", 25)
    assert incomplete1 is not None
    wrong = dict(incomplete1, first_agg_trade_id=int(incomplete1["first_agg_trade_id"]) - 1)
    result = validate_conservation(bars2, ticks2, incomplete_bar=incomplete2, carried_in=wrong)
    assert result.failures == ["ticks_covered"]
    without = validate_conservation(bars2, ticks2, incomplete_bar=incomplete2)
    assert {"ids_in_ticks", "record_counts_match", "volume_conserved"} <= set(without.failures)


def test_bars_without_ids_are_not_applicable() -> None:
    ticks, _, _ = kernel_days("spot", "BTCUSDT", 250)[0]
    result = validate_conservation(load_golden("spot", "BTCUSDT", 250), ticks)
    assert result.passed
    assert len(result.skipped) == len(result.checks)
    assert "first_agg_trade_id" in result.checks[0].detail
    with pytest.raises(MissingColumnError, match="agg_trade_id"):
        validate_conservation(load_golden("spot", "BTCUSDT", 250), ticks.drop("agg_trade_id"))


def test_metadata_is_json(day: tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]) -> None:
    ticks, bars, incomplete = day
    meta = json.loads(json.dumps(validate_conservation(bars, ticks, incomplete_bar=incomplete).to_metadata()))
    assert meta["passed"] is True
    assert meta["tick_count"] == ticks.height
    assert Decimal(meta["tick_volume"]) == Decimal(meta["bar_volume"])


def test_a_bar_carried_through_a_day_without_ticks_conserves(
    day: tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]],
) -> None:
    ticks, _, incomplete = day
    no_ticks, no_bars = ticks.clear(), pl.DataFrame(schema=BAR_SCHEMA)
    # A weekend day without quotes: the trailing bar leaves the day exactly as it came in.
    result = validate_conservation(no_bars, no_ticks, incomplete_bar=incomplete, carried_in=incomplete)
    assert result.passed, result.to_dict()
    # A bar that changed although no tick arrived is still caught.
    grown = {**incomplete, "agg_record_count": incomplete["agg_record_count"] + 1}
    bad = validate_conservation(no_bars, no_ticks, incomplete_bar=grown, carried_in=incomplete)
    assert not bad.passed
    assert "record_counts_match" in bad.failures
