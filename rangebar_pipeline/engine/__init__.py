"""The engine: one module walks a series over UTC days for one or many thresholds.

:mod:`.days` decodes each day's ticks once and runs one processor per threshold (the bars of a
series are one stream cut into days, SPEC §1); :mod:`.walk` owns everything around it: the stored
coverage and the checkpoint chain, stale days, which days to compute, batching, the bar-store writes,
and flushing what was computed before an error propagates. The library API
(:mod:`rangebar_pipeline.api`) and the Dagster bar step (:mod:`rangebar_pipeline.assets.bars`) are
adapters over :class:`SeriesWalk`: frames out, or Dagster events out.
"""

from __future__ import annotations

from rangebar_pipeline.engine.days import (
    DayFailedError,
    SeriesDay,
    SeriesProcessors,
    ThresholdDay,
    compute_days,
    stored_days,
)
from rangebar_pipeline.engine.walk import BATCH_BARS, BATCH_DAYS, Batch, SeriesWalk, WalkedDay, batched

__all__ = [
    "BATCH_BARS",
    "BATCH_DAYS",
    "Batch",
    "DayFailedError",
    "SeriesDay",
    "SeriesProcessors",
    "SeriesWalk",
    "ThresholdDay",
    "WalkedDay",
    "batched",
    "compute_days",
    "stored_days",
]
