"""Public constants: threshold bounds and presets, 7.1.3's ``TIER1_SYMBOLS``, the continuity tolerance."""

from __future__ import annotations

import operator
from types import MappingProxyType
from typing import Final, SupportsIndex

from rangebar_pipeline.exceptions import InvalidThresholdError, ThresholdOverflowError

#: Smallest valid threshold in decimal basis points (1 dbps = 0.001 %).
THRESHOLD_DECIMAL_MIN: Final[int] = 1
#: Largest valid threshold in decimal basis points (100 %).
THRESHOLD_DECIMAL_MAX: Final[int] = 100_000

#: Named thresholds, accepted wherever a threshold is (values in decimal basis points).
THRESHOLD_PRESETS: Final = MappingProxyType(
    {
        "micro": 10,  # 0.01 %: scalping
        "tight": 50,  # 0.05 %: day trading
        "standard": 100,  # 0.1 %: swing
        "medium": 250,  # 0.25 %: default
        "wide": 500,  # 0.5 %: position
        "macro": 1000,  # 1 %: long-term
    }
)

#: Base assets listed on Binance spot, USD-M and COIN-M.
TIER1_SYMBOLS: Final[tuple[str, ...]] = (
    "AAVE", "ADA", "AVAX", "BCH", "BNB", "BTC", "DOGE", "ETH", "FIL",
    "LINK", "LTC", "NEAR", "SOL", "SUI", "UNI", "WIF", "WLD", "XRP",
)  # fmt: skip

#: rangebar 7.1.3's exported junction tolerance constant (a fraction despite ``_PCT``; unused, as there).
CONTINUITY_TOLERANCE_PCT: Final[float] = 0.0001

#: The one default of every continuity ``tolerance``: a fraction on top of the bar threshold
#: (0.001 = 0.1 %; 7.1.3's ``precompute_range_bars(continuity_tolerance_pct=0.001)``).
DEFAULT_CONTINUITY_TOLERANCE: Final[float] = 0.001


def resolve_tolerance(tolerance: float | None, alias: float | None = None, alias_name: str = "") -> float:
    """A continuity tolerance (fraction) from our ``tolerance`` or 7.1.3's ``*_pct`` keyword ``alias``.

    >>> resolve_tolerance(None), resolve_tolerance(0.002), resolve_tolerance(None, 0.005, "tolerance_pct")
    (0.001, 0.002, 0.005)
    """
    if tolerance is not None and alias is not None:
        raise TypeError(f"pass the tolerance once: as tolerance or as {alias_name} (7.1.3's name)")
    value = tolerance if tolerance is not None else alias
    return DEFAULT_CONTINUITY_TOLERANCE if value is None else float(value)


def resolve_threshold(threshold: str | SupportsIndex) -> int:
    """Return the threshold in decimal basis points, resolving preset names.

    >>> resolve_threshold("medium")
    250
    """
    if isinstance(threshold, str):
        try:
            return THRESHOLD_PRESETS[threshold.strip().lower()]
        except KeyError:
            raise InvalidThresholdError(
                f"Unknown threshold preset: {threshold!r}; valid presets: {sorted(THRESHOLD_PRESETS)}"
            ) from None
    try:
        if isinstance(threshold, bool):
            raise TypeError
        value = operator.index(threshold)
    except TypeError:
        raise InvalidThresholdError(
            f"threshold_decimal_bps must be an int or a preset name, got {type(threshold).__name__} "
            f"{threshold!r}"
        ) from None
    if not THRESHOLD_DECIMAL_MIN <= value <= THRESHOLD_DECIMAL_MAX:
        error = ThresholdOverflowError if not 0 <= value < 2**32 else InvalidThresholdError
        raise error(
            f"threshold_decimal_bps must be between {THRESHOLD_DECIMAL_MIN} and {THRESHOLD_DECIMAL_MAX} "
            f"(0.001% to 100%), got {value}"
        )
    return value
