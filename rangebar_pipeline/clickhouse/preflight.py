"""7.1.3's ClickHouse preflight, reporting this package's actual bar store.

The store is embedded chDB under the cache directory unless ``RANGEBAR_CLICKHOUSE_DSN`` names a
ClickHouse server (:func:`~rangebar_pipeline.storage.bars.resolve_dsn`), so no installation or host
discovery is needed: :func:`detect_clickhouse_state` reports the levels of that store (from the bar
store's read-only :func:`~rangebar_pipeline.storage.bars.probe`), and
:func:`get_available_clickhouse_host` returns it (``method="embedded"`` for chDB). 7.1.3's
``RANGEBAR_CH_HOSTS``/``RANGEBAR_CH_PRIMARY`` SSH aliases are not probed (see :mod:`.tunnel`).
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal
from urllib.parse import urlparse

from rangebar_pipeline.clickhouse.config import ClickHouseConfig, ConnectionMode, get_connection_mode
from rangebar_pipeline.exceptions import StoreError
from rangebar_pipeline.storage.bars import (
    DSN_ENV,
    StoreProbe,
    chdb_path,
    probe,
    probe_connection,
    redact_dsn,
    resolve_dsn,
)

__all__ = [
    "ClickHouseNotConfiguredError",
    "HostConnection",
    "InstallationLevel",
    "PreflightResult",
    "detect_clickhouse_state",
    "get_available_clickhouse_host",
]

_NOT_CONFIGURED = (
    "No ClickHouse server is reachable for this configuration. The bar store needs none: unset "
    f"{DSN_ENV} (and RANGEBAR_MODE=cloud) to use the embedded chDB store, or set {DSN_ENV}="
    "http://user:password@host:8123/rangebar to a running server."
)


class ClickHouseNotConfiguredError(StoreError):
    """The configured ClickHouse is not usable (a ``RuntimeError``, as in 7.1.3); the message says
    what to do."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or _NOT_CONFIGURED)


class InstallationLevel(IntEnum):
    """7.1.3's levels. ``ENV_NOT_CONFIGURED`` is never reported here (the embedded store is the
    default); ``NOT_INSTALLED`` means chDB (or clickhouse-connect) cannot be imported."""

    ENV_NOT_CONFIGURED = -1
    NOT_INSTALLED = 0
    INSTALLED_NOT_RUNNING = 1
    RUNNING_NO_SCHEMA = 2
    FULLY_CONFIGURED = 3


@dataclass
class PreflightResult:
    """7.1.3's fields, plus ``dsn``: the store examined (credentials redacted)."""

    level: InstallationLevel
    version: str | None = None
    binary_path: str | None = None
    message: str = ""
    action_required: str | None = None
    dsn: str | None = None


@dataclass
class HostConnection:
    """Where the bar store is: ``method`` is 7.1.3's ``local``/``direct`` for a server (loopback or
    not), ``embedded`` for chDB (``host`` is then its data directory, ``port`` 0); ``dsn`` redacted."""

    host: str
    method: Literal["local", "direct", "ssh_tunnel", "embedded"]
    port: int = 8123
    dsn: str | None = None


def detect_clickhouse_state() -> PreflightResult:
    """The state of the store ``get_range_bars`` would use now (read-only: nothing is created)."""
    dsn = resolve_dsn()
    return _embedded_state(probe(dsn)) if chdb_path(dsn) is not None else _server_state(dsn)


def _embedded_state(found: StoreProbe) -> PreflightResult:
    shown, path, version = found.dsn, found.chdb_path, found.version
    if not found.installed:
        return PreflightResult(
            InstallationLevel.NOT_INSTALLED,
            message="chDB (the embedded store) is not importable",
            action_required=f"Install chdb (a dependency of rangebar_pipeline) or set {DSN_ENV} to a server",
            dsn=shown,
        )
    if found.lock_holder is not None:  # held by another process (this process's own store is usable)
        return PreflightResult(
            InstallationLevel.INSTALLED_NOT_RUNNING,
            version,
            message=f"embedded store {path} is held by another process ({found.lock_holder})",
            action_required=f"Wait for it or stop it (one process per chDB directory), or set {DSN_ENV}",
            dsn=shown,
        )
    if not found.has_schema:
        return PreflightResult(
            InstallationLevel.RUNNING_NO_SCHEMA,
            version,
            message=f"{version} embedded store at {path}, schema missing",
            action_required="Schema will be auto-created on first use",
            dsn=shown,
        )
    return PreflightResult(
        InstallationLevel.FULLY_CONFIGURED,
        version,
        message=f"{version} embedded store ready at {path}",
        dsn=shown,
    )


