"""7.1.3's ClickHouse client helpers and errors, as :class:`~rangebar_pipeline.exceptions.StoreError`\\ s.

Bars are read through :class:`~rangebar_pipeline.clickhouse.RangeBarCache` (or
:class:`~rangebar_pipeline.storage.bars.BarStore`); :func:`get_client` is for your own queries
against a ClickHouse server.
"""

from __future__ import annotations

from typing import Any

import clickhouse_connect

from rangebar_pipeline.exceptions import StoreError

__all__ = ["ClickHouseQueryError", "ClickHouseUnavailableError", "execute_query", "get_client"]


class ClickHouseUnavailableError(StoreError):
    """ClickHouse is not reachable (a ``RuntimeError``, as in 7.1.3); the message says what to do."""


class ClickHouseQueryError(StoreError):
    """A query failed (a ``RuntimeError``, as in 7.1.3)."""


def get_client(host: str = "localhost", port: int = 8123, database: str = "default", **kwargs: Any) -> Any:
    """A clickhouse-connect client of the server at ``host:port``, checked with ``SELECT 1``.

    ``dsn=...`` (e.g. ``RANGEBAR_CLICKHOUSE_DSN``'s value) may be given instead of host and port.

    Raises:
        ClickHouseUnavailableError: ``Failed to connect to ClickHouse at host:port: ...``.
    """
    try:
        client = clickhouse_connect.get_client(host=host, port=port, database=database, **kwargs)
        client.command("SELECT 1")
    except Exception as exc:
        where = "the DSN" if "dsn" in kwargs else f"{host}:{port}"
        raise ClickHouseUnavailableError(
            f"Failed to connect to ClickHouse at {where}: {type(exc).__name__} (is the server running? "
            "the bar store needs none: unset RANGEBAR_CLICKHOUSE_DSN to use the embedded chDB store)"
        ) from None
    return client


def execute_query(client: Any, query: str, parameters: dict[str, Any] | None = None) -> Any:
    """``client.command(query, parameters)``; failures raise :class:`ClickHouseQueryError`
    (``Query failed: ...``)."""
    try:
        return client.command(query, parameters=parameters) if parameters else client.command(query)
    except Exception as exc:
        raise ClickHouseQueryError(f"Query failed: {exc}\nQuery: {query[:200]}...") from exc
