"""The cluster profile for real: ``scripts/cluster.sh`` up, smoke, faults, down, all on 127.0.0.1.

One cluster for the module (Postgres, Redis, two Celery workers, daemon, webserver) in its own state
directory and ports; Binance Vision is a loopback HTTP mirror of the fixtures run by this process, so
a download can be slowed down to put a fault in the middle of a step. Every service is stopped by the
script's ``down`` (by pid, process groups), and the test checks that none of those pids survive.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient

from rangebar_pipeline.cluster.smoke import Backfill, bars_equal_golden, submit_backfill, wait_for_runs
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.ticks import TickStore
from tests.api_support import SHARED
from tests.data_paths import fixture_zip, read_fixture_day
from tests.loopback import Fault, LoopbackServer
from tests.test_cluster_profile import closed_port

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "cluster.sh"
GOLDEN = SHARED / "golden"
THRESHOLDS = (25, 250)
pytestmark = pytest.mark.xdist_group("cluster")  # one cluster: scripts/test.sh runs a module on one worker
SMOKE_LINE = re.compile(r"^cluster smoke: (\d+) steps on (\d+) workers, bars equal golden: (True|False)$")


@dataclass
class Cluster:
    state: Path
    env: dict[str, str]
    mirror: LoopbackServer

    def enter(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Give this process the cluster's environment (its instance, cache and bar store)."""
        for key, value in profile_env(self.state).items():
            if key.startswith(("RANGEBAR_", "DAGSTER_")):
                monkeypatch.setenv(key, value)

    def script(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def pid(self, name: str) -> int:
        return int((self.state / "pids" / f"{name}.pid").read_text())

    def pg_data(self) -> Path:
        """Postgres's data directory (``scripts/cluster.sh`` writes where it put it)."""
        return Path((self.state / "pg.path").read_text().strip()) / "data"

    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=int(self.env["RANGEBAR_CLUSTER_WEB_PORT"]))


