"""Chaos of the pipeline: a run worker killed mid-backfill, a tick file with a flipped byte, two backfills
of one series at once. Each ends with the stored bars equal to the kernel's over the whole range (the
golden bars for the fixture days) and Dagster's records equal to what is stored.

The runs use a SQLite instance in a temp ``DAGSTER_HOME`` with deploy/dagster.yaml's settings; runs that
must be killed or must overlap run as processes of their own (``python -m tests.chaos_support``, a run
worker with its step in a child process, the default executor), started in their own process group and
stopped by its id. Disk-full faults: tests/test_disk_full.py.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

import dagster as dg
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from rangebar_pipeline.config import parse_config
from rangebar_pipeline.definitions import build_definitions
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.ticks import TickStore
from tests import chaos_support as chaos
from tests.pipeline_support import (
    DAYS as FIXTURE_DAYS,
)
from tests.pipeline_support import (
    SERIES as FIXTURE_SERIES,
)
from tests.pipeline_support import (
    PipelineEnv,
    assert_bars_equal_golden,
    golden,
    pipeline_env,
)

REPO: Final = Path(__file__).resolve().parents[1]
#: Bounds a hung test only (a run on this loaded machine takes well under a minute).
RUN_TIMEOUT: Final = 600.0


@dataclass
class Chaos:
    """The synthetic series' mirror, the cache and a persistent instance."""

    root: Path
    home: Path
    ticks: pl.DataFrame

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.get()

    def run_worker(self, log: Path) -> subprocess.Popen[bytes]:
        """The ten-day bar backfill as a run worker process in its own process group."""
        with log.open("wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "tests.chaos_support"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip


def _instance_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return home


@pytest.fixture
def chaos_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Chaos:
    """Ten synthetic days in a ``file://`` mirror, their ticks materialized, an instance on disk."""
    home = _instance_home(tmp_path, monkeypatch)
    mirror = chaos.write_mirror(tmp_path / "mirror")
    root = tmp_path / "cache"
    config_path = tmp_path / "pipeline.yaml"
    config_path.write_text(yaml.safe_dump(chaos.CONFIG))
    for name, value in {
        "RANGEBAR_BINANCE_BASE_URL": mirror.as_uri(),
        "RANGEBAR_CACHE_DIR": str(root),
        "RANGEBAR_PIPELINE_DIR": str(root / "pipeline"),
        "RANGEBAR_PIPELINE_CONFIG": str(config_path),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RANGEBAR_CLICKHOUSE_DSN", raising=False)
    defs = build_definitions(parse_config(chaos.CONFIG, origin=str(config_path)))
    job = dg.define_asset_job("ticks_range", selection=dg.AssetSelection.assets("ticks"))
    with dg.DagsterInstance.get() as instance:
        ticks = dg.Definitions(assets=defs.assets, jobs=[job], resources=defs.resources).resolve_job_def(
            "ticks_range"
        )
        assert ticks.execute_in_process(instance=instance, tags=chaos.RANGE_TAGS).success
    return Chaos(root, home, chaos.mirror_ticks(mirror))


def recorded_days(instance: dg.DagsterInstance, asset: str) -> set[date]:
    """Days of the synthetic series recorded as materialized."""
    keys = instance.get_materialized_partitions(dg.AssetKey(asset))
    return {date.fromisoformat(k.split("|")[0]) for k in keys if k.endswith(chaos.SERIES.key)}


def stored_days(series: Series, threshold: int, first: date, last: date) -> set[date]:
    with BarStore() as store:
        return set(store.coverage(series, threshold, first, last))


def assert_stored_equals_kernel(ticks: pl.DataFrame) -> None:
    """The stored bars of the ten days are the kernel's over the whole range: each bar once."""
    with BarStore() as store:
        for threshold in chaos.THRESHOLDS:
            stored = store.read_bars(chaos.SERIES, threshold, chaos.DAYS[0], chaos.DAYS[-1])
            kernel = chaos.kernel_bars(ticks, threshold)
            assert store.count_bars(chaos.SERIES, threshold) == kernel.height > 50
            assert_frame_equal(stored.select(kernel.columns), kernel, check_dtypes=False)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def _run_db(home: Path, run_id: str) -> Path:
    return home / "history" / "runs" / f"{run_id}.db"


def _materializations(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            rows = conn.execute(
                "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
            ).fetchone()
        except sqlite3.OperationalError:  # the run's log is being created
            return 0
    return int(rows[0])


def test_kill_9_of_the_run_worker_mid_backfill_then_reexecution_completes(
    chaos_env: Chaos, tmp_path: Path
) -> None:
    worker = chaos_env.run_worker(tmp_path / "run_worker.log")
    try:
        with chaos_env.instance() as instance:
            deadline = time.monotonic() + RUN_TIMEOUT  # bounds a hung test only
            while not (runs := instance.get_runs(filters=dg.RunsFilter(job_name="chaos_bars"))):
                assert worker.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "run_worker.log"
                ).read_text()
                time.sleep(0.2)
            run_id = runs[0].run_id
            db = _run_db(chaos_env.home, run_id)
            # Synchronised on the step's own events: once its first materialization is in the run's
            # event log, hold that log's write lock (the step blocks at its next event) and kill -9 the
            # run worker's whole process group (the run worker and its step process).
            while _materializations(db) == 0:
                assert worker.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "run_worker.log"
                ).read_text()
                time.sleep(0.02)
            lock = sqlite3.connect(db, timeout=30, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=60)
            lock.execute("ROLLBACK")
            lock.close()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=60)
    first, last = chaos.DAYS[0], chaos.DAYS[-1]
    with chaos_env.instance() as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.STARTED  # died without a word
        steps = {e.dagster_event_type for e in instance.all_logs(run_id) if e.step_key}
        assert dg.DagsterEventType.STEP_START in steps and dg.DagsterEventType.STEP_SUCCESS not in steps
        for asset, threshold in zip(chaos.BARS, chaos.THRESHOLDS, strict=True):
            recorded = recorded_days(instance, asset)
            stored = stored_days(chaos.SERIES, threshold, first, last)
            assert recorded <= stored, (asset, recorded, stored)  # nothing recorded that is not stored
        killed_with = recorded_days(instance, chaos.BARS[0])
        assert killed_with != set(chaos.DAYS), "the kill landed after the step had recorded every day"
        # What run monitoring does for a run whose worker vanished (deploy/dagster.yaml): mark it failed,
        # and free the bar store pool's slot its step held (free_slots_after_run_end_seconds); without
        # that the re-execution's step would wait for the slot for good.
        instance.report_run_failed(run)
        assert instance.event_log_storage.get_concurrency_run_ids() == {run_id}
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        again = dg.execute_job(
            dg.reconstructable(chaos.bars_job),
            instance=instance,
            tags=chaos.RANGE_TAGS,  # the backfill's range, as the UI's re-execution carries it
            reexecution_options=dg.ReexecutionOptions.from_failure(run_id, instance),
        )
        assert again.success
        rerun = instance.get_run_by_id(again.run_id)
        assert rerun is not None and rerun.parent_run_id == run_id
        for asset, threshold in zip(chaos.BARS, chaos.THRESHOLDS, strict=True):
            recorded = recorded_days(instance, asset)
            assert recorded == stored_days(chaos.SERIES, threshold, first, last) == set(chaos.DAYS), asset
    assert_stored_equals_kernel(chaos_env.ticks)
    print(f"killed with {len(killed_with)} of 10 days recorded; re-executed: all 10 stored once and recorded")


