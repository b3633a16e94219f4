"""Materializing the pipeline in process: real chDB, loopback mirrors of the shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from rangebar_pipeline.api import get_range_bars, read_dataset
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.datasets import DatasetStore
from rangebar_pipeline.storage.ticks import TickStore
from tests.pipeline_support import (
    DAYS,
    SERIES,
    PipelineEnv,
    assert_bars_equal_golden,
    check_evaluations,
    check_results,
    golden,
    materializations,
    metadata,
    pipeline_env,
)

BAR_ASSETS = ["ticks", "range_bars_10", "range_bars_25", "features_10", "features_25"]
SPOT = Series("binance", "spot", "BTCUSDT")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch)


def stored_bars(series: Series, threshold: int) -> pl.DataFrame:
    result = get_range_bars(
        series.symbol,
        DAYS[0],
        DAYS[1],
        threshold,
        market=series.market,
        fetch_if_missing=False,
        output="polars",
    )
    assert isinstance(result, pl.DataFrame)
    return result


def test_two_days_in_order_equal_golden_with_checks_and_rematerializing_changes_nothing(
    env: PipelineEnv,
) -> None:
    runs = [env.materialize(BAR_ASSETS, f"{day}|{SERIES}") for day in DAYS]
    for result in runs:
        assert result.success
        checks = check_results(result)
        for name in ("tier1", "continuity"):
            for thr in (10, 25):
                assert checks[f"range_bars_{thr}:{name}"].passed, checks[
                    f"range_bars_{thr}:{name}"
                ].description
        assert checks["features_10:expectations"].passed and checks["features_25:expectations"].passed
        assert checks["features_10:tier2"].severity == dg.AssetCheckSeverity.WARN
        assert "feature_table" in checks["features_10:tier2"].metadata
    first, second = (metadata(r, "range_bars_10")[0] for r in runs)
    assert first["carried_over_bar"] is False and first["continued_from_checkpoint"] is False
    assert second["carried_over_bar"] is True and second["continued_from_checkpoint"] is True
    assert first["bars"] + second["bars"] == golden("spot", "BTCUSDT", 10).height
    assert "price_chart" in second and first["ticks"] > 0
    ticks_meta = metadata(runs[0], "ticks")[0]
    assert ticks_meta["rows"] == ticks_meta["dagster/partition_row_count"] > 0
    assert len(ticks_meta["checksum_sha256"]) == 64 and ticks_meta["duplicates_removed"] >= 0

    # The bars in Tier 2 equal the golden series across the day boundary, for both thresholds.
    for thr in (10, 25):
        assert_bars_equal_golden(stored_bars(SPOT, thr), golden("spot", "BTCUSDT", thr))

    def downloads() -> int:  # the freshness checks' probes are HEAD requests
        return sum(1 for r in env.binance.requests if r.method != "HEAD")

    served = downloads()

    # Re-materializing the second day changes nothing: same bars, same checkpoint, no download.
    again = env.materialize(BAR_ASSETS, f"{DAYS[1]}|{SERIES}")
    assert again.success
    repeat = metadata(again, "range_bars_10")[0]
    for key in ("bars", "bars_sha256", "checkpoint_sha256", "carried_over_bar"):
        assert repeat[key] == second[key]
    assert downloads() == served
    with BarStore() as store:
        assert store.covered_days(SPOT, 10, date(2024, 8, 8), date(2024, 8, 9)) == {
            date(2024, 8, 8),
            date(2024, 8, 9),
        }
        assert store.count_bars(SPOT, 10) == golden("spot", "BTCUSDT", 10).height
    assert_bars_equal_golden(stored_bars(SPOT, 10), golden("spot", "BTCUSDT", 10))

    # Feature tables -> the dataset (last N bars, lineage to both days) -> the example consumer.
    features = read_dataset(10, SERIES, DAYS[1], DAYS[1]).collect()
    assert features.height == second["bars"]
    assert features["fwd_return_1"].null_count() == 1 and features["fwd_return_5"].null_count() == 5
    assert set(features["symbol"]) == {"BTCUSDT"}
    dataset_run = env.materialize(["ml_dataset_10", "forward_return_model"], SERIES)
    assert dataset_run.success
    dataset_meta = metadata(dataset_run, "ml_dataset_10")[0]
    expected = golden("spot", "BTCUSDT", 10).tail(250)
    assert dataset_meta["dagster/row_count"] == 250 and dataset_meta["short_by"] == 0
    assert "2024-08-08|binance-spot-BTCUSDT" in dataset_meta["source_partitions"]
    dataset = pl.read_parquet(env.root / "pipeline" / "datasets" / "10" / f"{SERIES}.parquet")
    assert dataset["close_time"].dt.epoch("us").to_list() == expected["close_time_us"].to_list()
    model = metadata(dataset_run, "forward_return_model")[0]
    assert model["nobs"] > 200 and "ofi" in model["coefficients"]


def _plant_impossible_bar(series: Series, threshold: int, day: date) -> None:
    """Replace a stored day with the same bars but bar 7's high below its low (tier1 must fail)."""
    with BarStore() as store:
        bars = store.read_bars(series, threshold, day, day)
        record = store.coverage(series, threshold, day, day)[day]
        planted = bars.with_columns(
            pl.when(pl.int_range(pl.len()) == 7)
            .then(pl.col("low") - 1.0)
            .otherwise(pl.col("high"))
            .alias("high")
        )
        checkpoint = store.checkpoint_for(series, threshold, day)
        parent = store.checkpoint_for(series, threshold, day - timedelta(days=1))
        assert checkpoint is not None
        store.write_day(
            series, threshold, day, planted, checkpoint=checkpoint, tick_count=record.tick_count,
            parent_checkpoint=None if record.fresh_start else parent,
        )  # fmt: skip


