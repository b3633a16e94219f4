"""Partitions of the pipeline: daily UTC dates x series, and the mappings between them.

Keys of the two-dimensional partitions read ``"{date}|{series}"``, e.g.
``"2024-08-08|binance-spot-BTCUSDT"`` (Dagster orders dimensions by name: ``date`` then ``series``).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Final

import dagster as dg

from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.series import Series

__all__ = [
    "DATE_DIMENSION",
    "SERIES_DIMENSION",
    "contiguous_ranges",
    "daily_series_partitions",
    "days_by_series",
    "parse_partition_key",
    "partition_key",
    "previous_day_mapping",
    "same_series_mapping",
    "series_partitions",
]

DATE_DIMENSION: Final = "date"
SERIES_DIMENSION: Final = "series"


def series_partitions(config: PipelineConfig) -> dg.StaticPartitionsDefinition:
    """One partition per configured series."""
    return dg.StaticPartitionsDefinition(list(config.series_keys))


def daily_series_partitions(config: PipelineConfig) -> dg.MultiPartitionsDefinition:
    """Daily UTC dates from the configured start date x the configured series."""
    return dg.MultiPartitionsDefinition(
        {
            DATE_DIMENSION: dg.DailyPartitionsDefinition(
                start_date=config.start_date.isoformat(), timezone="UTC"
            ),
            SERIES_DIMENSION: series_partitions(config),
        }
    )


def previous_day_mapping() -> dg.MultiPartitionMapping:
    """Day D of a series depends on day D-1 of the same series (both offsets -1, series identity)."""
    with warnings.catch_warnings():  # the mapping is marked beta; its behaviour here is tested
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _previous_day_mapping()


def _previous_day_mapping() -> dg.MultiPartitionMapping:
    return dg.MultiPartitionMapping(
        {
            DATE_DIMENSION: dg.DimensionPartitionMapping(
                DATE_DIMENSION, dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
            ),
            SERIES_DIMENSION: dg.DimensionPartitionMapping(SERIES_DIMENSION, dg.IdentityPartitionMapping()),
        }
    )


def same_series_mapping() -> dg.MultiToSingleDimensionPartitionMapping:
    """A per-series partition depends on every date of that series."""
    with warnings.catch_warnings():  # the mapping is marked beta; its behaviour here is tested
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SERIES_DIMENSION)


def partition_key(day: date, series: Series | str) -> str:
    """The multi-partition key of (day, series), e.g. ``"2024-08-08|binance-spot-BTCUSDT"``."""
    key = series.key if isinstance(series, Series) else Series.from_key(series).key
    return str(dg.MultiPartitionKey({DATE_DIMENSION: day.isoformat(), SERIES_DIMENSION: key}))


def parse_partition_key(key: str | dg.MultiPartitionKey) -> tuple[date, Series]:
    """Inverse of :func:`partition_key`."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        day_text, series_text = dims[DATE_DIMENSION], dims[SERIES_DIMENSION]
    else:
        parts = str(key).split("|")
        if len(parts) != 2:
            raise ValueError(f"invalid partition key {key!r}: expected 'YYYY-MM-DD|source-market-SYMBOL'")
        day_text, series_text = parts
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        raise ValueError(f"invalid partition key {key!r}: {day_text!r} is not a YYYY-MM-DD date") from None
    return day, Series.from_key(series_text)


def days_by_series(keys: Iterable[str | dg.MultiPartitionKey]) -> dict[Series, list[date]]:
    """Partition keys grouped by series, each list of days ascending (the order a series must run in)."""
    grouped: dict[Series, set[date]] = defaultdict(set)
    for key in keys:
        day, series = parse_partition_key(key)
        grouped[series].add(day)
    return {series: sorted(days) for series, days in sorted(grouped.items(), key=lambda kv: kv[0].key)}


def contiguous_ranges(days: Iterable[date]) -> list[tuple[date, date]]:
    """Ascending days cut into runs of consecutive days, as ``(first, last)`` pairs."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and day == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges
