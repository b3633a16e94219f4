"""Schedules and sensors of the pipeline: daily runs, newly published days, failed runs."""

from __future__ import annotations

from rangebar_pipeline.sensors.schedules import build_daily_schedule
from rangebar_pipeline.sensors.sensors import (
    NewDays,
    SourceProbe,
    build_failure_sensor,
    build_heal_gaps_sensor,
    build_new_days_sensor,
    find_new_days,
    plan_heals,
    read_cursor,
    record_failure,
    write_cursor,
)

__all__ = [
    "NewDays",
    "SourceProbe",
    "build_daily_schedule",
    "build_failure_sensor",
    "build_heal_gaps_sensor",
    "build_new_days_sensor",
    "find_new_days",
    "plan_heals",
    "read_cursor",
    "record_failure",
    "write_cursor",
]
