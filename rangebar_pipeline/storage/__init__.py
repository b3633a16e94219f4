"""Storage tiers: Tier 1 Parquet ticks (:mod:`.ticks`) and Tier 2 ClickHouse bars (:mod:`.bars`);
:mod:`.parquet` is rangebar 7.1.3's ``TickStorage`` over the tick store."""

from __future__ import annotations

from rangebar_pipeline.storage.parquet import TickStorage, get_cache_dir
from rangebar_pipeline.storage.ticks import (
    DayWriteResult,
    SeriesStatus,
    StoreStatus,
    TickStore,
    default_cache_dir,
    tick_schema,
)

__all__ = [
    "DayWriteResult",
    "SeriesStatus",
    "StoreStatus",
    "TickStorage",
    "TickStore",
    "default_cache_dir",
    "get_cache_dir",
    "tick_schema",
]
