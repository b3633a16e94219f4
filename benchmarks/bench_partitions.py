"""Scale of the partition space: code-location load, automation, sensor tick, the UI's partition view.

Generates a pipeline config of ``--series`` series (``SYM0001USDT`` ..., spread over Binance spot,
USD-M and COIN-M) x six thresholds from ``--start`` under ``benchmarks/.data/partitions`` and points
``RANGEBAR_PIPELINE_CONFIG`` at it, then measures, each stage in a fresh process:

* ``load``: ``import rangebar_pipeline.definitions`` (builds ``defs``) and the repository snapshot
  the gRPC code server sends to the webserver and daemon (``RepositorySnap.from_def``);
* ``automation``: one ``dg.evaluate_automation_conditions`` over every asset, on an empty SQLite
  instance and on one with ``--materialized`` partitions recorded;
* ``sensor``: one ``new_days`` evaluation (``dg.build_sensor_context``) against a ``file://`` mirror
  (no network), from an empty cursor;
* ``ui``: ``dagster-webserver`` on 127.0.0.1 against the populated instance, timing the GraphQL query
  of a bars asset's Partitions tab (``PartitionHealthQuery``, copied from the webapp bundle) twice
  (the first answer builds Dagster's partition-status cache).

Materializations are recorded as runless ``ASSET_MATERIALIZATION`` events written exactly as
``SqliteEventLogStorage.store_event`` writes them (event row, asset-key row, partition tags), but
``--batch`` events per SQLite transaction instead of one transaction (and two connections) per event.

Run: ``.venv/bin/python benchmarks/bench_partitions.py [--series 500] [--materialized 100000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import yaml

ROOT: Final = Path(__file__).resolve().parents[1]
DATA: Final = Path(__file__).resolve().parent / ".data" / "partitions"
THRESHOLDS: Final = (10, 25, 50, 100, 250, 500)
MARKETS: Final = ("spot", "um", "cm")
#: The query the asset's Partitions tab issues (dagster-webserver 1.13 bundle, ``PartitionHealthQuery``).
PARTITION_HEALTH_QUERY: Final = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
            secondaryDim {
              ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
              ... on DefaultPartitionStatuses {
                materializedPartitions materializingPartitions failedPartitions
              }
            }
          }
        }
      }
    }
  }
}
"""


def symbol(i: int, market: str) -> str:
    """``SYM0001USDT`` (COIN-M: ``SYM0001USD_PERP``)."""
    return f"SYM{i:04d}USD_PERP" if market == "cm" else f"SYM{i:04d}USDT"


def write_config(path: Path, n_series: int, start: date) -> None:
    """A pipeline config of ``n_series`` Binance series x :data:`THRESHOLDS` from ``start``."""
    series = [
        {"source": "binance", "market": MARKETS[i % 3], "symbol": symbol(i + 1, MARKETS[i % 3])}
        for i in range(n_series)
    ]
    raw = {"start_date": start.isoformat(), "thresholds": list(THRESHOLDS), "series": series}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


# --- stages (each runs in its own process) -------------------------------------------------------------


def stage_load(_: argparse.Namespace) -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    import rangebar_pipeline.definitions as module

    imported = time.perf_counter()
    from dagster._core.remote_representation.external_data import RepositorySnap

    snap = RepositorySnap.from_def(module.defs.get_repository_def())
    done = time.perf_counter()
    return {
        "import_and_build_s": round(imported - started, 2),
        "repository_snapshot_s": round(done - imported, 2),
        "code_location_load_s": round(done - started, 2),
        "code_location_load_cpu_s": round(time.process_time() - cpu, 2),
        "asset_nodes": len(snap.asset_nodes),
    }


def _instance(home: Path) -> Any:
    import dagster as dg

    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.from_config(str(home))


def _bars_keys() -> list[Any]:
    import dagster as dg

    from rangebar_pipeline.config import load_config

    return [dg.AssetKey(f"range_bars_{t}") for t in load_config().thresholds]


