"""Writes of the bar store: a batch of days replaced atomically, invalidation, retiring old versions.

Each write of a (series, threshold, day) gets a new monotonic ``write_id``. The bars are inserted
first, tagged with it; then one ``bar_coverage`` row names it as the current version; then older
versions of that day are deleted (only when one is stored: a first backfill issues no mutation).
Each function takes the client (held under its engine's lock by the caller) and the database name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import date
from typing import Any, Final

import polars as pl

from rangebar_pipeline.calendar import US_PER_DAY, day_start_us
from rangebar_pipeline.exceptions import MissingColumnError, StoreError
from rangebar_pipeline.options import BarOptions
from rangebar_pipeline.schema import BAR_SCHEMA, INTRA_SCHEMA, LOOKBACK_SCHEMA, SPREAD_SCHEMA
from rangebar_pipeline.storage.bars.reads import VALUE_COLUMNS, Selection, stored_days
from rangebar_pipeline.storage.bars.records import (
    BarKey,
    Coverage,
    DayWrite,
    checkpoint_sha256,
    coverage_row,
    coverage_table,
    write_time,
)

log = logging.getLogger(__name__)

__all__ = [
    "TABLE_COLUMNS",
    "delete_older",
    "invalidate",
    "next_write_id",
    "prepare_rows",
    "shape_rows",
    "write_days",
]

#: Columns of a ``range_bars`` row as :func:`prepare_rows` lays them out.
TABLE_COLUMNS: Final = (
    "source",
    "market",
    "symbol",
    "threshold_decimal_bps",
    "options",
    "day",
    "write_id",
    "open_time_us",
    "close_time_us",
    *VALUE_COLUMNS,
    *SPREAD_SCHEMA,
    *LOOKBACK_SCHEMA,
    *INTRA_SCHEMA,
)
_WRITE_ID_LOCK = threading.Lock()
_last_write_id = 0


def next_write_id() -> int:
    """A process-monotonic UInt64 version (nanoseconds since the epoch, bumped on ties)."""
    global _last_write_id  # noqa: PLW0603
    with _WRITE_ID_LOCK:
        _last_write_id = max(time.time_ns(), _last_write_id + 1)
        return _last_write_id


def _suffix(options: BarOptions) -> str:
    return f" [{options.key}]" if options.key else ""


def write_days(client: Any, database: str, writes: Sequence[DayWrite]) -> list[Coverage]:
    """Replace many (series, threshold, day) at once: one insert of bars, one of coverage rows, then
    one lightweight delete per key of the batch where an older version is stored."""
    if not writes:
        return []
    frames: list[pl.DataFrame] = []
    coverage_rows: list[list[Any]] = []
    records: list[Coverage] = []
    for item in writes:
        key = item.key
        if not isinstance(item.checkpoint, bytes | bytearray):
            raise TypeError(f"checkpoint must be bytes, got {type(item.checkpoint).__name__}")
        if item.tick_count < 0:
            raise ValueError(f"tick_count must be >= 0, got {item.tick_count}")
        write_id = next_write_id()
        rows = prepare_rows(item, key.threshold, write_id, shaped=item.rows)
        cp_sha = checkpoint_sha256(bytes(item.checkpoint))
        parent = item.parent_checkpoint
        parent_sha = checkpoint_sha256(None if parent is None else bytes(parent))
        first_id = int(rows["first_agg_trade_id"].min()) if rows.height else None  # type: ignore[arg-type]
        last_id = int(rows["last_agg_trade_id"].max()) if rows.height else None  # type: ignore[arg-type]
        coverage_rows.append(
            coverage_row(
                key.series, key.threshold, key.options.key, item.day, write_id, bar_count=rows.height,
                tick_count=item.tick_count, first_id=first_id, last_id=last_id,
                checkpoint=bytes(item.checkpoint), checkpoint_sha=cp_sha, parent_sha=parent_sha,
            )
        )  # fmt: skip
        if rows.height:
            frames.append(rows)
        records.append(
            Coverage(
                key.series, key.threshold, item.day, write_id, rows.height, item.tick_count, first_id,
                last_id, cp_sha, parent_sha, write_time(write_id), key.options,
            )
        )  # fmt: skip
    groups: dict[BarKey, list[Coverage]] = {}
    for record in records:
        groups.setdefault(record.key, []).append(record)
    if frames:
        rows = pl.concat(frames, how="diagonal")  # days of other bar options: other columns
        summary = client.insert_arrow(
            f"{database}.range_bars", rows.to_arrow(compat_level=pl.CompatLevel.oldest())
        )
        if int(summary.written_rows) != rows.height:
            raise StoreError(
                f"writing {len(writes)} day(s) starting {writes[0].series} {writes[0].day}: sent "
                f"{rows.height} bars, ClickHouse wrote {summary.written_rows}; the previous "
                "versions of those days stay current"
            )
    client.insert_arrow(f"{database}.bar_coverage", coverage_table(coverage_rows))
    for key, group in groups.items():
        span = (min(r.day for r in group), max(r.day for r in group))
        delete_older(client, database, key, span, write_id=min(r.write_id for r in group))
    for record in records:
        log.info(
            "stored %s %d dbps%s %s: %d bars (write %d)",
            record.series, record.threshold, _suffix(record.options), record.day, record.bar_count,
            record.write_id,
        )  # fmt: skip
    return records


def delete_older(client: Any, database: str, key: BarKey, span: tuple[date, date], *, write_id: int) -> None:
    """Delete the bars of writes older than ``write_id`` in ``span``; a cheap probe first, so a
    first write of a range (nothing older stored) issues no mutation."""
    selection = Selection.of(key, *span)
    params = selection.params | {"write_id": write_id}
    older = f"FROM {database}.range_bars WHERE {selection.where} AND write_id < {{write_id:UInt64}}"
    if client.query(f"SELECT 1 {older} LIMIT 1", parameters=params).result_rows:
        client.command(f"DELETE {older}", parameters=params)


def invalidate(client: Any, database: str, selection: Selection) -> int:
    """Tombstone every stored day of ``selection`` and delete its bars; return how many days."""
    found = stored_days(client, database, selection)
    if not found:
        return 0
    series = selection.series
    write_id = next_write_id()
    tombstones = [coverage_row(series, thr, opts, day, write_id, is_deleted=True) for thr, opts, day in found]
    span = (selection.start or date.min, selection.end or date.max)
    client.insert_arrow(f"{database}.bar_coverage", coverage_table(tombstones))
    for thr, opts in sorted({(thr, opts) for thr, opts, _ in found}):
        delete_older(
            client, database, BarKey(series, thr, BarOptions.from_key(opts)), span, write_id=write_id
        )
    log.info("invalidated %d stored days of %s", len(found), series)
    return len(found)


def prepare_rows(
    item: DayWrite, threshold: int, write_id: int, *, shaped: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Validate a day's bars and shape them as ``range_bars`` rows of the write ``write_id``
    (``shaped``: :func:`shape_rows` of ``item``, done before)."""
    frame = shape_rows(item) if shaped is None else shaped
    series = item.series
    stamped = frame.with_columns(
        pl.lit(series.source, pl.String).alias("source"),
        pl.lit(series.market, pl.String).alias("market"),
        pl.lit(series.symbol, pl.String).alias("symbol"),
        pl.lit(threshold, pl.UInt32).alias("threshold_decimal_bps"),
        pl.lit(item.options.key, pl.String).alias("options"),
        pl.lit(item.day, pl.Date).alias("day"),
        pl.lit(write_id, pl.UInt64).alias("write_id"),
    )
    return stamped.select(c for c in TABLE_COLUMNS if c in stamped.columns)


