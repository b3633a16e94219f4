"""Feature tables: the validated, ML-ready rows of a partition (bars, features, labels) as Parquet.

Rows are a day's bars with the feature groups of the pipeline config (the 10 microstructure
features by default, the lookback and intra groups when on), keyed by series and threshold, plus
forward-return labels ``forward_return_{h}`` = close h bars ahead / close - 1. Labels stay inside the day (no
look-ahead into a day that may not exist yet): the last h bars of a day have a null label.

The feature/dataset store (:class:`~rangebar_pipeline.storage.datasets.DatasetStore`) stages each
table and promotes it only once its blocking great-expectations gate passed (a failed day is
withdrawn with its reasons). The gate runs one great-expectations validation per batch of tables
(days x thresholds) and goes table by table only when the batch fails, so its cost is not paid per
day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import dagster as dg
import polars as pl

from rangebar_pipeline.manifest import Group, columns_of
from rangebar_pipeline.series import Series
from rangebar_pipeline.validation import validate_expectations, validate_tier2
from rangebar_pipeline.validation.expectations import REQUIRED_COLUMNS

__all__ = [
    "KEY_COLUMNS",
    "MAX_TIER2_BARS",
    "MIN_TIER2_BARS",
    "UNGATED",
    "FeatureDay",
    "GateVerdict",
    "feature_table",
    "features_key",
    "gate_tables",
    "required_columns",
    "tier2_verdict",
]

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
    horizons: tuple[int, ...],
    *,
    groups: Sequence[str] = ("core", "microstructure"),
) -> pl.DataFrame:
    """Key columns + the bar columns of ``groups`` (plus any source-specific ones, e.g. Exness
    spreads) + ``forward_return_{h}`` labels (within the frame)."""
    optional: tuple[Group, ...] = ("microstructure", "lookback", "intra")
    dropped = {c.name for group in optional if group not in groups for c in columns_of(group)}
    keys = [
        pl.lit(series.source).alias("source"),
        pl.lit(series.market).alias("market"),
        pl.lit(series.symbol).alias("symbol"),
        pl.lit(threshold, pl.Int64).alias("threshold_decimal_bps"),
    ]
    labels = [
        (pl.col("close").shift(-h) / pl.col("close") - 1.0).alias(f"forward_return_{h}") for h in horizons
    ]
    columns = [pl.col(c) for c in bars.columns if c not in dropped]
    return bars.select(*keys, *columns).with_columns(labels)


def required_columns(groups: Sequence[str]) -> tuple[str, ...]:
    """Columns the great-expectations gate requires in a feature table of ``groups``."""
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
    """The great-expectations gate of one feature table."""

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


def tier2_verdict(tables: Sequence[pl.DataFrame], threshold: int) -> tuple[bool, str, dict[str, Any]]:
    """Tier-2 statistics (warning level) over the rows of several days at once (the last
    :data:`MAX_TIER2_BARS` of them)."""
    filled = [t for t in tables if t.height]
    rows = pl.concat(filled, how="vertical_relaxed").tail(MAX_TIER2_BARS) if filled else pl.DataFrame()
    if rows.height < MIN_TIER2_BARS:
        return (
            False,
            f"only {rows.height} bars (< {MIN_TIER2_BARS}): statistics skipped",
            {"bars": rows.height},
        )
    result = validate_tier2(rows, target="forward_return_1", threshold_decimal_bps=threshold)
    return (
        result.passed,
        f"{rows.height} bars of {len(tables)} day(s): "
        f"{result.significant_feature_count} significant feature(s)",
        {
            "bars": rows.height,
            "days": len(tables),
            "feature_table": dg.MetadataValue.md(result.table_markdown()),
        },
    )
