"""A backfill through the daemon and the UI's GraphQL API: what the instance, the backfill page and the
asset's partition view each say when day 2 of a ranged single run fails, and after the re-run.

Everything runs on 127.0.0.1: the loopback mirror of the shared fixtures, ``dagster-webserver`` on a
free port, ``dagster-daemon run`` (queued run coordinator, backfill daemon, run monitoring) on a
SQLite instance in a temp ``DAGSTER_HOME`` with ``deploy/dagster.yaml``'s settings. Every process the
test starts runs in its own process group and is stopped by that id, also when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

import dagster as dg
import polars as pl
import pytest
import yaml

from rangebar_pipeline.api import get_range_bars
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from tests.pipeline_support import (
    DAYS,
    SERIES,
    PipelineEnv,
    assert_bars_equal_golden,
    golden,
    pipeline_env,
)

REPO: Final = Path(__file__).resolve().parents[1]
BIN: Final = Path(sys.executable).parent
SPOT: Final = Series("binance", "spot", "BTCUSDT")
ASSETS: Final = ("range_bars_10", "range_bars_25", "features_10", "features_25")
DAY1, DAY2 = (f"{day}|{SERIES}" for day in DAYS)
#: One Binance series, thresholds 10 and 25, the two fixture days.
CONFIG: Final[dict[str, Any]] = {
    "start_date": DAYS[0],
    "thresholds": [10, 25],
    "series": [{"source": "binance", "market": "spot", "symbol": "BTCUSDT"}],
    "datasets": {"last_n_bars": 250, "consumer_threshold": 10},
}
#: Bounds (seconds) of the waits; the backfill daemon iterates every 30 s.
START_TIMEOUT: Final = 120.0
BACKFILL_TIMEOUT: Final = 180.0
POLL: Final = 2.0
LOCATION: Final = "rangebar_pipeline.definitions"

LAUNCH_BACKFILL: Final = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""
BACKFILL: Final = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      numPartitions
      partitionNames
      runs { runId status tags { key value } }
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
    }
    ... on Error { message }
  }
}
"""
ASSET_PARTITIONS: Final = """
query Partitions($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      partitionStats { numMaterialized numFailed numMaterializing numPartitions }
      assetPartitionStatuses {
        __typename
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey
            primaryDimEndKey
            secondaryDim {
              __typename
              ... on DefaultPartitionStatuses {
                materializedPartitions
                failedPartitions
                materializingPartitions
              }
            }
          }
        }
      }
    }
    ... on Error { message }
  }
}
"""
LOCATION_LOADED: Final = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    """The pipeline over loopback mirrors, a SQLite instance in ``tmp_path/dagster_home``."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    # The automation sensor is not under test: no asset daemon, so no runs but the backfill's.
    settings["auto_materialize"] = {"enabled": False, "use_sensors": False}
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    yield from pipeline_env(tmp_path, monkeypatch, CONFIG)


@contextmanager
def _process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in a new process group (its code servers and run workers join it); on exit stop
    the process by its pid, then whatever is left of its group by the group id."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        with suppress(ProcessLookupError):  # it, if still running, and its code servers and run workers
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """POST a GraphQL request; ``None`` while the server does not answer."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return answer


