"""Sensors: newly published days at the sources, and a record of every failed run.

``new_days`` keeps a cursor (the last published day seen per series) and asks the source whether the
next day exists with one HEAD request per probe (Binance: the day's ``.CHECKSUM``; Exness: the
month's archive), at most ``sensor_max_requests`` per evaluation, visiting the series in rotation (the
cursor also keeps where the last evaluation stopped, so with fewer requests than series none starves).
Each new day becomes a run of ``ticks`` for that partition; range bars and feature tables follow by
declarative automation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.partitions import parse_partition_key, partition_key
from rangebar_pipeline.resources import DatasetStoreResource, TickStoreResource
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.ticks import TickStore

__all__ = [
    "HealPlan",
    "NewDays",
    "SourceProbe",
    "build_failure_sensor",
    "build_heal_gaps_sensor",
    "build_new_days_sensor",
    "find_new_days",
    "plan_heals",
    "read_cursor",
    "record_failure",
    "write_cursor",
]

Probe = Callable[[Series, date], bool]


class SourceProbe:
    """Is a day published at the source? Asks the series' source in ``store`` (one HEAD request
    through the sources' download client, or a file check for ``file://``) and counts the probes."""

    def __init__(self, store: TickStore) -> None:
        self.store = store
        self.requests = 0

    def url(self, series: Series, day: date) -> str:
        """The URL whose presence means ``day`` of ``series`` is published."""
        return self.store.source(series).probe_url(series, day)

    def __call__(self, series: Series, day: date) -> bool:
        self.requests += 1
        return self.store.source(series).published(series, day)


@dataclass
class NewDays:
    """The outcome of one :func:`find_new_days` evaluation."""

    found: list[tuple[Series, date]] = field(default_factory=list)
    cursor: dict[str, str] = field(default_factory=dict)
    probes: int = 0
    #: The series the next evaluation starts with (the one after the last series probed).
    resume: str | None = None


def find_new_days(
    series: Sequence[Series],
    cursor: dict[str, str],
    *,
    today: date,
    start_date: date,
    lookback_days: int,
    max_requests: int,
    probe: Probe,
    resume: str | None = None,
) -> NewDays:
    """Probe each series' days after its cursor (at most up to yesterday) until one is missing.

    A series without a cursor starts ``lookback_days`` before today (never before ``start_date``).
    At most ``max_requests`` probes are made in all. The series are visited in rotation: from
    ``resume`` (the series after the last one the previous evaluation probed; the first series if
    unknown), so when the budget is smaller than the work, every series still gets its turn.
    """
    order = list(series)
    keys = [item.key for item in order]
    first = keys.index(resume) if resume in keys else 0
    out = NewDays(cursor=dict(cursor), resume=resume if resume in keys else None)
    last_complete = today - timedelta(days=1)
    for offset in range(len(order)):
        if out.probes >= max_requests:
            break
        index = (first + offset) % len(order)
        item = order[index]
        seen = out.cursor.get(item.key)
        day = (
            date.fromisoformat(seen) + timedelta(days=1)
            if seen
            else max(start_date, today - timedelta(days=lookback_days))
        )
        if day > last_complete:
            continue
        out.resume = keys[(index + 1) % len(keys)]
        while day <= last_complete and out.probes < max_requests:
            out.probes += 1
            if not probe(item, day):
                break
            out.found.append((item, day))
            out.cursor[item.key] = day.isoformat()
            day += timedelta(days=1)
    return out


def read_cursor(text: str | None) -> tuple[dict[str, str], str | None]:
    """The sensor cursor: last published day per series and the series to resume with.

    Accepts the older flat ``{series: day}`` form (no resume point).
    """
    raw: dict[str, Any] = json.loads(text) if text else {}
    if "days" in raw and isinstance(raw["days"], dict):
        resume = raw.get("resume")
        return dict(raw["days"]), resume if isinstance(resume, str) else None
    return {str(k): str(v) for k, v in raw.items()}, None


def write_cursor(result: NewDays) -> str:
    """Inverse of :func:`read_cursor`."""
    return json.dumps({"days": result.cursor, "resume": result.resume}, sort_keys=True)


def build_new_days_sensor(
    pipeline: PipelineConfig, job: dg.UnresolvedAssetJobDefinition
) -> dg.SensorDefinition:
    """The ``new_days`` sensor requesting ``job`` (ticks) runs for newly published days."""

    @dg.sensor(
        name="new_days",
        job=job,
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Finds newly published days at Binance Vision / Exness (at most {pipeline.sensor_max_requests} "
            "HEAD requests per evaluation) and requests their ticks; bars follow automatically."
        ),
    )
    def new_days(context: dg.SensorEvaluationContext, tick_store: TickStoreResource) -> dg.SensorResult:
        cursor, resume = read_cursor(context.cursor)
        with tick_store.store() as store:
            result = find_new_days(
                pipeline.series,
                cursor,
                today=datetime.now(UTC).date(),
                start_date=pipeline.start_date,
                lookback_days=pipeline.sensor_lookback_days,
                max_requests=pipeline.sensor_max_requests,
                probe=SourceProbe(store),
                resume=resume,
            )
        requests_ = [
            dg.RunRequest(
                run_key=f"new_days:{partition_key(day, series)}",
                partition_key=partition_key(day, series),
                tags={"rangebar/trigger": "new_days_sensor"},
            )
            for series, day in result.found
        ]
        context.log.info(f"{result.probes} probe(s), {len(requests_)} new day(s)")
        return dg.SensorResult(
            run_requests=requests_,
            cursor=write_cursor(result),
            skip_reason=None if requests_ else f"no new days ({result.probes} probe(s))",
        )

    return new_days