def stage_record(args: argparse.Namespace) -> dict[str, Any]:
    """Record ``args.materialized`` materializations: the latest days of every series, bars assets.

    Spread over the first ``args.assets`` ``range_bars_*`` assets; the UI stage reads the first one.
    """
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    from rangebar_pipeline.config import load_config
    from rangebar_pipeline.partitions import partition_key

    config = load_config()
    keys = _bars_keys()[: args.assets]
    yesterday = args.today - timedelta(days=1)
    per_asset = -(-args.materialized // len(keys))
    days_back = -(-per_asset // len(config.series))
    targets = [
        (asset, partition_key(yesterday - timedelta(days=d), s))
        for asset in keys
        for d in range(days_back)
        for s in config.series
    ][: args.materialized]
    instance = _instance(Path(args.home))
    storage: Any = instance.event_log_storage
    started = time.perf_counter()
    for first in range(0, len(targets), args.batch):
        entries = []
        for asset, key in targets[first : first + args.batch]:
            event = DagsterEvent(
                event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                job_name=RUNLESS_JOB_NAME,
                event_specific_data=StepMaterializationData(
                    dg.AssetMaterialization(asset_key=asset, partition=key)
                ),
            )
            entries.append(
                EventLogEntry(  # type: ignore[no-untyped-call]
                    error_info=None,
                    level="debug",
                    user_message="",
                    run_id=RUNLESS_RUN_ID,
                    timestamp=time.time(),
                    dagster_event=event,
                )
            )
        _store_batch(storage, entries)
    elapsed = time.perf_counter() - started
    return {
        "recorded": len(targets),
        "assets": len(keys),
        "days_per_series": days_back,
        "record_s": round(elapsed, 1),
        "events_per_s": round(len(targets) / elapsed),
    }


def _store_batch(storage: Any, entries: list[Any]) -> None:
    """What ``SqliteEventLogStorage.store_event`` does per asset event, for a batch in one transaction."""
    from dagster._core.instance.utils import RUNLESS_RUN_ID

    statements = [storage.prepare_insert_event(e) for e in entries]
    with storage.run_connection(RUNLESS_RUN_ID) as conn:
        for statement in statements:
            conn.execute(statement)
    with storage.index_transaction() as conn:
        ids = [conn.execute(statement).inserted_primary_key[0] for statement in statements]
        storage._store_asset_event_tags(conn, entries, ids)
        for entry, event_id in zip(entries, ids, strict=True):
            storage._store_asset_event(conn, entry, event_id)


def stage_record_slow(args: argparse.Namespace) -> dict[str, Any]:
    """The rate of the public path: ``instance.report_runless_asset_event``, one event at a time."""
    import dagster as dg

    from rangebar_pipeline.config import load_config
    from rangebar_pipeline.partitions import partition_key

    config = load_config()
    instance = _instance(Path(args.home))
    asset = _bars_keys()[0]
    started = time.perf_counter()
    for i in range(args.materialized):
        day = args.today - timedelta(days=1 + i // len(config.series))
        key = partition_key(day, config.series[i % len(config.series)])
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=key))
    elapsed = time.perf_counter() - started
    return {
        "recorded": args.materialized,
        "record_s": round(elapsed, 2),
        "events_per_s": round(args.materialized / elapsed),
    }


def stage_automation(args: argparse.Namespace) -> dict[str, Any]:
    """Three consecutive evaluations: the first (every condition is new), the next, a steady one."""
    import dagster as dg

    import rangebar_pipeline.definitions as module

    instance = _instance(Path(args.home))
    now = datetime.combine(args.today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=3)
    out: dict[str, Any] = {}
    cursor = None
    for name in ("first", "second", "third"):
        started, cpu = time.perf_counter(), time.process_time()
        result = dg.evaluate_automation_conditions(
            defs=module.defs, instance=instance, evaluation_time=now, cursor=cursor
        )
        out[f"{name}_s"] = round(time.perf_counter() - started, 2)
        out[f"{name}_cpu_s"] = round(time.process_time() - cpu, 2)
        out[f"{name}_requested"] = result.total_requested
        cursor = result.cursor
    return out


def stage_sensor(args: argparse.Namespace) -> dict[str, Any]:
    import dagster as dg

    import rangebar_pipeline.definitions as module
    from rangebar_pipeline.resources import BinanceVisionResource, ExnessResource

    mirror = Path(args.home) / "mirror"
    mirror.mkdir(parents=True, exist_ok=True)
    sensor = module.defs.resolve_sensor_def("new_days")
    resources = {
        "binance": BinanceVisionResource(base_url=mirror.as_uri()),
        "exness": ExnessResource(base_url=mirror.as_uri()),
    }
    started = time.perf_counter()
    with dg.build_sensor_context(cursor=None, resources=resources, definitions=module.defs) as context:
        result = sensor(context)
    elapsed = time.perf_counter() - started
    return {
        "sensor_tick_s": round(elapsed, 3),
        "run_requests": len(getattr(result, "run_requests", []) or []),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _graphql(url: str, query: str, variables: dict[str, Any], timeout: float) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload: dict[str, Any] = json.load(response)
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return payload


def _range_count(status_range: dict[str, Any]) -> int:
    """Materialized partitions in one date range of a ``MultiPartitionStatuses`` answer."""
    first = date.fromisoformat(status_range["primaryDimStartKey"])
    last = date.fromisoformat(status_range["primaryDimEndKey"])
    series = status_range["secondaryDim"].get("materializedPartitions", [])
    return ((last - first).days + 1) * len(series)


def stage_ui(args: argparse.Namespace) -> dict[str, Any]:
    port = _free_port()
    webserver = Path(sys.executable).with_name("dagster-webserver")
    log = (Path(args.home) / "webserver.log").open("w")
    env = {**os.environ, "DAGSTER_HOME": str(Path(args.home).resolve())}
    command = [str(webserver), "-h", "127.0.0.1", "-p", str(port), "-m", "rangebar_pipeline.definitions"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        started = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).close()
                _graphql(url, "{ version }", {}, 30)
                break
            except OSError:
                if process.poll() is not None or time.perf_counter() - started > 300:
                    raise RuntimeError(f"dagster-webserver did not start; see {log.name}") from None
                time.sleep(0.5)
        up = time.perf_counter() - started
        variables = {"assetKey": {"path": [f"range_bars_{THRESHOLDS[0]}"]}}
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            payload = _graphql(url, PARTITION_HEALTH_QUERY, variables, 600)
            timings.append(time.perf_counter() - started)
        node = payload["data"]["assetNodeOrError"]
        ranges = node["assetPartitionStatuses"].get("ranges", [])
        return {
            "webserver_up_s": round(up, 1),
            "partition_view_first_s": round(timings[0], 2),
            "partition_view_again_s": round(timings[1], 2),
            "response_bytes": len(json.dumps(payload)),
            "status_ranges": len(ranges),
            "materialized_shown": sum(_range_count(r) for r in ranges),
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


STAGES: Final = {
    "load": stage_load,
    "record": stage_record,
    "record_slow": stage_record_slow,
    "automation": stage_automation,
    "sensor": stage_sensor,
    "ui": stage_ui,
}


def run_stage(name: str, args: argparse.Namespace, home: Path, **extra: Any) -> dict[str, Any]:
    """Run one stage in a fresh interpreter; its last stdout line is its JSON result."""
    command = [
        sys.executable,
        __file__,
        "--stage",
        name,
        "--home",
        str(home),
        "--today",
        args.today.isoformat(),
    ]
    flags = {"materialized": args.materialized, "batch": args.batch, "assets": args.assets, **extra}
    for flag, value in flags.items():
        command += [f"--{flag}", str(value)]
    done = subprocess.run(
        command, check=False, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"stage {name} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{name:<12} {json.dumps(result)}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2020, 1, 1))
    parser.add_argument("--today", type=date.fromisoformat, default=datetime.now(UTC).date())
    parser.add_argument("--materialized", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--assets", type=int, default=len(THRESHOLDS), help="bars assets to record into")
    parser.add_argument("--data", type=Path, default=DATA, help="working directory (config, instances)")
    parser.add_argument("--only", nargs="*", default=None, help="stages to run (default: all)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](args)))
        return

    data: Path = args.data
    config = data / "pipeline.yaml"
    write_config(config, args.series, args.start)
    os.environ["RANGEBAR_PIPELINE_CONFIG"] = str(config)
    os.environ.setdefault("RANGEBAR_CACHE_DIR", str(data / "cache"))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    days = (args.today - args.start).days
    print(
        f"{args.series} series x {len(THRESHOLDS)} thresholds from {args.start}: {days} days, "
        f"{args.series * days:,} partitions per daily asset",
        flush=True,
    )
    empty, full = data / "instance-empty", data / "instance-full"
    wanted = set(args.only or ["load", "automation", "sensor", "record", "ui"])
    if "load" in wanted:
        run_stage("load", args, empty)
    if "sensor" in wanted:
        run_stage("sensor", args, empty)
    if "automation" in wanted:
        shutil.rmtree(empty, ignore_errors=True)
        run_stage("automation", args, empty)
    if "record" in wanted:
        shutil.rmtree(full, ignore_errors=True)
        run_stage("record", args, full)
    if "record_slow" in wanted:
        shutil.rmtree(data / "instance-slow", ignore_errors=True)
        run_stage("record_slow", args, data / "instance-slow")
    if "automation" in wanted and full.exists():
        run_stage("automation", args, full)
    if "ui" in wanted and full.exists():
        run_stage("ui", args, full)


if __name__ == "__main__":
    main()