def profile_env(state: Path) -> dict[str, str]:
    """The variables of ``<state>/env.sh`` (what every process of the cluster runs with)."""
    out = subprocess.run(
        ["bash", "-c", f"set -a && . {state / 'env.sh'} && env -0"], capture_output=True, check=True
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by init, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    state = REPO / ".rangebar-cluster-test"  # under the repository: the postgres user must reach it
    subprocess.run(["rm", "-rf", str(state)], check=True)
    with LoopbackServer(SHARED / "binance_vision") as mirror:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RANGEBAR_", "DAGSTER_"))}
        env.update(
            RANGEBAR_CLUSTER_DIR=str(state),
            RANGEBAR_CLUSTER_PG_PORT=str(closed_port()),
            RANGEBAR_CLUSTER_REDIS_PORT=str(closed_port()),
            RANGEBAR_CLUSTER_WEB_PORT=str(closed_port()),
            RANGEBAR_BINANCE_BASE_URL=mirror.url,
            # A vanished worker's step is handed on after ~90 s: longer than any step here, held ones
            # included (a shorter timeout would start a step still running a second time).
            RANGEBAR_CELERY_VISIBILITY_TIMEOUT="90",
        )
        running = Cluster(state, env, mirror)
        try:
            up = running.script("up")
            assert up.returncode == 0, up.stdout + up.stderr
            yield running
        finally:
            pids = [int(p.read_text()) for p in (state / "pids").glob("*.pid")]
            down = running.script("down")
            assert down.returncode == 0, down.stdout + down.stderr
            assert not [pid for pid in pids if alive(pid)], "down left processes running"


def test_smoke_backfills_through_two_workers_and_equals_golden(cluster: Cluster) -> None:
    smoke = cluster.script("smoke", timeout=900)
    last = smoke.stdout.strip().splitlines()[-1]
    match = SMOKE_LINE.match(last)
    assert match, smoke.stdout + smoke.stderr[-3000:]
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr[-3000:]
    assert int(match.group(2)) >= 2 and match.group(3) == "True"


def executions(instance: dg.DagsterInstance, backfill: Backfill, step: str) -> list[str]:
    """Celery workers that started executing ``step``, in order, over the runs of ``backfill`` (each
    root run and its retries)."""
    workers = []
    for root in backfill.roots:
        for run_id in [root, *(r.run_id for r in backfill.runs.get(root, [])[1:])]:
            for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                data = event.dagster_event.engine_event_data if event.dagster_event else None
                if event.step_key == step and data is not None and "Celery worker" in data.metadata:
                    workers.append(str(data.metadata["Celery worker"].value))
    return workers


def step_starts(instance: dg.DagsterInstance, run_ids: list[str], step: str) -> int:
    """STEP_START events of ``step`` over ``run_ids``."""
    return sum(
        record.step_key == step
        for run_id in run_ids
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    )


def wait_status(
    instance: dg.DagsterInstance, run_id: str, status: dg.DagsterRunStatus, timeout: float
) -> None:
    """Until run ``run_id`` has ``status`` (``timeout`` bounds a hung test only)."""
    deadline = time.monotonic() + timeout
    while (run := instance.get_run_by_id(run_id)) is None or run.status != status:
        assert time.monotonic() < deadline, f"run {run_id} not {status} in {timeout:g} s: {run}"
        time.sleep(1)


def forget_ticks(series: str) -> None:
    """Delete the series' tick files (an earlier test stored them): its next ticks step downloads."""
    s = Series.from_key(series)
    store = TickStore()
    for day in store.list_days(s):
        store.delete_day(s, day)


def stored_once(series: str, day: str) -> None:
    """The day's tick file holds the fixture's rows once, and no temp file of an interrupted write is left."""
    s = Series.from_key(series)
    store = TickStore()
    ticks = store.read_day(s, day, refetch_corrupt=False)
    assert ticks.height == read_fixture_day(fixture_zip(s.market, s.symbol, day), s.market).height
    assert not [p for p in store.series_dir(s).iterdir() if p.name.endswith(".tmp")]


def test_a_killed_worker_s_step_runs_again_elsewhere_exactly_once(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.enter(monkeypatch)
    series = "binance-cm-BTCUSD_PERP"
    archive = "*/BTCUSD_PERP-aggTrades-2024-08-08.zip"
    held = threading.Event()  # the first download of day 1 is held until released: the step is mid-way
    cluster.mirror.fault(archive, Fault(gate=held, times=1))
    before = cluster.mirror.count(archive)  # the module's mirror: earlier tests' requests are logged too
    with dg.DagsterInstance.get() as instance:
        backfill = submit_backfill(cluster.client(), [series])
        try:
            cluster.mirror.wait_count(archive, before + 1)  # the ticks step itself asked: it is running now
            [victim] = executions(instance, backfill, "ticks")
            os.killpg(cluster.pid(f"worker{victim.split('@')[0][1:]}"), signal.SIGKILL)
        finally:
            held.set()  # the killed step's connection is answered into the void
        assert wait_for_runs(instance, backfill, timeout=300), "the backfill did not finish"
        chain = backfill.runs[backfill.roots[0]]
        assert [run.status for run in chain] == [dg.DagsterRunStatus.SUCCESS]  # recovered inside the run
        ticks_by = executions(instance, backfill, "ticks")
        starts = step_starts(instance, [chain[0].run_id], "ticks")
        submitted = [
            event.message
            for event in instance.all_logs(backfill.roots[0], of_type=dg.DagsterEventType.ENGINE_EVENT)
            if event.message.startswith("Submitting celery task")
        ]
    # Celery re-delivered the unacknowledged task to the other worker: exactly two executions, the
    # killed one and the completed one, and the archive was fetched by each (held, then served).
    assert len(ticks_by) == 2 and ticks_by[0] == victim and ticks_by[1] != victim, ticks_by
    assert starts == 2 and cluster.mirror.count(archive) - before == 2
    assert 'step "ticks" to queue "rangebar_downloads"' in submitted[0], submitted
    assert all('queue "dagster"' in message for message in submitted[1:]), submitted
    assert len([m for m in submitted if 'step "ticks"' in m]) == 1  # submitted once, delivered twice
    for day in ("2024-08-08", "2024-08-09"):
        stored_once(series, day)
    assert bars_equal_golden([series], THRESHOLDS, GOLDEN)  # each day stored once: counts equal golden
    restart = cluster.script("up")  # the killed worker comes back; the rest is left as it runs
    assert restart.returncode == 0, restart.stderr
    assert "worker1: running" in restart.stdout and "worker2: running" in restart.stdout


def _stop(cluster: Cluster, service: str) -> None:
    """Stop ``service`` (Redis: SIGTERM, it writes its append-only file; Postgres: a fast shutdown, every
    connection closed) and wait until its process is gone."""
    pid = cluster.pid(service)
    if service == "redis":
        os.kill(pid, signal.SIGTERM)
    else:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D",
             str(cluster.pg_data()), "-m", "fast", "-w", "-t", "60", "stop"],
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while alive(pid):
        assert time.monotonic() < deadline, f"{service} did not stop"
        time.sleep(0.2)


def test_a_broker_restart_fails_the_run_and_dagster_retries_it(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis goes away while the ticks step is mid-download: the run's executor loses its broker and the
    run fails; Redis comes back (its queues from the append-only file) and Dagster's run retry
    re-executes the run from the failure, which completes."""
    cluster.enter(monkeypatch)
    series = "binance-spot-BTCUSDT"
    archive = "*/BTCUSDT-aggTrades-2024-08-09.zip"
    forget_ticks(series)  # stored by the smoke: downloaded again here
    held = threading.Event()
    cluster.mirror.fault(archive, Fault(gate=held, times=1))
    before = cluster.mirror.count(archive)  # the module's mirror: earlier tests' requests are logged too
    with dg.DagsterInstance.get() as instance:
        backfill = submit_backfill(cluster.client(), [series])
        root = backfill.roots[0]
        try:
            cluster.mirror.wait_count(archive, before + 1)  # the ticks step is downloading day 2
            _stop(cluster, "redis")
            wait_status(instance, root, dg.DagsterRunStatus.FAILURE, timeout=180)  # the outage hit the run
            again = cluster.script("up")  # Redis again (the rest is left as it runs)
            assert again.returncode == 0, again.stderr
        finally:
            held.set()
        assert wait_for_runs(instance, backfill, timeout=420), "the run was lost"
        chain = backfill.runs[root]
        failure = [
            e.message
            for e in instance.all_logs(root, of_type=dg.DagsterEventType.ENGINE_EVENT)
            if "rror" in e.message
        ] + [e.message for e in instance.all_logs(root, of_type=dg.DagsterEventType.RUN_FAILURE)]
    assert [run.status for run in chain] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS], chain
    retry = chain[1]
    assert (retry.tags["dagster/parent_run_id"], retry.tags["dagster/root_run_id"]) == (root, root)
    assert retry.tags["dagster/retry_number"] == "1" and failure, failure
    print(f"redis restarted: {[run.status.value for run in chain]}; root failed with {failure[-1][:200]}")
    for day in ("2024-08-08", "2024-08-09"):
        stored_once(series, day)
    assert bars_equal_golden([series], THRESHOLDS, GOLDEN)


def test_a_postgres_restart_under_a_running_step_completes_in_place(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postgres (runs, events, pool slots) restarts while the ticks step is mid-download: the step
    then writes its events to the restarted server (dagster-postgres opens a connection per operation),
    so the same run completes: one run, the step executed once."""
    cluster.enter(monkeypatch)
    series = "binance-spot-ETHUSDT"
    archive = "*/ETHUSDT-aggTrades-2024-08-09.zip"
    forget_ticks(series)  # stored by the smoke: downloaded again here
    held = threading.Event()
    cluster.mirror.fault(archive, Fault(gate=held, times=1))
    before = cluster.mirror.count(archive)  # the module's mirror: earlier tests' requests are logged too
    with dg.DagsterInstance.get() as instance:
        backfill = submit_backfill(cluster.client(), [series])
        try:
            cluster.mirror.wait_count(archive, before + 1)  # the ticks step is downloading day 2
            _stop(cluster, "postgres")
            again = cluster.script("up")  # Postgres again (the rest is left as it runs)
            assert again.returncode == 0, again.stderr
        finally:
            held.set()  # the step goes on and writes its events to the restarted server
        assert wait_for_runs(instance, backfill, timeout=420), "the run was lost"
        chain = backfill.runs[backfill.roots[0]]
        starts = step_starts(instance, [run.run_id for run in chain], "ticks")
    assert [run.status for run in chain] == [dg.DagsterRunStatus.SUCCESS], chain  # no retry was needed
    assert starts == 1 and cluster.mirror.count(archive) - before == 1  # the held download itself completed
    for day in ("2024-08-08", "2024-08-09"):
        stored_once(series, day)
    assert bars_equal_golden([series], THRESHOLDS, GOLDEN)
