"""Checks of the bars per (series, day) partition, and freshness of the latest partitions.

- ``tier1`` (blocking): a day's bars satisfy every bar invariant and conserve the day's ticks
  exactly (with the bar carried in from the previous day and the unfinished bar carried out). A
  failed day gets no feature table; other days are unaffected.
- ``continuity``: the first bar of day D follows day D-1's last bar (trade ids and times).
- ``freshness``: every day each series' source has published up to the deadline is materialized.

The bar checks run inside the bar step on the bars and ticks it has in memory and are recorded per
partition (:meth:`DayCheck.evaluation`).
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at runtime.

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl

from rangebar_pipeline.assets._common import markdown_table
from rangebar_pipeline.assets.features import MAX_TIER2_BARS, GateVerdict, Tier2Verdict, features_key
from rangebar_pipeline.assets.provenance import Version
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.engine import ThresholdDay
from rangebar_pipeline.options import DEFAULT_OPTIONS, BarOptions
from rangebar_pipeline.partitions import parse_partition_key, partition_key
from rangebar_pipeline.resources import TickStoreResource
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources.base import source_type
from rangebar_pipeline.storage.ticks import TickStore
from rangebar_pipeline.validation import (
    ConservationTicks,
    validate_conservation,
    validate_continuity,
    validate_tier1,
)

__all__ = [
    "DayCheck",
    "FreshnessVerdict",
    "build_freshness_check",
    "continuity_day",
    "expected_latest_day",
    "freshness_of",
    "freshness_outcome",
    "freshness_verdict",
    "tier1_day",
]


@dataclass(frozen=True, slots=True)
class DayCheck:
    """The outcome of one check on one (series, day) partition of one asset."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any]

    def evaluation(
        self,
        asset: dg.AssetKey,
        partition: str,
        *,
        blocking: bool,
        severity: dg.AssetCheckSeverity,
        target: Version | None,
    ) -> dg.AssetCheckEvaluation:
        """This outcome as a Dagster evaluation of ``asset``'s check for ``partition``, linked to
        ``target``, the materialization it judged (the partition's check status counts only then)."""
        return dg.AssetCheckEvaluation(
            asset_key=asset,
            check_name=self.name,
            passed=self.passed,
            metadata=self.metadata,
            severity=severity,
            description=self.description[:2000],
            blocking=blocking,
            partition=partition,
            target_materialization_data=target.target if target is not None else None,
        )


def tier1_day(
    series: Series,
    item: ThresholdDay,
    day: date,
    ticks: ConservationTicks,
    options: BarOptions = DEFAULT_OPTIONS,
) -> DayCheck:
    """Tier 1 invariants and exact tick conservation of one day's bars (with the bars carried in/out)."""
    label = partition_key(day, series)
    tier1 = validate_tier1(
        item.bars,
        threshold_decimal_bps=item.threshold,
        same_timestamp_gate=options.same_timestamp_gate,
        min_duration_us=options.min_duration_us,
    )
    conservation = validate_conservation(
        item.bars, ticks, incomplete_bar=item.incomplete, carried_in=item.carried_in
    )
    details = [
        f"{check.name}: {check.detail}"
        for result in (tier1, conservation)
        for check in result.checks
        if check.blocking and check.status == "failed"
    ]
    passed = tier1.passed and conservation.passed
    return DayCheck(
        "tier1",
        passed,
        f"{label}: {item.bars.height} bars pass tier 1 and conserve {ticks.height} ticks"
        if passed
        else f"{label} tier1 failed: " + "; ".join(details[:5]),
        {
            "bars": item.bars.height,
            "ticks": ticks.height,
            "carried_in_bar": item.carried_in is not None,
            "incomplete_bar_out": item.incomplete is not None,
            "failures": dg.MetadataValue.md("\n".join(f"- {d}" for d in details) or "(none)"),
        },
    )


