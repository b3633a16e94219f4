"""7.1.3's ``ClickHouseConfig``: where the ClickHouse server is, as a DSN for the bar store."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["ClickHouseConfig"]


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
        """Raise ``ValueError`` on an empty host or a port outside 1..65535."""
        if not self.host:
            raise ValueError("ClickHouse host must not be empty")
        if not 1 <= self.port <= 65_535:
            raise ValueError(f"ClickHouse port must be in 1..65535, got {self.port}")

    @property
    def connection_string(self) -> str:
        """``http://host:port`` (7.1.3's property)."""
        return f"http://{self.host}:{self.port}"

    @property
    def dsn(self) -> str:
        """The bar store DSN: ``http://host:port/database``."""
        return f"{self.connection_string}/{self.database}"
