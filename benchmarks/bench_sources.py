"""Benchmark the Tier 1 path: Binance Vision day zip -> Parquet, and Parquet -> Arrow.

Generates a synthetic spot aggTrades day (default 3 M rows, the size of a busy BTCUSDT day) as a
real zip with its ``.CHECKSUM`` in the Binance Vision layout under a temp dir, then times, best of
``--repeat`` runs:

* ``zip -> Parquet``: ``TickStore.fetch_day`` from a ``file://`` mirror (sha256 in a thread, ISA-L
  inflate in pieces overlapped with the exact Rust CSV parse and with the zstd Parquet write of
  each row group as soon as it is parsed, page checksums, atomic rename), its stages measured
  separately, and the same day parsed first and written after (the path without the write
  overlap), in the same run;
* ``Parquet -> Arrow``: ``TickStore.read_day`` (verified read into polars) and a plain
  ``pyarrow.parquet.read_table``.

``--baseline DIR`` also runs ``TickStore.fetch_day`` of the same day with the package of another
checkout (e.g. ``/work/main``) in a subprocess, alternating run for run with this one, so that both
see the same load; ``--fetch-only`` skips everything but the ``fetch_day`` figures. The load
average is printed at the start and the end (the machine is shared: compare within one run).

Run: ``.venv/bin/python benchmarks/bench_sources.py [--rows N] [--repeat R] [--baseline DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import polars as pl
import pyarrow.parquet as pq

from rangebar_pipeline.series import Series
from rangebar_pipeline.sources import BinanceVision, parse_agg_trades
from rangebar_pipeline.sources._parsing import iter_zip_member, read_zip_member
from rangebar_pipeline.sources.binance_vision import parse_agg_trades_pieces
from rangebar_pipeline.storage import TickStore

T = TypeVar("T")
DAY = date(2025, 1, 15)
SYMBOL = "BENCHUSDT"


def synthetic_csv(rows: int, seed: int = 42, day: date = DAY) -> bytes:
    """A spot aggTrades CSV (no header, 8 columns, microsecond timestamps) of ``rows`` rows."""
    day_start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    steps = pl.int_range(rows, eager=True).shuffle(seed) % 11 - 5
    price_raw = 9_000_000_000_000 + steps.cum_sum() * 1_000_000
    qty_raw = (pl.int_range(rows, eager=True) * 7919 % 99_999 + 1) * 1000
    frame = pl.DataFrame({"price_raw": price_raw, "qty_raw": qty_raw}).select(
        (pl.int_range(rows) + 3_000_000_000).alias("a"),
        _fixed(pl.col("price_raw")).alias("p"),
        _fixed(pl.col("qty_raw")).alias("q"),
        (pl.int_range(rows) * 2 + 5_000_000_000).alias("f"),
        (pl.int_range(rows) * 2 + 5_000_000_001).alias("l"),
        (day_start + pl.int_range(rows) * (86_400_000_000 // rows)).alias("T"),
        pl.when(pl.int_range(rows) % 3 == 0).then(pl.lit("True")).otherwise(pl.lit("False")).alias("m"),
        pl.lit("True").alias("M"),
    )
    return frame.write_csv(include_header=False).encode()


def _fixed(raw: pl.Expr) -> pl.Expr:
    return pl.concat_str(
        [(raw // 100_000_000).cast(pl.String), pl.lit("."), (raw % 100_000_000).cast(pl.String).str.zfill(8)]
    )


def publish_day(base: Path, rows: int, day: date = DAY) -> Path:
    """Write the day zip and its ``.CHECKSUM`` in the Binance Vision layout under ``base``."""
    directory = base / "data" / "spot" / "daily" / "aggTrades" / SYMBOL
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{SYMBOL}-aggTrades-{day.isoformat()}"
    archive = directory / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr(f"{name}.csv", synthetic_csv(rows, day=day))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (directory / f"{name}.zip.CHECKSUM").write_text(f"{digest}  {archive.name}\n")
    return archive


#: CPU seconds (all threads of the process) of the fastest run of the last ``best_of``.
_cpu: list[float] = [0.0]


def best_of(repeat: int, run: Callable[[], T]) -> tuple[float, T]:
    """Smallest wall time of ``repeat`` runs, and the last result (its CPU time in ``_cpu``)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        result = run()
        if (elapsed := time.perf_counter() - started) < best:
            best, _cpu[0] = elapsed, time.process_time() - cpu
    assert result is not None
    return best, result


