"""The library API: range bars by symbol, UTC dates and threshold, served from the tick cache and the
bar store through the day engine (:mod:`rangebar_pipeline.engine`).

:mod:`.ranges` answers ranges and the last N bars, :mod:`.precompute` fills, counts and forgets the
store, :mod:`.materialize` adapts the engine to frames, :mod:`.arguments` parses what users pass,
:mod:`.datasets` reads the feature tables with labels across days (``read_dataset``).
"""

from __future__ import annotations

from rangebar_pipeline.api.arguments import parse_day
from rangebar_pipeline.api.datasets import feature_table_version, read_dataset
from rangebar_pipeline.api.materialize import MaterializedDays, materialize_days
from rangebar_pipeline.api.precompute import (
    PrecomputeProgress,
    PrecomputeResult,
    count_bars,
    invalidate,
    precompute_range_bars,
)
from rangebar_pipeline.api.ranges import get_cached_bars, get_n_range_bars, get_range_bars

__all__ = [
    "MaterializedDays",
    "PrecomputeProgress",
    "PrecomputeResult",
    "count_bars",
    "feature_table_version",
    "get_cached_bars",
    "get_n_range_bars",
    "get_range_bars",
    "invalidate",
    "materialize_days",
    "parse_day",
    "precompute_range_bars",
    "read_dataset",
]
