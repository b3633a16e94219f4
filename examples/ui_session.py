"""A running code location as a user has it: ``dagster-webserver`` and ``dagster-daemon`` on 127.0.0.1,
driven through the UI's own GraphQL API (the calls its Backfill and Launch buttons make).

Used by the demo (``examples/pipeline_demo.py``) and the browser test. With the daemon, the
validation service runs beside them (``rangebar_pipeline.validation.service``, its socket given to both
as ``RANGEBAR_VALIDATION_SOCKET``), so that run processes do not import the validators each. Every
process runs in its own process group (code servers, run workers and the service's connection processes
join them) and is stopped by those ids.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
LOCATION: Final = "rangebar_pipeline.definitions"
REPOSITORY: Final = "__repository__"
#: Runs and backfills end in one of these.
DONE_RUN: Final = {"SUCCESS", "FAILURE", "CANCELED"}
PENDING_BACKFILL: Final = {"REQUESTED", "CANCELING", "FAILING"}

_LAUNCH_BACKFILL: Final = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message }
    ... on PythonError { message }
  }
}"""
_BACKFILL: Final = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename ... on PartitionBackfill { status numPartitions runs { runId status } }
    ... on Error { message }
  }
}"""
_LAUNCH_RUN: Final = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on Error { message }
    ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
_RUN: Final = "query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status jobName } } }"
_LOADED: Final = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def create_instance_storage() -> None:
    """Create the instance's databases in this process, before the webserver and the daemon start:
    on a fresh ``DAGSTER_HOME`` both would create them at once, and Dagster stamps a new SQLite
    schedule database's schema version without a lock (two at once leave two alembic heads, and
    neither process can load the code location)."""
    import dagster as dg

    with dg.DagsterInstance.get():
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(
    args: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in a new process group; on exit stop it by pid, then its group by the group id."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(args), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


class UISession:
    """The webserver's GraphQL API at ``base`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, base: str, logs: Sequence[Path], poll: float = 2.0) -> None:
        self.base = base
        self.logs = logs
        self.poll = poll

    def query(self, query: str, **variables: Any) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.base}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer: dict[str, Any] = json.loads(response.read())
        if "errors" in answer:
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        data: dict[str, Any] = answer["data"]
        return data

    def wait_loaded(self, timeout: float = 300.0) -> None:
        """Wait (bounded) until the code location is loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with suppress(urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError):
                entries = self.query(_LOADED)["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    loaded = entries[0]["locationOrLoadError"]
                    if loaded["__typename"] != "RepositoryLocation":
                        raise RuntimeError(f"the code location failed to load: {loaded}")
                    return
            time.sleep(self.poll)
        raise TimeoutError(f"the code location did not load in {timeout:.0f} s: {self._tails()}")

    def launch_backfill(self, assets: Sequence[str], partitions: Sequence[str], title: str) -> str:
        """An asset backfill, as the UI's Materialize > Backfill dialog launches it."""
        params = {
            "assetSelection": [{"path": [a]} for a in assets],
            "partitionNames": list(partitions),
            "title": title,
        }
        launched = self.query(_LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"the backfill was not launched: {launched}")
        backfill_id: str = launched["backfillId"]
        return backfill_id

    def wait_backfill(self, backfill_id: str, timeout: float) -> dict[str, Any]:
        """Poll the backfill until it is done (bounded); its last state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            page: dict[str, Any] = self.query(_BACKFILL, id=backfill_id)["partitionBackfillOrError"]
            if page["__typename"] != "PartitionBackfill":
                raise RuntimeError(f"backfill {backfill_id}: {page}")
            if page["status"] not in PENDING_BACKFILL:
                return page
            time.sleep(self.poll)
        raise TimeoutError(f"backfill {backfill_id} not done in {timeout:.0f} s: {self._tails()}")

    def launch_run(self, job: str, partition: str | None = None) -> str:
        """A run of the code location's ``job`` (as its Launchpad launches it)."""
        tags = [{"key": "dagster/partition", "value": partition}] if partition else []
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
            "runConfigData": {},
            "executionMetadata": {"tags": tags},
        }
        launched = self.query(_LAUNCH_RUN, params=params)["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"{job} {partition or ''}: the run was not launched: {launched}")
        run_id: str = launched["run"]["runId"]
        return run_id

    def wait_runs(self, run_ids: Sequence[str], timeout: float) -> dict[str, str]:
        """Poll until every run is done (bounded); their statuses."""
        deadline = time.monotonic() + timeout
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            statuses = {r: self.query(_RUN, id=r)["runOrError"]["status"] for r in run_ids}
            if set(statuses.values()) <= DONE_RUN:
                return statuses
            time.sleep(self.poll)
        raise TimeoutError(f"runs not done in {timeout:.0f} s: {statuses} {self._tails()}")

    def _tails(self) -> str:
        return "\n".join(f"--- {log.name}\n{tail(log)}" for log in self.logs)


@contextmanager
def ui_session(logs: Path, *, port: int | None = None, daemon: bool = True) -> Iterator[UISession]:
    """``dagster-webserver`` (and ``dagster-daemon run``) on this process' ``DAGSTER_HOME``."""
    logs.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    port = port or free_port()
    workspace = ["-w", str(REPO / "workspace.yaml")]
    web_log, daemon_log = logs / "webserver.log", logs / "daemon.log"
    create_instance_storage()
    webserver = [str(bin_dir / "dagster-webserver"), *workspace, "-h", "127.0.0.1", "-p", str(port)]
    if not daemon:
        with process(webserver, web_log):
            session = UISession(f"http://127.0.0.1:{port}", [web_log])
            session.wait_loaded()
            yield session
        return
    folder = Path(tempfile.mkdtemp(prefix="rb-ui-"))  # short: a socket's path has <= 107 bytes
    socket_path = str(folder / "validation.sock")
    env = os.environ | {"RANGEBAR_VALIDATION_SOCKET": socket_path}
    service = [sys.executable, "-m", "rangebar_pipeline.validation.service", socket_path]
    try:
        with (
            process(service, logs / "validation-service.log"),
            process(webserver, web_log, env) as server,
            process([str(bin_dir / "dagster-daemon"), "run", *workspace], daemon_log, env),
        ):
            session = UISession(f"http://127.0.0.1:{port}", [web_log, daemon_log])
            session.wait_loaded()
            if server.poll() is not None:
                raise RuntimeError(f"the webserver exited: {tail(web_log)}")
            yield session
    finally:
        shutil.rmtree(folder, ignore_errors=True)
