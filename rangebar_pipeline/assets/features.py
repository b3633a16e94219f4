"""Feature tables: the validated, ML-ready rows of a partition (bars and features) in Delta tables.

Rows are a day's bars with the feature groups of the pipeline config (the 10 microstructure
features by default, the lookback and intra groups when on), keyed by series and threshold. Labels
are not stored: they need the following days' bars, so the dataset level computes them across days
(:mod:`rangebar_pipeline.labels`, ``ml_dataset_{thr}``).

The feature/dataset store (:class:`~rangebar_pipeline.storage.datasets.DatasetStore`) commits a day
into the threshold's Delta table only once its blocking great-expectations gate passed; a rejection
is recorded in the commit info. The gate runs one great-expectations validation per batch of tables
(days x thresholds) and goes table by table only when the batch fails, so its cost is not paid per
day.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any, Final, cast

import dagster as dg
import polars as pl

from rangebar_pipeline.assets._common import column_schema
from rangebar_pipeline.assets.provenance import Version
from rangebar_pipeline.labels import forward_returns
from rangebar_pipeline.manifest import Group, columns_of
from rangebar_pipeline.partitions import partition_key
from rangebar_pipeline.schema import SCHEMA_VERSION
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import KERNEL_VERSION
from rangebar_pipeline.storage.datasets import DatasetStore, DayTable, FeatureCommit
from rangebar_pipeline.validation.expectations import REQUIRED_COLUMNS
from rangebar_pipeline.validation.worker import validate_expectations, validate_tier2

__all__ = [
    "KEY_COLUMNS",
    "MAX_TIER2_BARS",
    "MIN_TIER2_BARS",
    "UNGATED",
    "CommitGroup",
    "FeatureDay",
    "GateVerdict",
    "Tier2Verdict",
    "feature_metadata",
    "feature_table",
    "features_key",
    "gate_tables",
    "gate_verdicts",
    "keep_recent",
    "publish_after_gate",
    "publish_days",
    "publish_groups",
    "rejections",
    "required_columns",
    "tier2_verdict",
    "withdrawn_observation",
]

#: A tier-2 outcome: passed, its description and its metadata.
Tier2Verdict = tuple[bool, str, dict[str, Any]]
#: Columns identifying the series in a feature table (they join the uniqueness key).
KEY_COLUMNS: Final = ("source", "market", "symbol", "threshold_decimal_bps")
#: Below this many bars the tier-2 statistics are not meaningful (reported as a warning).
MIN_TIER2_BARS: Final = 30
#: Tier-2 statistics use at most the most recent this many bars of a batch (their cost grows with rows).
MAX_TIER2_BARS: Final = 5_000


def features_key(threshold: int) -> dg.AssetKey:
    """``features_{threshold}``."""
    return dg.AssetKey(f"features_{threshold}")


def feature_table(
    bars: pl.DataFrame,
    series: Series,
    threshold: int,
    horizons: tuple[int, ...] = (),
    *,
    groups: Sequence[str] = ("core", "microstructure"),
) -> pl.DataFrame:
    """Key columns + the bar columns of ``groups`` (plus any source-specific ones, e.g. Exness
    spreads); with ``horizons``, also ``fwd_return_{h}`` labels within this frame only (the pipeline
    stores none: the datasets label across days)."""
    optional: tuple[Group, ...] = ("microstructure", "lookback", "intra")
    dropped = {c.name for group in optional if group not in groups for c in columns_of(group)}
    keys = [
        pl.lit(series.source).alias("source"),
        pl.lit(series.market).alias("market"),
        pl.lit(series.symbol).alias("symbol"),
        pl.lit(threshold, pl.Int64).alias("threshold_decimal_bps"),
    ]
    columns = [pl.col(c) for c in bars.columns if c not in dropped]
    table = bars.select(*keys, *columns)
    return forward_returns(table, horizons) if horizons else table


def required_columns(groups: Sequence[str]) -> tuple[str, ...]:
    """Columns the expectations gate requires in a feature table of ``groups``."""
    optional: tuple[Group, ...] = ("microstructure", "lookback", "intra")
    chosen = [g for g in optional if g in groups]
    wanted = {c.name for c in columns_of("core", *chosen)}
    opt_in_groups: tuple[Group, ...] = ("lookback", "intra")
    opt_in = [c.name for c in columns_of(*(g for g in opt_in_groups if g in groups))]
    return (*(c for c in REQUIRED_COLUMNS if c in wanted), *opt_in)


@dataclass(frozen=True, slots=True)
class FeatureDay:
    """One (series, threshold, day) feature table on its way to promotion."""

    series: Series
    threshold: int
    day: date
    table: pl.DataFrame


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """The expectations gate of one feature table (:func:`validate_expectations`)."""

    passed: bool
    evaluated: int
    failures: tuple[str, ...]


#: The verdict of a table whose gate was not selected in the run (promoted as is).
UNGATED: Final = GateVerdict(passed=True, evaluated=0, failures=())


def gate_tables(
    days: Sequence[FeatureDay], groups: Sequence[str] = ("core", "microstructure")
) -> list[GateVerdict]:
    """The gate of each table: one validation of them all, table by table only if that one fails."""
    tables = [d.table for d in days if d.table.height]
    if not tables:
        return [GateVerdict(True, 0, ()) for _ in days]
    required = required_columns(groups)
    batch = validate_expectations(
        pl.concat(tables, how="vertical_relaxed"), series_columns=KEY_COLUMNS, required_columns=required
    )
    if batch.passed:
        return [GateVerdict(True, batch.evaluated, ()) for _ in days]
    verdicts = []
    for item in days:
        result = validate_expectations(item.table, series_columns=KEY_COLUMNS, required_columns=required)
        failures = tuple(f"{c.name}: {c.detail}" for c in result.checks if c.status == "failed")
        verdicts.append(GateVerdict(result.passed, result.evaluated, failures))
    return verdicts


def _days(rows: pl.DataFrame) -> int:
    """The UTC days the bars close on (the range's statistics keep one frame of recent rows)."""
    return int(rows.select(pl.col("close_time").dt.date().n_unique()).item())


def keep_recent(
    recent: dict[int, list[pl.DataFrame]], ready: Sequence[FeatureDay], thresholds: Iterable[int]
) -> None:
    """Add ``ready``'s rows of ``thresholds`` to ``recent``, the range's most recent
    :data:`MAX_TIER2_BARS` feature rows per threshold (what :func:`tier2_verdict` judges)."""
    for threshold in thresholds:
        if mine := [f.table for f in ready if f.threshold == threshold]:
            rows = pl.concat([*recent.get(threshold, []), *mine], how="diagonal_relaxed")
            recent[threshold] = [rows.tail(MAX_TIER2_BARS)]


def tier2_verdict(tables: Sequence[pl.DataFrame], threshold: int) -> Tier2Verdict:
    """Tier-2 statistics (warning level) over the rows of several consecutive days at once (the last
    :data:`MAX_TIER2_BARS` of them), against the next bar's log return across those days.

    The warning fires on what a data defect looks like, each finding naming the statistic, the
    feature, its value and the threshold (:func:`tier2_findings`). How many features are significant
    against the forward return is reported, not judged: on days of real bars few are, and that is
    the market, not a defect.
    """
    filled = [t for t in tables if t.height]
    rows = pl.concat(filled, how="vertical_relaxed").tail(MAX_TIER2_BARS) if filled else pl.DataFrame()
    if rows.height:
        rows = forward_returns(rows, (1,))
    if rows.height < MIN_TIER2_BARS:
        return (
            True,
            f"{rows.height} bars (< {MIN_TIER2_BARS}): too few for the statistics, nothing to judge",
            {"bars": rows.height},
        )
    result = validate_tier2(rows, target="fwd_return_1", threshold_decimal_bps=threshold)
    findings = tier2_findings(result.table)
    significant = ", ".join(result.significant_features) or "none"
    summary = (
        f"{rows.height} bars of {_days(rows)} day(s); "
        f"{result.significant_feature_count} feature(s) significant against fwd_return_1 ({significant})"
    )
    description = (
        f"{summary}; no feature leaks the label or is non-stationary by both ADF and KPSS"
        if not findings
        else f"{len(findings)} finding(s): " + "; ".join(findings[:5]) + f" ({summary})"
    )
    return (
        not findings,
        description,
        {
            "bars": rows.height,
            "days": len(tables),
            "findings": dg.MetadataValue.md("\n".join(f"- {f}" for f in findings) or "(none)"),
            "significant_features": result.significant_feature_count,
            "feature_table": dg.MetadataValue.md(result.table_markdown()),
        },
    )


def rejections(verdict: GateVerdict) -> tuple[str, ...]:
    """Why a gated table is rejected (empty when it passed)."""
    if verdict.passed:
        return ()
    return verdict.failures or ("the great-expectations gate failed",)


def publish_days(
    store: DatasetStore,
    built: Sequence[FeatureDay],
    failed: Sequence[tuple[FeatureDay, str]],
    verdicts: dict[int, GateVerdict],
    bars: dict[date, Version | None],
) -> FeatureCommit:
    """One Delta commit of one threshold's and series' days: the ``built`` tables that passed their
    gate (``verdicts`` by ``id``; ungated ones pass) replace their days, the rejected ones keep the
    previous rows, the ``failed`` ones (bars failed tier1) are withdrawn; ``bars``: their data versions."""
    first = (list(built) or [f for f, _ in failed])[0]
    writes = [
        DayTable(
            f.day, f.table, rejections(verdicts.get(id(f)) or UNGATED),
            bars_data_version=v.data_version if (v := bars.get(f.day)) else None,
        )
        for f in built
    ]  # fmt: skip
    writes += [DayTable(f.day, f.table, (reason,), withdraw=True) for f, reason in failed]
    return store.publish_days(first.threshold, first.series, writes)


#: A threshold's and series' days for one Delta commit: the built tables, the withdrawn ones (with
#: the reason), and the data versions of the built tables' bars.
CommitGroup = tuple[list[FeatureDay], list[tuple[FeatureDay, str]], dict[date, Version | None]]


def publish_groups(
    store: DatasetStore, groups: Sequence[CommitGroup], verdicts: dict[int, GateVerdict]
) -> Iterator[tuple[CommitGroup, FeatureCommit]]:
    """:func:`publish_days` of every group at once (each group is a table of its own, and delta-rs
    writes outside the GIL), yielded in the groups' order; every commit that succeeded is yielded
    before the first error is raised, so that each one is recorded."""
    error: Exception | None = None
    with ThreadPoolExecutor(max(1, len(groups)), thread_name_prefix="rangebar-commit") as pool:
        commits = [
            pool.submit(publish_days, store, built, failed, verdicts, sources)
            for built, failed, sources in groups
        ]
        for group, pending in zip(groups, commits, strict=True):
            try:
                commit = pending.result()
            except Exception as exc:
                error = error or exc
                continue
            yield group, commit
    if error is not None:
        raise error


def gate_verdicts(gated: Sequence[FeatureDay], gate: Future[object] | None) -> dict[int, GateVerdict]:
    """The verdicts of :func:`gate_tables` run in ``gate`` on ``gated``, by table (``id``); the
    gate's error, if it failed, raised here."""
    return dict(zip(map(id, gated), cast(list[GateVerdict], gate.result()), strict=True)) if gate else {}


def publish_after_gate(
    store: DatasetStore,
    groups: Sequence[CommitGroup],
    gated: Sequence[FeatureDay],
    gate: Future[object] | None,
) -> tuple[list[tuple[CommitGroup, FeatureCommit]], Exception | None]:
    """:func:`publish_groups` once the gate has judged: the commits that succeeded, in the groups'
    order, and the first failure (the gate's included), for the caller to record, then raise."""
    done: list[tuple[CommitGroup, FeatureCommit]] = []
    try:
        done.extend(publish_groups(store, groups, gate_verdicts(gated, gate)))
    except Exception as exc:
        return done, exc
    return done, None


def feature_metadata(item: FeatureDay, commit: FeatureCommit) -> dict[str, Any]:
    """The materialization metadata of a built feature table: its commit, visibility and rejection."""
    visible = item.day in commit.published
    return {
        "dagster/partition_row_count": item.table.height,
        "dagster/uri": commit.uri,
        "dagster/column_schema": column_schema(item.table.schema),
        "delta_version": commit.version,
        "visible": visible,
        "rejection": dg.MetadataValue.md(
            "(none)" if visible else "\n".join(f"- {f}" for f in commit.rejected.get(item.day, ()))
        ),
        "compacted_partitions": ", ".join(commit.compacted) or "none",
        "labels": f"computed across days by ml_dataset_{item.threshold} (rangebar_pipeline.labels)",
        "schema_version": SCHEMA_VERSION,
        "kernel_version": KERNEL_VERSION,
    }


def withdrawn_observation(item: FeatureDay, reason: str, commit: FeatureCommit) -> dg.AssetObservation:
    """The record of a day withdrawn because its bars failed tier1 (no table was materialized)."""
    return dg.AssetObservation(
        asset_key=features_key(item.threshold),
        partition=partition_key(item.day, item.series),
        metadata={
            "visible": False,
            "withdrawn": True,
            "rejection": reason[:2000],
            "delta_version": commit.version,
            "dagster/uri": commit.uri,
        },
    )


#: A feature whose |Spearman rho| with the next bar's return reaches this sees the label (look-ahead).
LEAK_RHO: Final = 0.9
#: Both stationarity tests call a feature non-stationary: ADF p above, KPSS p below this.
STATIONARITY_P: Final = 0.05


def tier2_findings(table: pl.DataFrame) -> list[str]:
    """What is wrong with the features, one sentence each: statistic, feature, value, threshold."""
    findings: list[str] = []
    for row in table.iter_rows(named=True):
        name = row["feature"]
        rho = row["spearman_rho"]
        if rho is not None and abs(rho) >= LEAK_RHO:
            findings.append(
                f"|spearman_rho({name}, fwd_return_1)| = {abs(rho):.3f} >= {LEAK_RHO} "
                "(the feature sees the label: look-ahead)"
            )
        adf, kpss = row["adf_p_value"], row["kpss_p_value"]
        if adf is not None and kpss is not None and adf > STATIONARITY_P and kpss < STATIONARITY_P:
            findings.append(
                f"adf_p_value({name}) = {adf:.3g} > {STATIONARITY_P} and kpss_p_value = {kpss:.3g} < "
                f"{STATIONARITY_P} (non-stationary by both tests)"
            )
    return findings
