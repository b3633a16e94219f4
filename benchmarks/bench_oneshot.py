"""One-shot use, as a new user meets the package: whole processes, each started fresh.

A polars-written Parquet of 10 M float trades with millisecond timestamps (Binance aggTrades
columns) is turned into bars by a three-line script, ours and the reference (``rangebar==7.1.3``)
in the same run; wall time is the whole process (interpreter start, imports, read, bars, exit) and
peak RSS is that process's own (``VmHWM``). Baselines measured in the same run: a bare
interpreter, ``import polars``, ``import rangebar_pipeline``, and ``rangebar --help``.

``--baseline DIR`` runs the scripts of our package also from another checkout (its own
``_core.abi3.so`` in place, e.g. an export of the previous commit), run for run alternating with
this one, and prints both with the load averages, so the two builds see the same machine.

Run: ``.venv/bin/python benchmarks/bench_oneshot.py [--rows N] [--repeat R] [--skip-reference]
[--baseline DIR]`` (data generated once under ``benchmarks/.data``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

DATA_DIR = Path(__file__).resolve().parent / ".data"
ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT.parent / "shared" / "data").resolve()
THRESHOLD = 250
DAY_START_MS = 1_723_075_200_000  # 2024-08-08T00:00:00Z

# The user's script: read with polars, bars with features. ``{scan}`` is read_parquet or scan_parquet.
OURS = """
import sys
import polars as pl
from rangebar_pipeline import process_trades_polars
bars = process_trades_polars(pl.{scan}(sys.argv[1]), threshold_decimal_bps={thr}, include_microstructure=True)
print(len(bars))
"""
# 7.1.3's process_trades_polars has no microstructure option: it computes bars only.
REFERENCE = """
import sys
import polars as pl
from rangebar import process_trades_polars
bars = process_trades_polars(pl.read_parquet(sys.argv[1]), threshold_decimal_bps={thr})
print(len(bars))
"""
# The same script without our package: what any library's answer costs at least (the ratio's ceiling),
# and with the pandas import the default pandas output needs.
USER_FLOOR = "import sys\nimport polars as pl\nprint(pl.read_parquet(sys.argv[1]).height)"
USER_FLOOR_PANDAS = USER_FLOOR + "\nimport pandas"
USER_FLOOR_LABEL = "the user's part alone: import polars + read_parquet (no bars)"
USER_FLOOR_PANDAS_LABEL = "the user's part + import pandas (the pandas output's floor)"
CLI = "import sys\nfrom rangebar_pipeline.cli import main\nassert main(sys.argv[1:]) == 0"
CLI_BARS = ("bars", "BTCUSD_PERP", "2024-08-08", "2024-08-09", "--market", "cm", "--threshold", "50")
IMPORT_POLARS = "import polars"
IMPORT_OURS = "import rangebar_pipeline"
CLI_HELP_LABEL = "rangebar --help"
CLI_BARS_LABEL = "rangebar bars, 2 cached days (--no-fetch)"
FLOOR_LABEL = "import polars + the chDB client (the store's floor)"
CLI_HELP = "from rangebar_pipeline.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
# Appended to every child: its peak RSS. VmHWM belongs to the process's own address space (ru_maxrss
# would also count the parent's, which the child shares until it execs the interpreter).
PEAK = "\nprint([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"


def make_trades(rows: int, path: Path, seed: int = 7) -> None:
    """Binance-like aggTrades as a user keeps them: float prices (cents), ms timestamps, polars writer."""
    steps = (pl.int_range(rows, eager=True).shuffle(seed) % 5 - 2).cast(pl.Int64)
    cents = 6_000_000 + steps.cum_sum() * 100  # $1 moves around 60 000.00
    ids = pl.int_range(rows, eager=True) + 1_000_000_000
    frame = pl.DataFrame(
        {
            "agg_trade_id": ids,
            "price": cents.cast(pl.Float64) / 100,
            "quantity": ((ids * 7919 % 99_999 + 1).cast(pl.Float64) / 1000),
            "first_trade_id": ids * 2,
            "last_trade_id": ids * 2 + 1,
            "timestamp": DAY_START_MS + pl.int_range(rows, eager=True) * 8_000 // 1_000,
            "is_buyer_maker": (ids * 31 % 7) < 3,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)


@dataclass
class Run:
    wall_s: float
    peak_rss_mb: float
    stdout: str


def run(code: str, *args: str, env: dict[str, str] | None = None, root: Path = ROOT) -> Run:
    """One fresh interpreter running ``code`` with the package of ``root``: wall time of the whole
    process and its own peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code + PEAK, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"child failed ({done.returncode}): {code}\n{done.stderr}")
    *out, peak_kb = done.stdout.strip().splitlines()
    return Run(wall, int(peak_kb) / 1024, "\n".join(out).strip())


