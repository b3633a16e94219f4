"""What the library entry points share: argument parsing, output shapes, the continuity action."""

from __future__ import annotations

import logging
import warnings
from datetime import date
from typing import TYPE_CHECKING, Literal, TypeAlias

import polars as pl

from rangebar_pipeline.calendar import parse_day
from rangebar_pipeline.exceptions import ContinuityError, ContinuityWarning
from rangebar_pipeline.frames import OutputFormat, convert_bars, empty_bars
from rangebar_pipeline.processing import RangeBarProcessor
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources.base import source_type
from rangebar_pipeline.sources.exness import STRICTNESS_LEVELS, ExnessSource

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "ContinuityAction",
    "Frame",
    "InvalidateMode",
    "ValidateMode",
    "check_continuity",
    "day_list",
    "day_span",
    "exness_source",
    "incomplete_bars",
    "output_frame",
    "parse_day",
]

Frame: TypeAlias = "pd.DataFrame | pl.DataFrame | pa.Table"
InvalidateMode = Literal["smart", "overlap", "full", "none"]
ValidateMode = Literal["error", "warn", "skip"]
ContinuityAction = Literal["warn", "raise", "log"]
_log = logging.getLogger("rangebar_pipeline")


def day_span(start_date: date | str, end_date: date | str) -> tuple[date, date]:
    """``(start, end)`` parsed, with ``start <= end``."""
    start = parse_day(start_date, name="start_date")
    end = parse_day(end_date, name="end_date")
    if start > end:
        raise ValueError(f"start_date must be <= end_date, got {start} > {end}")
    return start, end


def day_list(days: list[date]) -> str:
    """The first ten days, and how many more."""
    shown = ", ".join(d.isoformat() for d in days[:10])
    return shown + (f" (+{len(days) - 10} more)" if len(days) > 10 else "")


def exness_source(validation: str) -> ExnessSource:
    """The Exness source with quote checks at ``validation`` (used by Exness series only)."""
    if validation not in STRICTNESS_LEVELS:
        raise ValueError(
            f"Unknown validation level: {validation!r}; expected one of {list(STRICTNESS_LEVELS)}"
        )
    return ExnessSource(strictness=validation)


def check_continuity(
    bars: pl.DataFrame, series: Series, threshold: int, tolerance: float | None, action: str
) -> bool:
    """Run :func:`validate_continuity` on ``bars``; act on breaks (``raise``/``error``, ``warn``, ``log``).

    Trade ids are checked for Binance only (Exness ids are synthetic: timestamp x 1000 + rank).
    """
    from rangebar_pipeline.validation.continuity import validate_continuity

    what = f"{series} {threshold} dbps"
    result = validate_continuity(bars, tolerance, threshold, check_ids=source_type(series).contiguous_ids)
    if result.is_valid:
        return True
    found = [d.to_dict() for d in result.discontinuities[:10]]
    message = f"Found {result.discontinuity_count} discontinuities in {result.bar_count} bars of {what}"
    if action in ("raise", "error"):
        raise ContinuityError(message, found)
    if action == "warn":
        warnings.warn(message, ContinuityWarning, stacklevel=3)
    else:
        _log.warning(message)
    return False


def incomplete_bars(checkpoint: bytes | None) -> pl.DataFrame:
    """The unfinished bar held by ``checkpoint`` as a one-row frame (empty without one)."""
    if checkpoint is None:
        return empty_bars()
    return RangeBarProcessor.from_checkpoint(checkpoint).incomplete_bar_frame()


def output_frame(bars: pl.DataFrame, output: OutputFormat, include_microstructure: bool) -> Frame:
    """``bars`` in the requested output format."""
    return convert_bars(bars, output, include_microstructure=include_microstructure)
