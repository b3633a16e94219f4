"""rangebar_pipeline: exact, fast range bars from trade ticks.

The kernel (Rust, fixed point) turns trades into range bars with 10 microstructure features;
the library fetches and caches ticks (Parquet), stores bars (ClickHouse/chDB), validates them and
runs them as Dagster assets.

>>> from rangebar_pipeline import process_trades_polars
>>> bars = process_trades_polars(
...     {"timestamp": [1_700_000_000_000, 1_700_000_001_000], "price": [100.0, 100.25], "quantity": [1, 1]},
...     threshold_decimal_bps=250,
... )
>>> list(bars.columns)
['Open', 'High', 'Low', 'Close', 'Volume']
"""

from __future__ import annotations

from rangebar_pipeline._core import __version__ as _core_version
from rangebar_pipeline.api import (
    PrecomputeProgress,
    PrecomputeResult,
    count_bars,
    get_cached_bars,
    get_n_range_bars,
    get_range_bars,
    invalidate,
    precompute_range_bars,
)
from rangebar_pipeline.constants import (
    CONTINUITY_TOLERANCE_PCT,
    THRESHOLD_DECIMAL_MAX,
    THRESHOLD_DECIMAL_MIN,
    THRESHOLD_PRESETS,
    TIER1_SYMBOLS,
    resolve_threshold,
)
from rangebar_pipeline.exceptions import (
    AccumulatorOverflowError,
    CheckpointError,
    ChecksumMismatchError,
    ContinuityError,
    ContinuityWarning,
    CorruptArchiveError,
    DataNotFoundError,
    DownloadError,
    InvalidQuoteError,
    InvalidThresholdError,
    InvalidTradeError,
    MissingColumnError,
    PipelineConfigError,
    RangeBarError,
    SourceError,
    StoreError,
    StoreLockedError,
    ThresholdTooSmallError,
    TimestampUnitError,
    UnsortedTradesError,
)
from rangebar_pipeline.frames import bars_to_pandas
from rangebar_pipeline.processing import (
    Checkpoint,
    PositionVerification,
    RangeBarProcessor,
    process_trades_chunked,
    process_trades_polars,
    process_trades_to_dataframe,
    process_trades_to_dataframe_cached,
)
from rangebar_pipeline.schema import BAR_COLUMNS, FEATURE_COLUMNS
from rangebar_pipeline.series import Series
from rangebar_pipeline.validation import (
    ASSET_CLASS_MULTIPLIERS,
    VALIDATION_PRESETS,
    AssetClass,
    GapInfo,
    GapTier,
    TieredValidationResult,
    TierSummary,
    TierThresholds,
    ValidationPreset,
    detect_asset_class,
    validate_conservation,
    validate_continuity,
    validate_continuity_tiered,
    validate_expectations,
    validate_tier1,
    validate_tier2,
)

__version__ = _core_version


__all__ = [
    "ASSET_CLASS_MULTIPLIERS",
    "BAR_COLUMNS",
    "CONTINUITY_TOLERANCE_PCT",
    "FEATURE_COLUMNS",
    "THRESHOLD_DECIMAL_MAX",
    "THRESHOLD_DECIMAL_MIN",
    "THRESHOLD_PRESETS",
    "TIER1_SYMBOLS",
    "VALIDATION_PRESETS",
    "AccumulatorOverflowError",
    "AssetClass",
    "Checkpoint",
    "CheckpointError",
    "ChecksumMismatchError",
    "ContinuityError",
    "ContinuityWarning",
    "CorruptArchiveError",
    "DataNotFoundError",
    "DownloadError",
    "GapInfo",
    "GapTier",
    "InvalidQuoteError",
    "InvalidThresholdError",
    "InvalidTradeError",
    "MissingColumnError",
    "PipelineConfigError",
    "PositionVerification",
    "PrecomputeProgress",
    "PrecomputeResult",
    "RangeBarError",
    "RangeBarProcessor",
    "Series",
    "SourceError",
    "StoreError",
    "StoreLockedError",
    "ThresholdTooSmallError",
    "TierSummary",
    "TierThresholds",
    "TieredValidationResult",
    "TimestampUnitError",
    "UnsortedTradesError",
    "ValidationPreset",
    "__version__",
    "bars_to_pandas",
    "count_bars",
    "detect_asset_class",
    "get_cached_bars",
    "get_n_range_bars",
    "get_range_bars",
    "invalidate",
    "precompute_range_bars",
    "process_trades_chunked",
    "process_trades_polars",
    "process_trades_to_dataframe",
    "process_trades_to_dataframe_cached",
    "resolve_threshold",
    "validate_conservation",
    "validate_continuity",
    "validate_continuity_tiered",
    "validate_expectations",
    "validate_tier1",
    "validate_tier2",
]
