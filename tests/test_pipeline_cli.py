"""The command-line entry points: definitions validate, asset materialize, and the web server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from rangebar_pipeline.api import get_range_bars
from tests.pipeline_support import DAYS, SERIES, PipelineEnv, assert_bars_equal_golden, golden, pipeline_env

REPO = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    yield from pipeline_env(tmp_path, monkeypatch)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DAGSTER), *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )


def test_definitions_validate_with_the_workspace(env: PipelineEnv) -> None:
    done = run_cli("definitions", "validate", "-w", "workspace.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Validation successful" in done.stdout + done.stderr


def test_asset_materialize_command_then_get_range_bars_returns_the_golden_bars(env: PipelineEnv) -> None:
    # The README's command, one day after the other. The second day runs its steps in one process
    # (run config) to keep the suite fast: the first already covers the default multiprocess executor.
    in_process = ("--config-json", json.dumps({"execution": {"config": {"in_process": {}}}}))
    for day, extra in zip(DAYS, [(), in_process], strict=True):
        done = run_cli(
            "asset", "materialize", "-m", "rangebar_pipeline.definitions",
            "--select", "ticks,range_bars_10", "--partition", f"{day}|{SERIES}", *extra,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert "RUN_SUCCESS" in done.stderr
    bars = get_range_bars("BTCUSDT", DAYS[0], DAYS[1], 10, fetch_if_missing=False, output="polars")
    assert isinstance(bars, pl.DataFrame)
    assert_bars_equal_golden(bars, golden("spot", "BTCUSDT", 10))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, body: bytes | None = None) -> bytes | None:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            data: bytes = response.read()
            return data
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_webserver_starts_and_serves_the_asset_graph(env: PipelineEnv) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [
            str(DAGSTER.with_name("dagster-webserver")),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        info = None
        for _ in range(240):  # wait for it to answer (bounded; no timing assertion)
            info = _get(f"{base}/server_info")
            if info is not None or server.poll() is not None:
                break
            time.sleep(0.5)
        assert info is not None, (
            server.stderr.read() if server.poll() is not None and server.stderr else b""
        )[-3000:]
        assert "dagster_webserver_version" in json.loads(info)
        query = json.dumps({"query": "{ assetNodes { assetKey { path } groupName } }"}).encode()
        answer = None
        for _ in range(120):  # the code location loads in the background
            raw = _get(f"{base}/graphql", query)
            answer = json.loads(raw) if raw else None
            if answer and answer.get("data", {}).get("assetNodes"):
                break
            time.sleep(0.5)
        assert answer is not None
        nodes = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in answer["data"]["assetNodes"]}
        assert nodes["ticks"] == "ticks" and nodes["range_bars_10"] == "range_bars"
        assert nodes["forward_return_model"] == "ml_consumers"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
