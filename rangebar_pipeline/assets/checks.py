"""Asset checks of the stored bars (validation library) and freshness of the latest partitions.

- ``tier1`` (blocking): the stored bars of each partition satisfy every bar invariant and conserve
  the partition's ticks exactly (with the bar carried in from the previous day and the unfinished
  bar carried out). A failure stops the downstream feature tables in the same run.
- ``continuity``: the first bar of day D follows day D-1's last bar (trade ids and times).
- ``freshness``: every series has yesterday's partition once the daily deadline has passed.
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at runtime.

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from rangebar_pipeline.assets._common import markdown_table, run_partition_keys
from rangebar_pipeline.assets.bars import range_bars_key
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.partitions import days_by_series, parse_partition_key, partition_key
from rangebar_pipeline.processing import RangeBarProcessor
from rangebar_pipeline.resources import BAR_STORE_POOL, BarStoreResource, TickStoreResource
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.ticks import TickStore
from rangebar_pipeline.validation import validate_conservation, validate_continuity, validate_tier1

__all__ = [
    "FreshnessVerdict",
    "build_bar_checks",
    "build_freshness_check",
    "expected_latest_day",
    "freshness_verdict",
]


def _incomplete(store: BarStore, series: Series, threshold: int, day: date) -> dict[str, Any] | None:
    checkpoint = store.checkpoint_for(series, threshold, day)
    return None if checkpoint is None else RangeBarProcessor.from_checkpoint(checkpoint).incomplete_bar()


def _tier1_partition(
    store: BarStore, ticks: TickStore, series: Series, threshold: int, day: date
) -> tuple[bool, dict[str, Any], list[str]]:
    """Tier 1 and tick conservation of one stored partition: passed, summary row, failure details."""
    label = partition_key(day, series)
    record = store.coverage(series, threshold, day, day).get(day)
    if record is None:
        return False, {"partition": label, "bars": 0, "passed": False}, [f"{label}: no stored bars"]
    bars = store.read_bars(series, threshold, day, day)
    tier1 = validate_tier1(bars, threshold_decimal_bps=threshold)
    day_ticks = ticks.read_day(series.source, series.market, series.symbol, day)
    carried_in = (
        None if record.fresh_start else _incomplete(store, series, threshold, day - timedelta(days=1))
    )
    conservation = validate_conservation(
        bars, day_ticks, incomplete_bar=_incomplete(store, series, threshold, day), carried_in=carried_in
    )
    details = [
        f"{label} {check.name}: {check.detail}"
        for result in (tier1, conservation)
        for check in result.checks
        if check.blocking and check.status == "failed"
    ]
    passed = tier1.passed and conservation.passed
    row = {
        "partition": label,
        "bars": bars.height,
        "ticks": day_ticks.height,
        "passed": passed,
        "failures": ", ".join(tier1.failures + conservation.failures),
    }
    return passed, row, details


def _continuity_partition(
    store: BarStore, series: Series, threshold: int, day: date
) -> tuple[bool, dict[str, Any], list[str]]:
    label = partition_key(day, series)
    bars = store.read_bars(series, threshold, day, day)
    previous = store.read_bars(series, threshold, day - timedelta(days=1), day - timedelta(days=1))
    result = validate_continuity(
        bars,
        threshold_decimal_bps=threshold,
        previous_bar=previous.tail(1) if previous.height else None,
        check_ids=series.source == "binance",  # Exness ids are synthetic (timestamp x 1000 + rank)
    )
    broken = [d for d in result.discontinuities if d.kind != "price_gap"]
    gaps = [d for d in result.discontinuities if d.kind == "price_gap"]
    details = [f"{label} bar {d.bar_index} {d.kind}: {d.detail}" for d in broken]
    row = {
        "partition": label,
        "bars": bars.height,
        "previous_day_bar": previous.height > 0,
        "broken_junctions": len(broken),
        "price_gaps_over_threshold": len(gaps),
    }
    return not broken, row, details


def _check_partitions(context: dg.AssetCheckExecutionContext, asset: dg.AssetKey) -> dict[Series, list[date]]:
    keys = run_partition_keys(context.op_execution_context)
    if not keys:  # run without a partition: check the latest materialized partition of each series
        materialized = context.instance.get_materialized_partitions(asset)
        latest: dict[Series, date] = {}
        for key in materialized:
            day, series = parse_partition_key(key)
            latest[series] = max(day, latest.get(series, day))
        return {series: [day] for series, day in latest.items()}
    return days_by_series(keys)


def _result(passed: bool, rows: list[dict[str, Any]], details: list[str], what: str) -> dg.AssetCheckResult:
    description = (
        f"{what}: {len(rows)} partition(s) passed"
        if passed
        else f"{what} failed: "
        + "; ".join(details[:5])
        + (f" (+{len(details) - 5} more)" if len(details) > 5 else "")
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description[:2000],
        metadata={
            "partitions_checked": len(rows),
            "per_partition": dg.MetadataValue.md(markdown_table(rows)),
            "failures": dg.MetadataValue.md("\n".join(f"- {d}" for d in details) or "(none)"),
        },
    )


def build_bar_checks(pipeline: PipelineConfig, threshold: int) -> list[dg.AssetChecksDefinition]:
    """The ``tier1`` (blocking) and ``continuity`` checks of ``range_bars_{threshold}``."""
    asset = range_bars_key(threshold)

    @dg.asset_check(
        asset=asset,
        name="tier1",
        blocking=True,
        pool=BAR_STORE_POOL,
        description=(
            "Blocking: every stored bar of the partition passes tier-1 validation (finite values, OHLC, "
            "breach rule, counts, bounded features, order) and the bars conserve the partition's ticks "
            "exactly. Failure stops the feature tables."
        ),
    )
    def tier1(
        context: dg.AssetCheckExecutionContext, tick_store: TickStoreResource, bar_store: BarStoreResource
    ) -> dg.AssetCheckResult:
        ticks = tick_store.store()
        with bar_store.open() as store:
            passed, rows, details = _check_each(
                context, asset, lambda series, day: _tier1_partition(store, ticks, series, threshold, day)
            )
        return _result(
            passed and bool(rows), rows, details or (["no partition to check"] if not rows else []), "tier1"
        )

    @dg.asset_check(
        asset=asset,
        name="continuity",
        pool=BAR_STORE_POOL,
        description=(
            "The first bar of day D opens at the first trade after day D-1's last close: trade ids "
            "contiguous (Binance) and times ordered across the day boundary and within the day."
        ),
    )
    def continuity(
        context: dg.AssetCheckExecutionContext, bar_store: BarStoreResource
    ) -> dg.AssetCheckResult:
        with bar_store.open() as store:
            passed, rows, details = _check_each(
                context, asset, lambda series, day: _continuity_partition(store, series, threshold, day)
            )
        return _result(passed, rows, details, "continuity")

    return [tier1, continuity]


def _check_each(
    context: dg.AssetCheckExecutionContext,
    asset: dg.AssetKey,
    check: Callable[[Series, date], tuple[bool, dict[str, Any], list[str]]],
) -> tuple[bool, list[dict[str, Any]], list[str]]:
    """Run ``check`` on every (series, day) of the checked partitions: (all passed, rows, problems)."""
    rows: list[dict[str, Any]] = []
    details: list[str] = []
    passed = True
    for series, days in _check_partitions(context, asset).items():
        for day in days:
            ok, row, problems = check(series, day)
            passed &= ok
            rows.append(row)
            details.extend(problems)
    return passed, rows, details


# --- freshness -------------------------------------------------------------------------------------


def expected_latest_day(now: datetime, deadline_hours: int) -> date:
    """The latest day that must be materialized at ``now``: yesterday once the deadline has passed."""
    now = now.astimezone(UTC)
    today = now.date()
    deadline = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(hours=deadline_hours)
    return today - timedelta(days=1 if now >= deadline else 2)


@dataclass(frozen=True, slots=True)
class FreshnessVerdict:
    """Which series lack the expected latest partition (with their latest materialized day)."""

    expected_day: date
    overdue: dict[str, date | None]

    @property
    def passed(self) -> bool:
        return not self.overdue


def freshness_verdict(
    materialized: Iterable[str], series_keys: Iterable[str], expected_day: date, start_date: date
) -> FreshnessVerdict:
    """Compare materialized partition keys with the expected latest day of every series."""
    latest: dict[str, date] = {}
    for key in materialized:
        day, series = parse_partition_key(key)
        latest[series.key] = max(day, latest.get(series.key, day))
    if expected_day < start_date:
        return FreshnessVerdict(expected_day, {})
    overdue = {k: latest.get(k) for k in series_keys if latest.get(k) is None or latest[k] < expected_day}
    return FreshnessVerdict(expected_day, overdue)


def build_freshness_check(pipeline: PipelineConfig, asset: dg.AssetKey) -> dg.AssetChecksDefinition:
    """A ``freshness`` check of ``asset`` (non-blocking, WARN)."""

    @dg.asset_check(
        asset=asset,
        name="freshness",
        description=(
            f"Every series has yesterday's partition {pipeline.freshness_deadline_hours} h after UTC "
            "midnight (the day before yesterday until then)."
        ),
    )
    def freshness(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        verdict = freshness_verdict(
            context.instance.get_materialized_partitions(asset),
            pipeline.series_keys,
            expected_latest_day(datetime.now(UTC), pipeline.freshness_deadline_hours),
            pipeline.start_date,
        )
        return _freshness_result(verdict)

    return freshness


def _freshness_result(verdict: FreshnessVerdict) -> dg.AssetCheckResult:
    rows: list[Mapping[str, Any]] = [
        {"series": k, "latest_day": str(v) if v else "never", "expected": str(verdict.expected_day)}
        for k, v in verdict.overdue.items()
    ]
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"every series has {verdict.expected_day}"
            if verdict.passed
            else f"{len(rows)} series overdue (expected {verdict.expected_day}): "
            + ", ".join(f"{r['series']} (latest {r['latest_day']})" for r in rows)
        ),
        metadata={
            "expected_day": str(verdict.expected_day),
            "overdue_series": len(rows),
            "overdue": dg.MetadataValue.md(markdown_table(rows)),
        },
    )
