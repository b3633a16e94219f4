"""Bars as plain dicts (rangebar 7.1.3's ``process_trades`` format) and back to frames.

A record is one bar row: ``timestamp`` (the close time, RFC 3339 text, as 7.1.3 gave it) followed by
7.1.3's keys in its order and then this package's extra columns (``open_time``, turnovers, ids, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import polars as pl

from rangebar_pipeline.exceptions import MissingColumnError
from rangebar_pipeline.schema import BAR_SCHEMA, FEATURE_COLUMNS

__all__ = ["REFERENCE_BAR_KEYS", "bars_from_records", "bars_to_records", "rfc3339"]

#: The keys (after ``timestamp``) of a 7.1.3 bar dict, in its order.
REFERENCE_BAR_KEYS: Final[tuple[str, ...]] = (
    "open", "high", "low", "close", "volume", "vwap", "buy_volume", "sell_volume",
    "individual_trade_count", "agg_record_count", *FEATURE_COLUMNS,
)  # fmt: skip
_RFC3339: Final = "%Y-%m-%dT%H:%M:%S%.f%:z"
_ORDER: Final[tuple[str, ...]] = (
    *REFERENCE_BAR_KEYS,
    *(c for c in BAR_SCHEMA if c not in REFERENCE_BAR_KEYS),
)


def rfc3339(value: datetime) -> str:
    """``2024-01-01T00:00:10+00:00`` (fractional seconds only when non-zero)."""
    return value.astimezone(UTC).isoformat()


def bars_to_records(bars: pl.DataFrame) -> list[dict[str, Any]]:
    """One JSON-able dict per bar: ``timestamp`` (close time) then every bar column (times in RFC 3339)."""
    extras = [c for c in bars.columns if c not in BAR_SCHEMA]
    rows = bars.select(*_ORDER, *extras).to_dicts()
    for row in rows:
        row["open_time"], row["close_time"] = rfc3339(row["open_time"]), rfc3339(row["close_time"])
    return [{"timestamp": row["close_time"], **row} for row in rows]


def bars_from_records(records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """The bar frame of records made by :func:`bars_to_records` (``timestamp`` is ignored)."""
    if not records:
        return pl.DataFrame(schema=BAR_SCHEMA)
    absent = [c for c in BAR_SCHEMA if c not in records[0]]
    if absent:
        raise MissingColumnError(
            f"missing required columns: {absent} in the bar dicts; pass the dicts returned by "
            "RangeBarProcessor.process_trades"
        )
    extras = [k for k in records[0] if k not in BAR_SCHEMA and k != "timestamp"]
    frame = pl.DataFrame(
        [{k: r[k] for k in (*BAR_SCHEMA, *extras)} for r in records], infer_schema_length=None
    )
    times = [c for c in ("open_time", "close_time") if frame.schema[c] == pl.String]
    frame = frame.with_columns(pl.col(c).str.to_datetime(_RFC3339, time_unit="us") for c in times)
    return frame.with_columns(pl.col(c).cast(t) for c, t in BAR_SCHEMA.items())
