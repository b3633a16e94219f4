"""The daily schedule: yesterday's partitions of every series (ticks, bars, feature tables)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta

import dagster as dg

from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.partitions import partition_key

__all__ = ["build_daily_schedule"]


def build_daily_schedule(
    pipeline: PipelineConfig, job: dg.UnresolvedAssetJobDefinition
) -> dg.ScheduleDefinition:
    """Every day at ``schedule_cron`` (UTC): one run per series for the previous UTC day."""

    @dg.schedule(
        name="daily_yesterday",
        cron_schedule=pipeline.schedule_cron,
        execution_timezone="UTC",
        job=job,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Materializes yesterday's ticks, range bars and feature tables of every series.",
    )
    def daily_yesterday(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest | dg.SkipReason]:
        day = context.scheduled_execution_time.astimezone(UTC).date() - timedelta(days=1)
        if day < pipeline.start_date:
            yield dg.SkipReason(f"{day} is before the configured start date {pipeline.start_date}")
            return
        for series in pipeline.series:
            key = partition_key(day, series)
            yield dg.RunRequest(run_key=key, partition_key=key, tags={"rangebar/trigger": "daily_schedule"})

    return daily_yesterday
