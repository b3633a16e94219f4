"""What the check's Partitions tab counts: every per-day evaluation names the materialization it
judged, so Dagster's check state (the one the UI reads) counts each materialized day Passed or Failed.

Runs the code location's ``rangebar_daily`` job in process over a ranged run (many partitions in one
step) on a real SQLite instance, then asks Dagster's asset-check state as the webserver does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionResolvedStatus
from dagster._core.storage.asset_check_state import AssetCheckState, bulk_update_asset_check_state
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from rangebar_pipeline.partitions import daily_series_partitions
from tests.pipeline_support import DAYS, SERIES, PipelineEnv, pipeline_env
from tests.test_pipeline_materialize import SPOT, _plant_impossible_bar

DAY1, DAY2 = (f"{day}|{SERIES}" for day in DAYS)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch)


def check_statuses(
    env: PipelineEnv, instance: dg.DagsterInstance, asset: str, check: str
) -> dict[str, set[str]]:
    """The check's partition statuses as Dagster resolves them for the UI (current evaluations only)."""
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    partitions = daily_series_partitions(env.config)
    state = bulk_update_asset_check_state(instance, [(key, partitions)], {key: AssetCheckState.empty()})[key]
    return {
        status.value: set(subset.subset_value.get_partition_keys())
        for status, subset in state.subsets.items()
        if not subset.is_empty
    }


def test_each_day_of_a_ranged_run_counts_passed_and_a_failed_day_only_itself(
    env: PipelineEnv, tmp_path: Path
) -> None:
    tags = {ASSET_PARTITION_RANGE_START_TAG: DAY1, ASSET_PARTITION_RANGE_END_TAG: DAY2}
    job = env.defs.resolve_job_def("rangebar_daily")
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        assert job.execute_in_process(tags=tags, instance=instance).success
        passed = {AssetCheckExecutionResolvedStatus.SUCCEEDED.value: {DAY1, DAY2}}
        for asset, check in (
            ("range_bars_10", "tier1"),
            ("range_bars_10", "continuity"),
            ("range_bars_25", "tier1"),
            ("features_10", "expectations"),
        ):
            assert check_statuses(env, instance, asset, check) == passed, (asset, check)
        # The range's tier2 evaluation names the last feature table it read.
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("features_10"), "tier2")]
        )[dg.AssetCheckKey(dg.AssetKey("features_10"), "tier2")]
        evaluation = record.evaluation
        assert evaluation is not None and evaluation.target_materialization_data is not None
        latest = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("features_10"), asset_partitions=[DAY2]), limit=1
        ).records[0]
        assert evaluation.target_materialization_data.storage_id == latest.storage_id

        # Day 1's stored bars go bad; re-checking them with the feature tables (bars not recomputed)
        # judges the recorded materializations: day 1 Failed, day 2 still Passed.
        _plant_impossible_bar(SPOT, 10, date.fromisoformat(DAYS[0]))
        selection = dg.AssetSelection.assets("features_10") | dg.AssetSelection.checks_for_assets(
            "range_bars_10"
        )
        assert not env.run_range(selection, DAY1, DAY2, instance=instance, raise_on_error=False).success
        statuses = check_statuses(env, instance, "range_bars_10", "tier1")
        assert statuses == {
            AssetCheckExecutionResolvedStatus.SUCCEEDED.value: {DAY2},
            AssetCheckExecutionResolvedStatus.FAILED.value: {DAY1},
        }
        # Only day 1's feature table is blocked: its gate was planned and not run (the UI's "Execution
        # failed"); day 2's table was re-materialized and passed its gate.
        gate = check_statuses(env, instance, "features_10", "expectations")
        assert gate == {
            AssetCheckExecutionResolvedStatus.SUCCEEDED.value: {DAY2},
            AssetCheckExecutionResolvedStatus.EXECUTION_FAILED.value: {DAY1},
        }