def _range_tags(series: Series) -> dict[str, str]:
    return {
        ASSET_PARTITION_RANGE_START_TAG: f"{DAYS[0]}|{series.key}",
        ASSET_PARTITION_RANGE_END_TAG: f"{DAYS[1]}|{series.key}",
    }


def test_a_failed_day_blocks_only_its_own_feature_table_and_the_dataset_names_it(env: PipelineEnv) -> None:
    # Both days computed and stored, then day 1 is tampered with in the store.
    job = env.defs.resolve_job_def("rangebar_daily")
    instance = dg.DagsterInstance.ephemeral()
    assert job.execute_in_process(tags=_range_tags(SPOT), instance=instance).success
    _plant_impossible_bar(SPOT, 10, date(2024, 8, 8))
    # Re-building the feature tables re-checks the stored bars: day 1 fails, day 2 passes.
    selection = dg.AssetSelection.assets("features_10") | dg.AssetSelection.checks_for_assets("range_bars_10")
    result = env.run_range(
        selection, f"{DAYS[0]}|{SERIES}", f"{DAYS[1]}|{SERIES}", instance=instance, raise_on_error=False
    )
    assert not result.success  # a blocking check failed: the run says so
    tier1 = check_evaluations(result, "range_bars_10:tier1")
    day1, day2 = (f"{d}|{SERIES}" for d in DAYS)
    assert not tier1[day1].passed and "high" in (tier1[day1].description or "")
    assert tier1[day2].passed
    assert {m.partition for m in materializations(result, "features_10")} == {day2}
    features = DatasetStore()
    assert features.feature_days(10, SPOT) == [date(2024, 8, 9)]
    assert "tier1" in str(features.rejected_days(10, SPOT)[date(2024, 8, 8)]["failures"])
    # The dataset holds only promoted days and names the withdrawn one.
    dataset = env.materialize(["ml_dataset_10"], SERIES, checks=False, instance=instance)
    meta = metadata(dataset, "ml_dataset_10")[0]
    assert "2024-08-08" in meta["rejected_days"]
    assert meta["source_partitions"] == [day2]
    assert meta["dagster/row_count"] == features.read_features(10, SPOT, date(2024, 8, 9)).height


def test_a_subset_computing_one_threshold_and_reading_another(env: PipelineEnv) -> None:
    """range_bars_10 recomputed while features_25 is built from the stored bars of 25 dbps: each
    walk's days carry only their own thresholds (the computed chunk has no 25 dbps checks)."""
    instance = dg.DagsterInstance.ephemeral()
    job = env.defs.resolve_job_def("rangebar_daily")
    assert job.execute_in_process(tags=_range_tags(SPOT), instance=instance).success
    selection = dg.AssetSelection.assets("range_bars_10", "features_10", "features_25")
    result = env.run_range(selection, f"{DAYS[0]}|{SERIES}", f"{DAYS[1]}|{SERIES}", instance=instance)
    assert result.success
    days = {f"{d}|{SERIES}" for d in DAYS}
    for asset in ("range_bars_10", "features_10", "features_25"):
        assert {m.partition for m in materializations(result, asset)} == days, asset
    assert not materializations(result, "range_bars_25")


