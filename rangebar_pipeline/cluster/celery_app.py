"""The Celery app of the workers (``celery -A rangebar_pipeline.cluster.celery_app worker``).

It is dagster-celery's app (the same ``execute_plan`` task the ``celery_executor`` sends) with the
profile's settings (:mod:`~rangebar_pipeline.cluster.celery_config`). Before the worker accepts
anything it refuses to start on a multi-host profile without a ClickHouse server DSN, and it imports
the code location once, so the per-task worker processes forked from it start warm.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from rangebar_pipeline.cluster.celery_config import backend_url, broker_url, celery_settings
from rangebar_pipeline.cluster.profile import require_server_dsn

__all__ = ["app", "execute_plan"]

require_server_dsn()  # at import: a worker of a multi-host profile without a server DSN does not start
app = make_app({"broker": broker_url(), "backend": backend_url(), "include": []})  # type: ignore[no-untyped-call]
app.conf.update(celery_settings())
execute_plan = create_task(app)  # type: ignore[no-untyped-call]


@worker_init.connect  # type: ignore[untyped-decorator]
def _preload(**_: Any) -> None:
    """Import the code location in the worker's main process (Celery logs, never raises, failures)."""
    import rangebar_pipeline.definitions  # noqa: F401  (warm import inherited by forked task processes)
