"""7.1.3's ``SSHTunnel``, which this package does not open: it makes no network connections of its
own beyond the configured store. Open the tunnel yourself and point the store at it::

    ssh -N -L 18123:localhost:8123 my-gpu-host &
    export RANGEBAR_CLICKHOUSE_DSN=http://localhost:18123/rangebar
"""

from __future__ import annotations

from rangebar_pipeline.clickhouse.client import ClickHouseUnavailableError

__all__ = ["SSHTunnel"]


class SSHTunnel:
    """7.1.3's tunnel object; :meth:`start` (and ``with``) raise :class:`ClickHouseUnavailableError`
    (a ``RuntimeError``, message ``SSH tunnel to <alias> failed: ...``) saying what to do instead."""

    def __init__(self, ssh_alias: str, remote_port: int = 8123, local_port: int | None = None) -> None:
        self.ssh_alias = ssh_alias
        self.remote_port = remote_port
        self._local_port = local_port

    @property
    def local_port(self) -> int | None:
        return self._local_port

    @property
    def is_active(self) -> bool:
        """Always False: no tunnel is ever opened."""
        return False

    def start(self, timeout: float = 5.0) -> int:
        """Raise: SSH tunnels are not provided (see the module docstring)."""
        del timeout
        port = self._local_port or 18123
        raise ClickHouseUnavailableError(
            f"SSH tunnel to {self.ssh_alias} failed: rangebar_pipeline does not open SSH tunnels. Open one "
            f"yourself (ssh -N -L {port}:localhost:{self.remote_port} {self.ssh_alias}) and set "
            f"RANGEBAR_CLICKHOUSE_DSN=http://localhost:{port}/rangebar, or unset it to use the embedded "
            "chDB store (no server needed)"
        )

    def stop(self) -> None:
        """Nothing to stop."""

    def __enter__(self) -> int:
        return self.start()

    def __exit__(self, *args: object) -> None:
        self.stop()
