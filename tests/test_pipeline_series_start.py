"""Partitions that fit the data: days before a series' first day are recorded empty, never fetched;
backfills run in bounded runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionResolvedStatus
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from rangebar_pipeline.config import PipelineConfigError, parse_config
from rangebar_pipeline.series import Series
from tests.pipeline_support import SERIES, PipelineEnv, pipeline_env
from tests.test_pipeline_check_status import check_statuses

CONFIG: dict[str, Any] = {
    "start_date": "2024-08-06",
    "thresholds": [10, 25],
    "series": [{"source": "binance", "market": "spot", "symbol": "BTCUSDT", "start": "2024-08-08"}],
    "datasets": {"last_n_bars": 250, "consumer_threshold": 10},
    "automation": {"max_days_per_run": 3},
}
DAYS = [f"2024-08-0{d}|{SERIES}" for d in (6, 7, 8, 9)]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch, CONFIG)


def test_days_before_the_series_start_are_recorded_empty_and_never_fetched(
    env: PipelineEnv, tmp_path: Path
) -> None:
    spot = Series("binance", "spot", "BTCUSDT")
    assert env.config.first_day(spot).isoformat() == "2024-08-08"
    tags = {ASSET_PARTITION_RANGE_START_TAG: DAYS[0], ASSET_PARTITION_RANGE_END_TAG: DAYS[-1]}
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = env.defs.resolve_job_def("rangebar_daily").execute_in_process(tags=tags, instance=instance)
        assert result.success
        for asset in ("ticks", "range_bars_10", "features_25"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(DAYS), asset
            for day in DAYS[:2]:
                record = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1
                ).records[0]
                meta = record.asset_materialization.metadata  # type: ignore[union-attr]
                assert meta["dagster/partition_row_count"].value == 0
                assert "starts on 2024-08-08" in str(meta["note"].value)
        # Every day's checks count Passed: the empty days' evaluations say why there is nothing to check.
        passed = {AssetCheckExecutionResolvedStatus.SUCCEEDED.value: set(DAYS)}
        assert check_statuses(env, instance, "range_bars_10", "tier1") == passed
        assert check_statuses(env, instance, "features_25", "expectations") == passed
        # The first real day starts a fresh processor without a "previous day not materialized" warning.
        logged = [e.user_message for e in instance.all_logs(result.run_id)]
        assert any("2024-08-08|binance-spot-BTCUSDT:" in m for m in logged)  # the step's day log
        assert not [m for m in logged if "has no stored bars" in m]
    # Nothing was asked of the source for the days before the start.
    asked = [r.path for r in env.binance.requests]
    assert not [p for p in asked if "2024-08-06" in p or "2024-08-07" in p], asked


def test_backfills_run_in_bounded_runs_of_max_days_per_run(env: PipelineEnv) -> None:
    graph = env.defs.resolve_asset_graph()
    for key in ("ticks", "range_bars_10", "features_10"):
        policy = graph.get(dg.AssetKey(key)).backfill_policy
        assert policy is not None and policy.max_partitions_per_run == 3, key


def test_a_series_start_must_be_a_date() -> None:
    raw = {**CONFIG, "series": [{"symbol": "BTCUSDT", "start": "08/08/2024"}]}
    with pytest.raises(PipelineConfigError, match=r"'series\[0\]\.start' must be a YYYY-MM-DD date"):
        parse_config(raw)
