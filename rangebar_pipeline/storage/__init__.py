"""Storage tiers: Tier 1 Parquet ticks (:mod:`.ticks`) and Tier 2 ClickHouse bars (:mod:`.bars`)."""

from __future__ import annotations

from rangebar_pipeline.storage.ticks import (
    DayWriteResult,
    SeriesStatus,
    StoreStatus,
    TickStore,
    default_cache_dir,
    tick_schema,
)

__all__ = ["DayWriteResult", "SeriesStatus", "StoreStatus", "TickStore", "default_cache_dir", "tick_schema"]
