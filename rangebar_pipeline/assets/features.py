"""``features_{thr}``: the validated, ML-ready table of a partition (bars, features, labels) as Parquet.

Rows are the partition's stored bars with their 10 microstructure features, keyed by series and
threshold, plus forward-return labels ``forward_return_{h}`` = close h bars ahead / close - 1. Labels
stay inside the partition (no look-ahead into a day that may not exist yet): the last h bars of a day
have a null label. Built only when the blocking ``tier1`` check of the bars passed. Checked by the
great-expectations suite (blocking) and tier-2 statistics (warning, full table as metadata).
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at runtime.

from datetime import date
from pathlib import Path
from typing import Any, Final

import dagster as dg
import polars as pl

from rangebar_pipeline.assets._common import (
    OWNERS,
    AssetResult,
    column_schema,
    follow_upstream,
    markdown_table,
    run_partition_keys,
)
from rangebar_pipeline.assets.bars import range_bars_key
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.partitions import daily_series_partitions, days_by_series, partition_key
from rangebar_pipeline.resources import BAR_STORE_POOL, BarStoreResource, DatasetStoreResource
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage._atomic import atomic_write
from rangebar_pipeline.validation import validate_expectations, validate_tier2

__all__ = ["KEY_COLUMNS", "MIN_TIER2_BARS", "build_features_asset", "feature_table", "features_key"]

#: Columns identifying the series in a feature table (they join the uniqueness key).
KEY_COLUMNS: Final = ("source", "market", "symbol", "threshold_decimal_bps")
#: Below this many bars the tier-2 statistics are not meaningful (reported as a warning).
MIN_TIER2_BARS: Final = 30


def features_key(threshold: int) -> dg.AssetKey:
    """``features_{threshold}``."""
    return dg.AssetKey(f"features_{threshold}")


def feature_table(
    bars: pl.DataFrame, series: Series, threshold: int, horizons: tuple[int, ...]
) -> pl.DataFrame:
    """Key columns + bars and features + ``forward_return_{h}`` labels (within the frame)."""
    keys = [
        pl.lit(series.source).alias("source"),
        pl.lit(series.market).alias("market"),
        pl.lit(series.symbol).alias("symbol"),
        pl.lit(threshold, pl.Int64).alias("threshold_decimal_bps"),
    ]
    labels = [
        (pl.col("close").shift(-h) / pl.col("close") - 1.0).alias(f"forward_return_{h}") for h in horizons
    ]
    return bars.select(*keys, pl.all()).with_columns(labels)


def _write_parquet(frame: pl.DataFrame, path: Path) -> int:
    def write(handle: Any) -> None:
        frame.write_parquet(handle, compression="zstd", statistics=True)

    return atomic_write(path, write)


def _tier2_check(tables: dict[str, pl.DataFrame], threshold: int) -> dg.AssetCheckResult:
    rows: list[dict[str, Any]] = []
    sections: list[str] = []
    passed = True
    for label, table in tables.items():
        if table.height < MIN_TIER2_BARS:
            passed = False
            rows.append({"partition": label, "bars": table.height, "passed": False, "significant": None})
            sections.append(
                f"### {label}\n\nonly {table.height} bars (< {MIN_TIER2_BARS}): statistics skipped"
            )
            continue
        result = validate_tier2(table, target="forward_return_1", threshold_decimal_bps=threshold)
        passed &= result.passed
        rows.append(
            {
                "partition": label,
                "bars": table.height,
                "passed": result.passed,
                "significant": result.significant_feature_count,
            }
        )
        sections.append(f"### {label}\n\n{result.table_markdown()}")
    return dg.AssetCheckResult(
        check_name="tier2",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description="tier-2 statistics: ADF, KPSS, Spearman vs forward_return_1, mutual information",
        metadata={
            "summary": dg.MetadataValue.md(markdown_table(rows)),
            "feature_table": dg.MetadataValue.md("\n\n".join(sections)),
        },
    )


def _expectations_check(tables: dict[str, pl.DataFrame]) -> dg.AssetCheckResult:
    rows: list[dict[str, Any]] = []
    details: list[str] = []
    for label, table in tables.items():
        result = validate_expectations(table, series_columns=KEY_COLUMNS)
        rows.append(
            {
                "partition": label,
                "evaluated": result.evaluated,
                "successful": result.successful,
                "passed": result.passed,
            }
        )
        details.extend(f"{label} {c.name}: {c.detail}" for c in result.checks if c.status == "failed")
    passed = not details
    return dg.AssetCheckResult(
        check_name="expectations",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="great-expectations feature-table suite"
        + ("" if passed else ": " + "; ".join(details[:5]))[:2000],
        metadata={
            "summary": dg.MetadataValue.md(markdown_table(rows)),
            "failures": dg.MetadataValue.md("\n".join(f"- {d}" for d in details) or "(none)"),
        },
    )


def build_features_asset(pipeline: PipelineConfig, threshold: int) -> dg.AssetsDefinition:
    """The ``features_{threshold}`` asset with its in-asset checks."""
    key = features_key(threshold)
    horizons = pipeline.label_horizons

    @dg.asset(
        key=key,
        partitions_def=daily_series_partitions(pipeline),
        deps=[dg.AssetDep(range_bars_key(threshold))],
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=BAR_STORE_POOL,
        automation_condition=follow_upstream(pipeline)
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        check_specs=[
            dg.AssetCheckSpec(
                "expectations", asset=key, blocking=True, description="great-expectations suite"
            ),
            dg.AssetCheckSpec("tier2", asset=key, description="tier-2 feature statistics (warning)"),
        ],
        group_name="features",
        kinds={"parquet", "polars"},
        owners=OWNERS,
        code_version="1",
        description=(
            f"ML-ready feature table at {threshold} dbps: the partition's validated bars with their "
            f"features and forward-return labels {', '.join(f'forward_return_{h}' for h in horizons)}, "
            "one Parquet file per series and day."
        ),
    )
    def features(
        context: dg.AssetExecutionContext, bar_store: BarStoreResource, datasets: DatasetStoreResource
    ) -> AssetResult:
        tables: dict[str, pl.DataFrame] = {}
        written: list[tuple[str, Path, int]] = []
        with bar_store.open() as store:
            for series, days in days_by_series(run_partition_keys(context.op_execution_context)).items():
                for day in days:
                    table = feature_table(
                        store.read_bars(series, threshold, day, day), series, threshold, horizons
                    )
                    path = datasets.features_path(threshold, series, day)
                    written.append((partition_key(day, series), path, _write_parquet(table, path)))
                    tables[partition_key(day, series)] = table
        schema = column_schema(next(iter(tables.values())).schema) if tables else None
        metadata: dict[str, Any] = {
            "rows": sum(t.height for t in tables.values()),
            "labels": ", ".join(f"forward_return_{h}" for h in horizons),
        }
        if schema is not None:
            metadata["dagster/column_schema"] = schema
        if len(written) == 1:
            label, path, size = written[0]
            metadata |= {
                "dagster/partition_row_count": tables[label].height,
                "dagster/uri": str(path),
                "bytes": size,
            }
        else:
            metadata["per_partition"] = dg.MetadataValue.md(
                markdown_table(
                    [{"partition": p, "rows": tables[p].height, "path": str(f)} for p, f, _ in written]
                )
            )
        return dg.MaterializeResult(
            metadata=metadata, check_results=[_expectations_check(tables), _tier2_check(tables, threshold)]
        )

    return features


def day_files(directory: Path) -> list[tuple[date, Path]]:
    """The daily feature files of a directory, ascending by day."""
    found = []
    for path in directory.glob("*.parquet"):
        try:
            found.append((date.fromisoformat(path.stem), path))
        except ValueError:
            continue
    return sorted(found)
