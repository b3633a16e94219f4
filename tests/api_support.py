"""The environment of the API, CLI and pipeline tests: loopback mirrors of the shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.data_paths import SHARED_DATA as SHARED
from tests.loopback import LoopbackServer as Mirror

__all__ = ["SHARED", "Mirror", "loopback_env"]


def loopback_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Mirror]]:
    """A real HTTP server on 127.0.0.1 serving ``../shared/data`` as the Binance Vision and Exness
    hosts, the cache in ``tmp_path`` and the embedded bar store. Yields ``(cache_dir, server)``."""
    with Mirror(SHARED) as server:
        monkeypatch.setenv("RANGEBAR_BINANCE_BASE_URL", f"{server.url}/binance_vision")
        monkeypatch.setenv("RANGEBAR_EXNESS_BASE_URL", f"{server.url}/exness")
        monkeypatch.setenv("RANGEBAR_CACHE_DIR", str(tmp_path))
        monkeypatch.delenv("RANGEBAR_CLICKHOUSE_DSN", raising=False)
        yield tmp_path, server
