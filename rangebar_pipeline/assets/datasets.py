"""``ml_dataset_{thr}``: the last N bars of each series (get_n_range_bars semantics) as one Parquet file.

Partitioned by series; reads the series' promoted daily feature tables (newest first) until it holds
exactly ``last_n_bars`` rows, or all there are (``short_by`` in the metadata says how many are
missing). Days whose feature table failed its blocking gate were never promoted: they are absent
and named in the metadata (``rejected_days``). The lineage runs back through ``features_{thr}`` and
``range_bars_{thr}`` to ``ticks``; the metadata names the days (tick partitions) the rows came from.

Automation: the dataset of a series is rebuilt whenever any feature day of that series is updated
(not Dagster's plain ``eager()``, whose "no dependency missing" clause would span every date of the
series and so never hold while a backfill is incomplete).
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at runtime.

from typing import Any

import dagster as dg

from rangebar_pipeline.assets._common import OWNERS, AssetResult, column_schema
from rangebar_pipeline.assets.features import features_key
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.partitions import partition_key, same_series_mapping, series_partitions
from rangebar_pipeline.resources import DatasetStoreResource
from rangebar_pipeline.series import Series

__all__ = ["build_dataset_asset", "dataset_key", "follow_any_update"]


def dataset_key(threshold: int) -> dg.AssetKey:
    """``ml_dataset_{threshold}``."""
    return dg.AssetKey(f"ml_dataset_{threshold}")


def follow_any_update() -> dg.AutomationCondition[Any]:
    """Run when any dependency partition was updated since this target was last handled."""
    return (
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("follow_any_update")


def build_dataset_asset(pipeline: PipelineConfig, threshold: int) -> dg.AssetsDefinition:
    """The ``ml_dataset_{threshold}`` asset."""
    n = pipeline.last_n_bars

    @dg.asset(
        key=dataset_key(threshold),
        partitions_def=series_partitions(pipeline),
        deps=[dg.AssetDep(features_key(threshold), partition_mapping=same_series_mapping())],
        automation_condition=follow_any_update(),
        group_name="datasets",
        kinds={"parquet", "polars"},
        owners=OWNERS,
        code_version="1",
        description=(
            f"The last {n} bars of the series at {threshold} dbps with features and labels "
            "(get_n_range_bars semantics), for downstream ML consumers."
        ),
    )
    def ml_dataset(context: dg.AssetExecutionContext, datasets: DatasetStoreResource) -> AssetResult:
        series = Series.from_key(context.partition_key)
        store = datasets.store()
        try:
            table, days = store.last_n_rows(threshold, series, n)
        except LookupError:
            raise dg.Failure(
                description=(
                    f"no feature rows for {series} at {threshold} dbps under "
                    f"{store.features_location(threshold, series)}: materialize features_{threshold} first"
                )
            ) from None
        written = store.write_dataset(threshold, series, table)
        rejected = store.rejected_days(threshold, series)
        if rejected:
            context.log.warning(
                f"{series}: feature days withdrawn by their gate and absent: {', '.join(map(str, rejected))}"
            )
        if table.height < n:
            context.log.warning(
                f"{series}: {table.height} bars instead of the requested {n}: the data runs out"
            )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": table.height,
                "dagster/uri": written.uri,
                "dagster/column_schema": column_schema(table.schema),
                "bars_requested": n,
                "short_by": n - table.height,
                "bytes": written.bytes,
                **(
                    {
                        "first_close_time": dg.MetadataValue.timestamp(table["close_time"][0]),
                        "last_close_time": dg.MetadataValue.timestamp(table["close_time"][-1]),
                    }
                    if table.height
                    else {}
                ),
                "rejected_days": dg.MetadataValue.json(
                    {str(d): list(r.get("failures", []))[:5] for d, r in rejected.items()}
                ),
                "source_partitions": dg.MetadataValue.json([partition_key(d, series) for d in days]),
            }
        )

    return ml_dataset
