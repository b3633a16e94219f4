"""rangebar 7.1.3's ``rangebar.clickhouse`` names over this package's bar store.

:class:`RangeBarCache` reads and invalidates the bars :class:`~rangebar_pipeline.storage.bars.BarStore`
holds (embedded chDB by default, a server via ``RANGEBAR_CLICKHOUSE_DSN`` or :class:`ClickHouseConfig`);
bars enter the store only through this package's computation (``get_range_bars``,
``precompute_range_bars``), which keeps each day's checkpoint chain, so 7.1.3's free-form writes
(``store_range_bars``, ``store_bars_bulk``) raise :class:`~rangebar_pipeline.exceptions.StoreError`.
The preflight and SSH-tunnel helpers of 7.1.3 are not provided (see docs/migration.md).
"""

from __future__ import annotations

from rangebar_pipeline.clickhouse.cache import CacheKey, RangeBarCache
from rangebar_pipeline.clickhouse.config import ClickHouseConfig

__all__ = ["CacheKey", "ClickHouseConfig", "RangeBarCache"]