def shape_rows(item: DayWrite) -> pl.DataFrame:
    """A day's bars validated (columns, close times within the day, unique keys) and shaped as
    ``range_bars`` rows in key order, but for the columns naming the write (:func:`prepare_rows`)."""
    series, options, day, bars = item.series, item.options, item.day, item.bars
    missing = [c for c in options.bar_schema if c not in bars.columns]
    if missing:
        raise MissingColumnError(
            f"bars for {series} {day} ({options}) lack columns {missing}; expected the columns of "
            "BarOptions.bar_schema"
        )
    # Only the columns these bars have: ClickHouse stores NULL in the nullable columns an insert
    # omits (spread, lookback, intra), so no all-null arrays are built, serialised and parsed.
    groups = (
        {c: t for c, t in SPREAD_SCHEMA.items() if c in bars.columns}
        | (LOOKBACK_SCHEMA if options.lookback_trades else {})
        | (INTRA_SCHEMA if options.intra_bar else {})
    )
    frame = bars.select(
        pl.col("open_time").dt.epoch("us").alias("open_time_us"),
        pl.col("close_time").dt.epoch("us").alias("close_time_us"),
        *(pl.col(c).cast(BAR_SCHEMA[c], strict=True) for c in VALUE_COLUMNS),
        *(pl.col(c).cast(dtype) for c, dtype in groups.items()),
    )
    day_start = day_start_us(day)
    outside = frame.with_row_index("row").filter(
        (pl.col("close_time_us") < day_start) | (pl.col("close_time_us") >= day_start + US_PER_DAY)
    )
    if outside.height:
        row = outside.row(0, named=True)
        raise ValueError(
            f"bar {row['row']} of {series} closes at {row['close_time_us']} us, outside day {day} "
            f"[{day_start}, {day_start + US_PER_DAY}): bars must be stored under the day of their close"
        )
    key = ["close_time_us", "first_agg_trade_id"]
    duplicated = frame.with_row_index("row").filter(pl.struct(key).is_duplicated())
    if duplicated.height:
        row = duplicated.row(0, named=True)
        raise ValueError(
            f"bars of {series} {day} repeat the key close_time_us={row['close_time_us']}, "
            f"first_agg_trade_id={row['first_agg_trade_id']} (row {row['row']})"
        )
    return frame.sort(key)
