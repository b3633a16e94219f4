"""rangebar 7.1.3's ``rangebar.clickhouse`` names over this package's bar store.

:class:`RangeBarCache` reads and invalidates the bars :class:`~rangebar_pipeline.storage.bars.BarStore`
holds (embedded chDB by default, a server via ``RANGEBAR_CLICKHOUSE_DSN`` or :class:`ClickHouseConfig`);
bars enter the store only through this package's computation (``get_range_bars``,
``precompute_range_bars``), which keeps each day's checkpoint chain, so 7.1.3's free-form writes
(``store_range_bars``, ``store_bars_bulk``) raise :class:`~rangebar_pipeline.exceptions.StoreError`.
The preflight (:func:`detect_clickhouse_state`, :func:`get_available_clickhouse_host`) reports that
store; :class:`SSHTunnel` opens nothing and says what to do instead (docs/migration.md). Unlike 7.1.3,
importing this package probes nothing.
"""

from __future__ import annotations

from rangebar_pipeline.clickhouse.cache import CacheKey, RangeBarCache
from rangebar_pipeline.clickhouse.client import ClickHouseQueryError, ClickHouseUnavailableError, get_client
from rangebar_pipeline.clickhouse.config import ClickHouseConfig, ConnectionMode, get_connection_mode
from rangebar_pipeline.clickhouse.mixin import ClickHouseClientMixin
from rangebar_pipeline.clickhouse.preflight import (
    ClickHouseNotConfiguredError,
    HostConnection,
    InstallationLevel,
    PreflightResult,
    detect_clickhouse_state,
    get_available_clickhouse_host,
)
from rangebar_pipeline.clickhouse.tunnel import SSHTunnel

__all__ = [
    "CacheKey",
    "ClickHouseClientMixin",
    "ClickHouseConfig",
    "ClickHouseNotConfiguredError",
    "ClickHouseQueryError",
    "ClickHouseUnavailableError",
    "ConnectionMode",
    "HostConnection",
    "InstallationLevel",
    "PreflightResult",
    "RangeBarCache",
    "SSHTunnel",
    "detect_clickhouse_state",
    "get_available_clickhouse_host",
    "get_client",
    "get_connection_mode",
]
