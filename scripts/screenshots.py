"""Screenshots of the Dagster UI for the docs: the asset graph and a materialized partition.

    .venv/bin/python scripts/screenshots.py [--out docs/images] [--data ../shared/data]

Offline and self-contained: serves the shared fixtures on 127.0.0.1 as the Binance Vision and Exness
mirrors, materializes two days of ``binance-spot-BTCUSDT`` into a temporary cache and Dagster home,
starts ``dagster-webserver`` on 127.0.0.1 and shoots pages with headless Debian ``chromium``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERIES = "binance-spot-BTCUSDT"
DAYS = ("2024-08-08", "2024-08-09")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(root: Path) -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, body: bytes | None = None, *, attempts: int = 240) -> bytes:
    for _ in range(attempts):
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                data: bytes = response.read()
                if body is None or b'"assetNodes": []' not in data.replace(b'":[]', b'": []'):
                    return data
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer")


def _materialize() -> None:
    import dagster as dg

    from rangebar_pipeline.definitions import build_definitions

    defs = build_definitions()
    selection = dg.AssetSelection.assets(
        "ticks", "range_bars_25", "range_bars_250", "features_25", "features_250"
    )
    with dg.DagsterInstance.get() as instance:
        for day in DAYS:
            dg.materialize(
                [*(defs.assets or []), *(defs.asset_checks or [])],  # type: ignore[list-item]
                selection=selection,
                partition_key=f"{day}|{SERIES}",
                resources=dict(defs.resources or {}),
                instance=instance,
            )
        dg.materialize(
            [*(defs.assets or []), *(defs.asset_checks or [])],  # type: ignore[list-item]
            selection=dg.AssetSelection.assets("ml_dataset_25", "forward_return_model"),
            partition_key=SERIES,
            resources=dict(defs.resources or {}),
            instance=instance,
        )


def _shoot(chromium: str, url: str, out: Path, profile: Path) -> None:
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--screenshot={out}", "--window-size=1600,1000",
            "--virtual-time-budget=15000", url,
        ],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    print(f"wrote {out} ({out.stat().st_size} bytes) from {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rangebar-screens-"))
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    os.environ.update(
        DAGSTER_HOME=str(home),
        RANGEBAR_CACHE_DIR=str(work / "cache"),
        RANGEBAR_PIPELINE_DIR=str(work / "pipeline"),
        RANGEBAR_BINANCE_BASE_URL=_serve(args.data / "binance_vision"),
        RANGEBAR_EXNESS_BASE_URL=_serve(args.data / "exness"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    os.environ.pop("RANGEBAR_CLICKHOUSE_DSN", None)
    sys.path.insert(0, str(REPO))
    _materialize()
    port = _free_port()
    webserver = Path(sys.executable).with_name("dagster-webserver")
    server = subprocess.Popen(
        [str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/server_info")
        _wait_for(f"{base}/graphql", json.dumps({"query": "{ assetNodes { id } }"}).encode())
        # Dismiss the first-visit community dialog (stored in the instance), or it covers every page.
        _wait_for(f"{base}/graphql", json.dumps({"query": "mutation { setNuxSeen }"}).encode())
        args.out.mkdir(parents=True, exist_ok=True)
        partition = f"{DAYS[1]}|{SERIES}".replace("|", "%7C")
        pages = {
            "asset_graph.png": (
                f"{base}/assets/forward_return_model?view=lineage&lineageScope=upstream&lineageDepth=6"
            ),
            "range_bars_partition.png": f"{base}/assets/range_bars_25?view=partitions&partition={partition}",
            "range_bars_events.png": f"{base}/assets/range_bars_25?view=events&partition={partition}",
        }
        for name, url in pages.items():
            _shoot(args.chromium, url, args.out / name, work / "chromium")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
