"""Backfill fixture series through a running cluster and compare the stored bars with the golden bars.

Run by ``bash scripts/cluster.sh smoke`` (environment from ``<state dir>/env.sh``): one run per
series over both fixture days (a partition range) of the groups ``ticks`` and ``range_bars`` is
submitted to the webserver; the queued run coordinator starts them (one run per series at a time,
tag ``rangebar/series``), the Celery executor sends their steps to the workers. The report counts
the steps and the Celery workers that executed them (from the engine events the workers write) and
checks that no step ran in a run's own process; then the bars are read back with
``get_range_bars(..., fetch_if_missing=False)`` and compared with
``<golden>/{market}_{symbol}_{dbps}.parquet``. The last line is the verdict; exit 0 only when it holds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from rangebar_pipeline.config import load_config
from rangebar_pipeline.series import Series

__all__ = ["Backfill", "Report", "bars_equal_golden", "main", "submit_backfill", "wait_for_runs"]

DAYS: tuple[str, ...] = ("2024-08-08", "2024-08-09")
GROUPS: tuple[str, ...] = ("ticks", "range_bars")
SERIES_TAG = "rangebar/series"
_WORKER_KEY = "Celery worker"


@dataclass
class Backfill:
    """Runs submitted (one per series, by root run id), and each one's automatic retries when done."""

    roots: list[str]
    runs: dict[str, list[dg.DagsterRun]] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return all(chain and chain[-1].status == dg.DagsterRunStatus.SUCCESS for chain in self.runs.values())


@dataclass
class Report:
    """What ran where: steps started, Celery worker names, step pids that were a run worker's own."""

    steps: int
    workers: set[str]
    in_run_process: int


def selected_keys(groups: Sequence[str] = GROUPS) -> list[dg.AssetKey]:
    """Asset keys of ``groups`` in the code location (by group, never by op name).

    Built from the pipeline config in force now (``RANGEBAR_PIPELINE_CONFIG``), not from the module
    level ``definitions.defs``, which keeps the config of whenever it was first imported.
    """
    from rangebar_pipeline.config import load_config
    from rangebar_pipeline.definitions import build_definitions

    graph = build_definitions(load_config()).resolve_asset_graph()
    return sorted(dg.AssetSelection.groups(*groups).resolve(graph))


def submit_backfill(
    client: object, series: Sequence[str], days: Sequence[str] = DAYS, groups: Sequence[str] = GROUPS
) -> Backfill:
    """Submit one run per series over ``days`` (a partition range: one step walks the days in order)."""
    from dagster_graphql import DagsterGraphQLClient

    assert isinstance(client, DagsterGraphQLClient)
    keys = selected_keys(groups)
    roots = []
    for key in series:
        tags = {
            "dagster/asset_partition_range_start": f"{days[0]}|{key}",
            "dagster/asset_partition_range_end": f"{days[-1]}|{key}",
            SERIES_TAG: key,
        }
        roots.append(client.submit_job_execution("__ASSET_JOB", tags=tags, asset_selection=keys))
    return Backfill(roots)


def _chain(instance: dg.DagsterInstance, root: str) -> list[dg.DagsterRun]:
    """The root run and its automatic retries, oldest first."""
    root_run = instance.get_run_by_id(root)
    assert root_run is not None, root
    retries = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/root_run_id": root}))  # newest first
    return [root_run, *reversed(retries)]


def _settled(chain: list[dg.DagsterRun]) -> bool:
    last = chain[-1]
    if last.status == dg.DagsterRunStatus.SUCCESS:
        return True
    if last.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        return last.tags.get("dagster/will_retry") == "false"
    return False


def wait_for_runs(instance: dg.DagsterInstance, backfill: Backfill, timeout: float) -> bool:
    """Poll until every chain succeeded or failed for good (``True``), or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        backfill.runs = {root: _chain(instance, root) for root in backfill.roots}
        if all(_settled(chain) for chain in backfill.runs.values()):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(2)


def report(instance: dg.DagsterInstance, backfill: Backfill) -> Report:
    """Steps started, the Celery workers that ran them, and steps that ran in a run worker's process."""
    steps, in_run_process = 0, 0
    workers: set[str] = set()
    for chain in backfill.runs.values():
        for run in chain:
            events = [e for e in instance.all_logs(run.run_id) if e.dagster_event is not None]
            run_pids = {
                e.dagster_event.pid
                for e in events
                if e.dagster_event is not None and e.dagster_event_type == dg.DagsterEventType.RUN_START
            }
            for event in events:
                dagster_event = event.dagster_event
                assert dagster_event is not None
                if dagster_event.event_type == dg.DagsterEventType.STEP_START:
                    steps += 1
                    in_run_process += dagster_event.pid in run_pids
                elif dagster_event.event_type == dg.DagsterEventType.ENGINE_EVENT:
                    entry = dagster_event.engine_event_data.metadata.get(_WORKER_KEY)
                    if entry is not None:
                        workers.add(str(entry.value))
    return Report(steps, workers, in_run_process)


