"""The ``ticks`` asset: one verified day of trades per series in the Tier 1 Parquet store."""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at runtime.

from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import dagster as dg

from rangebar_pipeline.assets._common import (
    OWNERS,
    AssetResult,
    drop_none,
    markdown_table,
    run_partition_keys,
    timestamp,
)
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.partitions import daily_series_partitions, days_by_series, partition_key
from rangebar_pipeline.resources import DOWNLOAD_QUEUE, TickStoreResource
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.ticks import DayWriteResult, TickStore

__all__ = ["TICKS_KEY", "TicksConfig", "build_ticks_asset"]

TICKS_KEY = dg.AssetKey("ticks")


class TicksConfig(dg.Config):
    """Run config of ``ticks``: ``force`` downloads and verifies days that are stored already."""

    force: bool = False


def _fetch(store: TickStore, series: Series, day: date, force: bool) -> DayWriteResult:
    return store.fetch_day(series.source, series.market, series.symbol, day, force=force)


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
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="ticks",
        # On the Celery executor (deploy/cluster/) downloads go to their own queue; other executors ignore it.
        op_tags={"dagster-celery/queue": DOWNLOAD_QUEUE},
        kinds={"parquet", "python"},
        owners=OWNERS,
        code_version="1",
    )
    def ticks(
        context: dg.AssetExecutionContext, config: TicksConfig, tick_store: TickStoreResource
    ) -> AssetResult:
        """Raw trades of one UTC day of one series, downloaded, checksum-verified and stored in Tier 1.

        Binance Vision aggTrades (spot, USD-M, COIN-M) or Exness bid/ask ticks (price = mid), sorted by
        (timestamp, agg_trade_id) with exact duplicates removed, one zstd Parquet file per day.
        """
        store = tick_store.store()
        jobs = [
            (s, d)
            for s, days in days_by_series(run_partition_keys(context.op_execution_context)).items()
            for d in days
        ]
        failures: list[str] = []
        results: dict[tuple[Series, date], DayWriteResult] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(store.max_workers, len(jobs)))) as pool:
            futures = {job: pool.submit(_fetch, store, job[0], job[1], config.force) for job in jobs}
            for (series, day), future in futures.items():
                try:
                    results[(series, day)] = future.result()
                except Exception as exc:  # collected so every failing partition is named
                    failures.append(f"{partition_key(day, series)}: {type(exc).__name__}: {exc}")
        for (series, day), result in results.items():
            context.log.info(
                f"stored {partition_key(day, series)}: {result.rows} ticks, {result.bytes} B at {result.path}"
            )
        if failures:
            raise dg.Failure(
                description=f"{len(failures)} of {len(jobs)} tick partition(s) failed: "
                + "; ".join(failures),
                metadata={"failed_partitions": dg.MetadataValue.md("\n".join(f"- {f}" for f in failures))},
            )
        if len(results) == 1:
            return dg.MaterializeResult(metadata=_day_metadata(next(iter(results.values()))))
        rows = [
            {
                "partition": partition_key(day, series),
                "rows": r.rows,
                "bytes": r.bytes,
                "duplicates_removed": r.duplicates_removed,
                "first_time": r.first_timestamp,
                "last_time": r.last_timestamp,
                "checksum_sha256": r.checksum,
            }
            for (series, day), r in sorted(results.items(), key=lambda kv: (kv[0][0].key, kv[0][1]))
        ]
        return dg.MaterializeResult(
            metadata={
                "partitions": len(rows),
                "rows": sum(r.rows for r in results.values()),
                "bytes": sum(r.bytes for r in results.values()),
                "duplicates_removed": sum(r.duplicates_removed for r in results.values()),
                "per_partition": dg.MetadataValue.md(markdown_table(rows)),
            }
        )

    return ticks