def best(code: str, *args: str, repeat: int, env: dict[str, str] | None = None) -> tuple[Run, Run]:
    """The fastest of ``repeat`` runs and the first one."""
    runs = [run(code, *args, env=env) for _ in range(repeat)]
    return min(runs, key=lambda r: r.wall_s), runs[0]


def cli_rows(repeat: int) -> list[tuple[str, Run, Run | None, int | None]]:
    """``rangebar bars`` on two cached days of the shared fixtures, and what it must import anyway.

    The cache (ticks and the embedded chDB bar store) is filled once from a ``file://`` mirror of
    ``../shared/data``; the timed calls pass ``--no-fetch``.
    """
    env = {
        "RANGEBAR_CACHE_DIR": str(DATA_DIR / "cli_cache"),
        "RANGEBAR_BINANCE_BASE_URL": (SHARED / "binance_vision").as_uri(),
        "RANGEBAR_CLICKHOUSE_DSN": "",
    }
    run(CLI, *CLI_BARS, env=env)  # fill the cache (not timed)
    fast, first = best(CLI, *CLI_BARS, "--no-fetch", repeat=max(repeat, 5), env=env)
    floor, _ = best(
        "import polars, chdb, clickhouse_connect.driver._chdbclient", repeat=max(repeat, 5), env=env
    )
    return [
        (CLI_BARS_LABEL, fast, first, None),
        (FLOOR_LABEL, floor, None, None),
    ]


SCRIPTS = (
    ("ours: read_parquet", "read_parquet", ""),
    ("ours: scan_parquet", "scan_parquet", ""),
    ("ours: read_parquet", "read_parquet", ", output='polars'"),
)


def script_code(scan: str, out: str) -> str:
    return OURS.format(scan=scan, thr=THRESHOLD).replace(
        "include_microstructure=True", f"include_microstructure=True{out}"
    )