def report(label: str, seconds: float, rows: int) -> None:
    print(f"{label:<48} {seconds:7.3f} s {rows / seconds / 1e6:7.2f} M rows/s  (cpu {_cpu[0]:.3f} s)")


#: The ``fetch_day`` loop of a ``--baseline`` checkout: one run per line read, its times printed.
_BASELINE_WORKER = """
import sys, time
from datetime import date
from rangebar_pipeline.sources import BinanceVision
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage import TickStore
mirror, cache, symbol, day = sys.argv[1:5]
store = TickStore(cache, binance=BinanceVision(mirror))
print(sys.modules["rangebar_pipeline"].__file__, flush=True)
# a checkout before TickStore took a Series names the series by (source, market, symbol)
key = (Series("binance", "spot", symbol),) if hasattr(store, "fetch_days") else ("binance", "spot", symbol)
for _ in sys.stdin:
    started, cpu = time.perf_counter(), time.process_time()
    rows = store.fetch_day(*key, date.fromisoformat(day), force=True).rows
    print(time.perf_counter() - started, time.process_time() - cpu, rows, flush=True)
"""


def compare_with(
    baseline: Path, store: TickStore, *, mirror: str, cache: Path, repeat: int, rows: int
) -> None:
    """``fetch_day`` here and in the ``baseline`` checkout (a subprocess), alternating; best and median."""
    worker = subprocess.Popen(
        [sys.executable, "-c", _BASELINE_WORKER, mirror, str(cache), SYMBOL, DAY.isoformat()],
        env={**os.environ, "PYTHONPATH": str(baseline)},
        cwd=baseline,  # python -c puts the working directory first on sys.path
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdin is not None and worker.stdout is not None
    print(f"baseline package: {worker.stdout.readline().strip()}")
    times: dict[str, list[tuple[float, float]]] = {"this checkout": [], str(baseline): []}
    loads = []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        assert store.fetch_day(Series("binance", "spot", SYMBOL), DAY, force=True).rows == rows
        times["this checkout"].append((time.perf_counter() - started, time.process_time() - cpu))
        worker.stdin.write("run\n")
        worker.stdin.flush()
        wall, cpu_s, done = worker.stdout.readline().split()
        assert int(done) == rows
        times[str(baseline)].append((float(wall), float(cpu_s)))
        loads.append(os.getloadavg()[0])
    worker.stdin.close()
    worker.wait()
    print(
        f"TickStore.fetch_day, alternating run for run ({repeat} each, "
        f"load {min(loads):.2f}-{max(loads):.2f})"
    )
    for label, runs in times.items():
        walls = sorted(w for w, _ in runs)
        _cpu[0] = min(runs)[1]
        report(f"  {label} (median {statistics.median(walls):.3f} s)", walls[0], rows)


def load_average() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=3_000_000, help="rows in the synthetic day (default 3 M)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is reported")
    parser.add_argument(
        "--days", type=int, default=4, help="days (of rows/2 each) for the concurrent get_ticks run (0: skip)"
    )
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose fetch_day to run alternately (e.g. /work/main)"
    )
    parser.add_argument("--fetch-only", action="store_true", help="only the TickStore.fetch_day figures")
    args = parser.parse_args()
    print(f"start: {load_average()}")

    with tempfile.TemporaryDirectory(prefix="rangebar-bench-") as tmp:
        base = Path(tmp) / "mirror"
        started = time.perf_counter()
        archive = publish_day(base, args.rows)
        zipped = archive.stat().st_size
        print(
            f"synthetic day: {args.rows:,} rows, zip {zipped / 1e6:.1f} MB "
            f"(generated in {time.perf_counter() - started:.1f} s)"
        )
        store = TickStore(Path(tmp) / "cache", binance=BinanceVision(base.as_uri()))
        if args.fetch_only:
            t_full, result = best_of(
                args.repeat, lambda: store.fetch_day(Series("binance", "spot", SYMBOL), DAY, force=True)
            )
            assert result.rows == args.rows
            report("TickStore.fetch_day (zip -> Parquet)", t_full, args.rows)
        if args.baseline is not None:
            compare_with(
                args.baseline,
                store,
                mirror=base.as_uri(),
                cache=Path(tmp) / "baseline-cache",
                repeat=args.repeat,
                rows=args.rows,
            )
        if args.fetch_only:
            print(f"end: {load_average()}")
            return

        data = archive.read_bytes()
        lines = []
        t_sha, _ = best_of(args.repeat, lambda: hashlib.sha256(data).hexdigest())
        lines.append(("  sha256 of the zip", t_sha, _cpu[0]))
        t_unzip, _ = best_of(args.repeat, lambda: sum(map(len, iter_zip_member(data, origin="b")[1])))
        lines.append(("  unzip (ISA-L inflate in pieces, CRC-32)", t_unzip, _cpu[0]))
        csv = read_zip_member(data, origin="bench")[1]
        t_parse, (frame, _) = best_of(args.repeat, lambda: parse_agg_trades(csv, origin="bench", day=DAY))
        lines.append(("  CSV parse (Rust, exact) + validation", t_parse, _cpu[0]))
        t_both, _ = best_of(
            args.repeat,
            lambda: parse_agg_trades_pieces(iter_zip_member(data, origin="b")[1], origin="b", day=DAY),
        )
        lines.append(("  unzip + parse overlapped (2 threads)", t_both, _cpu[0]))
        t_write, _ = best_of(
            args.repeat, lambda: store.write_day(Series("binance", "spot", "WRITE"), DAY, frame)
        )
        lines.append(("  Parquet write (TickStore.write_day)", t_write, _cpu[0]))

        def fetch_then_write() -> int:  # the path before the overlap: parse all, then write
            spot = Series("binance", "spot", SYMBOL)
            fetched = store.source(spot).fetch(spot, DAY)
            return store.write_day(Series("binance", "spot", "SERIAL"), DAY, fetched.frame).rows

        t_serial, _ = best_of(args.repeat, fetch_then_write)
        lines.append(("  fetch + parse, then write (no overlap)", t_serial, _cpu[0]))
        t_full, result = best_of(
            args.repeat, lambda: store.fetch_day(Series("binance", "spot", SYMBOL), DAY, force=True)
        )
        lines.append(("  TickStore.fetch_day (write overlapped)", t_full, _cpu[0]))
        assert result.rows == args.rows == frame.height
        print(f"csv {len(csv) / 1e6:.0f} MB -> parquet {result.bytes / 1e6:.1f} MB (zstd-1)")
        print("zip -> Parquet")
        for label, seconds, cpu in lines:
            _cpu[0] = cpu
            report(label, seconds, args.rows)

        path = result.path
        print("Parquet -> Arrow")
        t_read, ticks = best_of(args.repeat, lambda: store.read_day(Series("binance", "spot", SYMBOL), DAY))
        assert ticks.height == args.rows
        report("  TickStore.read_day (page checksums verified)", t_read, args.rows)
        t_lazy, _ = best_of(
            args.repeat,
            lambda: store.get_ticks(Series("binance", "spot", SYMBOL), DAY, DAY, lazy=True).collect(),
        )
        report("  TickStore.get_ticks(lazy=True).collect()", t_lazy, args.rows)
        t_pa, _ = best_of(args.repeat, lambda: pq.read_table(path))
        report("  pyarrow.parquet.read_table", t_pa, args.rows)

        if args.days:
            per_day = args.rows // 2
            days = [DAY + timedelta(days=i) for i in range(1, args.days + 1)]
            for day in days:
                publish_day(base, per_day, day)
            runs = iter(range(args.repeat))

            def fetch_range() -> int:
                cache = Path(tmp) / f"range-cache-{next(runs)}"
                fresh = TickStore(cache, binance=BinanceVision(base.as_uri()), max_workers=2)
                return fresh.get_ticks(Series("binance", "spot", SYMBOL), days[0], days[-1]).height

            t_range, total = best_of(args.repeat, fetch_range)
            assert total == per_day * len(days)
            print(f"{len(days)} days x {per_day:,} rows, 2 downloads at a time")
            report("  TickStore.get_ticks (fetch + store + read)", t_range, total)
    print(f"end: {load_average()}")


if __name__ == "__main__":
    main()
