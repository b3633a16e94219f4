"""The Dagster code location: ``defs``, loaded by ``dagster dev -w workspace.yaml`` or ``-m``.

Everything is built from the pipeline config (``RANGEBAR_PIPELINE_CONFIG`` or the packaged
``pipeline.yaml``) and bound to resources configured from environment variables.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from rangebar_pipeline.assets import TICKS_KEY, build_assets
from rangebar_pipeline.cluster.profile import cluster_executor
from rangebar_pipeline.config import PipelineConfig, load_config
from rangebar_pipeline.resources import default_resources
from rangebar_pipeline.sensors import (
    build_daily_schedule,
    build_failure_sensor,
    build_heal_gaps_sensor,
    build_new_days_sensor,
)

__all__ = ["AUTOMATION_RUN_TAGS", "build_definitions", "defs"]

#: Runs launched by the automation are retried (from the failed step) up to twice by Dagster's run
#: retry daemon (``run_retries: enabled`` in deploy/dagster.yaml): transient failures heal by themselves.
AUTOMATION_RUN_TAGS: dict[str, str] = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"}


def build_definitions(
    pipeline: PipelineConfig | None = None, *, resources: dict[str, Any] | None = None
) -> dg.Definitions:
    """The code location for ``pipeline`` (default: :func:`~rangebar_pipeline.config.load_config`)."""
    pipeline = pipeline or load_config()
    assets = build_assets(pipeline)
    daily_job = dg.define_asset_job(
        "rangebar_daily",
        selection=dg.AssetSelection.assets(TICKS_KEY, *assets.range_bars.values(), *assets.features.values()),
        description="Ticks, range bars and feature tables of partitions (date x series).",
    )
    ticks_job = dg.define_asset_job(
        "ticks_only",
        selection=dg.AssetSelection.assets(TICKS_KEY),
        description="Download and store ticks; bars and features follow by automation.",
    )
    datasets_job = dg.define_asset_job(
        "rangebar_datasets",
        selection=dg.AssetSelection.groups("datasets", "ml_consumers"),
        description="ML datasets and the example model of series partitions (after their feature tables).",
    )
    freshness_job = dg.define_asset_job(
        "freshness_checks",
        selection=dg.AssetSelection.checks(*assets.freshness_checks),
        description="Freshness of the latest partitions of ticks and range bars.",
    )
    return dg.Definitions(
        assets=assets.all_assets,
        asset_checks=assets.checks,
        jobs=[daily_job, ticks_job, datasets_job, freshness_job],
        schedules=[
            build_daily_schedule(pipeline, daily_job),
            dg.ScheduleDefinition(
                name="hourly_freshness",
                job=freshness_job,
                cron_schedule="15 * * * *",
                execution_timezone="UTC",
                default_status=dg.DefaultScheduleStatus.STOPPED,
            ),
        ],
        sensors=[
            build_new_days_sensor(pipeline, ticks_job),
            build_heal_gaps_sensor(pipeline, daily_job),
            build_failure_sensor(),
            dg.AutomationConditionSensorDefinition(
                "rangebar_automation",
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                description="Bars follow ticks, feature tables follow bars (declarative automation).",
                run_tags=AUTOMATION_RUN_TAGS,
            ),
        ],
        resources=resources if resources is not None else default_resources(),
        executor=cluster_executor(),  # Celery with RANGEBAR_EXECUTOR=celery (deploy/cluster/), else default
    )


defs = build_definitions()