def continuity_day(
    series: Series,
    day: date,
    threshold: int,
    bars: pl.DataFrame,
    previous: pl.DataFrame | None,
    *,
    tick_ids: tuple[int | None, int | None] = (None, None),
) -> DayCheck:
    """The day's first bar follows the previous day's last bar; ids and times ordered within the day.

    ``tick_ids`` = (the previous day's last tick id, this day's first tick id): for Binance, agg ids
    run on across days, so a jump between them means ticks are missing at the day boundary (a
    truncated download) even when every bar is internally consistent. Such a failure carries
    ``boundary_id_gap`` in its metadata, which the ``heal_gaps`` sensor answers with a re-fetch.
    """
    label = partition_key(day, series)
    contiguous = source_type(series).contiguous_ids  # Exness ids are synthetic (timestamp x 1000 + rank)
    result = validate_continuity(
        bars,
        threshold_decimal_bps=threshold,
        previous_bar=previous.tail(1) if previous is not None and previous.height else None,
        check_ids=contiguous,
    )
    broken = [d for d in result.discontinuities if d.kind != "price_gap"]
    gaps = [d for d in result.discontinuities if d.kind == "price_gap"]
    details = [f"bar {d.bar_index} {d.kind}: {d.detail}" for d in broken]
    last_before, first = tick_ids
    missing = 0 if not contiguous or last_before is None or first is None else first - last_before - 1
    if missing:
        details.insert(
            0,
            f"day boundary: the previous day's last tick is agg id {last_before}, this day's first is "
            f"{first} ({missing:+d} ids): ticks are missing at the boundary (re-fetch the day)",
        )
    passed = not details
    return DayCheck(
        "continuity",
        passed,
        f"{label}: {bars.height} bars continuous" if passed else f"{label}: " + "; ".join(details[:5]),
        {
            "bars": bars.height,
            "previous_day_bar": previous is not None and previous.height > 0,
            "broken_junctions": len(broken),
            "price_gaps_over_threshold": len(gaps),
            "boundary_id_gap": missing,
            "failures": dg.MetadataValue.md("\n".join(f"- {d}" for d in details) or "(none)"),
        },
    )


# --- freshness -------------------------------------------------------------------------------------


def expected_latest_day(now: datetime, deadline_hours: int) -> date:
    """The latest day that must be materialized at ``now``: yesterday once the deadline has passed."""
    now = now.astimezone(UTC)
    today = now.date()
    deadline = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(hours=deadline_hours)
    return today - timedelta(days=1 if now >= deadline else 2)


#: Is a day published at the source? (The new-days probe: one HEAD request, or a file check.)
Probe = Callable[[Series, date], bool]


@dataclass(frozen=True, slots=True)
class FreshnessVerdict:
    """Which series lack a day the source has published by the deadline.

    ``overdue`` maps a series key to (its latest materialized day, the first published day after it
    that is not materialized).
    """

    expected_day: date
    overdue: dict[str, tuple[date | None, date]]
    #: The newest day known to be materialized per series (None: never).
    latest: dict[str, date | None]
    probes: int = 0

    @property
    def passed(self) -> bool:
        return not self.overdue


def freshness_verdict(
    materialized: Iterable[str],
    series: Sequence[Series],
    expected_day: date,
    *,
    first_day: Callable[[Series], date],
    probe: Probe,
) -> FreshnessVerdict:
    """Is everything the source published up to ``expected_day`` materialized, per series?

    A series is fresh when its next day (the day after its latest materialized one, or its first
    day) is after ``expected_day`` or not published at the source: one probe per series at most, so
    old fixtures or a source that stopped publishing are fresh, and a published day not yet
    materialized is overdue.
    """
    latest: dict[str, date] = {}
    for key in materialized:
        day, item = parse_partition_key(key)
        latest[item.key] = max(day, latest.get(item.key, day))
    overdue: dict[str, tuple[date | None, date]] = {}
    probes = 0
    for item in series:
        last = latest.get(item.key)
        following = last + timedelta(days=1) if last is not None else first_day(item)
        if following > expected_day:
            continue
        probes += 1
        if probe(item, following):
            overdue[item.key] = (last, following)
    return FreshnessVerdict(expected_day, overdue, {s.key: latest.get(s.key) for s in series}, probes)


def freshness_outcome(verdict: FreshnessVerdict) -> tuple[bool, str, dict[str, Any]]:
    """(passed, description, metadata) of a freshness verdict."""
    rows: list[Mapping[str, Any]] = [
        {"series": k, "latest_day": str(last) if last else "never", "published_not_materialized": str(day)}
        for k, (last, day) in verdict.overdue.items()
    ]
    latest = ", ".join(f"{k} {v or 'none'}" for k, v in verdict.latest.items())
    description = (
        f"every series has every day its source published up to {verdict.expected_day} (latest: {latest})"
        if verdict.passed
        else f"{len(rows)} series overdue: "
        + ", ".join(
            f"{r['series']} (latest {r['latest_day']}; {r['published_not_materialized']} is published)"
            for r in rows
        )
    )
    return (
        verdict.passed,
        description[:2000],
        {
            "expected_day": str(verdict.expected_day),
            "overdue_series": len(rows),
            "source_probes": verdict.probes,
            "overdue": dg.MetadataValue.md(markdown_table(rows)),
        },
    )


