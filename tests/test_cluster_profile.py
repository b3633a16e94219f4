"""The cluster profile without a running cluster: the multi-host store rule, DSN handling, K8s configs.

No ClickHouse server newer than Debian's unusable 18.16 can be installed here, so the server path is
tested up to the connection: the refusal of an embedded store across hosts, and a server DSN that is
accepted, tried, and reported without its credentials.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import validate_config
from dagster_k8s import K8sRunLauncher, k8s_job_executor

from rangebar_pipeline.cluster.profile import MultiHostStoreError, cluster_executor, require_server_dsn
from rangebar_pipeline.exceptions import StoreError
from rangebar_pipeline.resources import BarStoreResource

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def multi_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RANGEBAR_MULTI_HOST", "1")
    monkeypatch.delenv("RANGEBAR_CLICKHOUSE_DSN", raising=False)
    monkeypatch.setenv("RANGEBAR_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.usefixtures("multi_host")
@pytest.mark.parametrize("dsn", [None, "chdb:///tmp/somewhere/clickhouse"])
def test_multi_host_refuses_an_embedded_store(dsn: str | None, tmp_path: Path) -> None:
    with pytest.raises(MultiHostStoreError, match="RANGEBAR_CLICKHOUSE_DSN"):
        require_server_dsn(dsn)
    resource = BarStoreResource(dsn=dsn, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(MultiHostStoreError, match="private embedded chDB"), resource.open():
        pass
    assert not (tmp_path / "cache" / "clickhouse").exists(), "no chDB directory may be created"


@pytest.mark.usefixtures("multi_host")
def test_multi_host_uses_the_server_dsn_and_hides_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = f"http://rangebar:s3cret-pw@127.0.0.1:{closed_port()}/rangebar"
    monkeypatch.setenv("RANGEBAR_CLICKHOUSE_DSN", dsn)
    require_server_dsn()  # accepted
    resource = BarStoreResource(lock_wait_seconds=0)
    assert resource.describe() == dsn.replace("rangebar:s3cret-pw@", "***@")
    with pytest.raises(StoreError) as excinfo, resource.open():  # tried: nothing listens there
        pass
    assert not isinstance(excinfo.value, MultiHostStoreError)
    assert "cannot connect to ClickHouse" in str(excinfo.value)
    assert "s3cret-pw" not in str(excinfo.value)


def test_one_host_keeps_the_embedded_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RANGEBAR_MULTI_HOST", raising=False)
    monkeypatch.delenv("RANGEBAR_CLICKHOUSE_DSN", raising=False)
    require_server_dsn(None)
    with BarStoreResource(cache_dir=str(tmp_path)).open() as store:
        assert store.dsn.startswith("chdb://")


def test_a_celery_worker_without_a_server_dsn_does_not_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RANGEBAR_CLICKHOUSE_DSN"}
    env.update(RANGEBAR_MULTI_HOST="1", RANGEBAR_CELERY_BROKER=f"redis://127.0.0.1:{closed_port()}/0")
    celery = Path(sys.executable).with_name("celery")
    args = [str(celery), "-A", "rangebar_pipeline.cluster.celery_app", "worker", "--concurrency", "1"]
    worker = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = worker.communicate(timeout=120)
    finally:
        worker.kill()  # no-op once it exited
    assert worker.returncode != 0
    assert "RANGEBAR_MULTI_HOST=1 but the bar store has no DSN" in out.decode()


def test_executor_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANGEBAR_EXECUTOR", raising=False)
    assert cluster_executor() is None
    monkeypatch.setenv("RANGEBAR_EXECUTOR", "celery")
    celery = cluster_executor()
    assert celery is not None and celery.name == "celery"
    monkeypatch.setenv("RANGEBAR_EXECUTOR", "k8s")
    monkeypatch.setenv("RANGEBAR_K8S_EXECUTOR_CONFIG", str(K8S / "executor.yaml"))
    k8s = cluster_executor()
    assert k8s is not None and k8s.name == "k8s"
    monkeypatch.setenv("RANGEBAR_EXECUTOR", "dask")
    with pytest.raises(ValueError, match="expected 'celery' or 'k8s'"):
        cluster_executor()


def helm_launcher_config(values: dict[str, Any]) -> dict[str, Any]:
    """The ``run_launcher`` config the Helm chart renders from ``runLauncher.config.k8sRunLauncher``.

    Keys are renamed as the chart's ``configmap-instance.yaml`` template does; the chart adds the
    instance config map, the Postgres secret and the service account of its release.
    """
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    run_k8s = launcher.get("runK8sConfig", {})
    return {
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": "dagster-postgresql-secret",
        "dagster_home": "/opt/dagster/dagster_home",
        "service_account_name": "dagster",
        "load_incluster_config": True,
        "image_pull_policy": "IfNotPresent",
        "env_secrets": [s["name"] for s in launcher.get("envSecrets", [])],
        "env_vars": launcher.get("envVars", []),
        "volumes": launcher.get("volumes", []),
        "volume_mounts": launcher.get("volumeMounts", []),
        "run_k8s_config": {"container_config": run_k8s.get("containerConfig", {})},
    }


def test_helm_values_load_in_dagster_k8s_config_schemas() -> None:
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    schema = K8sRunLauncher.config_type()  # type: ignore[no-untyped-call]
    launcher = validate_config(schema, helm_launcher_config(values))
    assert launcher.success, launcher.errors
    executor_config = yaml.safe_load((K8S / "executor.yaml").read_text())
    assert k8s_job_executor.config_schema.config_type is not None
    executor = validate_config(k8s_job_executor.config_schema.config_type, executor_config)
    assert executor.success, executor.errors
    assert executor_config["env_secrets"] == ["rangebar-clickhouse"]
    assert set(executor_config["per_step_k8s_config"]) == {"ticks"}
    bad = validate_config(k8s_job_executor.config_schema.config_type, {**executor_config, "bogus": 1})
    assert not bad.success  # the schema really is checked