def record_failure(path: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line to the failure log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True, default=str) + "\n")


def _error_message(event: dg.DagsterEvent) -> str:
    error = event.step_failure_data.error
    return "" if error is None else error.message.strip()


def build_failure_sensor() -> dg.SensorDefinition:
    """``record_failures``: every failed run of this code location, appended to ``failures.jsonl``."""

    @dg.run_failure_sensor(
        name="record_failures",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Records each failed run (job, partition, failed steps, error) in failures.jsonl",
    )
    def record_failures(context: dg.RunFailureSensorContext, datasets: DatasetStoreResource) -> None:
        run = context.dagster_run
        steps = [
            {"step": event.step_key, "error": _error_message(event)}
            for event in context.get_step_failure_events()
        ]
        entry = {
            "run_id": run.run_id,
            "job": run.job_name,
            "partition": run.tags.get("dagster/partition"),
            "partition_range": [
                run.tags.get("dagster/asset_partition_range_start"),
                run.tags.get("dagster/asset_partition_range_end"),
            ],
            "failed_steps": steps,
            "message": context.failure_event.message,
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        record_failure(datasets.store().failures_log(), entry)
        context.log.info(
            f"recorded failure of run {run.run_id} ({run.job_name}) in {datasets.store().failures_log()}"
        )

    return record_failures


# --- healing: re-fetch days whose ticks are missing at the day boundary --------------------------------


@dataclass
class HealPlan:
    """The outcome of one :func:`plan_heals` evaluation."""

    partitions: list[str] = field(default_factory=list)
    cursor: dict[str, Any] = field(default_factory=dict)


def plan_heals(
    failed: Iterable[tuple[str, int, str | None, int]],
    cursor: dict[str, Any],
    *,
    oldest_day: date,
    max_attempts: int,
) -> HealPlan:
    """Partitions to re-fetch from failed continuity evaluations ``(check, id, partition, gap)``.

    Only evaluations newer than the cursor's id for their check, inside the window (day >=
    ``oldest_day``) and with a day-boundary id gap count; each partition is re-fetched at most
    ``max_attempts`` times (a gap that is really in the source stays reported, not retried forever).
    """
    seen: dict[str, int] = dict(cursor.get("seen", {}))
    attempts: dict[str, int] = dict(cursor.get("attempts", {}))
    plan: list[str] = []
    for check, record_id, partition, gap in sorted(failed, key=lambda f: f[1]):
        if record_id <= seen.get(check, 0):
            continue
        seen[check] = record_id
        if partition is None or not gap or partition in plan:
            continue
        day, _ = parse_partition_key(partition)
        if day < oldest_day or attempts.get(partition, 0) >= max_attempts:
            continue
        attempts[partition] = attempts.get(partition, 0) + 1
        plan.append(partition)
    return HealPlan(plan, {"seen": seen, "attempts": attempts})


def build_heal_gaps_sensor(
    pipeline: PipelineConfig,
    job: dg.UnresolvedAssetJobDefinition,
    *,
    max_attempts: int = 2,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dg.SensorDefinition:
    """``heal_gaps``: a day whose ticks miss ids at the day boundary is re-fetched and recomputed."""
    checks = [dg.AssetCheckKey(dg.AssetKey(f"range_bars_{t}"), "continuity") for t in pipeline.thresholds]

    @dg.sensor(
        name="heal_gaps",
        job=job,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Re-fetches (force) and recomputes a day whose continuity check found trade ids missing at "
            f"the day boundary, within the last {pipeline.automation_lookback_days} days, at most "
            f"{max_attempts} times per day."
        ),
    )
    def heal_gaps(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
        storage = context.instance.event_log_storage
        failed: list[tuple[str, int, str | None, int]] = []
        for key in checks:
            for record in storage.get_asset_check_execution_history(
                key, limit=200, status={AssetCheckExecutionRecordStatus.FAILED}
            ):
                failed.append((key.to_user_string(), record.id, record.partition, _boundary_gap(record)))
        oldest = clock().date() - timedelta(days=pipeline.automation_lookback_days)
        plan = plan_heals(failed, cursor, oldest_day=oldest, max_attempts=max_attempts)
        requests_ = [
            dg.RunRequest(
                run_key=f"heal_gaps:{partition}:{plan.cursor['attempts'][partition]}",
                partition_key=partition,
                run_config={"ops": {"ticks": {"config": {"force": True}}}},
                tags={"rangebar/trigger": "heal_gaps"},
            )
            for partition in plan.partitions
        ]
        return dg.SensorResult(
            run_requests=requests_,
            cursor=json.dumps(plan.cursor, sort_keys=True),
            skip_reason=None if requests_ else "no day-boundary gaps to heal",
        )

    return heal_gaps


def _boundary_gap(record: Any) -> int:
    """The ``boundary_id_gap`` metadata of a failed continuity evaluation (0 when absent)."""
    event = record.event.dagster_event if record.event is not None else None
    evaluation = getattr(event, "event_specific_data", None) if event is not None else None
    value = getattr(evaluation, "metadata", {}).get("boundary_id_gap")
    return int(value.value) if value is not None else 0
