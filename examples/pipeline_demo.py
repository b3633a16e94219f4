"""The main job, offline, on the embedded default: the whole pipeline over the shared fixtures.

``file://`` mirrors of ``../shared/data`` stand in for Binance Vision and Exness; the tick cache, the
embedded chDB bar store, the feature tables and a persistent Dagster instance live in
``.rangebar-demo/``. The pipeline runs as a user runs it: ``dagster-webserver`` and ``dagster-daemon``
on 127.0.0.1, one backfill of ticks, range bars and feature tables over every fixture day of every
series (the daemon splits it into bounded runs), then the ``rangebar_datasets`` job per series and
the ``freshness_checks`` job, all launched through the UI's API, so every run is on the Timeline,
the job pages and the Backfills page and can be re-executed. It prints every check's status (none
failed, none skipped), reads the bars back with ``get_range_bars`` and compares them with the
reference's golden bars. ``--ui`` then starts ``dagster dev`` on the same instance.

Run: ``.venv/bin/python examples/pipeline_demo.py [--ui]`` (``bash scripts/demo.sh`` does it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEMO = REPO / ".rangebar-demo"
#: The Exness fixture month holds 2023-06-23..27; Binance days are listed from the fixture files.
EXNESS_DAYS = [date(2023, 6, 23) + timedelta(days=i) for i in range(5)]
MARKET_DIRS = {"spot": "spot", "um": "futures/um", "cm": "futures/cm"}


def fixture_days(series: str) -> list[date]:
    """The days the shared fixtures hold for a series key such as ``binance-um-BTCUSDT``."""
    source, market, symbol = series.split("-", 2)
    if source == "exness":
        return EXNESS_DAYS
    folder = SHARED / "binance_vision" / "data" / MARKET_DIRS[market] / "daily" / "aggTrades" / symbol
    return sorted(date.fromisoformat(p.name[-14:-4]) for p in folder.glob(f"{symbol}-aggTrades-*.zip"))


def configure_environment() -> None:
    """Point every ``RANGEBAR_*`` setting and ``DAGSTER_HOME`` at the demo directory and the mirrors."""
    home = DEMO / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    os.environ.update(
        DAGSTER_HOME=str(home),
        RANGEBAR_CACHE_DIR=str(DEMO / "cache"),
        RANGEBAR_PIPELINE_DIR=str(DEMO / "pipeline"),
        RANGEBAR_PIPELINE_CONFIG=str(REPO / "examples" / "demo_pipeline.yaml"),
        RANGEBAR_BINANCE_BASE_URL=(SHARED / "binance_vision").as_uri(),
        RANGEBAR_EXNESS_BASE_URL=(SHARED / "exness").as_uri(),
    )
    os.environ.pop("RANGEBAR_CLICKHOUSE_DSN", None)  # the embedded chDB store


def partitions() -> dict[str, list[str]]:
    """Per series, every partition from the series' first day to its newest fixture day (the days
    before a series' first day are not asked for: a user's "missing only" backfill would record them
    as empty)."""
    from rangebar_pipeline.config import load_config
    from rangebar_pipeline.series import Series

    config = load_config()
    out = {}
    for series in config.series_keys:
        last = fixture_days(series)[-1]
        if series.startswith("exness"):  # the month archive is published whole: its last day
            last = date(last.year, last.month + 1, 1) - timedelta(days=1)
        first = config.first_day(Series.from_key(series))
        out[series] = [f"{first + timedelta(days=i)}|{series}" for i in range((last - first).days + 1)]
    return out


def materialize(timeout: float = 3600.0) -> None:
    """Through the code location as a user does: a backfill of ticks, bars and feature tables run by the
    daemon, then the ``rangebar_datasets`` job per series and the ``freshness_checks`` job."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ui_session import ui_session

    from rangebar_pipeline.config import load_config

    config = load_config()
    assets = ["ticks", *(f"{kind}_{t}" for kind in ("range_bars", "features") for t in config.thresholds)]
    wanted = partitions()
    started = time.perf_counter()
    with ui_session(DEMO / "logs") as ui:
        keys = [key for keys in wanted.values() for key in keys]
        backfill = ui.launch_backfill(assets, keys, title="demo: every fixture day of every series")
        print(f"backfill {backfill}: {len(keys)} partitions x {len(assets)} assets (the daemon runs it)")
        page = ui.wait_backfill(backfill, timeout)
        runs = page["runs"]
        print(f"  {page['status']}: {len(runs)} runs in {time.perf_counter() - started:.0f} s")
        if page["status"] != "COMPLETED_SUCCESS":
            raise SystemExit(f"the backfill ended {page['status']}: {runs} (logs in {DEMO / 'logs'})")
        launched = [ui.launch_run("rangebar_datasets", series) for series in wanted]
        launched.append(ui.launch_run("freshness_checks"))
        statuses = ui.wait_runs(launched, timeout)
        if set(statuses.values()) != {"SUCCESS"}:
            raise SystemExit(f"job runs failed: {statuses} (logs in {DEMO / 'logs'})")
        print(f"rangebar_datasets x {len(wanted)} and freshness_checks: SUCCESS")
    report_checks()