class UI:
    """The webserver's GraphQL API, as the UI calls it."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def query(self, query: str, **variables: Any) -> dict[str, Any]:
        answer = _post(self.url, query, variables)
        assert answer is not None, f"the webserver did not answer: {self._tail()}"
        assert "errors" not in answer, answer["errors"]
        data: dict[str, Any] = answer["data"]
        return data

    def wait_loaded(self, server: subprocess.Popen[bytes]) -> None:
        """Wait (bounded) until the code location is loaded."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert server.poll() is None, f"the webserver exited: {self._tail()}"
            answer = _post(self.url, LOCATION_LOADED)
            entries = (answer or {}).get("data", {}).get("workspaceOrError", {}).get("locationEntries", [])
            if entries and entries[0]["loadStatus"] == "LOADED":
                assert [e["name"] for e in entries] == [LOCATION]
                loaded = entries[0]["locationOrLoadError"]
                assert loaded["__typename"] == "RepositoryLocation", loaded
                return
            time.sleep(POLL)
        raise AssertionError(f"the code location did not load in {START_TIMEOUT} s: {self._tail()}")

    def launch_backfill(self, partitions: list[str]) -> str:
        """Launch an asset backfill of :data:`ASSETS` over ``partitions`` (the UI's launch dialog)."""
        params = {"assetSelection": [{"path": [a]} for a in ASSETS], "partitionNames": partitions}
        launched = self.query(LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id: str = launched["backfillId"]
        return backfill_id

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        page: dict[str, Any] = self.query(BACKFILL, id=backfill_id)["partitionBackfillOrError"]
        assert page["__typename"] == "PartitionBackfill", page
        return page

    def wait_backfill(
        self, backfill_id: str, daemon: subprocess.Popen[bytes], daemon_log: Path
    ) -> dict[str, Any]:
        """Poll the backfill page until the backfill is done (bounded); its last state."""
        deadline = time.monotonic() + BACKFILL_TIMEOUT
        while time.monotonic() < deadline:
            assert daemon.poll() is None, f"the daemon exited: {_tail(daemon_log)}"
            page = self.backfill(backfill_id)
            if page["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
                return page
            time.sleep(POLL)
        raise AssertionError(
            f"backfill {backfill_id} not done in {BACKFILL_TIMEOUT} s: {self.backfill(backfill_id)}\n"
            f"{_tail(daemon_log)}"
        )

    def partition_view(self, asset: str) -> tuple[dict[str, str], dict[str, int]]:
        """The asset's partition view: the status of each partition holding one, and its stats."""
        node = self.query(ASSET_PARTITIONS, key={"path": [asset]})["assetNodeOrError"]
        assert node["__typename"] == "AssetNode", node
        statuses = node["assetPartitionStatuses"]
        assert statuses["__typename"] == "MultiPartitionStatuses", statuses
        assert statuses["primaryDimensionName"] == "date"
        by_key: dict[str, str] = {}
        for span in statuses["ranges"]:
            first = date.fromisoformat(span["primaryDimStartKey"])
            last = date.fromisoformat(span["primaryDimEndKey"])
            series = span["secondaryDim"]
            days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
            for status, field in (
                ("materialized", "materializedPartitions"),
                ("failed", "failedPartitions"),
                ("materializing", "materializingPartitions"),
            ):
                for name in series[field]:
                    by_key.update({f"{day}|{name}": status for day in days})
        stats: dict[str, int] = node["partitionStats"]
        return by_key, stats

    def _tail(self) -> str:
        return _tail(self.log)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""


def _counts(page: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The backfill page's per-asset counts: targeted, materialized, failed, in progress."""
    counts = {}
    for status in page["assetBackfillData"]["assetBackfillStatuses"]:
        assert status["__typename"] == "AssetPartitionsStatusCounts", status
        counts["/".join(status["assetKey"]["path"])] = {
            "targeted": status["numPartitionsTargeted"],
            "materialized": status["numPartitionsMaterialized"],
            "failed": status["numPartitionsFailed"],
            "in_progress": status["numPartitionsInProgress"],
        }
    return counts


def _each(**counts: int) -> dict[str, dict[str, int]]:
    """The same backfill page counts for every asset of :data:`ASSETS`."""
    return {asset: dict(counts) for asset in ASSETS}


def _failure_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The step failure errors of a run."""
    messages = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        error = event.step_failure_data.error if event is not None else None
        messages.append(f"{record.message} {error.message if error is not None else ''}")
    return messages


def _bars_days(threshold: int) -> set[date]:
    with BarStore() as store:
        return set(store.coverage(SPOT, threshold, date.fromisoformat(DAYS[0]), date.fromisoformat(DAYS[1])))


def test_backfill_daemon_and_backfill_page_agree_when_day_2_fails_and_after_the_rerun(
    env: PipelineEnv, tmp_path: Path
) -> None:
    with dg.DagsterInstance.get() as instance:  # creates the SQLite storage before any process does
        for day in (DAY1, DAY2):
            assert env.materialize(["ticks"], day, checks=False, instance=instance).success
    tick_file = env.root / "ticks" / "binance" / "spot" / "BTCUSDT" / f"{DAYS[1]}.parquet"
    tick_file.unlink()  # computing day 2's bars must fail; day 1 must be kept

    port = _free_port()
    web_log, daemon_log = tmp_path / "webserver.log", tmp_path / "daemon.log"
    workspace = ["-w", str(REPO / "workspace.yaml")]
    webserver = [str(BIN / "dagster-webserver"), *workspace, "-h", "127.0.0.1", "-p", str(port)]
    with (
        _process(webserver, web_log) as server,
        _process([str(BIN / "dagster-daemon"), "run", *workspace], daemon_log) as daemon,
    ):
        ui = UI(f"http://127.0.0.1:{port}/graphql", web_log)
        ui.wait_loaded(server)

        # 1. Both days in one backfill: the daemon launches ONE ranged run, which fails on day 2.
        first_id = ui.launch_backfill([DAY1, DAY2])
        first = ui.wait_backfill(first_id, daemon, daemon_log)
        assert first["status"] == "COMPLETED_FAILED", first
        [run] = first["runs"]
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert run["status"] == "FAILURE"
        assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
            DAY1,
            DAY2,
        )
        with dg.DagsterInstance.get() as instance:  # the instance: day 1 recorded, day 2 not
            for asset in ASSETS:
                assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {DAY1}, asset
            failures = _failure_messages(instance, run["runId"])
            assert len(failures) == 1 and f"{DAY2} failed" in failures[0], failures
            assert f"re-run from {DAYS[1]}" in failures[0]
        assert _bars_days(10) == _bars_days(25) == {date.fromisoformat(DAYS[0])}
        # The backfill page counts day 1 materialized and day 2 failed, per asset (not the whole range
        # failed because the single run failed) ...
        assert _counts(first) == _each(targeted=2, materialized=1, failed=1, in_progress=0)
        # ... and the asset's partition view says the same of each partition.
        for asset in ASSETS:
            statuses, stats = ui.partition_view(asset)
            assert statuses == {DAY1: "materialized", DAY2: "failed"}, (asset, statuses)
            assert (stats["numMaterialized"], stats["numFailed"], stats["numMaterializing"]) == (1, 1, 0)

        # 2. Ticks back, a backfill of day 2 only (the failure names the day to re-run from).
        with dg.DagsterInstance.get() as instance:
            assert env.materialize(["ticks"], DAY2, checks=False, instance=instance).success
        second_id = ui.launch_backfill([DAY2])
        second = ui.wait_backfill(second_id, daemon, daemon_log)
        assert second["status"] == "COMPLETED_SUCCESS", second
        assert [r["status"] for r in second["runs"]] == ["SUCCESS"]
        assert _counts(second) == _each(targeted=1, materialized=1, failed=0, in_progress=0)
        for asset in ASSETS:
            statuses, stats = ui.partition_view(asset)
            assert statuses == {DAY1: "materialized", DAY2: "materialized"}, (asset, statuses)
            assert (stats["numMaterialized"], stats["numFailed"], stats["numMaterializing"]) == (2, 0, 0)
        # A finished backfill's page is its own record: the first still says day 2 failed in it.
        assert ui.backfill(first_id)["status"] == "COMPLETED_FAILED"
        assert _counts(ui.backfill(first_id)) == _each(targeted=2, materialized=1, failed=1, in_progress=0)
    with dg.DagsterInstance.get() as instance:
        for asset in ASSETS:
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {DAY1, DAY2}, asset
    for threshold in (10, 25):  # day 2 continued day 1's stored checkpoint: the golden bars
        bars = get_range_bars("BTCUSDT", DAYS[0], DAYS[1], threshold, fetch_if_missing=False, output="polars")
        assert isinstance(bars, pl.DataFrame)
        assert_bars_equal_golden(bars, golden("spot", "BTCUSDT", threshold))