def test_two_backfills_of_one_series_at_once_are_serialised(chaos_env: Chaos, tmp_path: Path) -> None:
    """Two runs of the same ten days start together: their bar steps never overlap (the bar store's pool
    of deploy/dagster.yaml, and the embedded store's directory lock), both succeed, each day is stored
    once and recorded."""
    workers = [chaos_env.run_worker(tmp_path / f"run_worker{i}.log") for i in (1, 2)]
    try:
        for i, worker in enumerate(workers, 1):
            assert worker.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / f"run_worker{i}.log").read_text()[
                -3000:
            ]
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=60)
    with chaos_env.instance() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="chaos_bars"))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
        windows = []
        for run in runs:
            events = [e for e in instance.all_logs(run.run_id) if e.step_key == "range_bars_and_features"]
            start = min(e.timestamp for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_START)
            end = max(e.timestamp for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS)
            windows.append((start, end))
        (_, first_end), (second_start, _) = sorted(windows)
        assert first_end <= second_start, f"the bar steps overlapped: {windows}"
        for asset, threshold in zip(chaos.BARS, chaos.THRESHOLDS, strict=True):
            stored = stored_days(chaos.SERIES, threshold, chaos.DAYS[0], chaos.DAYS[-1])
            assert recorded_days(instance, asset) == stored == set(chaos.DAYS)
    assert_stored_equals_kernel(chaos_env.ticks)


