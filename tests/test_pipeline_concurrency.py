"""Two runs in parallel on the embedded bar store, serialised by the instance's pool (deploy/dagster.yaml).

chDB opens a data directory from one process at a time: two bar steps running at once in two
processes would collide (the second fails with StoreLockedError). The runs here execute their steps
in subprocesses (the multiprocess executor) on a real instance configured with the shipped
``deploy/dagster.yaml`` (pool limit 1); both must succeed, and their bar steps must not overlap.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from rangebar_pipeline.definitions import build_definitions
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from tests.pipeline_support import DAYS, PipelineEnv, golden, pipeline_env

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = [f"{DAYS[0]}|binance-spot-BTCUSDT", f"{DAYS[0]}|binance-cm-BTCUSD_PERP"]


def bars_job() -> dg.JobDefinition:
    """``range_bars_10`` alone (no checks), rebuilt in each step process from the environment's config."""
    job = dg.define_asset_job(
        "bars_only", selection=dg.AssetSelection.assets("range_bars_10").without_checks()
    )
    return dg.Definitions.merge(build_definitions(), dg.Definitions(jobs=[job])).resolve_job_def("bars_only")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # step subprocesses import this module
    yield from pipeline_env(tmp_path, monkeypatch)


RUNNER = """
import sys
import dagster as dg
from tests.test_pipeline_concurrency import bars_job
with dg.DagsterInstance.get() as instance:
    job = dg.reconstructable(bars_job)
    result = dg.execute_job(job, instance=instance, tags={"dagster/partition": sys.argv[1]})
print(result.run_id)
sys.exit(0 if result.success else 1)
"""


def test_two_parallel_runs_on_the_embedded_store_both_succeed(
    env: PipelineEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # Create the instance's storage once, here: two processes creating a fresh SQLite storage at the
    # same moment can corrupt its schema-version table (the runs then never get their pool slots).
    with dg.DagsterInstance.get() as instance:
        for partition in PARTITIONS:  # ticks first (Tier 1 only, no bar store)
            assert env.materialize(["ticks"], partition, checks=False, instance=instance).success
    # Two run workers, as two launched runs would be: separate processes, one instance.
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", RUNNER, partition],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for partition in PARTITIONS
    ]
    try:
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()  # no-op for finished workers; a stuck one must not outlive the test
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    run_ids = [out.strip().splitlines()[-1] for out, _ in outputs]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        spans = []
        for run_id in run_ids:
            events = [e for e in instance.all_logs(run_id) if e.dagster_event]
            starts = [e.timestamp for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_START]
            ends = [e.timestamp for e in events if e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS]
            assert len(starts) == len(ends) == 1
            spans.append((starts[0], ends[0]))
    (_, first_end), (second_start, _) = sorted(spans)
    assert first_end <= second_start, "the pool must serialise the two bar steps"
    with BarStore() as store:
        for key, (market, symbol) in zip(
            PARTITIONS, [("spot", "BTCUSDT"), ("cm", "BTCUSD_PERP")], strict=True
        ):
            series = Series.from_key(key.split("|")[1])
            expected = golden(market, symbol, 10)
            first_day = expected.filter(
                expected["close_time_us"] < 1723161600000000
            ).height  # 2024-08-09 00:00
            assert store.count_bars(series, 10, date(2024, 8, 8), date(2024, 8, 8)) == first_day
