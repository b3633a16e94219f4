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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql import DagsterGraphQLClient

from rangebar_pipeline.cluster.smoke import Backfill, bars_equal_golden, submit_backfill, wait_for_runs
from tests.api_support import SHARED
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
            RANGEBAR_CELERY_VISIBILITY_TIMEOUT="15",  # a vanished worker's step is handed on after ~15 s
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
    """Celery workers that started executing ``step``, in order, over the runs of ``backfill``."""
    workers = []
    for root in backfill.roots:
        for event in instance.all_logs(root, of_type=dg.DagsterEventType.ENGINE_EVENT):
            data = event.dagster_event.engine_event_data if event.dagster_event else None
            if event.step_key == step and data is not None and "Celery worker" in data.metadata:
                workers.append(str(data.metadata["Celery worker"].value))
    return workers


def wait_for_execution(instance: dg.DagsterInstance, backfill: Backfill, step: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not (found := executions(instance, backfill, step)):
        assert time.monotonic() < deadline, f"no worker started {step} in {timeout:g} s"
        time.sleep(0.5)
    return found[0]


def test_a_killed_worker_s_step_runs_again_elsewhere_exactly_once(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.enter(monkeypatch)
    series = "binance-cm-BTCUSD_PERP"
    # The download of the first day stalls 12 s once: the worker is killed inside the ticks step.
    cluster.mirror.fault("*/BTCUSD_PERP-aggTrades-2024-08-08.zip", Fault(delay=12.0, times=1))
    with dg.DagsterInstance.get() as instance:
        backfill = submit_backfill(cluster.client(), [series])
        victim = wait_for_execution(instance, backfill, "ticks", timeout=180)
        os.killpg(cluster.pid(f"worker{victim.split('@')[0][1:]}"), signal.SIGKILL)
        assert wait_for_runs(instance, backfill, timeout=300), "the backfill did not finish"
        assert backfill.succeeded, [run.status for run in backfill.runs[backfill.roots[0]]]
        ticks_by = executions(instance, backfill, "ticks")
        submitted = [
            event.message
            for event in instance.all_logs(backfill.roots[0], of_type=dg.DagsterEventType.ENGINE_EVENT)
            if event.message.startswith("Submitting celery task")
        ]
    assert 'step "ticks" to queue "rangebar_downloads"' in submitted[0], submitted
    assert all('queue "dagster"' in message for message in submitted[1:]), submitted
    assert ticks_by[0] == victim and ticks_by[-1] != victim, ticks_by
    assert bars_equal_golden([series], THRESHOLDS, GOLDEN)  # stored once per day: counts equal golden
    restart = cluster.script("up")  # the killed worker comes back; the rest is left as it runs
    assert restart.returncode == 0, restart.stderr
    assert "worker1: running" in restart.stdout and "worker2: running" in restart.stdout


@pytest.mark.parametrize("service", ["redis", "postgres"])
def test_a_restarted_service_loses_no_run(
    cluster: Cluster, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster.enter(monkeypatch)
    series = "binance-spot-BTCUSDT"
    cluster.mirror.fault("*/BTCUSDT-aggTrades-2024-08-09.zip", Fault(delay=8.0, times=1))
    with dg.DagsterInstance.get() as instance:
        backfill = submit_backfill(cluster.client(), [series])
        wait_for_execution(instance, backfill, "ticks", timeout=180)
        if service == "redis":  # Redis writes its append-only file and exits
            os.kill(cluster.pid("redis"), signal.SIGTERM)
        else:  # all connections are closed, transactions in flight roll back
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D",
                 str(cluster.pg_data()), "-m", "fast", "-w", "-t", "60", "stop"],
                capture_output=True, timeout=120, check=True,
            )  # fmt: skip
        pid = cluster.pid(service)
        deadline = time.monotonic() + 60
        while alive(pid):
            assert time.monotonic() < deadline, f"{service} did not stop"
            time.sleep(0.2)
        again = cluster.script("up")  # starts it again, the rest is left as it runs
        assert again.returncode == 0, again.stderr
        # The run completes, or fails loudly and the instance re-executes it from the failure.
        assert wait_for_runs(instance, backfill, timeout=300), "the run was lost"
        chain = backfill.runs[backfill.roots[0]]
        assert backfill.succeeded, [(run.run_id, run.status) for run in chain]
        print(f"{service} restarted: runs {[run.status.value for run in chain]}")  # shown with -s
    assert bars_equal_golden([series], THRESHOLDS, GOLDEN)
