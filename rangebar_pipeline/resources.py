"""Dagster resources: the sources, the tick cache, the bar store and the feature/dataset files.

Each is a :class:`dagster.ConfigurableResource` with typed fields; :func:`default_resources` binds
them once from environment variables (``RANGEBAR_CACHE_DIR``, ``RANGEBAR_CLICKHOUSE_DSN``,
``RANGEBAR_BINANCE_BASE_URL``, ``RANGEBAR_EXNESS_BASE_URL``, ``RANGEBAR_PIPELINE_DIR``); unset
variables fall back to the library defaults. Clients are created per use, never at import.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, Literal

import dagster as dg

from rangebar_pipeline.cluster.profile import require_server_dsn
from rangebar_pipeline.exceptions import StoreLockedError
from rangebar_pipeline.sources.binance_vision import BinanceVision
from rangebar_pipeline.sources.exness import ExnessSource
from rangebar_pipeline.storage.bars import BarStore, redact_dsn, resolve_dsn
from rangebar_pipeline.storage.datasets import FEATURES_URI_ENV, PIPELINE_DIR_ENV, DatasetStore
from rangebar_pipeline.storage.ticks import TickStore

__all__ = [
    "BAR_STORE_POOL",
    "DOWNLOAD_QUEUE",
    "BarStoreResource",
    "BinanceVisionResource",
    "DatasetStoreResource",
    "ExnessResource",
    "TickStoreResource",
    "default_resources",
]

#: The concurrency pool of every step that opens the bar store. The embedded chDB engine allows one
#: process per data directory, so the instance sets this pool's limit to 1 (deploy/dagster.yaml).
BAR_STORE_POOL: Final = "rangebar_bar_store"
#: The Celery queue of the download step (``ticks``) in the cluster profile; bar steps use ``dagster``.
DOWNLOAD_QUEUE: Final = "rangebar_downloads"
log = logging.getLogger(__name__)


class BinanceVisionResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Binance Vision aggTrades source; ``base_url`` may be a mirror (``http(s)://`` or ``file://``)."""

    base_url: str | None = None
    verify_checksum: bool = True

    def source(self) -> BinanceVision:
        """A downloader for this mirror (``None``: ``RANGEBAR_BINANCE_BASE_URL`` or the public host)."""
        return BinanceVision(self.base_url or None, verify_checksum=self.verify_checksum)


class ExnessResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Exness tick archive source; ``strictness`` as in :class:`~rangebar_pipeline.sources.ExnessSource`."""

    base_url: str | None = None
    strictness: Literal["permissive", "strict", "paranoid"] = "strict"

    def source(self) -> ExnessSource:
        """A downloader for this archive (``None``: ``RANGEBAR_EXNESS_BASE_URL`` or the public host)."""
        return ExnessSource(self.base_url or None, strictness=self.strictness)


class TickStoreResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The tick cache: Parquet ticks under ``cache_dir`` (``None``: ``RANGEBAR_CACHE_DIR``, else default)."""

    cache_dir: str | None = None
    binance: BinanceVisionResource
    exness: ExnessResource
    max_workers: int = 4

    def store(self) -> TickStore:
        """A tick store over the configured sources."""
        return TickStore(
            self.cache_dir or None,
            binance=self.binance.source(),
            exness=self.exness.source(),
            max_workers=self.max_workers,
        )


class BarStoreResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The bar store: ClickHouse bars. ``dsn`` ``None``: ``RANGEBAR_CLICKHOUSE_DSN``, else embedded chDB.

    Steps that open it run in the :data:`BAR_STORE_POOL` concurrency pool. With ``RANGEBAR_MULTI_HOST=1``
    (the cluster profile across hosts) it refuses anything but a ClickHouse server DSN.
    """

    dsn: str | None = None
    cache_dir: str | None = None
    #: Seconds to wait for the embedded store while another process still holds its directory. The
    #: pool frees its slot when a step reports success; the step's process exits (and releases
    #: chDB's directory lock) a moment later.
    lock_wait_seconds: float = 120.0

    @contextmanager
    def open(self) -> Iterator[BarStore]:
        """The bar store, closed on exit; waits up to ``lock_wait_seconds`` for a held chDB directory.

        Raises:
            MultiHostStoreError: ``RANGEBAR_MULTI_HOST`` is set and the DSN is not a server's.
        """
        require_server_dsn(self.dsn or None)
        deadline = time.monotonic() + self.lock_wait_seconds
        delay = 0.1
        while True:
            try:
                store = BarStore(self.dsn or None, cache_dir=self.cache_dir or None)
                break
            except StoreLockedError as exc:
                if time.monotonic() + delay > deadline:
                    raise StoreLockedError(f"{exc} (waited {self.lock_wait_seconds:g} s)") from None
                log.info("bar store busy, retrying in %.1f s: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        with store:
            yield store

    def describe(self) -> str:
        """The DSN in use, credentials redacted."""
        return redact_dsn(resolve_dsn(self.dsn or None, cache_dir=self.cache_dir or None))


class DatasetStoreResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Feature tables, ML datasets and model summaries: a :class:`~.storage.datasets.DatasetStore`.

    ``root`` ``None``: ``RANGEBAR_PIPELINE_DIR``, else ``<cache dir>/pipeline``. ``tables_uri``: where
    the Delta feature tables live (``None``: ``RANGEBAR_FEATURES_URI``, else ``<root>/features``; an
    object-store URI takes delta-rs ``storage_options``).
    """

    root: str | None = None
    tables_uri: str | None = None
    storage_options: dict[str, str] | None = None

    def store(self) -> DatasetStore:
        """The store under the configured root."""
        return DatasetStore(
            self.root or None, tables_uri=self.tables_uri or None, storage_options=self.storage_options
        )


def _env_or(name: str, default: Any = None) -> Any:
    """``dg.EnvVar(name)`` when the variable is set (shown as such in the UI), else ``default``."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def default_resources() -> dict[str, Any]:
    """The resources of the code location, bound from environment variables."""
    binance = BinanceVisionResource(base_url=_env_or("RANGEBAR_BINANCE_BASE_URL"))
    exness = ExnessResource(base_url=_env_or("RANGEBAR_EXNESS_BASE_URL"))
    cache_dir = _env_or("RANGEBAR_CACHE_DIR")
    return {
        BinanceVision.name: binance,  # one resource per source, named as the source
        ExnessSource.name: exness,
        "tick_store": TickStoreResource(cache_dir=cache_dir, binance=binance, exness=exness),
        "bar_store": BarStoreResource(dsn=_env_or("RANGEBAR_CLICKHOUSE_DSN"), cache_dir=cache_dir),
        "datasets": DatasetStoreResource(
            root=_env_or(PIPELINE_DIR_ENV), tables_uri=_env_or(FEATURES_URI_ENV)
        ),
    }
