"""Validation of range bars: plain library functions shared by notebooks and Dagster checks.

- :func:`validate_tier1` - invariant checks (blocking): NaN/inf, OHLC, breach consistency, counts,
  bounded features, volume split, order and duplicates.
- :func:`validate_conservation` - the bars cover every tick of their partition exactly once.
- :func:`validate_continuity` / :func:`validate_continuity_tiered` - junctions between bars
  (trade ids contiguous, times ordered, price gaps classified with the threshold in dbps / 100_000).
- :func:`validate_tier2` - statistical checks (ADF, KPSS, Spearman, mutual information).
- :func:`validate_expectations` - the feature-table gate: the manifest's column rules (one polars
  pass) and the table-level great-expectations suite.

Every result has ``passed``, ``failures``, ``to_dict()`` and ``to_metadata()``.
"""

from __future__ import annotations

from rangebar_pipeline.schema import FEATURE_COLUMNS
from rangebar_pipeline.validation.conservation import (
    ConservationResult,
    ConservationTicks,
    validate_conservation,
)
from rangebar_pipeline.validation.continuity import (
    ASSET_CLASS_MULTIPLIERS,
    CONTINUITY_TOLERANCE_PCT,
    VALIDATION_PRESETS,
    AssetClass,
    ContinuityResult,
    Discontinuity,
    GapInfo,
    GapTier,
    TieredValidationResult,
    TierSummary,
    TierThresholds,
    ValidationPreset,
    detect_asset_class,
    validate_continuity,
    validate_continuity_tiered,
)
from rangebar_pipeline.validation.expectations import ExpectationsResult, validate_expectations
from rangebar_pipeline.validation.results import CheckedResult, CheckOutcome, CheckStatus
from rangebar_pipeline.validation.tier1 import Tier1Result, validate_tier1
from rangebar_pipeline.validation.tier2 import Tier2Result, validate_tier2

#: rangebar 7.1.3's name for the feature columns (a list, as there).
FEATURE_COLS: list[str] = list(FEATURE_COLUMNS)

__all__ = [
    "ASSET_CLASS_MULTIPLIERS",
    "CONTINUITY_TOLERANCE_PCT",
    "FEATURE_COLS",
    "VALIDATION_PRESETS",
    "AssetClass",
    "CheckOutcome",
    "CheckStatus",
    "CheckedResult",
    "ConservationResult",
    "ConservationTicks",
    "ContinuityResult",
    "Discontinuity",
    "ExpectationsResult",
    "GapInfo",
    "GapTier",
    "Tier1Result",
    "Tier2Result",
    "TierSummary",
    "TierThresholds",
    "TieredValidationResult",
    "ValidationPreset",
    "detect_asset_class",
    "validate_conservation",
    "validate_continuity",
    "validate_continuity_tiered",
    "validate_expectations",
    "validate_tier1",
    "validate_tier2",
]
