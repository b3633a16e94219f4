"""Days before a series' first published day: recorded as materialized with 0 rows and a note.

A partition before the series' first day (its ``start`` in ``pipeline.yaml``) has no data and never
will; recording it (instead of leaving it missing or failing on a 404) keeps the Partitions tab
truthful and makes a "missing only" backfill skip it. Nothing is fetched, computed or stored for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from typing import Any, Final

import dagster as dg

from rangebar_pipeline.assets.provenance import latest_version, version_tags
from rangebar_pipeline.partitions import partition_key
from rangebar_pipeline.series import Series

__all__ = [
    "EMPTY_DATA_VERSION",
    "PER_DAY_CHECKS",
    "before_start_events",
    "before_start_metadata",
    "before_start_note",
]

#: The data version of a day with no data (the same for every such day: nothing downstream changes).
EMPTY_DATA_VERSION: Final = "no-data-before-series-start"
#: The checks evaluated per day (partitioned); the others are per run.
PER_DAY_CHECKS: Final = frozenset({"tier1", "continuity", "expectations"})


def before_start_note(series: Series, first_day: date) -> str:
    return (
        f"{series} starts on {first_day} (its first published day, `start` in pipeline.yaml): this day "
        "has no data, nothing was fetched or computed"
    )


def before_start_metadata(series: Series, first_day: date) -> dict[str, Any]:
    """The metadata of a day before the series' first day."""
    return {
        "dagster/partition_row_count": 0,
        "rows": 0,
        "before_series_start": True,
        "note": before_start_note(series, first_day),
    }


def before_start_events(
    instance: dg.DagsterInstance,
    series: Series,
    days: Iterable[date],
    *,
    first_day: date,
    checks: Iterable[dg.AssetCheckKey],
    code_versions: Mapping[dg.AssetKey, str],
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """Per day and asset of ``code_versions``: a 0-row materialization with the note, then the
    asset's selected per-day checks, passed and linked to it."""
    wanted = [c for c in checks if c.name in PER_DAY_CHECKS]
    note = before_start_note(series, first_day)
    for day in days:
        label = partition_key(day, series)
        for asset, code_version in code_versions.items():
            yield dg.AssetMaterialization(
                asset_key=asset,
                partition=label,
                metadata=before_start_metadata(series, first_day),
                tags=version_tags(EMPTY_DATA_VERSION, code_version, {}),
            )
            mine = [c for c in wanted if c.asset_key == asset]
            if not mine:
                continue
            target = latest_version(instance, asset, label)
            for check in mine:
                yield dg.AssetCheckEvaluation(
                    asset_key=asset,
                    check_name=check.name,
                    passed=True,
                    severity=dg.AssetCheckSeverity.ERROR,
                    blocking=check.name != "continuity",
                    partition=label,
                    description=f"{label}: no data to check. {note}",
                    metadata={"before_series_start": True},
                    target_materialization_data=target.target if target is not None else None,
                )
