"""Schedules, sensors and declarative automation of the pipeline, evaluated with Dagster's test utilities."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from rangebar_pipeline.assets.checks import expected_latest_day, freshness_verdict
from rangebar_pipeline.resources import (
    BinanceVisionResource,
    DatasetStoreResource,
    ExnessResource,
    TickStoreResource,
)
from rangebar_pipeline.sensors import SourceProbe, find_new_days, read_cursor, write_cursor
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources import BinanceVision, ExnessSource
from rangebar_pipeline.storage import TickStore
from tests.loopback import LoopbackServer
from tests.pipeline_support import DAYS, SERIES, PipelineEnv, pipeline_env

SPOT = Series("binance", "spot", "BTCUSDT")
UM = Series("binance", "um", "BTCUSDT")  # the fixtures have only 2024-08-08 for it
EURGBP = Series("exness", "spot", "EURGBP")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch)


def test_daily_schedule_requests_yesterday_for_every_series(env: PipelineEnv) -> None:
    schedule = env.defs.resolve_schedule_def("daily_yesterday")
    repository = env.defs.get_repository_def()
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2024, 8, 10, 2, 30, tzinfo=UTC), repository_def=repository
    )
    requests = list(schedule.evaluate_tick(context).run_requests or [])
    expected = [f"2024-08-09|{key}" for key in env.config.series_keys]
    assert [r.partition_key for r in requests] == expected
    assert [r.run_key for r in requests] == expected
    early = dg.build_schedule_context(
        scheduled_execution_time=datetime(2024, 8, 8, 2, 30, tzinfo=UTC), repository_def=repository
    )
    result = schedule.evaluate_tick(early)
    assert not result.run_requests and "before the configured start date" in (result.skip_message or "")


def test_find_new_days_probes_the_mirror_with_bounded_requests(
    loopback: LoopbackServer, tmp_path: Path
) -> None:
    store = TickStore(
        tmp_path,
        binance=BinanceVision(f"{loopback.url}/binance_vision"),
        exness=ExnessSource(f"{loopback.url}/exness"),
    )
    probe = SourceProbe(store)
    found = find_new_days(
        [SPOT, UM],
        {},
        today=date(2024, 8, 12),
        start_date=date(2024, 8, 8),
        lookback_days=10,
        max_requests=20,
        probe=probe,
    )
    assert found.found == [(SPOT, date(2024, 8, 8)), (SPOT, date(2024, 8, 9)), (UM, date(2024, 8, 8))]
    assert found.cursor == {SPOT.key: "2024-08-09", UM.key: "2024-08-08"}
    assert found.probes == probe.requests == 5 == loopback.count("*.CHECKSUM")  # 3 hits, 2 misses
    assert {r.method for r in loopback.requests} == {"HEAD"}

    bounded = find_new_days(
        [SPOT, UM], {}, today=date(2024, 8, 12), start_date=date(2024, 8, 8), lookback_days=10,
        max_requests=2, probe=probe,
    )  # fmt: skip
    assert bounded.probes == 2 and bounded.found == [(SPOT, date(2024, 8, 8)), (SPOT, date(2024, 8, 9))]
    resumed = find_new_days(
        [SPOT, UM], bounded.cursor, today=date(2024, 8, 12), start_date=date(2024, 8, 8), lookback_days=10,
        max_requests=2, probe=probe,
    )  # fmt: skip
    assert resumed.found == [(UM, date(2024, 8, 8))]  # 2024-08-10 of spot is not published

    assert probe(EURGBP, date(2023, 6, 26)) and not probe(EURGBP, date(2023, 7, 3))  # monthly archives


def test_find_new_days_rotates_through_series_so_none_starves() -> None:
    series = [Series.of(f"SYM{i}USDT") for i in range(5)]
    probed: list[str] = []

    def nothing_new(item: Series, day: date) -> bool:
        probed.append(item.key)
        return False

    cursor = {s.key: "2024-08-10" for s in series}  # every series waits for 2024-08-11
    resume: str | None = None
    rounds: list[list[str]] = []
    for _ in range(3):
        probed.clear()
        result = find_new_days(
            series, cursor, today=date(2024, 8, 12), start_date=date(2024, 8, 1), lookback_days=3,
            max_requests=2, probe=nothing_new, resume=resume,
        )  # fmt: skip
        rounds.append(list(probed))
        cursor, resume = read_cursor(write_cursor(result))  # through the sensor's cursor
    keys = [s.key for s in series]
    assert rounds == [keys[0:2], keys[2:4], [keys[4], keys[0]]]  # 2 probes each, wrapping round
    assert resume == keys[1]

    # A series with a backlog uses the budget, then the next evaluation starts after it.
    backlog = find_new_days(
        series, {**cursor, keys[3]: "2024-08-08"}, today=date(2024, 8, 12), start_date=date(2024, 8, 1),
        lookback_days=3, max_requests=2, probe=lambda item, day: item.key == keys[3], resume=keys[3],
    )  # fmt: skip
    assert backlog.found == [(series[3], date(2024, 8, 9)), (series[3], date(2024, 8, 10))]
    assert backlog.resume == keys[4]
    # Series already up to yesterday cost no probe and do not hold the rotation.
    done = find_new_days(
        series, {k: "2024-08-11" for k in keys}, today=date(2024, 8, 12), start_date=date(2024, 8, 1),
        lookback_days=3, max_requests=2, probe=nothing_new, resume=keys[2],
    )  # fmt: skip
    assert done.probes == 0 and done.resume == keys[2]
    assert read_cursor(json.dumps({keys[0]: "2024-08-10"})) == ({keys[0]: "2024-08-10"}, None)  # old form


def test_new_days_sensor_requests_ticks_runs_and_keeps_a_cursor(
    env: PipelineEnv, loopback: LoopbackServer
) -> None:
    sensor = env.defs.resolve_sensor_def("new_days")
    resources = {
        "tick_store": TickStoreResource(
            cache_dir=str(env.root / "probe-cache"),
            binance=BinanceVisionResource(base_url=f"{loopback.url}/binance_vision"),
            exness=ExnessResource(base_url=f"{loopback.url}/exness"),
        )
    }
    cursor = json.dumps({key: "2024-08-07" for key in env.config.series_keys})
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    keys = sorted(r.partition_key or "" for r in result.run_requests or [])
    assert keys == sorted(f"{d}|{s}" for d in DAYS for s in env.config.series_keys)
    assert all(r.run_key and r.run_key.startswith("new_days:") for r in result.run_requests or [])
    days, resume = read_cursor(result.cursor)
    assert days == {key: DAYS[1] for key in env.config.series_keys}
    assert resume == env.config.series_keys[0]  # every series probed: the rotation is back at the first
    assert env.defs.resolve_job_def("ticks_only").asset_layer  # the requested job materializes ticks only
    with dg.build_sensor_context(cursor=result.cursor, resources=resources) as context:
        again = sensor(context)
    assert isinstance(again, dg.SensorResult) and not again.run_requests
    # Each evaluation probes the day after the cursor once per series: 2 evaluations x 2 series.
    assert loopback.count("*2024-08-10.zip.CHECKSUM") == 4 and loopback.count("*2024-08-11*") == 0


def test_run_failure_sensor_records_the_failed_partition_and_error(env: PipelineEnv) -> None:
    instance = dg.DagsterInstance.ephemeral()
    missing = f"2024-08-10|{SERIES}"  # not in the fixtures: the source answers 404
    failed = env.materialize(["ticks"], missing, instance=instance, raise_on_error=False)
    assert not failed.success
    run = instance.get_run_by_id(failed.run_id)
    assert run is not None
    failure = next(e for e in failed.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="record_failures", dagster_instance=instance, dagster_run=run, dagster_event=failure
    ).for_run_failure()
    datasets = DatasetStoreResource(root=str(env.root / "pipeline"))
    env.defs.resolve_sensor_def("record_failures")(context, datasets=datasets)
    entries = [json.loads(line) for line in datasets.store().failures_log().read_text().splitlines()]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["run_id"] == failed.run_id and entry["partition"] == missing
    assert entry["failed_steps"][0]["step"] == "ticks"
    assert (
        "2024-08-10" in entry["failed_steps"][0]["error"] and "BTCUSDT" in entry["failed_steps"][0]["error"]
    )


AUTOMATED = ("range_bars_10", "range_bars_25", "features_10", "features_25", "ml_dataset_10", "ml_dataset_25")


def test_a_new_day_flows_to_the_model_with_no_click(env: PipelineEnv) -> None:
    """Ticks of a new day -> bars and features (one run) -> datasets and the model, tick by tick."""
    instance = dg.DagsterInstance.ephemeral()
    when = datetime(2024, 8, 9, 12, tzinfo=UTC)
    partition = f"{DAYS[0]}|{SERIES}"
    cursor: Any = None

    def tick() -> dict[str, set[str | None]]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(
            defs=env.defs, instance=instance, evaluation_time=when, cursor=cursor
        )
        cursor = result.cursor
        keys = (*AUTOMATED, "forward_return_model", "ticks")
        requested = {k: set(result.get_requested_partitions(dg.AssetKey(k))) for k in keys}
        return {k: v for k, v in requested.items() if v}

    def execute(requested: dict[str, set[str | None]]) -> None:
        by_partition: dict[str, list[str]] = defaultdict(list)
        for key, partitions in requested.items():
            for item in partitions:
                assert item is not None
                by_partition[item].append(key)
        for item, keys in by_partition.items():
            assert env.run(dg.AssetSelection.assets(*keys), item, instance=instance).success

    assert tick() == {}
    # The new_days sensor's run stores the day's ticks; everything else follows by itself.
    assert env.materialize(["ticks"], partition, instance=instance, checks=False).success
    step = tick()
    assert step == {k: {partition} for k in ("range_bars_10", "range_bars_25", "features_10", "features_25")}
    execute(step)
    step = tick()  # the model is requested with its dataset (one run, in dependency order)
    assert step == {k: {SERIES} for k in ("ml_dataset_10", "ml_dataset_25", "forward_return_model")}
    execute(step)
    assert tick() == {}  # settled: nothing requested twice
    model = instance.get_latest_materialization_event(dg.AssetKey("forward_return_model"))
    assert model is not None


def test_freshness_expects_yesterday_after_the_deadline() -> None:
    assert expected_latest_day(datetime(2024, 8, 10, 7, tzinfo=UTC), 6) == date(2024, 8, 9)
    assert expected_latest_day(datetime(2024, 8, 10, 5, tzinfo=UTC), 6) == date(2024, 8, 8)


def test_freshness_is_what_the_source_published_not_the_wall_clock() -> None:
    published = {(SPOT.key, date(2024, 8, 9)), (UM.key, date(2024, 8, 9)), (EURGBP.key, date(2023, 6, 23))}
    probed: list[tuple[str, date]] = []

    def probe(series: Series, day: date) -> bool:
        probed.append((series.key, day))
        return (series.key, day) in published

    keys = [f"2024-08-08|{SPOT.key}", f"2024-08-09|{SPOT.key}", f"2024-08-08|{UM.key}"]
    starts = {EURGBP.key: date(2023, 6, 23)}
    verdict = freshness_verdict(
        keys,
        [SPOT, UM, EURGBP],
        date(2026, 1, 1),  # long after the fixtures: only what is published counts
        first_day=lambda s: starts.get(s.key, date(2024, 8, 8)),
        probe=probe,
    )
    # SPOT has 08-09 and 08-10 is not published; UM lacks the published 08-09; EURGBP has nothing.
    assert verdict.overdue == {
        UM.key: (date(2024, 8, 8), date(2024, 8, 9)),
        EURGBP.key: (None, date(2023, 6, 23)),
    }
    assert probed == [
        (SPOT.key, date(2024, 8, 10)),
        (UM.key, date(2024, 8, 9)),
        (EURGBP.key, date(2023, 6, 23)),
    ]
    # Before the deadline of the next day there is nothing to probe.
    early = freshness_verdict(
        keys[:2], [SPOT], date(2024, 8, 9), first_day=lambda s: date(2024, 8, 8), probe=probe
    )
    assert early.passed and early.probes == 0


def test_freshness_checks_fail_on_a_published_day_and_pass_once_it_is_materialized(env: PipelineEnv) -> None:
    instance = dg.DagsterInstance.ephemeral()
    job = env.defs.resolve_job_def("freshness_checks")

    def evaluations() -> dict[str, dg.AssetCheckEvaluation]:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        return {
            f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in result.get_asset_check_evaluations()
        }

    before = evaluations()
    assert set(before) == {"ticks:freshness", "range_bars_10:freshness", "range_bars_25:freshness"}
    ticks = before["ticks:freshness"]
    assert not ticks.passed and ticks.severity == dg.AssetCheckSeverity.WARN
    assert f"{SERIES} (latest never; {DAYS[0]} is published)" in (ticks.description or "")
    daily = env.defs.resolve_job_def("rangebar_daily")
    for series in env.config.series_keys:
        tags = {
            "dagster/asset_partition_range_start": f"{DAYS[0]}|{series}",
            "dagster/asset_partition_range_end": f"{DAYS[1]}|{series}",
        }
        run = daily.execute_in_process(tags=tags, instance=instance)
        assert run.success
        # Every selected check was evaluated in the run (none skipped), freshness included.
        evaluated = {
            f"{e.asset_key.to_user_string()}:{e.check_name}" for e in run.get_asset_check_evaluations()
        }
        assert {"ticks:freshness", "range_bars_10:freshness", "range_bars_25:freshness"} <= evaluated
    after = evaluations()
    # The mirror's newest day is 2024-08-09: materialized, so fresh although the wall clock is later.
    assert all(e.passed for e in after.values()), {k: e.description for k, e in after.items()}
    assert "binance-spot-BTCUSDT 2024-08-09" in (after["range_bars_10:freshness"].description or "")
