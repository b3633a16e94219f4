"""Kernel benchmark of the opt-in intra group: trades/s of the kernel alone (columns in memory, all
seven columns) with the group off and on at 250 and 25 dbps, the two runs alternating so that both
see the same machine load, best of ``--repeat``. The trades are ``bench_kernel_only``'s random walk.
Issue 21's targets with the group on: >= 100 M trades/s at 250 dbps, >= 40 M at 25 dbps.

Run: ``.venv/bin/python benchmarks/bench_intra.py [--rows N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from bench_kernel_only import make_columns

from rangebar_pipeline import _core


def time_once(columns: tuple[Any, ...], threshold: int, intra: bool) -> tuple[float, int]:
    processor = _core.Processor(threshold, intra_bar=intra)
    start = time.perf_counter()
    out = processor.process(*columns)
    return time.perf_counter() - start, out.num_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--thresholds", type=int, nargs="+", default=[250, 25])
    args = parser.parse_args()
    columns = make_columns(args.rows)
    print(f"\n{args.rows:,} trades in memory, kernel alone, best of {args.repeat}, alternating")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| threshold (dbps) | intra | bars | wall (s), best | trades/s | vs off |")
    print("|---:|---|---:|---:|---:|---:|")
    for threshold in args.thresholds:
        best = {False: float("inf"), True: float("inf")}
        bars = {}
        for _ in range(args.repeat):
            for intra in (False, True):
                wall, bars[intra] = time_once(columns, threshold, intra)
                best[intra] = min(best[intra], wall)
        if bars[False] != bars[True]:
            raise SystemExit(f"bar counts differ at {threshold} dbps: {bars}")
        for intra in (False, True):
            rate = args.rows / best[intra] / 1e6
            ratio = best[intra] / best[False]
            row = f"| {threshold} | {'on' if intra else 'off'} | {bars[intra]:,} | {best[intra]:.4f}"
            print(f"{row} | {rate:.0f} M | {ratio:.2f}x |")
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
