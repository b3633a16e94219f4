"""Storage: the tick cache (:mod:`.ticks`, Parquet) and the bar store (:mod:`.bars`, ClickHouse).

:mod:`.parquet` is rangebar 7.1.3's ``TickStorage`` over the tick cache, a compatibility adapter
above the core: ``TickStorage`` and ``get_cache_dir`` import it on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rangebar_pipeline.storage.ticks import (
    DayWriteResult,
    FetchOutcome,
    TickCacheStatus,
    TickSeriesStatus,
    TickStore,
    default_cache_dir,
    tick_schema,
)

if TYPE_CHECKING:
    from rangebar_pipeline.storage.parquet import TickStorage, get_cache_dir

_ADAPTER: frozenset[str] = frozenset({"TickStorage", "get_cache_dir"})

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name not in _ADAPTER:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from rangebar_pipeline.storage import parquet

        value = getattr(parquet, name)
        globals()[name] = value
        return value


__all__ = [
    "DayWriteResult",
    "FetchOutcome",
    "TickCacheStatus",
    "TickSeriesStatus",
    "TickStorage",
    "TickStore",
    "default_cache_dir",
    "get_cache_dir",
    "tick_schema",
]
