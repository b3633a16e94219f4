"""7.1.3's ``ClickHouseConfig`` (where a ClickHouse server is, as a DSN for the bar store) and its
connection mode (``RANGEBAR_MODE``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum

from rangebar_pipeline.exceptions import StoreError

__all__ = ["ClickHouseConfig", "ClickHouseConfigError", "ConnectionMode", "get_connection_mode"]


class ClickHouseConfigError(StoreError, ValueError):
    """An invalid :class:`ClickHouseConfig` (a ``ValueError``, as in 7.1.3)."""


class ConnectionMode(StrEnum):
    """``RANGEBAR_MODE``: ``local``/``auto`` use the configured store (embedded chDB unless
    ``RANGEBAR_CLICKHOUSE_DSN`` names a server), ``cloud`` requires a server."""

    LOCAL = "local"
    CLOUD = "cloud"
    AUTO = "auto"


def get_connection_mode() -> ConnectionMode:
    """The mode from ``RANGEBAR_MODE`` (default and unknown values: ``AUTO``), as in 7.1.3."""
    try:
        return ConnectionMode(os.getenv("RANGEBAR_MODE", "auto").lower())
    except ValueError:
        return ConnectionMode.AUTO


@dataclass
class ClickHouseConfig:
    """Host, port and database of a ClickHouse server (``CLICKHOUSE_HOST``/``CLICKHOUSE_PORT``).

    >>> ClickHouseConfig(host="ch.local", port=8123).dsn
    'http://ch.local:8123/rangebar_cache'
    """

    host: str = field(default_factory=lambda: os.getenv("CLICKHOUSE_HOST", "localhost"))
    port: int = field(default_factory=lambda: int(os.getenv("CLICKHOUSE_PORT", "8123")))
    database: str = "rangebar_cache"

    @classmethod
    def from_env(cls) -> ClickHouseConfig:
        """The configuration from ``CLICKHOUSE_HOST``, ``CLICKHOUSE_PORT`` and ``CLICKHOUSE_DATABASE``."""
        return cls(database=os.getenv("CLICKHOUSE_DATABASE", "rangebar_cache"))

    def validate(self) -> None:
        """Raise :class:`ClickHouseConfigError` (7.1.3's messages) on an empty host or database or a
        port outside 1..65535."""
        if not 1 <= self.port <= 65_535:
            raise ClickHouseConfigError(f"Invalid port: {self.port} (must be in 1..65535)")
        if not self.database:
            raise ClickHouseConfigError("Database name cannot be empty")
        if not self.host:
            raise ClickHouseConfigError("Invalid host: ClickHouse host must not be empty")

    @property
    def connection_string(self) -> str:
        """``http://host:port`` (7.1.3's property)."""
        return f"http://{self.host}:{self.port}"

    @property
    def dsn(self) -> str:
        """The bar store DSN: ``http://host:port/database``."""
        return f"{self.connection_string}/{self.database}"
