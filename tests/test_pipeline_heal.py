"""Healing: a day whose ticks miss trade ids at the day boundary is re-fetched and recomputed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from rangebar_pipeline.definitions import AUTOMATION_RUN_TAGS
from rangebar_pipeline.sensors import build_heal_gaps_sensor, plan_heals
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.ticks import TickStore
from tests.pipeline_support import (
    DAYS,
    SERIES,
    PipelineEnv,
    assert_bars_equal_golden,
    check_evaluations,
    golden,
    pipeline_env,
)

SPOT = Series("binance", "spot", "BTCUSDT")
DAY2 = f"{DAYS[1]}|{SERIES}"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch)


def test_plan_heals_is_bounded_windowed_and_cursor_driven() -> None:
    failed = [
        ("range_bars_10:continuity", 5, "2024-08-09|binance-um-ETHUSDT", 12),
        ("range_bars_25:continuity", 6, DAY2, 0),
    ]
    first = plan_heals(failed, {}, oldest_day=date(2024, 8, 1), max_attempts=2)
    assert first.partitions == [
        "2024-08-09|binance-um-ETHUSDT"
    ]  # the evaluation without a boundary gap is not healed
    assert plan_heals(failed, first.cursor, oldest_day=date(2024, 8, 1), max_attempts=2).partitions == []
    again = [("range_bars_10:continuity", 7, "2024-08-09|binance-um-ETHUSDT", 12)]
    second = plan_heals(again, first.cursor, oldest_day=date(2024, 8, 1), max_attempts=2)
    assert second.partitions == ["2024-08-09|binance-um-ETHUSDT"]
    third = [("range_bars_10:continuity", 9, "2024-08-09|binance-um-ETHUSDT", 12)]
    assert plan_heals(third, second.cursor, oldest_day=date(2024, 8, 1), max_attempts=2).partitions == []
    assert plan_heals(failed, {}, oldest_day=date(2024, 8, 10), max_attempts=2).partitions == []  # too old


def test_a_truncated_day_is_found_refetched_and_recomputed_exactly(env: PipelineEnv) -> None:
    instance = dg.DagsterInstance.ephemeral()
    for day in DAYS:
        assert env.materialize(["ticks"], f"{day}|{SERIES}", checks=False, instance=instance).success
    store = TickStore(env.root)
    ticks = store.read_day(Series("binance", "spot", "BTCUSDT"), DAYS[1])
    store.write_day(
        Series("binance", "spot", "BTCUSDT"), DAYS[1], ticks.tail(ticks.height - 100)
    )  # truncated download
    selection = dg.AssetSelection.assets("range_bars_10", "range_bars_25", "features_10", "features_25")
    first = env.run_range(selection, f"{DAYS[0]}|{SERIES}", DAY2, instance=instance)
    assert first.success  # continuity is not blocking: the run completes and says what is wrong
    continuity = check_evaluations(first, "range_bars_10:continuity")
    assert not continuity[DAY2].passed and continuity[DAY2].metadata["boundary_id_gap"].value == 100
    assert continuity[f"{DAYS[0]}|{SERIES}"].passed

    job = env.defs.resolve_job_def("rangebar_daily")
    sensor = build_heal_gaps_sensor(env.config, job, clock=lambda: datetime(2024, 8, 10, 6, tzinfo=UTC))
    context = dg.build_sensor_context(instance=instance, definitions=env.defs)
    result = sensor(context)
    assert isinstance(result, dg.SensorResult) and result.run_requests is not None
    assert [r.partition_key for r in result.run_requests] == [
        DAY2
    ]  # one request for the day, not per threshold
    request = result.run_requests[0]
    healed = job.execute_in_process(
        partition_key=DAY2, run_config=request.run_config, instance=instance, tags=request.tags
    )
    assert healed.success
    assert check_evaluations(healed, "range_bars_10:continuity")[DAY2].passed
    for threshold in (10, 25):
        with BarStore() as bars:
            stored = bars.read_bars(SPOT, threshold, date(2024, 8, 8), date(2024, 8, 9))
        assert_bars_equal_golden(stored, golden("spot", "BTCUSDT", threshold))
    later = sensor(dg.build_sensor_context(instance=instance, definitions=env.defs, cursor=result.cursor))
    assert isinstance(later, dg.SensorResult) and not later.run_requests  # healed: nothing more to do


def test_automation_runs_are_retried_by_dagster() -> None:
    assert AUTOMATION_RUN_TAGS["dagster/max_retries"] == "2"
    config = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"
    assert "run_retries:\n  enabled: true" in config.read_text()