def against_baseline(baseline: Path, path: Path, repeat: int) -> None:
    """Our scripts with this checkout's package and the baseline's, run for run alternating."""
    loads = [os.getloadavg()]
    print(f"\n{path.name}: this checkout vs {baseline}, alternating, {repeat} runs each\n")
    print(
        "| whole process | this checkout (s): best, median | baseline (s): best, median "
        "| this / baseline (best, median) |"
    )
    print("|---|---:|---:|---:|")
    for label, scan, out in SCRIPTS:
        code = script_code(scan, out)
        walls: dict[Path, list[float]] = {ROOT: [], baseline: []}
        bars = set()
        for _ in range(repeat):
            for root in (ROOT, baseline):
                done = run(code, str(path), root=root)
                walls[root].append(done.wall_s)
                bars.add(done.stdout)
        if len(bars) != 1:
            raise SystemExit(f"bar counts differ: {bars}")
        ours, theirs = min(walls[ROOT]), min(walls[baseline])
        ours_median, theirs_median = statistics.median(walls[ROOT]), statistics.median(walls[baseline])
        suffix = ", polars output" if out else ""
        print(
            f"| {label}{suffix} | {ours:.3f}, {ours_median:.3f} | {theirs:.3f}, {theirs_median:.3f} "
            f"| {ours / theirs:.2f}, {ours_median / theirs_median:.2f} |"
        )
        loads.append(os.getloadavg())
    print("\nload averages (1, 5, 15 min) before and after each row:")
    print("; ".join(" ".join(f"{x:.1f}" for x in load) for load in loads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-reference", action="store_true", help="skip the (slow) 7.1.3 run")
    parser.add_argument("--baseline", type=Path, help="another checkout to run our scripts from, alternating")
    args = parser.parse_args()

    path = DATA_DIR / f"oneshot_{args.rows}.parquet"
    if not path.exists():
        print(f"generating {args.rows:,} trades in {path}", file=sys.stderr)
        make_trades(args.rows, path)
    if args.baseline is not None:
        against_baseline(args.baseline.resolve(), path, args.repeat)
        return

    rows: list[tuple[str, Run, Run | None, int | None]] = []
    for label, code in (
        ("python -c pass", "pass"),
        (IMPORT_POLARS, "import polars"),
        (IMPORT_OURS, "import rangebar_pipeline"),
        (CLI_HELP_LABEL, CLI_HELP),
    ):
        fast, _ = best(code, repeat=max(args.repeat, 5))
        rows.append((label, fast, None, None))

    script_rows: dict[str, Run] = {}
    for label, scan, out in SCRIPTS:
        code = script_code(scan, out)
        fast, first = best(code, str(path), repeat=args.repeat)
        script_rows[label + out] = fast
        suffix = ", polars output" if out else ""
        rows.append((f"{label} -> process_trades_polars (features{suffix})", fast, first, args.rows))
    for label, code in ((USER_FLOOR_LABEL, USER_FLOOR), (USER_FLOOR_PANDAS_LABEL, USER_FLOOR_PANDAS)):
        fast, first = best(code, str(path), repeat=args.repeat)
        rows.append((label, fast, first, args.rows))
    if not args.skip_reference:
        ref = run(REFERENCE.format(thr=THRESHOLD), str(path))
        script_rows["reference"] = ref
        rows.append(("rangebar 7.1.3: read_parquet -> process_trades_polars", ref, None, args.rows))
        counts = {r.stdout for r in script_rows.values()}
        if len(counts) != 1:
            raise SystemExit(f"bar counts differ: { ({k: r.stdout for k, r in script_rows.items()}) }")

    rows += cli_rows(args.repeat)

    ref_wall = script_rows["reference"].wall_s if "reference" in script_rows else None
    print(f"\n{args.rows:,} trades, {THRESHOLD} dbps, {next(iter(script_rows.values())).stdout} bars\n")
    print("| whole process | wall (s), best | first run (s) | peak RSS (MB) | trades/s | vs 7.1.3 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, top, initial, n in rows:
        cold = f"{initial.wall_s:.3f}" if initial is not None else "-"
        rate = f"{n / top.wall_s / 1e6:.1f} M" if n else "-"
        speed = f"{ref_wall / top.wall_s:.1f}x" if ref_wall and n else "-"
        print(f"| {name} | {top.wall_s:.3f} | {cold} | {top.peak_rss_mb:.0f} | {rate} | {speed} |")
    walls = {label: r.wall_s for label, r, _, _ in rows}
    ratios = [
        ("import rangebar_pipeline / import polars", walls[IMPORT_OURS] / walls[IMPORT_POLARS]),
        ("rangebar --help / import polars", walls[CLI_HELP_LABEL] / walls[IMPORT_POLARS]),
        ("rangebar bars, cached / import polars", walls[CLI_BARS_LABEL] / walls[IMPORT_POLARS]),
        ("rangebar bars, cached / the store's import floor", walls[CLI_BARS_LABEL] / walls[FLOOR_LABEL]),
    ]
    if ref_wall:
        ratios.append(
            (
                "7.1.3 / the user's part alone (the ceiling of any speed-up)",
                ref_wall / walls[USER_FLOOR_LABEL],
            )
        )
        ratios.append(
            (
                "7.1.3 / the user's part + pandas (the ceiling with pandas output)",
                ref_wall / walls[USER_FLOOR_PANDAS_LABEL],
            )
        )
    print()
    for what, value in ratios:
        print(f"{what}: {value:.2f}x")


if __name__ == "__main__":
    main()
