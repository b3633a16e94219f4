"""The chaos tests' series: ten synthetic days of a Binance spot symbol in the real archive layout, the
pipeline config over it, the ranged bar job (run as its own process: ``python -m tests.chaos_support``)
and the kernel's bars over the whole range, the oracle every chaos test ends with."""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import dagster as dg
import numpy as np
import polars as pl
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from rangebar_pipeline.processing import RangeBarProcessor
from rangebar_pipeline.series import Series
from tests.data_paths import read_fixture_day

SYMBOL: Final = "CHAOSUSDT"
SERIES: Final = Series("binance", "spot", SYMBOL)
DAYS: Final = [date(2024, 3, 1) + timedelta(days=i) for i in range(10)]
THRESHOLDS: Final = (25, 250)
BARS: Final = tuple(f"range_bars_{t}" for t in THRESHOLDS)
KEYS: Final = [f"{day}|{SERIES.key}" for day in DAYS]
#: A single-run backfill of the ten days (the tags the backfill daemon gives a ranged run).
RANGE_TAGS: Final = {ASSET_PARTITION_RANGE_START_TAG: KEYS[0], ASSET_PARTITION_RANGE_END_TAG: KEYS[-1]}
CONFIG: Final[dict[str, Any]] = {
    "start_date": DAYS[0].isoformat(),
    "thresholds": list(THRESHOLDS),
    "series": [{"source": "binance", "market": "spot", "symbol": SYMBOL}],
    "datasets": {"last_n_bars": 250, "consumer_threshold": THRESHOLDS[0]},
}


def write_mirror(root: Path, *, trades_per_day: int = 20_000, seed: int = 22) -> Path:
    """Binance Vision's layout under ``root`` for :data:`DAYS` (zips and ``.CHECKSUM`` files): a random
    walk with contiguous trade ids across days. Returns the mirror's directory (for a ``file://`` URL)."""
    rng = np.random.default_rng(seed)
    folder = root / "data" / "spot" / "daily" / "aggTrades" / SYMBOL
    folder.mkdir(parents=True, exist_ok=True)
    price, next_id = 10_000.0, 1
    for day in DAYS:
        start_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
        times = np.sort(rng.integers(start_ms, start_ms + 86_400_000, trades_per_day))
        steps = rng.choice([-1, 0, 1], size=trades_per_day, p=[0.45, 0.1, 0.45]).cumsum() * 0.5
        prices = np.round(price + steps, 2)
        price = float(prices[-1])
        quantities = rng.integers(1, 50_000, trades_per_day) / 10_000
        ids = np.arange(next_id, next_id + trades_per_day)
        next_id += trades_per_day
        maker = rng.random(trades_per_day) < 0.5
        lines = [
            f"{i},{p:.8f},{q:.8f},{i * 2},{i * 2 + 1},{t},{m},True"
            for i, p, q, t, m in zip(ids, prices, quantities, times, maker, strict=True)
        ]
        name = f"{SYMBOL}-aggTrades-{day}"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{name}.csv", ("\n".join(lines) + "\n").encode())
        (folder / f"{name}.zip").write_bytes(buffer.getvalue())
        digest = hashlib.sha256(buffer.getvalue()).hexdigest()
        (folder / f"{name}.zip.CHECKSUM").write_text(f"{digest}  {name}.zip\n")
    return root


def mirror_ticks(root: Path) -> pl.DataFrame:
    """Every day of the mirror as one tick stream (parsed independently of the sources)."""
    folder = root / "data" / "spot" / "daily" / "aggTrades" / SYMBOL
    return pl.concat([read_fixture_day(folder / f"{SYMBOL}-aggTrades-{day}.zip", "spot") for day in DAYS])


def kernel_bars(ticks: pl.DataFrame, threshold: int) -> pl.DataFrame:
    """The kernel's bars over the whole range in one piece (what the stored days must add up to)."""
    return RangeBarProcessor(threshold).process(ticks)


def bars_job() -> dg.JobDefinition:
    """The bar step over :data:`BARS` (with their checks) as one job of the code location in force."""
    from rangebar_pipeline.config import load_config
    from rangebar_pipeline.definitions import build_definitions

    defs = build_definitions(load_config())
    job = dg.define_asset_job("chaos_bars", selection=dg.AssetSelection.assets(*BARS))
    return dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=defs.resources
    ).resolve_job_def("chaos_bars")


def main() -> int:
    """Run :func:`bars_job` as one single-run backfill of :data:`DAYS` on ``$DAGSTER_HOME``'s instance,
    in this process (the run worker) with its steps in child processes (the default executor)."""
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(bars_job), instance=instance, tags=RANGE_TAGS)
        print(f"run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}", flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
