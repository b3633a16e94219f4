"""The metadata of one day's bar materialization (what the UI shows for a partition)."""

# No `from __future__ import annotations`: kept like the other asset modules.

from typing import Any

import dagster as dg

from rangebar_pipeline.assets._common import drop_none, markdown_table, timestamp
from rangebar_pipeline.assets.charts import bars_chart_markdown, chart_summary
from rangebar_pipeline.engine import SeriesDay, ThresholdDay
from rangebar_pipeline.options import BarOptions
from rangebar_pipeline.schema import SCHEMA_VERSION
from rangebar_pipeline.storage.bars import KERNEL_VERSION, checkpoint_sha256

__all__ = ["bar_metadata"]


def bar_metadata(
    day: SeriesDay, result: ThresholdDay, sha: str, *, schema: dg.TableSchema, options: BarOptions, uri: str
) -> dict[str, Any]:
    """A day's bar materialization metadata (``sha``: the bars' content hash, ``schema``: their
    column schema, ``uri``: where they are stored), but for the batch's write time, known later.
    Needs no Dagster instance: built on the engine's worker thread."""
    bars = result.bars
    carried = bars["open_time"][0] if bars.height and bars["open_time"][0].date() < day.day else None
    preview = bars.head(5).select("open_time", "close_time", "open", "high", "low", "close", "volume")
    title = f"{day.series} {day.day} @ {result.threshold} dbps"
    return drop_none(
        {
            "dagster/partition_row_count": bars.height,
            "dagster/column_schema": schema,
            "bar_options": options.key or "default",
            "schema_version": SCHEMA_VERSION,
            "kernel_version": KERNEL_VERSION,
            "dagster/uri": uri,
            "bars": bars.height,
            "ticks": day.tick_count,
            "carried_over_bar": carried is not None,
            "carried_over_bar_opened": timestamp(carried),
            "continued_from_checkpoint": result.parent_checkpoint is not None,
            "checkpoint_sha256": checkpoint_sha256(result.checkpoint),
            "bars_sha256": sha,
            "compute_seconds": round(result.seconds, 4),
            "read_ticks_seconds": round(day.read_seconds, 4),
            "ticks_per_second": round(day.tick_count / result.seconds) if result.seconds > 0 else None,
            "first_close_time": timestamp(bars["close_time"][0]) if bars.height else None,
            "last_close_time": timestamp(bars["close_time"][-1]) if bars.height else None,
            "price_chart": dg.MetadataValue.md(
                bars_chart_markdown(bars, threshold=result.threshold, title=title)
            ),
            "chart_summary": chart_summary(bars, threshold=result.threshold),
            "preview": dg.MetadataValue.md(markdown_table(preview.to_dicts())),
        }
    )
