"""``range_bars_{thr}``: one asset per configured threshold, computed day by day into Tier 2.

Day D of a series continues the processor state stored at the end of D-1 (the checkpoint kept with
the bars), so the asset depends on its own previous day: backfills run in date order, and a ranged
backfill of a series runs as one step (``BackfillPolicy.single_run``) that walks its days in order.
The computation is the library's (:func:`rangebar_pipeline.api.materialize_days`): the bars of the
day replace that day in the bar store, exactly as ``get_range_bars`` would store them.
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at runtime.

import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import dagster as dg
import polars as pl

from rangebar_pipeline.api import materialize_days
from rangebar_pipeline.assets._common import (
    BAR_COLUMN_SCHEMA,
    OWNERS,
    AssetResult,
    day_start,
    drop_none,
    follow_upstream,
    frame_sha256,
    markdown_table,
    price_chart_markdown,
    run_partition_keys,
    timestamp,
)
from rangebar_pipeline.assets.ticks import TICKS_KEY
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.partitions import (
    contiguous_ranges,
    daily_series_partitions,
    days_by_series,
    partition_key,
    previous_day_mapping,
)
from rangebar_pipeline.resources import BAR_STORE_POOL, BarStoreResource, TickStoreResource
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.ticks import TickStore

__all__ = ["DayOutcome", "build_range_bars_asset", "range_bars_key"]


def range_bars_key(threshold: int) -> dg.AssetKey:
    """``range_bars_{threshold}``."""
    return dg.AssetKey(f"range_bars_{threshold}")


@dataclass(frozen=True, slots=True)
class DayOutcome:
    """What one day of one series produced."""

    series: Series
    day: date
    bars: pl.DataFrame
    ticks: int
    seconds: float
    continued_checkpoint: bool
    checkpoint_sha256: str

    @property
    def carried_over_open(self) -> Any:
        """Open time of the first bar when it began on an earlier day (the bar carried over), else None."""
        if self.bars.is_empty() or self.bars["open_time"][0] >= day_start(self.day):
            return None
        return self.bars["open_time"][0]

    def metadata(self, threshold: int, store_dsn: str) -> dict[str, Any]:
        """The metadata of a single-partition materialization."""
        carried = self.carried_over_open
        preview = self.bars.head(5).select(
            "open_time", "close_time", "open", "high", "low", "close", "volume"
        )
        return drop_none(
            {
                "dagster/partition_row_count": self.bars.height,
                "dagster/column_schema": BAR_COLUMN_SCHEMA,
                "dagster/uri": f"{store_dsn}#range_bars/{threshold}/{self.series.key}/{self.day}",
                "bars": self.bars.height,
                "ticks": self.ticks,
                "carried_over_bar": carried is not None,
                "carried_over_bar_opened": timestamp(carried),
                "continued_from_checkpoint": self.continued_checkpoint,
                "checkpoint_sha256": self.checkpoint_sha256,
                "bars_sha256": frame_sha256(self.bars),
                "compute_seconds": round(self.seconds, 4),
                "ticks_per_second": round(self.ticks / self.seconds) if self.seconds > 0 else None,
                "first_close_time": timestamp(self.bars["close_time"][0]) if self.bars.height else None,
                "last_close_time": timestamp(self.bars["close_time"][-1]) if self.bars.height else None,
                "price_chart": dg.MetadataValue.md(
                    price_chart_markdown(self.bars, title=f"{self.series} {self.day} @ {threshold} dbps")
                ),
                "preview": dg.MetadataValue.md(markdown_table(preview.to_dicts())),
            }
        )

    def summary(self) -> dict[str, Any]:
        """One row of a multi-partition summary table."""
        return {
            "partition": partition_key(self.day, self.series),
            "bars": self.bars.height,
            "ticks": self.ticks,
            "carried_over_bar": self.carried_over_open is not None,
            "continued_from_checkpoint": self.continued_checkpoint,
            "seconds": round(self.seconds, 4),
        }


def compute_days(
    store: BarStore, ticks: TickStore, series: Series, threshold: int, *, first: date, last: date
) -> list[DayOutcome]:
    """Compute and store ``[first, last]`` of a series in date order; one outcome per day."""
    timings: dict[date, float] = {}
    clock = [time.perf_counter()]

    def on_day(day: date, phase: str, n_bars: int, n_ticks: int) -> None:
        now = time.perf_counter()
        timings[day] = now - clock[0]
        clock[0] = now

    run = materialize_days(
        series, threshold, first, last, store=store, ticks=ticks, fetch_if_missing=False, recompute=True,
        on_day=on_day,
    )  # fmt: skip
    coverage = store.coverage(series, threshold, first, last)
    closes = run.bars.with_columns(pl.col("close_time").dt.date().alias("_day"))
    outcomes = []
    for day in sorted(timings):
        record = coverage[day]
        outcomes.append(
            DayOutcome(
                series=series,
                day=day,
                bars=closes.filter(pl.col("_day") == day).drop("_day"),
                ticks=record.tick_count,
                seconds=timings[day],
                continued_checkpoint=not record.fresh_start,
                checkpoint_sha256=record.checkpoint_sha256,
            )
        )
    return outcomes


def build_range_bars_asset(pipeline: PipelineConfig, threshold: int) -> dg.AssetsDefinition:
    """The ``range_bars_{threshold}`` asset."""
    key = range_bars_key(threshold)

    @dg.asset(
        key=key,
        partitions_def=daily_series_partitions(pipeline),
        deps=[dg.AssetDep(TICKS_KEY), dg.AssetDep(key, partition_mapping=previous_day_mapping())],
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=BAR_STORE_POOL,
        automation_condition=follow_upstream(pipeline),
        group_name="range_bars",
        kinds={"rust", "clickhouse"},
        owners=OWNERS,
        code_version="1",
        description=(
            f"Range bars at {threshold} dbps ({threshold / 1000:g} %) with the 10 microstructure features, "
            "one UTC day of one series, stored in the Tier 2 bar store (the day is replaced). The day "
            "continues the previous day's unfinished bar from its stored checkpoint."
        ),
    )
    def range_bars(
        context: dg.AssetExecutionContext, tick_store: TickStoreResource, bar_store: BarStoreResource
    ) -> AssetResult:
        ticks = tick_store.store()
        outcomes: list[DayOutcome] = []
        with bar_store.open() as store:
            for series, days in days_by_series(run_partition_keys(context.op_execution_context)).items():
                for first, last in contiguous_ranges(days):
                    if first - timedelta(days=1) >= pipeline.start_date and not store.coverage(
                        series, threshold, first - timedelta(days=1), first - timedelta(days=1)
                    ):
                        context.log.warning(
                            f"{series} {first - timedelta(days=1)} has no stored bars at {threshold} dbps: "
                            f"{first} starts from a fresh processor (materialize the previous day first "
                            "for bars continuous across the day boundary)"
                        )
                    outcomes.extend(compute_days(store, ticks, series, threshold, first=first, last=last))
        for outcome in outcomes:
            context.log.info(
                f"{partition_key(outcome.day, outcome.series)}: {outcome.bars.height} bars from "
                f"{outcome.ticks} ticks in {outcome.seconds:.3f} s"
            )
        if len(outcomes) == 1:
            return dg.MaterializeResult(metadata=outcomes[0].metadata(threshold, bar_store.describe()))
        return dg.MaterializeResult(
            metadata={
                "partitions": len(outcomes),
                "bars": sum(o.bars.height for o in outcomes),
                "ticks": sum(o.ticks for o in outcomes),
                "compute_seconds": round(sum(o.seconds for o in outcomes), 4),
                "dagster/column_schema": BAR_COLUMN_SCHEMA,
                "per_partition": dg.MetadataValue.md(markdown_table([o.summary() for o in outcomes])),
            }
        )

    return range_bars