def test_single_run_backfill_records_each_partition_with_its_own_metadata_and_checks(
    env: PipelineEnv,
) -> None:
    cm = Series("binance", "cm", "BTCUSD_PERP")
    job = env.defs.resolve_job_def("rangebar_daily")
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(tags=_range_tags(cm), instance=instance)
    assert result.success
    events = materializations(result, "range_bars_25")
    assert [e.partition for e in events] == [f"{d}|{cm.key}" for d in DAYS]  # date order, one each
    rows = [e.metadata["dagster/partition_row_count"].value for e in events]
    assert rows == [len(stored_day(cm, 25, d)) for d in DAYS]
    assert len({e.metadata["bars_sha256"].value for e in events}) == 2
    assert all("data:image/png;base64," in str(e.metadata["price_chart"].value) for e in events if rows)
    assert all(
        e.tags is not None and e.tags["dagster/data_version"] == e.metadata["bars_sha256"].value
        for e in events
    )
    for name in ("range_bars_25:tier1", "range_bars_25:continuity", "features_25:expectations"):
        evaluations = check_evaluations(result, name)
        assert set(evaluations) == {f"{d}|{cm.key}" for d in DAYS} and all(
            e.passed for e in evaluations.values()
        )
    assert instance.get_materialized_partitions(dg.AssetKey("features_25")) == {f"{d}|{cm.key}" for d in DAYS}
    with BarStore() as store:  # one step, days in order: day 2 continues day 1's stored checkpoint
        coverage = store.coverage(cm, 25, date(2024, 8, 8), date(2024, 8, 9))
        assert (
            coverage[date(2024, 8, 9)].parent_checkpoint_sha256
            == coverage[date(2024, 8, 8)].checkpoint_sha256
        )
    ticks = TickStore(env.root)
    for day in (date(2024, 8, 8), date(2024, 8, 9)):  # the store records each day's own tick count
        assert (
            coverage[day].tick_count == ticks.read_day(Series("binance", "cm", "BTCUSD_PERP"), day).height > 0
        )
    for thr in (10, 25):
        assert_bars_equal_golden(stored_bars(cm, thr), golden("cm", "BTCUSD_PERP", thr))


def test_a_failing_day_keeps_the_days_before_it_and_a_rerun_resumes_there(env: PipelineEnv) -> None:
    instance = dg.DagsterInstance.ephemeral()
    for day in DAYS:
        assert env.materialize(["ticks"], f"{day}|{SERIES}", checks=False, instance=instance).success
    tick_file = env.root / "ticks" / "binance" / "spot" / "BTCUSDT" / f"{DAYS[1]}.parquet"
    tick_file.unlink()  # day 2's ticks are gone: computing day 2 must fail, day 1 must stay
    bars_job = dg.AssetSelection.assets("range_bars_10", "range_bars_25", "features_10", "features_25")
    result = env.run_range(
        bars_job, f"{DAYS[0]}|{SERIES}", f"{DAYS[1]}|{SERIES}", instance=instance, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"{DAYS[1]}|{SERIES}" in f"{failure.message} {failure.step_failure_data.error}"
    for asset in ("range_bars_10", "range_bars_25", "features_10"):
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {f"{DAYS[0]}|{SERIES}"}
    with BarStore() as store:
        assert set(store.coverage(SPOT, 10, date(2024, 8, 8), date(2024, 8, 9))) == {date(2024, 8, 8)}
    # Ticks back, the same range again: day 2 continues day 1 and both equal the golden bars.
    assert env.materialize(["ticks"], f"{DAYS[1]}|{SERIES}", checks=False, instance=instance).success
    again = env.run_range(bars_job, f"{DAYS[1]}|{SERIES}", f"{DAYS[1]}|{SERIES}", instance=instance)
    assert again.success
    for thr in (10, 25):
        assert_bars_equal_golden(stored_bars(SPOT, thr), golden("spot", "BTCUSDT", thr))


def stored_day(series: Series, threshold: int, day: str) -> pl.DataFrame:
    with BarStore() as store:
        return store.read_bars(series, threshold, date.fromisoformat(day), date.fromisoformat(day))


EXNESS_AND_QUIET_CONFIG = {
    "start_date": "2023-06-23",
    "thresholds": [250],
    "series": [
        {"source": "exness", "market": "spot", "symbol": "EURGBP"},
        {"source": "binance", "market": "um", "symbol": "ETHUSDT"},
    ],
    "datasets": {"last_n_bars": 100, "consumer_threshold": 250},
}


@pytest.fixture
def exness_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch, EXNESS_AND_QUIET_CONFIG)


def test_exness_days_with_a_quiet_weekend_and_a_series_without_bars(exness_env: PipelineEnv) -> None:
    env = exness_env
    daily = ["ticks", "range_bars_250", "features_250"]
    # Friday with quotes, then Saturday without: the trailing bar crosses the empty day unchanged.
    for day in ("2023-06-23", "2023-06-24"):
        result = env.materialize(daily, f"{day}|exness-spot-EURGBP")
        assert result.success
        checks = check_results(result)
        assert checks["range_bars_250:tier1"].passed, checks["range_bars_250:tier1"].description
        assert checks["range_bars_250:continuity"].passed
    saturday = metadata(env.materialize(["ticks"], "2023-06-24|exness-spot-EURGBP", checks=False), "ticks")
    assert saturday[0]["rows"] == 0
    # um ETHUSDT closes no bar at 250 dbps on 2024-08-08 (the golden series is empty): the dataset is
    # empty, not a failure.
    assert golden("um", "ETHUSDT", 250).height == 0
    assert env.materialize(daily, "2024-08-08|binance-um-ETHUSDT").success
    dataset = env.materialize(["ml_dataset_250"], "binance-um-ETHUSDT", checks=False)
    assert dataset.success
    assert metadata(dataset, "ml_dataset_250")[0]["dagster/row_count"] == 0
