"""Benchmark the pipeline against the kernel floor: library, Dagster ranged, Dagster per partition, CLI.

Generates a USD-M aggTrades mirror in the real Binance Vision layout (``--days`` x ``--trades``; a
random walk in $1 steps around $60,000, random taker side) under ``benchmarks/.data``, stores its
ticks in the tick cache once, then measures, each path in its own process with a fresh bar store
(embedded chDB) and the ticks already local:

* kernel floor: ``RangeBarProcessor.process_parquet`` over the day files, once per threshold;
* library: ``precompute_range_bars`` per threshold, and once with every threshold (one decode a day);
* Dagster ranged: one single-run backfill of the date range, every ``range_bars_*`` and
  ``features_*`` with all their checks, on a persistent (SQLite) Dagster instance configured by the
  checkout's ``deploy/dagster.yaml``;
* Dagster per partition: one in-process run per day partition, same selection;
* one ``dagster asset materialize`` CLI call (one day, whole process: start, code load, run).

Every path but the CLI call runs ``--repeat`` times (default 3), alternating with the baseline's,
and the table gives the best run of each, with all of them beside it: single runs on these machines
move by +-20 % and more, and the floor the ratios divide by is a best run as well. When the baseline
runs this kernel build and floor code byte for byte, both checkouts divide by the best floor run of
either (in one run this checkout's floor runs took 0.98-1.10 s and the baseline's 0.67 s: the same
computation, which would have flattered this checkout's ratios).

The Dagster paths run as deployed: with the validation service (``python -m
rangebar_pipeline.validation.service``, started once for the whole benchmark, as a deployment starts
it beside the daemon), so a run process connects to validators already imported; the ranged run is
also measured without it (each run process imports great-expectations and statsmodels itself). The
baseline ignores the service if it predates it.

The ranged run's day completion times are fitted by least squares: the intercept is the run's fixed
cost, the slope the marginal cost of a day (the figure that decides long backfills).
``--baseline DIR`` runs every path again with another checkout's package (e.g. the previous commit:
``git worktree add DIR COMMIT`` and its kernel from ``benchmarks/build_baseline.sh COMMIT`` copied to
``DIR/rangebar_pipeline/_core.abi3.so``), right after this checkout's, so that both see the same load.
``--year-days N`` adds the end-to-end figure: ticks (zip -> tick cache), bars and feature tables of N
days at six thresholds through Dagster in one single-run backfill, with the per-day completion times
fitted by least squares and extrapolated to 365 days.

Run: ``.venv/bin/python benchmarks/bench_pipeline.py [--days 10] [--trades 1000000] [--year-days 90]
[--baseline DIR]``.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

# The caller's own choice for polars' allocator, if any, before the package below configures it
# (and polars appends its own defaults): the measured processes are given this, and decide the rest.
MALLOC_CONF: Final = os.environ.get("_RJEM_MALLOC_CONF")

import rangebar_pipeline  # noqa: E402,F401  first, as a run worker loads the code location: before polars

# isort: split
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import yaml  # noqa: E402

DATA = Path(__file__).resolve().parent / ".data" / "pipeline"
SYMBOL = "BENCHUSDT"
MARKET: Final = "um"
FIRST_DAY = date(2025, 1, 1)
YEAR_THRESHOLDS = (10, 25, 50, 100, 250, 500)


# --- the mirror ----------------------------------------------------------------------------------------


def day_csv(day: date, trades: int, start_price: int, seed: int) -> tuple[bytes, int]:
    """A USD-M aggTrades CSV of ``trades`` rows (header, 7 columns, ms times) and its last price."""
    rng = np.random.default_rng(seed)
    prices = start_price + np.cumsum(rng.integers(-2, 3, trades))  # whole dollars
    prices = np.maximum(prices, 1000)
    day_ms = int((day - date(1970, 1, 1)).days) * 86_400_000
    base_id = seed * trades
    frame = pl.DataFrame(
        {
            "agg_trade_id": np.arange(trades, dtype=np.int64) + base_id,
            "price": prices.astype(np.int64),
            "quantity": rng.integers(1, 2000, trades),
            "transact_time": day_ms + np.arange(trades, dtype=np.int64) * (86_400_000 // trades),
            "is_buyer_maker": rng.random(trades) < 0.5,
        }
    ).select(
        "agg_trade_id",
        pl.col("price").cast(pl.String) + ".0",
        (pl.col("quantity") // 1000).cast(pl.String)
        + "."
        + (pl.col("quantity") % 1000).cast(pl.String).str.zfill(3),
        (pl.col("agg_trade_id") * 3).alias("first_trade_id"),
        (pl.col("agg_trade_id") * 3 + 2).alias("last_trade_id"),
        "transact_time",
        pl.when(pl.col("is_buyer_maker"))
        .then(pl.lit("true"))
        .otherwise(pl.lit("false"))
        .alias("is_buyer_maker"),
    )
    return frame.write_csv().encode(), int(prices[-1])


def publish(base: Path, days: int, trades: int) -> list[date]:
    """The mirror of ``days`` consecutive days (reused when already generated with these sizes)."""
    directory = base / "data" / "futures" / MARKET / "daily" / "aggTrades" / SYMBOL
    stamp = base / f"generated-{days}x{trades}"
    dates = [FIRST_DAY + timedelta(days=i) for i in range(days)]
    if stamp.exists():
        return dates
    shutil.rmtree(base, ignore_errors=True)
    directory.mkdir(parents=True)
    price = 60_000
    for i, day in enumerate(dates):
        name = f"{SYMBOL}-aggTrades-{day.isoformat()}"
        csv, price = day_csv(day, trades, price, seed=i + 1)
        with zipfile.ZipFile(directory / f"{name}.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
            out.writestr(f"{name}.csv", csv)
        digest = hashlib.sha256((directory / f"{name}.zip").read_bytes()).hexdigest()
        (directory / f"{name}.zip.CHECKSUM").write_text(f"{digest}  {name}.zip\n")
    stamp.touch()
    return dates


# --- measured paths (each in its own process) ---------------------------------------------------------


def run_path(path: str, root: Path, days: list[date], thresholds: list[int]) -> dict[str, Any]:
    """Run one measured path here; return its timings."""
    from rangebar_pipeline.processing import RangeBarProcessor
    from rangebar_pipeline.series import Series
    from rangebar_pipeline.storage.ticks import TickStore

    ticks = TickStore(root / "cache")
    if path == "kernel":
        files = [ticks.day_path(Series("binance", MARKET, SYMBOL), d) for d in days]
        started = time.perf_counter()
        bars = sum(RangeBarProcessor(t).process_parquet(files).height for t in thresholds)
        return {"seconds": time.perf_counter() - started, "bars": bars}
    if path == "library-all":  # every threshold in one walk: each day decoded once
        from rangebar_pipeline.api import precompute_range_bars

        started = time.perf_counter()
        results = precompute_range_bars(
            SYMBOL, days[0], days[-1], thresholds, market=MARKET, fetch_if_missing=False,
            cache_dir=root / "cache",
        )  # fmt: skip
        return {"seconds": time.perf_counter() - started, "bars": sum(r.total_bars for r in results)}
    if path == "library":
        from rangebar_pipeline.api import precompute_range_bars

        started = time.perf_counter()
        bars = 0
        for threshold in thresholds:
            result = precompute_range_bars(
                SYMBOL, days[0], days[-1], threshold, market=MARKET, fetch_if_missing=False,
                cache_dir=root / "cache",
            )  # fmt: skip
            bars += result.total_bars
        return {"seconds": time.perf_counter() - started, "bars": bars}
    return _dagster_path(path, root, days, thresholds)


def _dagster_path(path: str, root: Path, days: list[date], thresholds: list[int]) -> dict[str, Any]:
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from rangebar_pipeline.config import load_config
    from rangebar_pipeline.definitions import build_definitions

    defs = build_definitions(load_config())
    keys = [f"range_bars_{t}" for t in thresholds] + [f"features_{t}" for t in thresholds]
    if path == "year":
        keys.insert(0, "ticks")
    selection = dg.AssetSelection.assets(*keys)
    job = dg.define_asset_job("bench", selection=selection)
    resolved = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=defs.resources
    ).resolve_job_def("bench")
    instance = dg.DagsterInstance.local_temp(str(root / "dagster"))
    series = f"binance-{MARKET}-{SYMBOL}"
    if path in ("ranged", "year"):
        wall, started = time.time(), time.perf_counter()
        result = resolved.execute_in_process(
            instance=instance,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: f"{days[0]}|{series}",
                ASSET_PARTITION_RANGE_END_TAG: f"{days[-1]}|{series}",
            },
        )
        seconds = time.perf_counter() - started
        assert result.success

        def stamps(asset: str) -> dict[str | None, float]:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=10_000
            ).records
            return {r.partition_key: r.timestamp - wall for r in records}

        done = stamps(f"features_{thresholds[-1]}")  # each day's last feature table
        ticks_done = max(stamps("ticks").values(), default=0.0)  # the ticks step of the whole range
        return {
            "seconds": seconds,
            "day_done": [done[f"{d}|{series}"] for d in days],
            "ticks_done": ticks_done,
        }
    per_day = []
    for day in days:
        started = time.perf_counter()
        result = resolved.execute_in_process(instance=instance, partition_key=f"{day}|{series}")
        per_day.append(time.perf_counter() - started)
        assert result.success
    return {"seconds": sum(per_day), "per_day": per_day}


# --- orchestration ------------------------------------------------------------------------------------


def environment(root: Path, mirror: Path, tier2: str, *, service: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("_RJEM_MALLOC_CONF", None)  # as this process found it: each checkout's package decides the rest
    if MALLOC_CONF is not None:
        env["_RJEM_MALLOC_CONF"] = MALLOC_CONF
    if not service:
        env.pop("RANGEBAR_VALIDATION_SOCKET", None)
    env.update(
        RANGEBAR_CACHE_DIR=str(root / "cache"),
        RANGEBAR_CLICKHOUSE_DSN=f"chdb://{root / tier2}",
        RANGEBAR_PIPELINE_DIR=str(root / f"pipeline-{tier2}"),
        RANGEBAR_BINANCE_BASE_URL=mirror.as_uri(),
        RANGEBAR_PIPELINE_CONFIG=str(root / "pipeline.yaml"),
        DAGSTER_HOME=str(root / "dagster"),
    )
    return env


def spawn(
    path: str,
    root: Path,
    mirror: Path,
    days: list[date],
    thresholds: list[int],
    *,
    baseline: Path | None = None,
    service: bool = True,
) -> dict[str, Any]:
    """Run one path in its own process, with this checkout's package or ``baseline``'s (its own
    copy of this script, its package first on ``PYTHONPATH``), with the validation service or not."""
    tier2 = f"tier2-{path}"
    shutil.rmtree(root / tier2, ignore_errors=True)
    shutil.rmtree(root / f"pipeline-{tier2}", ignore_errors=True)
    shutil.rmtree(root / "dagster", ignore_errors=True)
    (root / "dagster").mkdir()
    checkout = Path(__file__).resolve().parents[1] if baseline is None else baseline
    # the instance as deployed: the checkout's dagster.yaml (storage, pools), read by local_temp
    shutil.copy(checkout / "deploy" / "dagster.yaml", root / "dagster" / "dagster.yaml")
    script = checkout / "benchmarks" / "bench_pipeline.py"
    argv = [
        sys.executable,
        str(script),
        "--run",
        path,
        "--root",
        str(root),
        "--days-list",
        ",".join(map(str, days)),
    ]
    argv += ["--thresholds", ",".join(map(str, thresholds))]
    env = environment(root, mirror, tier2, service=service)
    if baseline is not None:
        env["PYTHONPATH"] = str(baseline)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{path} failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def cli_call(root: Path, mirror: Path, day: date, thresholds: list[int]) -> float:
    tier2 = "tier2-cli"
    shutil.rmtree(root / tier2, ignore_errors=True)
    dagster = Path(sys.executable).with_name("dagster")
    select = ",".join([f"range_bars_{t}" for t in thresholds] + [f"features_{t}" for t in thresholds])
    argv = [str(dagster), "asset", "materialize", "-m", "rangebar_pipeline.definitions", "--select", select]
    argv += ["--partition", f"{day}|binance-{MARKET}-{SYMBOL}"]
    started = time.perf_counter()
    out = subprocess.run(
        argv, env=environment(root, mirror, tier2), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if out.returncode:
        raise RuntimeError(f"CLI failed:\n{out.stderr[-4000:]}")
    return seconds


def prepare(days: int, trades: int, thresholds: list[int], tag: str) -> tuple[Path, Path, list[date]]:
    root = DATA / tag
    mirror = root / "mirror"
    dates = publish(mirror, days, trades)
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "start_date": dates[0].isoformat(),
        "thresholds": thresholds,
        "series": [{"source": "binance", "market": MARKET, "symbol": SYMBOL}],
        "datasets": {"last_n_bars": 2000, "consumer_threshold": thresholds[0]},
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(config))
    return root, mirror, dates


def store_ticks(root: Path, mirror: Path, dates: list[date]) -> float:
    from rangebar_pipeline.series import Series
    from rangebar_pipeline.sources import BinanceVision
    from rangebar_pipeline.storage.ticks import TickStore

    store = TickStore(root / "cache", binance=BinanceVision(mirror.as_uri()), max_workers=2)
    started = time.perf_counter()
    store.get_ticks(Series("binance", MARKET, SYMBOL), dates[0], dates[-1], lazy=True)
    return time.perf_counter() - started


def same_kernel(base: Path) -> bool:
    """Whether ``base`` runs this checkout's kernel build (byte for byte) and floor code."""
    here = Path(__file__).resolve().parents[1] / "rangebar_pipeline"
    files = ("_core.abi3.so", "processing.py", "streaming.py")
    return all(
        (base / "rangebar_pipeline" / f).is_file()
        and filecmp.cmp(here / f, base / "rangebar_pipeline" / f, shallow=False)
        for f in files
    )


