"""7.1.3's ``ClickHouseClientMixin``: a lazily created, owned-or-borrowed ClickHouse client."""

from __future__ import annotations

import contextlib
from typing import Any

from rangebar_pipeline.clickhouse.client import get_client
from rangebar_pipeline.exceptions import StoreError

__all__ = ["ClickHouseClientMixin"]


class ClickHouseClientMixin:
    """Client lifecycle for classes that query a ClickHouse server: a client passed in is borrowed
    (never closed); otherwise one is created on first use (:func:`get_client`) and closed by
    :meth:`close`."""

    _client: Any = None
    _owns_client: bool = False
    _client_host: str = "localhost"
    _client_port: int = 8123

    def _init_client(self, client: Any = None, host: str = "localhost", port: int = 8123) -> None:
        self._client, self._owns_client = client, client is None
        self._client_host, self._client_port = host, port

    @property
    def client(self) -> Any:
        """The client (created on first use when owned)."""
        if self._client is None:
            if not self._owns_client:
                raise StoreError("No client available and this instance doesn't own one")
            self._client = get_client(host=self._client_host, port=self._client_port)
        return self._client

    def close(self) -> None:
        """Close the client if this instance created it (idempotent)."""
        if self._owns_client and self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def __enter__(self) -> ClickHouseClientMixin:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()
