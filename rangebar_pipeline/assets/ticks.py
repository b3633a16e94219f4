"""The ``ticks`` asset: one verified day of trades per series in the Tier 1 Parquet store."""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at runtime.

import hashlib
from collections.abc import Iterator
from datetime import date
from typing import Any, Final

import dagster as dg

from rangebar_pipeline.assets._common import OWNERS, AssetResult, drop_none, run_partition_keys, timestamp
from rangebar_pipeline.assets.empty_days import EMPTY_DATA_VERSION, before_start_metadata
from rangebar_pipeline.assets.provenance import version_tags
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.partitions import daily_series_partitions, days_by_series, partition_key
from rangebar_pipeline.resources import DOWNLOAD_QUEUE, TickStoreResource
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.ticks import DayWriteResult

__all__ = ["TICKS_KEY", "TicksConfig", "build_ticks_asset"]

TICKS_KEY = dg.AssetKey("ticks")
TICKS_CODE_VERSION: Final = "ticks-1"


class TicksConfig(dg.Config):
    """Run config of ``ticks``: ``force`` downloads and verifies days that are stored already."""

    force: bool = False


def _data_version(result: DayWriteResult) -> str:
    """The source archive's sha256, else the stored file's content hash."""
    if result.checksum:
        return result.checksum
    return hashlib.sha256(result.path.read_bytes()).hexdigest()


def _day_metadata(result: DayWriteResult) -> dict[str, Any]:
    return drop_none(
        {
            "dagster/partition_row_count": result.rows,
            "rows": result.rows,
            "bytes": result.bytes,
            "duplicates_removed": result.duplicates_removed,
            "first_time": timestamp(result.first_timestamp),
            "last_time": timestamp(result.last_timestamp),
            "checksum_sha256": result.checksum,
            "source_url": dg.MetadataValue.url(result.url) if result.url else None,
            "dagster/uri": str(result.path),
        }
    )


def build_ticks_asset(pipeline: PipelineConfig) -> dg.AssetsDefinition:
    """The ``ticks`` asset over the configured partitions."""

    @dg.asset(
        key=TICKS_KEY,
        partitions_def=daily_series_partitions(pipeline),
        backfill_policy=dg.BackfillPolicy.multi_run(pipeline.max_days_per_run),
        code_version=TICKS_CODE_VERSION,
        group_name="ticks",
        # On the Celery executor (deploy/cluster/) downloads go to their own queue; other executors ignore it.
        op_tags={"dagster-celery/queue": DOWNLOAD_QUEUE},
        kinds={"parquet", "python"},
        owners=OWNERS,
    )
    def ticks(
        context: dg.AssetExecutionContext, config: TicksConfig, tick_store: TickStoreResource
    ) -> Iterator[dg.AssetMaterialization | AssetResult]:
        """Raw trades of one UTC day of one series, downloaded, checksum-verified and stored in Tier 1.

        Binance Vision aggTrades (spot, USD-M, COIN-M) or Exness bid/ask ticks (price = mid), sorted by
        (timestamp, agg_trade_id) with exact duplicates removed, one zstd Parquet file per day.
        """
        store = tick_store.store()
        requested = days_by_series(run_partition_keys(context.op_execution_context))
        empty = {  # before the series' first day: recorded with 0 rows, never fetched
            partition_key(day, series): before_start_metadata(series, pipeline.first_day(series))
            for series, days in requested.items()
            for day in days
            if day < pipeline.first_day(series)
        }
        wanted = {s: [d for d in days if d >= pipeline.first_day(s)] for s, days in requested.items()}
        wanted = {s: days for s, days in wanted.items() if days}
        jobs = sum(len(days) for days in wanted.values())
        failures: list[str] = []
        results: dict[tuple[Series, date], DayWriteResult] = {}
        for series, days in wanted.items():
            outcome = store.fetch_days(series, days, force=config.force)
            results.update({(series, day): result for day, result in outcome.stored.items()})
            # collected so every failing partition is named
            for day, exc in outcome.failed.items():
                failures.append(f"{partition_key(day, series)}: {type(exc).__name__}: {exc}")
        ordered = sorted(results.items(), key=lambda kv: (kv[0][0].key, kv[0][1]))
        for (series, day), result in ordered:
            context.log.info(
                f"stored {partition_key(day, series)}: {result.rows} ticks, {result.bytes} B at {result.path}"
            )
        if failures:  # record each stored day on its own, then fail naming the others
            for label, metadata in empty.items():
                yield dg.AssetMaterialization(
                    asset_key=TICKS_KEY,
                    partition=label,
                    metadata=metadata,
                    tags=version_tags(EMPTY_DATA_VERSION, TICKS_CODE_VERSION, {}),
                )
            for (series, day), result in ordered:
                yield dg.AssetMaterialization(
                    asset_key=TICKS_KEY,
                    partition=partition_key(day, series),
                    metadata=_day_metadata(result),
                    tags=version_tags(_data_version(result), TICKS_CODE_VERSION, {}),
                )
            raise dg.Failure(
                description=f"{len(failures)} of {jobs} tick partition(s) failed: "
                + "; ".join(failures)
                + " (the other partitions are stored and recorded)",
                metadata={"failed_partitions": dg.MetadataValue.md("\n".join(f"- {f}" for f in failures))},
            )
        # All stored: one output (so downstream steps of the run proceed), each day with its own metadata.
        for label, metadata in empty.items():
            context.add_asset_metadata(metadata, partition_key=label)
        for (series, day), result in ordered:
            context.add_asset_metadata(_day_metadata(result), partition_key=partition_key(day, series))
        if len(ordered) + len(empty) == 1:
            version = _data_version(ordered[0][1]) if ordered else EMPTY_DATA_VERSION
            yield dg.MaterializeResult(data_version=dg.DataVersion(version))
        else:
            yield dg.MaterializeResult()

    return ticks
