"""Healing: a day whose ticks miss trade ids at the day boundary is re-fetched and recomputed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final

import dagster as dg
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

from rangebar_pipeline.definitions import AUTOMATION_RUN_TAGS
from rangebar_pipeline.sensors import build_heal_gaps_sensor, plan_heals
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.ticks import TickStore
from tests.loopback import Fault
from tests.pipeline_support import (
    DAYS,
    SERIES,
    PipelineEnv,
    assert_bars_equal_golden,
    check_evaluations,
    golden,
    pipeline_env,
)
from tests.test_pipeline_backfill_daemon import (
    BIN,
    CONFIG,
    REPO,
    UI,
    _failure_messages,
    _free_port,
    _process,
    _tail,
)

SPOT = Series("binance", "spot", "BTCUSDT")
DAY1, DAY2 = (f"{day}|{SERIES}" for day in DAYS)
#: Bounds a hung retry test only: the run, the daemon noticing its failure, and the retry run.
RETRY_TIMEOUT: Final = 600.0


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


def _settled(chain: list[dg.DagsterRun]) -> bool:
    """The last run succeeded, or failed and Dagster said it will not retry it."""
    last = chain[-1]
    if last.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        return last.tags.get("dagster/will_retry") == "false"
    return last.status == dg.DagsterRunStatus.SUCCESS


def _chain(instance: dg.DagsterInstance, root: str) -> list[dg.DagsterRun]:
    """The run ``root`` and its automatic retries, oldest first."""
    retries = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/root_run_id": root}))
    first = instance.get_run_by_id(root)
    assert first is not None
    return [first, *reversed(retries)]


@pytest.fixture
def daemon_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    """The pipeline over loopback mirrors and a SQLite instance with deploy/dagster.yaml's settings."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    settings["auto_materialize"] = {"enabled": False, "use_sensors": False}  # only the run under test
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    yield from pipeline_env(tmp_path, monkeypatch, CONFIG)


def test_a_failed_automation_run_is_retried_by_dagster_and_completes(
    daemon_env: PipelineEnv, tmp_path: Path
) -> None:
    """A real run with the automation's tags fails (day 2's archive is not published yet: 404), and
    Dagster's run retry daemon (``run_retries`` of deploy/dagster.yaml) re-executes it from the failure:
    the retry downloads only day 2 and the bars of both days are stored once, equal to the golden bars."""
    env = daemon_env
    day2_zip = f"*/BTCUSDT-aggTrades-{DAYS[1]}.zip"
    env.binance.fault(day2_zip, Fault(status=404, times=1))
    with dg.DagsterInstance.get() as instance:  # the SQLite storage exists before any process opens it
        assert instance.run_retries_enabled
    port = _free_port()
    web_log, daemon_log = tmp_path / "webserver.log", tmp_path / "daemon.log"
    workspace = ["-w", str(REPO / "workspace.yaml")]
    webserver = [str(BIN / "dagster-webserver"), *workspace, "-h", "127.0.0.1", "-p", str(port)]
    with (
        _process(webserver, web_log) as server,
        _process([str(BIN / "dagster-daemon"), "run", *workspace], daemon_log) as daemon,
    ):
        UI(f"http://127.0.0.1:{port}/graphql", web_log).wait_loaded(server)
        tags = {
            **AUTOMATION_RUN_TAGS,
            "dagster/asset_partition_range_start": DAY1,
            "dagster/asset_partition_range_end": DAY2,
        }
        keys = [dg.AssetKey(k) for k in ("ticks", "range_bars_10", "range_bars_25")]
        root = DagsterGraphQLClient("127.0.0.1", port_number=port).submit_job_execution(
            "__ASSET_JOB", tags=tags, asset_selection=keys
        )
        with dg.DagsterInstance.get() as instance:
            deadline = time.monotonic() + RETRY_TIMEOUT  # bounds a hung test only
            while not _settled(chain := _chain(instance, root)):
                assert server.poll() is None and daemon.poll() is None, _tail(daemon_log)
                assert time.monotonic() < deadline, ([(r.run_id, r.status) for r in chain], _tail(daemon_log))
                time.sleep(2)
            assert [r.status for r in chain] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]
            retry = chain[1]
            assert retry.tags["dagster/parent_run_id"] == root and retry.tags["dagster/retry_number"] == "1"
            assert retry.tags["dagster/root_run_id"] == root
            failures = _failure_messages(instance, root)
            assert len(failures) == 1 and f"{DAY2}: DataNotFoundError" in failures[0], failures
            for asset in ("ticks", "range_bars_10", "range_bars_25"):  # recorded = stored: both days
                assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {DAY1, DAY2}, asset

    def served(day: str) -> list[int]:
        return [r.status for r in env.binance.requests if r.path.endswith(f"BTCUSDT-aggTrades-{day}.zip")]

    assert served(DAYS[1]) == [404, 200]  # failed once, fetched by the retry
    assert served(DAYS[0]) == [200]  # stored by the failed run, not downloaded again
    for threshold in (10, 25):
        with BarStore() as bars:
            stored = bars.read_bars(SPOT, threshold, date(2024, 8, 8), date(2024, 8, 9))
            assert bars.count_bars(SPOT, threshold) == stored.height
        assert_bars_equal_golden(stored, golden("spot", "BTCUSDT", threshold))
