"""Celery settings of the profile, one definition for the executor (client) and the workers.

Faults: a task is acknowledged only after it ran (``task_acks_late``) and a task whose worker process
died is put back on the queue (``task_reject_on_worker_lost``), so a killed worker's step runs again on
another worker. Redis hands an unacknowledged message of a vanished worker to another one after
``RANGEBAR_CELERY_VISIBILITY_TIMEOUT`` seconds (default 3600): keep it above the longest step, or a
step still running is started a second time (harmless: a day's bars are replaced atomically, but it
wastes a worker). Each worker process runs one task and is replaced (``worker_max_tasks_per_child``):
the embedded chDB store is released only when its process exits.
"""

from __future__ import annotations

import os
from typing import Any, Final

__all__ = ["DEFAULT_BROKER", "backend_url", "broker_url", "celery_settings", "executor_config"]

DEFAULT_BROKER: Final = "redis://127.0.0.1:6379/0"
VISIBILITY_ENV: Final = "RANGEBAR_CELERY_VISIBILITY_TIMEOUT"


def broker_url() -> str:
    """The Celery broker: ``RANGEBAR_CELERY_BROKER``, else :data:`DEFAULT_BROKER`."""
    return os.environ.get("RANGEBAR_CELERY_BROKER") or DEFAULT_BROKER


def backend_url() -> str:
    """The Celery result backend: ``RANGEBAR_CELERY_BACKEND``, else the broker."""
    return os.environ.get("RANGEBAR_CELERY_BACKEND") or broker_url()


def celery_settings() -> dict[str, Any]:
    """Lower-case Celery settings (``app.conf``) of the workers and the executor."""
    visibility = int(os.environ.get(VISIBILITY_ENV) or 3600)
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": 1,
        "broker_connection_retry_on_startup": True,
        # Sweep for messages of vanished workers every 5 s (one small Redis scan).
        "broker_transport_options": {
            "visibility_timeout": visibility,
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
        },
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "result_expires": 24 * 3600,
        "task_default_queue": "dagster",
        "task_default_priority": 5,
    }


def executor_config() -> dict[str, Any]:
    """``celery_executor`` config: broker and backend from the environment, the shared settings."""
    return {
        "broker": {"env": "RANGEBAR_CELERY_BROKER"},
        "backend": {"env": "RANGEBAR_CELERY_BACKEND"},
        "config_source": celery_settings(),
        "retries": {"enabled": {}},
    }
