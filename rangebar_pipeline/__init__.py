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

from typing import TYPE_CHECKING, Any

# First: polars' allocator reads its configuration once, when polars is imported (see the module).
import rangebar_pipeline._allocator  # noqa: F401
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
    StaleBarsWarning,
    StoreError,
    StoreLockedError,
    ThresholdOverflowError,
    ThresholdTooSmallError,
    TimestampUnitError,
    UnsortedTradesError,
)
from rangebar_pipeline.series import Series

if TYPE_CHECKING:
    from rangebar_pipeline._core import __version__
    from rangebar_pipeline.api import (
        PrecomputeProgress,
        PrecomputeResult,
        count_bars,
        feature_table_version,
        get_cached_bars,
        get_n_range_bars,
        get_range_bars,
        invalidate,
        precompute_range_bars,
        read_dataset,
    )
    from rangebar_pipeline.compat.processor import (
        PositionVerification,
        RangeBarProcessor,
        process_trades_to_dataframe_cached,
    )
    from rangebar_pipeline.frames import bars_to_pandas
    from rangebar_pipeline.options import BarOptions
    from rangebar_pipeline.processing import (
        Checkpoint,
        process_trades_chunked,
        process_trades_polars,
        process_trades_to_dataframe,
    )
    from rangebar_pipeline.schema import BAR_COLUMNS, FEATURE_COLUMNS
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

# Public names whose modules pull in polars, pandas, pyarrow, the stores or the validators: imported on
# first access (PEP 562), so ``import rangebar_pipeline`` and ``rangebar --help`` stay light.
_LAZY: dict[str, str] = {
    "__version__": "_core",
    **dict.fromkeys(
        (
            "PrecomputeProgress",
            "PrecomputeResult",
            "count_bars",
            "feature_table_version",
            "get_cached_bars",
            "get_n_range_bars",
            "get_range_bars",
            "invalidate",
            "precompute_range_bars",
            "read_dataset",
        ),
        "api",
    ),
    "bars_to_pandas": "frames",
    "BarOptions": "options",
    **dict.fromkeys(
        ("Checkpoint", "process_trades_chunked", "process_trades_polars", "process_trades_to_dataframe"),
        "processing",
    ),
    # rangebar 7.1.3's processor: the core processor plus its 7.1.3 methods (an adapter above the core)
    **dict.fromkeys(
        ("PositionVerification", "RangeBarProcessor", "process_trades_to_dataframe_cached"),
        "compat.processor",
    ),
    "BAR_COLUMNS": "schema",
    "FEATURE_COLUMNS": "schema",
    **dict.fromkeys(
        (
            "ASSET_CLASS_MULTIPLIERS",
            "VALIDATION_PRESETS",
            "AssetClass",
            "GapInfo",
            "GapTier",
            "TieredValidationResult",
            "TierSummary",
            "TierThresholds",
            "ValidationPreset",
            "detect_asset_class",
            "validate_conservation",
            "validate_continuity",
            "validate_continuity_tiered",
            "validate_expectations",
            "validate_tier1",
            "validate_tier2",
        ),
        "validation",
    ),
}


if not TYPE_CHECKING:  # type checkers see the imports above, so a misspelt name stays an error

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
    "BarOptions",
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
    "StaleBarsWarning",
    "StoreError",
    "StoreLockedError",
    "ThresholdOverflowError",
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
    "feature_table_version",
    "get_cached_bars",
    "get_n_range_bars",
    "get_range_bars",
    "invalidate",
    "precompute_range_bars",
    "process_trades_chunked",
    "process_trades_polars",
    "process_trades_to_dataframe",
    "process_trades_to_dataframe_cached",
    "read_dataset",
    "resolve_threshold",
    "validate_conservation",
    "validate_continuity",
    "validate_continuity_tiered",
    "validate_expectations",
    "validate_tier1",
    "validate_tier2",
]