def test_the_library_refuses_a_second_writer_of_the_embedded_store(chaos_env: Chaos, tmp_path: Path) -> None:
    """Outside Dagster nothing queues two writers: a second process opening the embedded store while
    another holds it is refused at once, naming the store, and writes nothing."""
    code = (
        "import rangebar_pipeline as r\n"
        f"r.precompute_range_bars('{chaos.SYMBOL}', '{chaos.DAYS[0]}', '{chaos.DAYS[-1]}', 25)\n"
    )
    with BarStore() as store:  # this process holds the embedded store
        other = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT,
            check=False,
        )  # fmt: skip
        assert other.returncode != 0
        assert "StoreLockedError" in other.stderr and str(chaos_env.root / "clickhouse") in other.stderr, (
            other.stderr[-2000:]
        )
        assert store.coverage(chaos.SERIES, 25, chaos.DAYS[0], chaos.DAYS[-1]) == {}


# --- a flipped byte in a tick file --------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch)


def test_a_tick_file_with_a_flipped_byte_is_fetched_again_never_served(env: PipelineEnv) -> None:
    instance = dg.DagsterInstance.ephemeral()
    series = Series("binance", "spot", "BTCUSDT")
    first, last = (f"{day}|{FIXTURE_SERIES}" for day in FIXTURE_DAYS)
    ticks = env.run_range(dg.AssetSelection.assets("ticks"), first, last, instance=instance)
    assert ticks.success
    path = TickStore(env.root).day_path(series, FIXTURE_DAYS[1])
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 3] ^= 0xFF  # one byte inside a data page of day 2
    path.write_bytes(bytes(damaged))
    archive = f"*/BTCUSDT-aggTrades-{FIXTURE_DAYS[1]}.zip"
    assert env.binance.count(archive) == 1
    selection = dg.AssetSelection.assets("range_bars_10", "range_bars_25")
    bars = env.run_range(selection, first, last, instance=instance)
    assert bars.success
    assert env.binance.count(archive) == 2  # detected on read and fetched again by the bar step
    assert TickStore(env.root).read_day(series, FIXTURE_DAYS[1], refetch_corrupt=False).height > 0
    span = (date.fromisoformat(FIXTURE_DAYS[0]), date.fromisoformat(FIXTURE_DAYS[1]))
    for threshold in (10, 25):
        with BarStore() as store:
            stored = store.read_bars(series, threshold, *span)
            days = set(store.coverage(series, threshold, *span))
        assert_bars_equal_golden(stored, golden("spot", "BTCUSDT", threshold))
        recorded = instance.get_materialized_partitions(dg.AssetKey(f"range_bars_{threshold}"))
        assert recorded == {first, last} and days == set(map(date.fromisoformat, FIXTURE_DAYS))
