"""Kernel alone: trades/s of ``_core.Processor.process`` on in-memory columns, all seven columns,
every feature (the "kernel alone" row of ``bench_kernel.py`` without the Parquet read).

The trades are the same random walk as ``bench_kernel.make_trades`` (same seed, same values), as
two sets of columns: built straight into NumPy arrays ("numpy"), and read from ``bench_kernel``'s
Parquet file through ``normalize_trades`` ("parquet", Arrow-allocated, the product's own path).
The values are identical; the memory differs: NumPy asks for transparent huge pages, Arrow does
not, and on these VMs the 4 KB pages' TLB misses cost the kernel ~25 %. Best of ``--repeat`` runs
per threshold. ``--baseline PATH`` loads a second build of the extension (e.g. main's
``_core.abi3.so``, copied aside) and times it alternately with this one in the same process, so
the two are measured under the same load.

Run: ``.venv/bin/python benchmarks/bench_kernel_only.py [--rows N] [--repeat N] [--baseline SO]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

DAY_START_US = 1_723_075_200_000_000  # 2024-08-08T00:00:00Z


def make_columns(n: int, seed: int = 7) -> tuple[Any, ...]:
    """The columns of ``bench_kernel.make_trades(n)`` (fixed point x1e8, microseconds)."""
    rng = np.random.default_rng(seed)
    steps = rng.choice(np.array([-2, -1, 0, 0, 1, 2], dtype=np.int64), size=n) * 100_000_000
    price = 6_000_000_000_000 + np.cumsum(steps)
    quantity = rng.integers(1_000, 200_000_000, size=n, dtype=np.int64)
    timestamp = DAY_START_US + np.cumsum(rng.integers(0, 8_000, size=n, dtype=np.int64))
    agg = np.arange(1_000_000_000, 1_000_000_000 + n, dtype=np.int64)
    fanout = rng.integers(0, 3, size=n, dtype=np.int64)
    first = 5_000_000_000 + np.concatenate([[0], np.cumsum(fanout + 1)[:-1]])
    is_buyer_maker = rng.random(n) < 0.5
    return (timestamp, price, quantity, agg, first, first + fanout, is_buyer_maker)


def parquet_columns(n: int) -> tuple[Any, ...]:
    """The same trades read back from ``bench_kernel``'s Parquet file (written if missing)."""
    import polars as pl
    from bench_kernel import DATA_DIR, make_trades

    from rangebar_pipeline.trades import normalize_trades

    root = DATA_DIR / f"ticks_{n}"
    path = next(root.rglob("*.parquet"), None) if root.exists() else None
    if path is None:
        path = make_trades(n, root)
    return tuple(normalize_trades(pl.read_parquet(path)).kernel_args())


def load_extension(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("rangebar_baseline._core", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bar_count(out: Any) -> int:
    """Bars in a build's output: an Arrow record batch, or (builds before the Arrow boundary) a
    dict of NumPy columns."""
    return int(out.num_rows) if hasattr(out, "num_rows") else len(out["open"])


def time_once(core: ModuleType, threshold: int, columns: tuple[Any, ...]) -> tuple[float, int]:
    processor = core.Processor(threshold)
    start = time.perf_counter()
    out = processor.process(*columns)
    return time.perf_counter() - start, bar_count(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--thresholds", type=int, nargs="+", default=[250, 25])
    parser.add_argument("--baseline", type=Path, help="another build of _core.abi3.so to compare with")
    args = parser.parse_args()

    from rangebar_pipeline import _core

    builds = {"this build": _core}
    if args.baseline is not None:
        builds["baseline"] = load_extension(args.baseline)
    sources = {"numpy": make_columns(args.rows), "parquet": parquet_columns(args.rows)}
    print(f"\n{args.rows:,} trades in memory, all columns and features, best of {args.repeat}\n")
    print("| build | columns | threshold (dbps) | bars | wall (s), best | trades/s |")
    print("|---|---|---:|---:|---:|---:|")
    for source, columns in sources.items():
        for threshold in args.thresholds:
            best = dict.fromkeys(builds, float("inf"))
            bars = {}
            for _ in range(args.repeat):  # alternate the builds, so both see the same machine load
                for name, core in builds.items():
                    wall, bars[name] = time_once(core, threshold, columns)
                    best[name] = min(best[name], wall)
            if len(set(bars.values())) != 1:
                raise SystemExit(f"bar counts differ at {threshold} dbps: {bars}")
            for name in builds:
                rate = args.rows / best[name] / 1e6
                seconds = f"{best[name]:.4f}"
                print(f"| {name} | {source} | {threshold} | {bars[name]:,} | {seconds} | {rate:.0f} M |")


if __name__ == "__main__":
    main()
