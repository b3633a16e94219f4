"""Helpers shared by the asset modules: partition keys of a run, metadata rendering, automation."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import dagster as dg
import polars as pl

from rangebar_pipeline import manifest
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.options import BarOptions

OWNERS: Final = ["team:quant-data"]
#: The return annotation of the assets. Dagster recognises only the bare class (not ``[Any]``) when
#: an asset reports check results, so the alias hides the type argument from the runtime.
if TYPE_CHECKING:
    AssetResult: TypeAlias = dg.MaterializeResult[Any]
else:
    AssetResult = dg.MaterializeResult
_DAGSTER_TYPES: Final = {pl.Float64: "float", pl.Int64: "int", pl.Boolean: "bool", pl.Date: "date"}


def run_partition_keys(context: dg.OpExecutionContext) -> list[str]:
    """The partition keys of the current step (one, a range from a single-run backfill, or none)."""
    if context.has_partition_key or context.has_partition_key_range:
        return list(context.partition_keys)
    return []


def day_start(day: date) -> datetime:
    """``day`` 00:00 UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def follow_upstream(config: PipelineConfig) -> dg.AutomationCondition[Any]:
    """Eager automation over the last ``automation_lookback_days`` days (not only the latest one).

    Dagster's ``eager()`` with its time window widened to the lookback, and the window also applied
    inside its ``since_last_handled`` clause. A ``since`` condition evaluates its trigger and reset
    over *every* partition of the asset: there ``newly_missing`` would compute the missing subset of
    the whole (date x series) space, and ``initial_evaluation`` would store all of it in the cursor
    (millions of keys at hundreds of series since 2020; minutes per tick). Within the window the
    outcome is ``eager()``'s; outside it neither condition requests anything.
    """
    window = dg.AutomationCondition.in_latest_time_window(
        lookback_delta=timedelta(days=config.automation_lookback_days)
    )
    newly_missing = (window & dg.AutomationCondition.missing()).newly_true().with_label("newly_missing")
    deps_updated = (window & dg.AutomationCondition.any_deps_updated()).with_label("any_deps_updated")
    return (
        dg.AutomationCondition.eager()
        .replace("in_latest_time_window", window)
        .replace("newly_missing", newly_missing)
        .replace("any_deps_updated", deps_updated)
        .replace("initial_evaluation", window & dg.AutomationCondition.initial_evaluation())
    )


def column_schema(frame_schema: Mapping[str, pl.DataType]) -> dg.TableSchema:
    """A Dagster table schema for a polars schema; bar columns carry their manifest entry
    (``features.toml``: formula, unit, valid range, nullability) as description and constraints."""
    described = {c.name: c for c in manifest.COLUMNS}
    columns = []
    for name, dtype in frame_schema.items():
        kind = "timestamp[us, UTC]" if isinstance(dtype, pl.Datetime) else None
        kind = kind or _DAGSTER_TYPES.get(type(dtype)) or _DAGSTER_TYPES.get(dtype.base_type()) or str(dtype)
        entry = described.get(name)
        if entry is None:
            columns.append(dg.TableColumn(name, kind))
            continue
        columns.append(
            dg.TableColumn(
                name,
                kind,
                description=(
                    f"{entry.formula} [{entry.unit}; {entry.group}; valid {manifest.range_text(entry)}]"
                ),
                constraints=dg.TableColumnConstraints(nullable=entry.nullable),
            )
        )
    return dg.TableSchema(columns=columns)


def markdown_table(rows: Sequence[Mapping[str, Any]], *, limit: int = 50) -> str:
    """Rows of dicts as a Markdown table (at most ``limit`` rows, the rest counted)."""
    if not rows:
        return "(none)"
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows[:limit]:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in header) + " |")
    if len(rows) > limit:
        lines.append(f"\n... and {len(rows) - limit} more rows")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return "" if value is None else str(value).replace("|", "\\|")


def frame_sha256(frame: pl.DataFrame) -> str:
    """A content hash of a frame: its schema, then each column's values and nulls.

    Numeric and temporal columns are hashed as their raw buffers (no text rendering), so a day of
    tens of thousands of bars hashes in milliseconds; identical values give the identical hash
    whatever the frame's chunking.
    """
    digest = hashlib.sha256(repr(list(frame.schema.items())).encode())
    for column in frame.iter_columns():
        physical = column.to_physical()
        if physical.dtype.is_numeric():
            if physical.null_count():
                digest.update(physical.is_null().to_numpy().tobytes())
                physical = physical.fill_null(0)
            digest.update(physical.rechunk().to_numpy().tobytes())
        else:
            digest.update(column.cast(pl.String).fill_null("\x00").str.join("\x1f").item().encode())
    return digest.hexdigest()


def timestamp(value: datetime | None) -> dg.MetadataValue[Any] | None:
    """A Dagster timestamp metadata value (None stays None)."""
    return None if value is None else dg.MetadataValue.timestamp(value)


def drop_none(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata without ``None`` values (Dagster metadata values cannot be None)."""
    return {k: v for k, v in metadata.items() if v is not None}


def groups_text(options: BarOptions) -> str:
    """`` and the lookback group``, ... : the opt-in groups the bars of ``options`` carry."""
    groups = [
        name for name, on in (("lookback", options.lookback_trades), ("intra", options.intra_bar)) if on
    ]
    return f" and the {' and '.join(groups)} group{'s' if len(groups) > 1 else ''}" if groups else ""
