"""Reads of the bar store: the query filter of a key, coverage rows, checkpoints, bars and status.

Each function takes the client (held under its engine's lock by the caller) and the database name;
the SQL is the same for chDB and a server. Bars are visible only when their ``(day, write_id)`` is
the current version named by ``bar_coverage`` (read with ``FINAL``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date
from typing import Any, Final

import polars as pl

from rangebar_pipeline.options import BarOptions
from rangebar_pipeline.schema import BAR_COLUMNS, BAR_SCHEMA, INTRA_SCHEMA, LOOKBACK_SCHEMA, SCHEMA_VERSION
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources.base import source_type
from rangebar_pipeline.storage.bars import records
from rangebar_pipeline.storage.bars.records import BarKey, Coverage, SeriesStatus, check_threshold

__all__ = [
    "VALUE_COLUMNS",
    "Selection",
    "checkpoint_at",
    "checkpoints_at",
    "count_bars",
    "coverage",
    "select_bars",
    "status_rows",
    "stored_days",
]

_TIME_COLUMNS: Final = ("open_time", "close_time")
#: The bar columns stored as they are (the times are stored as epoch microseconds).
VALUE_COLUMNS: Final = tuple(c for c in BAR_COLUMNS if c not in _TIME_COLUMNS)


@dataclass(frozen=True, slots=True)
class Selection:
    """Rows of one series, optionally narrowed to a threshold, a bar-options variant and day bounds."""

    series: Series
    threshold: int | None = None
    options: BarOptions | None = None
    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None:
            check_threshold(self.threshold)

    @classmethod
    def of(cls, key: BarKey, start: date | None = None, end: date | None = None) -> Selection:
        """The rows of ``key`` within the day bounds."""
        return cls(key.series, key.threshold, key.options, start, end)

    @property
    def where(self) -> str:
        """The ``WHERE`` condition (parameters in :attr:`params`)."""
        parts = ["source = {source:String}", "market = {market:String}", "symbol = {symbol:String}"]
        if self.threshold is not None:
            parts.append("threshold_decimal_bps = {threshold:UInt32}")
        if self.options is not None:
            parts.append("options = {options:String}")
        if self.start is not None:
            parts.append("day >= {start:Date}")
        if self.end is not None:
            parts.append("day <= {end:Date}")
        return " AND ".join(parts)

    @property
    def params(self) -> dict[str, Any]:
        """The query parameters of :attr:`where`."""
        series = self.series
        params: dict[str, Any] = {"source": series.source, "market": series.market, "symbol": series.symbol}
        if self.threshold is not None:
            params["threshold"] = self.threshold
        if self.options is not None:
            params["options"] = self.options.key
        if self.start is not None:
            params["start"] = self.start
        if self.end is not None:
            params["end"] = self.end
        return params

    def visible(self, database: str) -> str:
        """:attr:`where` restricted to the current version of each day (bars of ``range_bars``)."""
        where = self.where
        return (
            f"{where} AND (day, write_id) IN "
            f"(SELECT day, write_id FROM {database}.bar_coverage FINAL WHERE {where})"
        )


def stored_days(client: Any, database: str, selection: Selection) -> list[tuple[int, str, date]]:
    """(threshold, options key, day) of every stored day the selection matches."""
    sql = (
        f"SELECT threshold_decimal_bps, options, day FROM {database}.bar_coverage FINAL "
        f"WHERE {selection.where} "
        "ORDER BY threshold_decimal_bps, options, day"
    )
    result = client.query(sql, parameters=selection.params)
    return [(int(t), str(k), d) for t, k, d in result.result_rows]


def coverage(client: Any, database: str, key: BarKey, start: date, end: date) -> dict[date, Coverage]:
    """The stored days of ``key`` in ``[start, end]`` with their current version."""
    selection = Selection.of(key, start, end)
    sql = (
        "SELECT day, write_id, bar_count, tick_count, first_agg_trade_id, last_agg_trade_id, "
        "checkpoint_sha256, parent_checkpoint_sha256, created_at, schema_version, kernel_version "
        f"FROM {database}.bar_coverage FINAL "
        f"WHERE {selection.where} ORDER BY day"
    )
    result = client.query(sql, parameters=selection.params)
    return {row[0]: _coverage_record(key, row) for row in result.result_rows}


def _coverage_record(key: BarKey, row: Sequence[Any]) -> Coverage:
    day, write_id, bars, ticks, first_id, last_id, sha, parent_sha, created, schema, kernel = row
    return Coverage(
        key.series, key.threshold, day, int(write_id), int(bars), int(ticks),
        None if first_id is None else int(first_id), None if last_id is None else int(last_id),
        str(sha), str(parent_sha), created if created.tzinfo else created.replace(tzinfo=UTC),
        key.options, int(schema), str(kernel),
    )  # fmt: skip


def checkpoint_at(client: Any, database: str, key: BarKey, day: date) -> bytes | None:
    """The checkpoint stored at the end of ``day``, or None when the day is not stored."""
    selection = Selection.of(key, day, day)
    sql = f"SELECT checkpoint FROM {database}.bar_coverage FINAL WHERE {selection.where}"
    result = client.query(sql, parameters=selection.params, column_formats={"checkpoint": "bytes"})
    rows = result.result_rows
    return bytes(rows[0][0]) if rows else None


def checkpoints_at(
    client: Any, database: str, series: Series, thresholds: Sequence[int], day: date, *, options: BarOptions
) -> dict[int, bytes]:
    """The checkpoints stored at the end of ``day`` for several thresholds (absent ones omitted)."""
    wanted = [check_threshold(t) for t in thresholds]
    selection = Selection(series, None, options, day, day)
    sql = (
        f"SELECT threshold_decimal_bps, checkpoint FROM {database}.bar_coverage FINAL "
        f"WHERE {selection.where} "
        "AND threshold_decimal_bps IN {thresholds:Array(UInt32)}"
    )
    params = selection.params | {"thresholds": wanted}
    result = client.query(sql, parameters=params, column_formats={"checkpoint": "bytes"})
    return {int(t): bytes(cp) for t, cp in result.result_rows}


def select_bars(
    client: Any,
    database: str,
    key: BarKey,
    selection: Selection,
    order: str,
    *,
    columns: Sequence[str] | None = None,
) -> pl.DataFrame:
    """The visible bars of ``selection`` in the order (and limit) of the ``order`` clause: every
    column of the bar frame, or only ``columns`` (bar-frame names, in that order)."""
    schema = bar_frame_schema(key.series, key.options)
    if columns is not None:
        if unknown := [c for c in columns if c not in schema]:
            raise ValueError(f"unknown bar columns {unknown}; the bars of {key} have {list(schema)}")
        schema = {c: schema[c] for c in columns}
    stored = [f"{c}_us" if c in _TIME_COLUMNS else c for c in schema]
    sql = f"SELECT {', '.join(stored)} FROM {database}.range_bars WHERE {selection.visible(database)} {order}"
    table = client.query_arrow(sql, parameters=selection.params, use_strings=True)
    return _to_bar_frame(pl.DataFrame(pl.from_arrow(table)), schema)


def count_bars(client: Any, database: str, selection: Selection) -> int:
    """Number of visible bars of ``selection``."""
    sql = f"SELECT count() FROM {database}.range_bars WHERE {selection.visible(database)}"
    result = client.query(sql, parameters=selection.params)
    return int(result.result_rows[0][0])


def status_rows(client: Any, database: str) -> list[SeriesStatus]:
    """Days, bars, ticks and stale days stored per (series, threshold, bar options)."""
    sql = (
        "SELECT source, market, symbol, threshold_decimal_bps, options, count(), min(day), max(day), "
        "sum(bar_count), sum(tick_count), "
        "countIf(schema_version != {schema:UInt16} OR kernel_version != {kernel:String}) "
        f"FROM {database}.bar_coverage FINAL "
        "GROUP BY source, market, symbol, threshold_decimal_bps, options "
        "ORDER BY source, market, symbol, threshold_decimal_bps, options"
    )
    # records.KERNEL_VERSION is read at call time: the one definition the whole store follows
    rows = client.query(
        sql, parameters={"schema": SCHEMA_VERSION, "kernel": records.KERNEL_VERSION}
    ).result_rows
    return [
        SeriesStatus(
            Series(r[0], r[1], r[2]),
            int(r[3]),
            int(r[5]),
            r[6],
            r[7],
            int(r[8]),
            int(r[9]),
            BarOptions.from_key(str(r[4])),
            int(r[10]),
        )
        for r in rows
    ]


def bar_frame_schema(series: Series, options: BarOptions) -> dict[str, pl.DataType]:
    """The bar frame's columns in the kernel's order: BAR_SCHEMA, the lookback and intra groups
    (when ``options`` has them), then the spread columns (Exness)."""
    groups = (LOOKBACK_SCHEMA if options.lookback_trades else {}) | (
        INTRA_SCHEMA if options.intra_bar else {}
    )
    return dict(BAR_SCHEMA) | groups | dict(source_type(series).spread_schema)


def _to_bar_frame(raw: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """ClickHouse rows -> the bar frame of ``schema`` (times stored as microseconds)."""
    if raw.is_empty() and not raw.columns:
        return pl.DataFrame(schema=schema)
    return raw.select(
        (pl.col(f"{c}_us").cast(pl.Int64) if c in _TIME_COLUMNS else pl.col(c)).cast(dtype).alias(c)
        for c, dtype in schema.items()
    )
