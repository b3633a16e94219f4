"""7.1.3's ClickHouse preflight, connection and tunnel names (``rangebar.clickhouse``) against the
installed 7.1.3: same names and paths, error types and message prefixes; the preflight reports this
package's store (embedded chDB by default, a server by ``RANGEBAR_CLICKHOUSE_DSN``). Loopback only."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest

from rangebar_pipeline.clickhouse import (
    ClickHouseClientMixin,
    ClickHouseNotConfiguredError,
    ClickHouseQueryError,
    ClickHouseUnavailableError,
    ConnectionMode,
    HostConnection,
    InstallationLevel,
    PreflightResult,
    SSHTunnel,
    detect_clickhouse_state,
    get_available_clickhouse_host,
    get_client,
    get_connection_mode,
    preflight,
)
from rangebar_pipeline.clickhouse.client import execute_query
from rangebar_pipeline.clickhouse.config import ClickHouseConfig, ClickHouseConfigError
from rangebar_pipeline.exceptions import StoreError
from rangebar_pipeline.storage.bars import BarStore, resolve_dsn

ref = pytest.importorskip("rangebar.clickhouse")
ref_config = pytest.importorskip("rangebar.clickhouse.config")
ref_client = pytest.importorskip("rangebar.clickhouse.client")


@pytest.fixture
def dead_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANGEBAR_CLICKHOUSE_DSN", "RANGEBAR_MODE", "CLICKHOUSE_HOST", "RANGEBAR_CH_HOSTS"):
        monkeypatch.delenv(name, raising=False)


def test_types_and_values_as_in_7_1_3() -> None:
    for mine, theirs in [
        (ClickHouseConfigError, ref_config.ClickHouseConfigError),
        (ClickHouseNotConfiguredError, ref.ClickHouseNotConfiguredError),
        (ClickHouseUnavailableError, ref.ClickHouseUnavailableError),
        (ClickHouseQueryError, ref.ClickHouseQueryError),
    ]:
        assert issubclass(mine, StoreError) and set(theirs.__mro__[1:]) - {object} <= set(mine.__mro__)
    assert {m.name: int(m) for m in InstallationLevel} == {m.name: int(m) for m in ref.InstallationLevel}
    assert {m.name: m.value for m in ConnectionMode} == {m.name: m.value for m in ref.ConnectionMode}
    for mine_cls, theirs_cls in [
        (PreflightResult, ref.PreflightResult),
        (HostConnection, ref.HostConnection),
    ]:
        names = [f.name for f in dataclasses.fields(theirs_cls)]
        assert [f.name for f in dataclasses.fields(mine_cls)][: len(names)] == names


@pytest.mark.parametrize("mode", [None, "local", "CLOUD", "auto", "bogus"])
def test_connection_mode_as_in_7_1_3(mode: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if mode is not None:
        monkeypatch.setenv("RANGEBAR_MODE", mode)
    assert get_connection_mode().value == ref.get_connection_mode().value


def test_preflight_reports_the_embedded_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANGEBAR_CACHE_DIR", str(tmp_path))
    state = detect_clickhouse_state()
    assert state.level == InstallationLevel.RUNNING_NO_SCHEMA and state.version
    assert state.action_required == "Schema will be auto-created on first use"
    assert not (tmp_path / "clickhouse").exists()  # read-only: nothing created
    host = get_available_clickhouse_host()
    assert (host.method, host.port, Path(host.host)) == ("embedded", 0, tmp_path / "clickhouse")
    with BarStore():  # open in this process: still usable
        assert detect_clickhouse_state().level == InstallationLevel.FULLY_CONFIGURED
    state = detect_clickhouse_state()
    assert state.level == InstallationLevel.FULLY_CONFIGURED and state.dsn == host.dsn
    # the server checks, run on the same engine through clickhouse-connect (no server here)
    server = preflight._server_state(resolve_dsn())
    assert server.level == InstallationLevel.FULLY_CONFIGURED and server.version
    assert server.message.startswith(f"ClickHouse {server.version} ready")
    monkeypatch.setenv("RANGEBAR_MODE", "local")  # 7.1.3: localhost:8123 only; here the same store
    assert get_available_clickhouse_host() == host
    monkeypatch.setenv("RANGEBAR_CH_HOSTS", "gpu1")
    with pytest.warns(UserWarning, match="RANGEBAR_CH_HOSTS"):
        assert get_available_clickhouse_host() == host


def test_preflight_of_an_unreachable_server(dead_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANGEBAR_CLICKHOUSE_DSN", f"http://user:s3cret@127.0.0.1:{dead_port}/rangebar")
    state = detect_clickhouse_state()
    assert state.level == InstallationLevel.INSTALLED_NOT_RUNNING and "s3cret" not in state.message
    assert state.action_required and "RANGEBAR_CLICKHOUSE_DSN" in state.action_required
    with pytest.raises(
        ClickHouseNotConfiguredError, match=rf"^Cannot connect to ClickHouse at 127.0.0.1:{dead_port}"
    ):
        get_available_clickhouse_host()


def test_cloud_mode_without_a_server_fails_as_7_1_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANGEBAR_MODE", "cloud")
    for module, error in [(ref, ref.ClickHouseNotConfiguredError), (None, ClickHouseNotConfiguredError)]:
        call = ref.get_available_clickhouse_host if module else get_available_clickhouse_host
        with pytest.raises(error, match=r"^RANGEBAR_MODE=cloud but"):
            call()


def test_cloud_mode_with_clickhouse_host(dead_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANGEBAR_MODE", "cloud")
    monkeypatch.setenv("CLICKHOUSE_HOST", "127.0.0.1")
    monkeypatch.setenv("CLICKHOUSE_PORT", str(dead_port))
    with pytest.raises(ClickHouseNotConfiguredError, match=r"^Cannot connect"):
        get_available_clickhouse_host()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setenv("CLICKHOUSE_PORT", str(port))
        host = get_available_clickhouse_host()
    assert (host.host, host.method, host.port) == ("127.0.0.1", "local", port)


def test_get_client_failure_as_7_1_3(dead_port: int) -> None:
    prefix = rf"^Failed to connect to ClickHouse at 127.0.0.1:{dead_port}"
    with pytest.raises(ref.ClickHouseUnavailableError, match=prefix):
        ref.get_client("127.0.0.1", dead_port)
    with pytest.raises(ClickHouseUnavailableError, match=prefix):
        get_client("127.0.0.1", dead_port)


def test_ssh_tunnel_says_what_to_do() -> None:
    tunnel = SSHTunnel("gpu-host", local_port=18124)
    assert (tunnel.ssh_alias, tunnel.remote_port, tunnel.local_port, tunnel.is_active) == (
        "gpu-host",
        8123,
        18124,
        False,
    )
    with (
        pytest.raises(ClickHouseUnavailableError, match=r"^SSH tunnel to gpu-host failed") as failure,
        tunnel,
    ):
        pass
    assert isinstance(failure.value, RuntimeError)
    assert "ssh -N -L 18124:localhost:8123 gpu-host" in str(failure.value)
    assert "RANGEBAR_CLICKHOUSE_DSN=http://localhost:18124/rangebar" in str(failure.value)


@pytest.mark.parametrize(
    ("kwargs", "prefix"),
    [({"port": 0}, "Invalid port: 0"), ({"database": ""}, "Database name cannot be empty")],
)
def test_config_errors_as_in_7_1_3(kwargs: dict[str, Any], prefix: str) -> None:
    for module, error in [(ref_config, ref_config.ClickHouseConfigError), (None, ClickHouseConfigError)]:
        config = (module.ClickHouseConfig if module else ClickHouseConfig)(host="h", **kwargs)
        with pytest.raises(error, match=f"^{prefix}"):
            config.validate()


class _Client:
    def __init__(self) -> None:
        self.closed = False

    def command(self, query: str, parameters: dict[str, Any] | None = None) -> str:
        raise RuntimeError(f"syntax error in {query}")

    def close(self) -> None:
        self.closed = True


def test_query_errors_and_mixin_as_in_7_1_3(dead_port: int) -> None:
    for module, error in [(ref, ref.ClickHouseQueryError), (None, ClickHouseQueryError)]:
        run = ref_client.execute_query if module else execute_query
        with pytest.raises(error, match=r"^Query failed: syntax error"):
            run(_Client(), "SELEC 1")

    class Cache(ClickHouseClientMixin):
        def __init__(self, client: Any = None, port: int = 8123) -> None:
            self._init_client(client, "127.0.0.1", port)

    borrowed = _Client()
    with Cache(borrowed) as cache:
        assert cache.client is borrowed
    assert not borrowed.closed  # a client passed in is never closed
    with pytest.raises(ClickHouseUnavailableError, match=r"^Failed to connect to ClickHouse at 127.0.0.1"):
        Cache(port=dead_port).client  # noqa: B018
