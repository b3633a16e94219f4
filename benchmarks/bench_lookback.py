"""Kernel benchmark of the opt-in lookback group: the kernel alone (columns in memory) with the group
off and on (N = 500) at 250 and 10 dbps, best of 3, on a BTC-like random walk (the trades of
``bench_kernel.py``). Run: ``.venv/bin/python benchmarks/bench_lookback.py [--trades N]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench_kernel_only import make_columns

from rangebar_pipeline import _core

REPEAT = 3


def best_of(columns: tuple[Any, ...], threshold: int, lookback: int) -> tuple[float, int]:
    best, bars = float("inf"), 0
    for _ in range(REPEAT):
        processor = _core.Processor(threshold, lookback_trades=lookback)
        start = time.perf_counter()
        out = processor.process(*columns)
        best = min(best, time.perf_counter() - start)
        bars = out.num_rows
    return best, bars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=10_000_000)
    args = parser.parse_args()
    columns = make_columns(args.trades)
    print(f"{args.trades:,} trades, kernel alone, best of {REPEAT}")
    print("| threshold (dbps) | lookback | bars | wall (s) | trades/s | vs off |")
    print("|---|---|---|---|---|---|")
    for threshold in (250, 10):
        off, _ = best_of(columns, threshold, 0)
        for lookback in (0, 500):
            wall, bars = best_of(columns, threshold, lookback)
            if lookback == 0:
                off = wall
            label = "off" if lookback == 0 else f"N = {lookback}"
            rate = args.trades / wall / 1e6
            print(f"| {threshold} | {label} | {bars:,} | {wall:.3f} | {rate:.1f} M | {wall / off:.2f}x |")


if __name__ == "__main__":
    main()