def report_checks() -> None:
    """Every check's current status: the demo ends with none failed and none skipped; a failed
    warning-severity check (tier2: the statistics of a run's last bars, data not defects) is
    printed as a warning."""
    import dagster as dg
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionResolvedStatus
    from dagster._core.storage.asset_check_state import AssetCheckState, bulk_update_asset_check_state

    from rangebar_pipeline.assets.empty_days import PER_DAY_CHECKS
    from rangebar_pipeline.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    counts: dict[str, int] = {}
    bad: list[str] = []
    warned: list[str] = []
    with dg.DagsterInstance.get() as instance:
        keys = [
            (k, graph.get(k.asset_key).partitions_def if k.name in PER_DAY_CHECKS else None)
            for k in graph.asset_check_keys
        ]
        states = bulk_update_asset_check_state(instance, keys, {k: AssetCheckState.empty() for k, _ in keys})
        for key, state in states.items():
            for status, subset in state.subsets.items():
                size = subset.size
                if not size:
                    continue
                counts[status.value] = counts.get(status.value, 0) + size
                if status == AssetCheckExecutionResolvedStatus.SUCCEEDED:
                    continue
                evaluation = _latest_evaluation(instance, key)
                if status == AssetCheckExecutionResolvedStatus.FAILED and (
                    evaluation is not None and evaluation.severity == dg.AssetCheckSeverity.WARN
                ):  # a warning (the tier-2 statistics of a run's bars): reported, not a failure
                    warned.append(f"{key.to_user_string()}: {evaluation.description}")
                    continue
                bad.append(f"{key.to_user_string()} {status.value} x {size}")
    print("checks: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())))
    for line in warned:
        print(f"warning (severity WARN, not blocking): {line}")
    if bad:
        raise SystemExit("checks not passed: " + "; ".join(bad))


def _latest_evaluation(instance: Any, key: Any) -> Any:
    """The latest evaluation of the check ``key`` (its severity and description), if any."""
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    event = history[0].event if history else None
    return event.dagster_event.event_specific_data if event is not None and event.dagster_event else None


def verify() -> None:
    """Read the bars back through the library API (no fetching) and compare them with the golden bars."""
    import numpy as np
    import polars as pl

    from rangebar_pipeline import get_range_bars

    print("\nbars read back with get_range_bars(..., fetch_if_missing=False):")
    for market, symbol in (("spot", "BTCUSDT"), ("um", "ETHUSDT"), ("cm", "BTCUSD_PERP")):
        for threshold in (25, 250):
            bars = get_range_bars(
                symbol,
                "2024-08-08",
                "2024-08-09",
                threshold,
                market=market,
                fetch_if_missing=False,
                output="polars",
            )
            assert isinstance(bars, pl.DataFrame)
            golden = pl.read_parquet(SHARED / "golden" / f"{market}_{symbol}_{threshold}.parquet")
            same = (
                bars.height == golden.height
                and np.array_equal(
                    bars["close_time"].dt.epoch("us").to_numpy(), golden["close_time_us"].to_numpy()
                )
                and np.allclose(bars["close"].to_numpy(), golden["close"].to_numpy(), rtol=0, atol=1e-8)
            )
            verdict = "equal to the reference's golden bars" if same else "DIFFERENT from the golden bars"
            print(f"  {market:>4} {symbol:<12} {threshold:>4} dbps: {bars.height:>4} bars, {verdict}")
            if not same:
                raise SystemExit(1)
    fx = get_range_bars("EURGBP", "2023-06-23", "2023-06-27", 25, source="exness", fetch_if_missing=False)
    print(f"  exness EURGBP       25 dbps: {len(fx):>4} bars (mid prices, with spread statistics)")


def show_datasets() -> None:
    """Each series' ML dataset (feature table version, rows, labels) and the consumer's fold metrics."""
    import json

    import polars as pl

    from rangebar_pipeline.config import load_config
    from rangebar_pipeline.series import Series
    from rangebar_pipeline.storage.datasets import DatasetStore

    config = load_config()
    threshold, store = config.model_threshold, DatasetStore()
    print(f"\nML datasets at {threshold} dbps (labels across days) and the example consumer's folds:")
    for key in config.series_keys:
        dataset, provenance = store.read_dataset(threshold, Series.from_key(key))
        recipe = json.loads(provenance["rangebar.recipe"])
        labelled = dataset.filter(pl.col("tb_label").is_not_null())
        counts = dict(labelled.group_by("tb_label").len().sort("tb_label").iter_rows())
        print(
            f"  {key:<28} feature table v{recipe['version']}: {dataset.height:>4} bars "
            f"{recipe['start']}..{recipe['end']}, tb_label -1/0/+1 = "
            f"{counts.get(-1, 0)}/{counts.get(0, 0)}/{counts.get(1, 0)}"
        )
        model = json.loads((store.root / "models" / "forward_return_model" / f"{key}.json").read_text())
        for fold in model["walk_forward"]:
            print(
                f"      fold {fold['fold']}: train {fold['train']:>4}, test {fold['test']:>3}, "
                f"OOS R2 {fold['oos_r2']:+.3f}, hit rate {fold['hit_rate']:.2f}"
            )
    print("  rebuild any of them: read_dataset(threshold, series, start, end, version) (docs/datasets.md)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ui", action="store_true", help="afterwards, start `dagster dev` on this instance")
    parser.add_argument("--port", type=int, default=3000, help="UI port with --ui (default 3000)")
    args = parser.parse_args()
    if not (SHARED / "binance_vision").is_dir():
        raise SystemExit(f"{SHARED} is missing: the demo reads the shared fixtures beside the repository")
    configure_environment()
    done = DEMO / "materialized"
    if not (args.ui and done.exists()):  # --ui after a completed demo only starts the UI
        done.unlink(missing_ok=True)
        shutil.rmtree(DEMO, ignore_errors=True)  # a fresh instance, cache and store each time
        configure_environment()
        materialize()
        verify()
        show_datasets()
        done.touch()
    print(f"\ncache, bar store and Dagster instance: {DEMO}")
    if args.ui:
        dagster = Path(sys.executable).with_name("dagster")
        print(f"starting the UI on http://127.0.0.1:{args.port} (Ctrl-C to stop)")
        os.execv(
            dagster, [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(args.port)]
        )
    print("open the UI on this instance with: bash scripts/demo.sh --ui")


if __name__ == "__main__":
    main()