def _server_state(dsn: str) -> PreflightResult:
    found = probe_connection(dsn)
    shown, database, version = found.dsn, found.database, found.version
    if not found.reachable:
        return PreflightResult(
            InstallationLevel.INSTALLED_NOT_RUNNING,
            message=f"ClickHouse server {shown} not reachable ({found.error})",
            action_required=f"Start the server, fix {DSN_ENV}, or unset it to use the embedded chDB store",
            dsn=shown,
        )
    if not found.answered:
        return PreflightResult(
            InstallationLevel.INSTALLED_NOT_RUNNING,
            message=f"ClickHouse server {shown} does not answer queries ({found.error})",
            action_required=f"Check the server and the user's rights, or unset {DSN_ENV} (embedded store)",
            dsn=shown,
        )
    if not found.has_schema:
        return PreflightResult(
            InstallationLevel.RUNNING_NO_SCHEMA,
            version,
            message=f"ClickHouse {version} running at {shown}, but {database} schema missing",
            action_required="Schema will be auto-created on first use",
            dsn=shown,
        )
    return PreflightResult(
        InstallationLevel.FULLY_CONFIGURED,
        version,
        message=f"ClickHouse {version} ready at {shown} with {database} schema",
        dsn=shown,
    )


def get_available_clickhouse_host() -> HostConnection:
    """The store the bar functions will use, by ``RANGEBAR_MODE`` (:func:`get_connection_mode`).

    ``auto``/``local``: ``RANGEBAR_CLICKHOUSE_DSN``'s server if set (it must accept connections),
    else the embedded chDB store. ``cloud``: a server is required: ``RANGEBAR_CLICKHOUSE_DSN``, else
    ``CLICKHOUSE_HOST``/``CLICKHOUSE_PORT`` (:class:`ClickHouseConfig`).

    Raises:
        ClickHouseNotConfiguredError: ``RANGEBAR_MODE=cloud but ...`` (no server configured) or
            ``Cannot connect to ...`` (the configured server refuses connections).
    """
    _warn_unused_hosts()
    mode = get_connection_mode()
    dsn = resolve_dsn()
    if mode is ConnectionMode.CLOUD and chdb_path(dsn) is not None:
        config = ClickHouseConfig.from_env()
        if "CLICKHOUSE_HOST" not in os.environ:
            raise ClickHouseNotConfiguredError(
                f"RANGEBAR_MODE=cloud but neither {DSN_ENV} nor CLICKHOUSE_HOST is set. {_NOT_CONFIGURED}"
            )
        dsn = config.dsn
    path = chdb_path(dsn)
    if path is not None:
        return HostConnection(host=str(path), method="embedded", port=0, dsn=redact_dsn(dsn))
    parsed = urlparse(dsn)
    host = parsed.hostname or "localhost"
    port = parsed.port or (8443 if parsed.scheme == "https" else 8123)
    if not _is_port_open(host, port):
        raise ClickHouseNotConfiguredError(
            f"Cannot connect to ClickHouse at {host}:{port} ({redact_dsn(dsn)}). {_NOT_CONFIGURED}"
        )
    local = host in {"localhost", "127.0.0.1", "::1"}
    return HostConnection(host=host, method="local" if local else "direct", port=port, dsn=redact_dsn(dsn))


def _is_port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _warn_unused_hosts() -> None:
    if os.environ.get("RANGEBAR_CH_HOSTS") or os.environ.get("RANGEBAR_CH_PRIMARY"):
        warnings.warn(
            "RANGEBAR_CH_HOSTS/RANGEBAR_CH_PRIMARY are not used by rangebar_pipeline; set "
            f"{DSN_ENV} to the server (through your own SSH tunnel if needed)",
            UserWarning,
            stacklevel=3,
        )