def _equal(bars: pl.DataFrame, golden: pl.DataFrame) -> bool:
    """Same bars as the golden file: exact times and counts, prices and volumes to 1e-8."""
    if bars.height != golden.height:
        return False
    for ours, theirs in (("open_time", "open_time_us"), ("close_time", "close_time_us")):
        if bars[ours].dt.epoch("us").to_list() != golden[theirs].to_list():
            return False
    for name in ("individual_trade_count", "agg_record_count", "duration_us"):
        if bars[name].to_list() != golden[name].to_list():
            return False
    return all(
        np.allclose(bars[name].to_numpy(), golden[name].to_numpy(), rtol=0, atol=1e-8)
        for name in ("open", "high", "low", "close", "volume", "vwap", "buy_volume", "sell_volume")
    )


def bars_equal_golden(series: Sequence[str], thresholds: Sequence[int], golden_dir: Path) -> bool:
    """Every (series, threshold) is stored for both days, once, and read back equal to its golden bars."""
    from rangebar_pipeline import get_range_bars
    from rangebar_pipeline.resources import BarStoreResource

    start, end = date.fromisoformat(DAYS[0]), date.fromisoformat(DAYS[-1])
    ok = True
    for key in series:
        s = Series.from_key(key)
        for threshold in thresholds:
            # stored by the pipeline (never computed here); the embedded store may still be held for a
            # moment by the process of a step that has just reported success: wait for it, as steps do
            with BarStoreResource().open() as store:
                covered = store.is_covered(s, threshold, start, end)
            golden = pl.read_parquet(golden_dir / f"{s.market}_{s.symbol}_{threshold}.parquet")
            bars = get_range_bars(
                s.symbol, DAYS[0], DAYS[-1], threshold, source=s.source, market=s.market,
                fetch_if_missing=False, output="polars",
            )  # fmt: skip
            assert isinstance(bars, pl.DataFrame)
            same = covered and _equal(bars, golden)
            print(f"  {key:<28} {threshold:>4} dbps: {bars.height:>5} bars, stored {covered}, golden {same}")
            ok = ok and same
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True, help="webserver port on 127.0.0.1")
    parser.add_argument("--golden", type=Path, required=True, help="directory of the golden bars")
    parser.add_argument("--series", type=int, default=3, help="first N Binance series of the config (3)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the runs (900)")
    args = parser.parse_args(argv)
    from dagster_graphql import DagsterGraphQLClient

    config = load_config()
    series = [k for k in config.series_keys if k.startswith("binance-")][: args.series]
    if len(series) < args.series:
        parser.error(f"the config has {len(series)} Binance series, fewer than --series {args.series}")
    client = DagsterGraphQLClient("127.0.0.1", port_number=args.port)
    started = time.perf_counter()
    backfill = submit_backfill(client, series)
    print(f"submitted {len(backfill.roots)} runs ({len(series)} series x {len(DAYS)} days each)", flush=True)
    with dg.DagsterInstance.get() as instance:
        settled = wait_for_runs(instance, backfill, args.timeout)
        elapsed = time.perf_counter() - started
        result = report(instance, backfill)
    print(
        f"runs {'settled' if settled else 'NOT settled'} in {elapsed:.1f} s, "
        f"succeeded: {backfill.succeeded}; workers {sorted(result.workers)}; "
        f"steps in a run's own process: {result.in_run_process}"
    )
    equal = settled and backfill.succeeded and bars_equal_golden(series, config.thresholds, args.golden)
    workers = len(result.workers)
    print(f"cluster smoke: {result.steps} steps on {workers} workers, bars equal golden: {equal}")
    return 0 if equal and workers >= 2 and result.in_run_process == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
