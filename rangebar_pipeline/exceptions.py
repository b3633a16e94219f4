"""The exception hierarchy of rangebar_pipeline.

Every error the package raises on purpose derives from :class:`RangeBarError`. Errors about bad
arguments or bad input rows also derive from :class:`ValueError` so that callers catching the
built-in type keep working; where rangebar 7.1.3 raised another built-in type for the same
failure (``RuntimeError`` for unsorted trades, failed fetches and stores, ``KeyError`` for a missing
trade field), that type is a base too, so 7.1.3's ``except`` clauses still catch them. The Rust kernel raises
the kernel errors below (it imports them from this module), so one ``except`` clause covers both
sides of the boundary.
"""

from __future__ import annotations

from typing import Any


class RangeBarError(Exception):
    """Base class of every error raised by rangebar_pipeline."""


# --- kernel and input -------------------------------------------------------------------------


class InvalidThresholdError(RangeBarError, ValueError):
    """A threshold outside 1..=100_000 decimal basis points, or an unknown preset name."""


class ThresholdOverflowError(InvalidThresholdError, OverflowError):
    """A threshold that is negative or does not fit 32 bits: 7.1.3's kernel raised ``OverflowError``
    for it, so this is one too (and an :class:`InvalidThresholdError`, a ``ValueError``)."""


class InvalidTradeError(RangeBarError, ValueError):
    """An input trade the kernel refuses (bad price, quantity or ids); the message names the row."""


class UnsortedTradesError(InvalidTradeError, RuntimeError):
    """``(timestamp, agg_trade_id)`` is not strictly increasing at the named row."""


class InvalidQuoteError(InvalidTradeError, RuntimeError):
    """An Exness quote the builder refuses (strictness, order); 7.1.3 raised ``RuntimeError``."""


class ThresholdTooSmallError(InvalidTradeError):
    """``delta == 0``: the price is too small for the threshold at 1e-8 precision."""


class AccumulatorOverflowError(RangeBarError, OverflowError):
    """A bar accumulator would overflow its fixed-point range."""


class MissingColumnError(RangeBarError, ValueError, KeyError):
    """A required input column (or one of its aliases) is missing."""

    def __str__(self) -> str:  # the message, not KeyError's quoted repr
        return Exception.__str__(self)


class TimestampUnitError(RangeBarError, ValueError):
    """The timestamp unit cannot be detected, or is inconsistent with the values."""


class CheckpointError(RangeBarError, ValueError):
    """A checkpoint that cannot be decoded or does not fit the processor."""


# --- sources ----------------------------------------------------------------------------------


class SourceError(RangeBarError, RuntimeError):
    """A data source failed (download, verification or parsing)."""


class DataNotFoundError(SourceError):
    """The source has no data for the requested day or month (HTTP 404 / missing file)."""


class ChecksumMismatchError(SourceError):
    """A downloaded archive does not match its published checksum."""


class CorruptArchiveError(SourceError):
    """An archive is truncated or corrupt, or its CSV does not parse."""


class DownloadError(SourceError):
    """A download failed after its retries (HTTP error, timeout, connection reset)."""


# --- storage ----------------------------------------------------------------------------------


class StoreError(RangeBarError, RuntimeError):
    """A tick or bar store failed."""


class StoreLockedError(StoreError):
    """The embedded store is held by another process."""


# --- pipeline ---------------------------------------------------------------------------------


class PipelineConfigError(RangeBarError, ValueError):
    """The pipeline config file is missing, unreadable or invalid (the message names the file and key)."""


# --- validation -------------------------------------------------------------------------------


class ContinuityError(RangeBarError):
    """Bars are not continuous; ``discontinuities`` lists the offending junctions."""

    def __init__(self, message: str, discontinuities: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.discontinuities: list[dict[str, Any]] = list(discontinuities or [])


class ContinuityWarning(UserWarning):
    """Continuity tolerance exceeded in a warning-mode validation."""


class StaleBarsWarning(UserWarning):
    """Stored bars produced by an older bar schema or kernel were served because their ticks are not
    cached (they are recomputed when the ticks are)."""
