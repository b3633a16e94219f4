"""``ml_dataset_{thr}``: the last N bars of each series with labels across days, from a pinned version.

Partitioned by series. The asset pins the current version of the threshold's Delta feature table,
reads the series' last ``last_n_bars`` visible rows at that version with the labels of pipeline.yaml
computed across day boundaries (:func:`rangebar_pipeline.api.datasets.last_bars_recipe`), and writes
them with their recipe: the metadata names the feature table version, the bars' data versions of the
days read, the content hash and a snippet that rebuilds the same rows (Delta time travel). Days whose
feature table failed its gate are absent (or at their previous version) and named (``rejected_days``).

Labels become final as the following days arrive: a label is null only where its future bars do not
exist yet (``labels_pending`` counts those rows). The dataset of a series is rebuilt whenever any
feature day of that series is updated (:func:`follow_any_update`: not Dagster's plain ``eager()``,
whose "no dependency missing" clause spans every date of the series and would never hold while a
backfill is incomplete), which recomputes exactly the rows whose labels the new day completes.
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at runtime.

import json
from typing import Any

import dagster as dg
import polars as pl

from rangebar_pipeline.api.datasets import last_bars_recipe
from rangebar_pipeline.assets._common import OWNERS, AssetResult, column_schema, frame_sha256
from rangebar_pipeline.assets.features import features_key
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.partitions import partition_key, same_series_mapping, series_partitions
from rangebar_pipeline.resources import DatasetStoreResource
from rangebar_pipeline.series import Series

__all__ = ["PROVENANCE_KEYS", "build_dataset_asset", "dataset_key", "follow_any_update"]

#: Parquet key-value metadata of a dataset file: the feature table version, the recipe, the content hash.
PROVENANCE_KEYS = ("rangebar.feature_table_version", "rangebar.recipe", "rangebar.content_sha256")


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
    spec = pipeline.labels

    @dg.asset(
        key=dataset_key(threshold),
        partitions_def=series_partitions(pipeline),
        deps=[dg.AssetDep(features_key(threshold), partition_mapping=same_series_mapping())],
        automation_condition=follow_any_update(),
        group_name="datasets",
        kinds={"deltalake", "polars"},
        owners=OWNERS,
        code_version="2",
        description=(
            f"The last {n} bars of the series at {threshold} dbps with features and the labels "
            f"{', '.join(spec.columns)} computed across days, read from a pinned version of the Delta "
            "feature table (recorded, with a snippet that rebuilds it), for downstream ML consumers."
        ),
    )
    def ml_dataset(context: dg.AssetExecutionContext, datasets: DatasetStoreResource) -> AssetResult:
        series = Series.from_key(context.partition_key)
        store = datasets.store()
        version = store.features_version(threshold)
        if version is None:
            raise dg.Failure(
                description=(
                    f"no feature table at {store.features_uri(threshold)}: materialize features_{threshold} "
                    f"for {series} first"
                )
            )
        recipe = last_bars_recipe(threshold, series, n, version=version, labels=spec, store=store)
        table = recipe.read(store).collect()
        sha = frame_sha256(table)
        provenance = {
            PROVENANCE_KEYS[0]: str(version),
            PROVENANCE_KEYS[1]: json.dumps(recipe.describe()),
            PROVENANCE_KEYS[2]: sha,
        }
        written = store.write_dataset(threshold, series, table, provenance=provenance)
        rejected = store.rejected_days(threshold, series)
        if rejected:
            context.log.warning(
                f"{series}: feature days rejected by their gate: {', '.join(map(str, rejected))}"
            )
        if table.height < n:
            context.log.warning(
                f"{series}: {table.height} bars instead of the requested {n}: the data runs out"
            )
        days = table.select("day", "bars_data_version").unique().sort("day")
        pending = table.filter(pl.any_horizontal(pl.col(c).is_null() for c in spec.columns))
        final = table.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in spec.columns))
        return dg.MaterializeResult(
            data_version=dg.DataVersion(sha),
            metadata={
                "dagster/row_count": table.height,
                "dagster/uri": written.uri,
                "dagster/column_schema": column_schema(table.schema),
                "feature_table_uri": store.features_uri(threshold),
                "feature_table_version": version,
                "bars_data_versions": dg.MetadataValue.json({str(d): v for d, v in days.iter_rows()}),
                "content_sha256": sha,
                "labels": dg.MetadataValue.json(spec.describe()),
                "labels_pending": pending.height,
                "rebuild": dg.MetadataValue.md(f"```python\n{recipe.code()}```"),
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
                **(
                    {"labels_final_through": dg.MetadataValue.timestamp(final["close_time"][-1])}
                    if final.height
                    else {}
                ),
                "rejected_days": dg.MetadataValue.json(
                    {str(d): {**r, "failures": r["failures"][:5]} for d, r in rejected.items()}
                ),
                "source_partitions": dg.MetadataValue.json(
                    [partition_key(d, series) for d in days["day"].to_list()]
                ),
            },
        )

    return ml_dataset