def _per_day(run: dict[str, Any]) -> float:
    """Mean seconds a day of a per-partition run."""
    return float(sum(run["per_day"]) / len(run["per_day"]))


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x``."""
    b, a = np.polyfit(np.array(xs), np.array(ys), 1)
    return float(a), float(b)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=10, help="days in the comparison table (default 10)")
    parser.add_argument("--trades", type=int, default=1_000_000, help="trades per day (default 1 M)")
    parser.add_argument("--thresholds", default="25,100,250", help="thresholds of the table (dbps)")
    parser.add_argument("--year-days", type=int, default=0, help="days of the end-to-end year run (0: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; the best is reported")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout (its kernel built in place): every path run with both"
    )
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--days-list", help=argparse.SUPPRESS)
    args = parser.parse_args()
    thresholds = [int(t) for t in args.thresholds.split(",")]
    if args.run:  # a measured path, in its own process
        days = [date.fromisoformat(d) for d in args.days_list.split(",")]
        print(json.dumps(run_path(args.run, Path(args.root), days, thresholds)))
        return
    from rangebar_pipeline.validation import service

    folder = Path(tempfile.mkdtemp(prefix="rb-bench-"))  # short: a socket's path has <= 107 bytes
    try:
        with service.started(folder / "validation.sock", DATA / "validation-service.log"):
            os.environ["RANGEBAR_VALIDATION_SOCKET"] = str(folder / "validation.sock")
            compare(args, thresholds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def compare(args: argparse.Namespace, thresholds: list[int]) -> None:
    """Every path with this checkout (and the baseline's), the table, and the year run."""
    root, mirror, dates = prepare(args.days, args.trades, thresholds, f"{args.days}x{args.trades}")
    shutil.rmtree(root / "cache", ignore_errors=True)
    tier1 = store_ticks(root, mirror, dates)
    print(
        f"{args.days} days x {args.trades:,} USD-M trades, thresholds {thresholds}; "
        f"tick cache filled in {tier1:.1f} s"
    )
    base = args.baseline
    every: dict[str, list[dict[str, Any]]] = {}
    # Each path --repeat times, alternating with the baseline's, which of the two runs first
    # alternating too: the first runs of a round follow the previous round's heaviest process (its
    # writes still being flushed), which slowed this checkout's floor alone when it always ran first.
    for repeat in range(args.repeat):
        for path in ("kernel", "library", "library-all", "ranged", "partition"):
            checkouts = [None] if base is None or path == "library-all" else [None, base]
            for checkout in checkouts if repeat % 2 == 0 else checkouts[::-1]:
                key = path if checkout is None else f"{path}@base"
                run = spawn(path, root, mirror, dates, thresholds, baseline=checkout)
                every.setdefault(key, []).append(run)
    runs = {key: min(found, key=lambda r: float(r["seconds"])) for key, found in every.items()}
    runs["ranged-alone"] = spawn("ranged", root, mirror, dates, thresholds, service=False)
    cli = cli_call(root, mirror, dates[0], thresholds)
    floor = runs["kernel"]["seconds"]
    base_floor = runs["kernel@base"]["seconds"] if base is not None else floor
    if base is not None and same_kernel(base):  # the same computation: the ratios divide by its best run
        floor = base_floor = min(floor, base_floor)
        print("the baseline's kernel build is this one: both divide by the best floor run of either")
    print(
        f"best of {args.repeat} runs each (all runs in brackets); one run of the CLI call and of the "
        "ranged run without the service"
    )
    print(f"{'path':<66} {'time':>11} {'vs kernel':>10} {'target':>10}" + ("  baseline" if base else ""))

    def row(label: str, path: str, seconds: float, per_day: bool, target: str) -> None:
        unit = floor / args.days if per_day else floor
        suffix = " a day" if per_day else "      "
        line = f"{label:<66} {seconds:7.2f} s{suffix} {seconds / unit:8.1f}x {target:>10}"
        if base is not None and f"{path}@base" in runs:
            other = runs[f"{path}@base"]
            other_s = _per_day(other) if per_day else other["seconds"]
            other_unit = base_floor / (args.days if per_day else 1)
            line += f"  {other_s:.2f} s ({other_s / other_unit:.1f}x)"
        if len(every.get(path, ())) > 1:
            line += (
                "  [" + " ".join(f"{_per_day(r) if per_day else r['seconds']:.2f}" for r in every[path]) + "]"
            )
        print(line)

    row("kernel floor: process_parquet per threshold", "kernel", floor, False, "")
    row(
        "library: precompute_range_bars per threshold",
        "library",
        runs["library"]["seconds"],
        False,
        "<= 1.5x",
    )
    row("library: precompute_range_bars of all thresholds, one call", "library-all",
        runs["library-all"]["seconds"], False, "<= 1.5x")  # fmt: skip
    row("Dagster: one single run over the range (bars + features + checks)", "ranged",
        runs["ranged"]["seconds"], False, "<= 4x")  # fmt: skip
    row("Dagster: the same, without the validation service (imports in the run)", "ranged-alone",
        runs["ranged-alone"]["seconds"], False, "")  # fmt: skip
    row("Dagster: one in-process run per day partition", "partition", _per_day(runs["partition"]), True,
        "<= 1.2 s")  # fmt: skip
    first, *later = runs["partition"]["per_day"]
    if later:
        print(
            f"  per partition: the process's first run {first:.2f} s (its one-time set-up), the "
            f"{len(later)} later runs {sum(later) / len(later):.2f} s on average"
        )
    print(f"{'one `dagster asset materialize` CLI call (one day)':<66} {cli:7.2f} s a day")
    from rangebar_pipeline.engine import BATCH_DAYS

    done = runs["ranged"]["day_done"]
    if len(done) > 2 * BATCH_DAYS:  # days complete a batch at a time: a slope needs several batches
        fixed, slope = fit_line([float(i + 1) for i in range(len(done))], done)
        print(
            f"ranged run: day d done at t(d) = {fixed:.2f} s + {slope:.3f} s x d (fixed cost per run, "
            f"marginal cost per day; the kernel's own per-day time is {floor / args.days:.3f} s)"
        )
    else:
        print(
            f"ranged run: its {len(done)} days are one or two batches of the engine ({BATCH_DAYS} days): "
            f"all done at {min(done):.2f}-{max(done):.2f} s; the marginal cost per day is fitted in the "
            "year run (--year-days 90)"
        )
    print(
        f"kernel: {args.days * args.trades * len(thresholds) / floor / 1e6:.0f} M trade-thresholds/s; "
        f"bars {runs['kernel']['bars']:,}"
    )

    if args.year_days:
        year_root, year_mirror, year_dates = prepare(
            args.year_days, args.trades, list(YEAR_THRESHOLDS), f"year-{args.year_days}x{args.trades}"
        )
        for checkout in (None, base) if base is not None else (None,):
            shutil.rmtree(year_root / "cache", ignore_errors=True)
            year = spawn("year", year_root, year_mirror, year_dates, list(YEAR_THRESHOLDS), baseline=checkout)
            print(("baseline " if checkout else "") + _year_report(year, len(year_dates), args.trades))
        kernel = spawn("kernel", year_root, year_mirror, year_dates, list(YEAR_THRESHOLDS))["seconds"]
        print(
            "the kernel floor of those days (process_parquet, six thresholds): "
            f"{kernel / len(year_dates):.3f} s a day"
        )


def _year_report(year: dict[str, Any], n: int, trades: int) -> str:
    """The end-to-end run's figures: total, ticks step, the fit of day completions, a year."""
    a, b = fit_line([float(i + 1) for i in range(n)], year["day_done"])
    ticks = year["ticks_done"]
    year_s = ticks * 365 / n + (a - ticks) + b * 365
    return (
        f"end to end, {n} days x {trades:,} trades at {list(YEAR_THRESHOLDS)} dbps (ticks zip -> tick "
        f"cache, bars, features, all checks; one single-run backfill): {year['seconds']:.1f} s, of which "
        f"the ticks step {ticks:.1f} s ({ticks / n:.2f} s a day); bar step: day d done at t(d) = {a:.2f} s "
        f"+ {b:.3f} s x d (least squares; the intercept includes the ticks step); a year (365 days): "
        f"ticks {ticks * 365 / n:.0f} s + bar step {a - ticks:.0f} s + {b:.3f} s x 365 = {year_s:.0f} s "
        f"({year_s / 60:.1f} min; target <= 3 min)"
    )


if __name__ == "__main__":
    main()
