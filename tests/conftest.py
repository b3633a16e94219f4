"""Shared pytest fixtures: a loopback HTTP server over the shared data, and an isolated environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.data_paths import SHARED_DATA
from tests.loopback import LoopbackServer

#: A loopback address nothing listens on: a source left at its default fails fast, never goes online.
UNREACHABLE_URL = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point the cache at a temp dir and the source base URLs at a dead loopback port."""
    monkeypatch.setenv("RANGEBAR_CACHE_DIR", str(tmp_path_factory.mktemp("rangebar-cache")))
    monkeypatch.setenv("RANGEBAR_BINANCE_BASE_URL", UNREACHABLE_URL)
    monkeypatch.setenv("RANGEBAR_EXNESS_BASE_URL", UNREACHABLE_URL)
    monkeypatch.delenv("RANGEBAR_VALIDATION_SOCKET", raising=False)  # a test asks for the service


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repository."""
    return SHARED_DATA


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    """A :class:`LoopbackServer` on 127.0.0.1 serving ``../shared/data`` in its real layout.

    Binance Vision is at ``f"{loopback.url}/binance_vision"``, Exness at ``f"{loopback.url}/exness"``.
    """
    with LoopbackServer(SHARED_DATA) as server:
        yield server