def freshness_of(
    pipeline: PipelineConfig,
    instance: dg.DagsterInstance,
    asset: dg.AssetKey,
    ticks: TickStore,
    now: datetime | None = None,
) -> FreshnessVerdict:
    """The freshness of ``asset``'s partitions against what each series' source has published."""
    return freshness_verdict(
        instance.get_materialized_partitions(asset),
        pipeline.series,
        expected_latest_day(now or datetime.now(UTC), pipeline.freshness_deadline_hours),
        first_day=pipeline.first_day,
        probe=lambda series, day: ticks.source(series).published(series, day),
    )


def freshness_description(pipeline: PipelineConfig) -> str:
    return (
        "Everything each series' source has published is materialized: the day after the latest "
        "materialized one is not published yet (one probe per series), or is after the deadline "
        f"(yesterday from {pipeline.freshness_deadline_hours} h after UTC midnight)."
    )


def build_freshness_check(pipeline: PipelineConfig, asset: dg.AssetKey) -> dg.AssetChecksDefinition:
    """A ``freshness`` check of ``asset`` (non-blocking, WARN)."""

    @dg.asset_check(asset=asset, name="freshness", description=freshness_description(pipeline))
    def freshness(
        context: dg.AssetCheckExecutionContext, tick_store: TickStoreResource
    ) -> dg.AssetCheckResult:
        verdict = freshness_of(pipeline, context.instance, asset, tick_store.store())
        passed, description, metadata = freshness_outcome(verdict)
        return dg.AssetCheckResult(
            passed=passed, severity=dg.AssetCheckSeverity.WARN, description=description, metadata=metadata
        )

    return freshness


# --- evaluations the bar step yields (per run) -------------------------------------------------


def freshness_evaluations(
    instance: dg.DagsterInstance, pipeline: PipelineConfig, assets: Iterable[dg.AssetKey], ticks: TickStore
) -> Iterator[dg.AssetCheckEvaluation]:
    """The ``freshness`` check of each of ``assets``, each naming the asset's latest materialization."""
    for asset in assets:
        passed, description, metadata = freshness_outcome(freshness_of(pipeline, instance, asset, ticks))
        latest = instance.fetch_materializations(asset, limit=1).records
        yield dg.AssetCheckEvaluation(
            asset_key=asset,
            check_name="freshness",
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=description,
            metadata=metadata,
            target_materialization_data=(
                Version(latest[0].storage_id, "", latest[0].run_id, latest[0].timestamp).target
                if latest
                else None
            ),
        )


def tier2_evaluation(
    threshold: int,
    series: Series,
    first: date,
    last: date,
    verdict: Tier2Verdict,
    *,
    target: Version | None,
) -> dg.AssetCheckEvaluation:
    """The range's tier-2 evaluation of ``features_{threshold}`` (``verdict``: :func:`tier2_verdict`)."""
    passed, description, meta = verdict
    return dg.AssetCheckEvaluation(
        asset_key=features_key(threshold),
        check_name="tier2",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{series} {first}..{last}, the last {MAX_TIER2_BARS} bars at most: {description}",
        metadata={**meta, "series": series.key, "first_day": str(first), "last_day": str(last)},
        target_materialization_data=target.target if target is not None else None,
    )


def gate_evaluation(
    asset: dg.AssetKey, label: str, verdict: GateVerdict, target: Version | None
) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=asset,
        check_name="expectations",
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        blocking=True,
        partition=label,
        description=(
            f"{label}: great-expectations suite passed ({verdict.evaluated} expectations)"
            if verdict.passed
            else f"{label}: " + "; ".join(verdict.failures[:5])
        )[:2000],
        metadata={
            "evaluated": verdict.evaluated,
            "failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in verdict.failures) or "(none)"),
            "promoted": verdict.passed,
        },
        target_materialization_data=target.target if target is not None else None,
    )
