"""Environment switches of the cluster profile, shared by the code location and the Celery workers.

- ``RANGEBAR_EXECUTOR=celery``: every job of the code location runs its steps on Celery workers
  (broker ``RANGEBAR_CELERY_BROKER``, results ``RANGEBAR_CELERY_BACKEND``).
- ``RANGEBAR_EXECUTOR=k8s``: one Kubernetes pod per step (``k8s_job_executor``), configured by the
  YAML file ``RANGEBAR_K8S_EXECUTOR_CONFIG`` (``deploy/k8s/executor.yaml``).
- ``RANGEBAR_MULTI_HOST=1``: processes of the deployment run on more than one host, so the bar store
  must be a ClickHouse server (``RANGEBAR_CLICKHOUSE_DSN``); the embedded chDB store lives in one
  process's directory and is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import dagster as dg
import yaml

from rangebar_pipeline.exceptions import StoreError

__all__ = [
    "BROKER_ENV",
    "EXECUTOR_ENV",
    "MULTI_HOST_ENV",
    "MultiHostStoreError",
    "cluster_executor",
    "is_multi_host",
    "k8s_executor",
    "require_server_dsn",
]

EXECUTOR_ENV: Final = "RANGEBAR_EXECUTOR"
MULTI_HOST_ENV: Final = "RANGEBAR_MULTI_HOST"
BROKER_ENV: Final = "RANGEBAR_CELERY_BROKER"
BACKEND_ENV: Final = "RANGEBAR_CELERY_BACKEND"
DSN_ENV: Final = "RANGEBAR_CLICKHOUSE_DSN"
K8S_CONFIG_ENV: Final = "RANGEBAR_K8S_EXECUTOR_CONFIG"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})


class MultiHostStoreError(StoreError):
    """The profile spans several hosts but the bar store would be a private embedded chDB."""


def is_multi_host() -> bool:
    """Whether ``RANGEBAR_MULTI_HOST`` says the deployment spans more than one host."""
    return os.environ.get(MULTI_HOST_ENV, "").strip().lower() in _TRUE


def require_server_dsn(dsn: str | None = None) -> None:
    """Refuse an embedded bar store on a multi-host deployment.

    ``dsn`` is the configured DSN (``None``: ``RANGEBAR_CLICKHOUSE_DSN``). On one host this does nothing.

    Raises:
        MultiHostStoreError: ``RANGEBAR_MULTI_HOST`` is set and the DSN is missing or ``chdb:``.
    """
    if not is_multi_host():
        return
    dsn = dsn or os.environ.get(DSN_ENV) or ""
    if not dsn.startswith(("http://", "https://")):
        kind = "no DSN" if not dsn else "an embedded chdb: DSN"
        raise MultiHostStoreError(
            f"{MULTI_HOST_ENV}=1 but the bar store has {kind}: a worker on one of several hosts would open "
            f"a private embedded chDB store. Set {DSN_ENV}=http(s)://user:password@host:8123/database "
            "to a ClickHouse server reachable from every host"
        )


def k8s_executor() -> dg.ExecutorDefinition:
    """dagster-k8s's ``k8s_job_executor`` configured from the YAML file ``RANGEBAR_K8S_EXECUTOR_CONFIG``."""
    from dagster_k8s import k8s_job_executor

    path = os.environ.get(K8S_CONFIG_ENV)
    if not path:
        raise ValueError(f"{EXECUTOR_ENV}=k8s needs {K8S_CONFIG_ENV} (e.g. deploy/k8s/executor.yaml)")
    config = yaml.safe_load(Path(path).read_text())
    return k8s_job_executor.configured(config, name="k8s")


def cluster_executor() -> dg.ExecutorDefinition | None:
    """The profile's executor from ``RANGEBAR_EXECUTOR``: ``celery``, ``k8s``, else ``None`` (default)."""
    kind = os.environ.get(EXECUTOR_ENV, "").strip().lower()
    if not kind:
        return None
    if kind == "k8s":
        return k8s_executor()
    if kind != "celery":
        raise ValueError(f"{EXECUTOR_ENV}={kind!r}: expected 'celery' or 'k8s' (or unset for the default)")
    from dagster_celery import celery_executor

    from rangebar_pipeline.cluster.celery_config import executor_config

    return celery_executor.configured(executor_config(), name="celery")
