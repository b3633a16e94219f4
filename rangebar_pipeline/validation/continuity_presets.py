"""Continuity presets: gap tiers (the size classes of a price gap), asset classes and the named
policies of :func:`~rangebar_pipeline.validation.continuity.validate_continuity_tiered` (REFERENCE §8.3).

"Tier" here means a gap size class only (``GapTier``, 7.1.3's name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

ValidationMode: TypeAlias = Literal["error", "warn", "skip"]


class GapTier(IntEnum):
    """Severity of a price gap between a bar's close and the next bar's open."""

    PRECISION = 1
    NOISE = 2
    MARKET_MOVE = 3
    MICROSTRUCTURE = 4
    SESSION_BOUNDARY = 5


class AssetClass(StrEnum):
    """Asset class, used only to pick a continuity preset."""

    CRYPTO = "crypto"
    FOREX = "forex"
    EQUITIES = "equities"
    UNKNOWN = "unknown"


#: As the reference; informational only (never applied by the checks, as in the reference).
ASSET_CLASS_MULTIPLIERS: Final[Mapping[AssetClass, float]] = MappingProxyType(
    {AssetClass.CRYPTO: 1.0, AssetClass.FOREX: 0.5, AssetClass.EQUITIES: 1.5, AssetClass.UNKNOWN: 1.0}
)


@dataclass(frozen=True, slots=True)
class TierThresholds:
    """Gap-tier boundaries as fractions; the session boundary is ``threshold * session_factor``."""

    precision: float = 1e-5
    noise: float = 1e-4
    market_move: float = 1e-3
    session_factor: float = 2.0

    def classify(self, gap: float, threshold_fraction: float) -> GapTier:
        """The tier of a relative gap for a bar threshold given as a fraction (250 dbps -> 0.0025)."""
        if gap < self.precision:
            return GapTier.PRECISION
        if gap < self.noise:
            return GapTier.NOISE
        if gap < self.market_move:
            return GapTier.MARKET_MOVE
        if gap < threshold_fraction * self.session_factor:
            return GapTier.MICROSTRUCTURE
        return GapTier.SESSION_BOUNDARY


@dataclass(frozen=True, slots=True)
class ValidationPreset:
    """A named continuity policy: tolerance (fraction), mode and tier boundaries."""

    tolerance_pct: float
    mode: ValidationMode
    tier_thresholds: TierThresholds = field(default_factory=TierThresholds)
    asset_class: AssetClass | None = None
    description: str = ""


VALIDATION_PRESETS: Final[Mapping[str, ValidationPreset]] = MappingProxyType(
    {
        "permissive": ValidationPreset(0.05, "warn", description="Accept most gaps, warn on large ones"),
        "research": ValidationPreset(0.02, "warn", description="Exploratory analysis"),
        "standard": ValidationPreset(0.01, "warn", description="Balanced default"),
        "strict": ValidationPreset(0.005, "error", description="Raise on gaps above 0.5%"),
        "paranoid": ValidationPreset(0.001, "error", description="Raise on gaps above 0.1%"),
        "crypto": ValidationPreset(0.02, "warn", asset_class=AssetClass.CRYPTO, description="Crypto"),
        "forex": ValidationPreset(0.01, "warn", asset_class=AssetClass.FOREX, description="Forex"),
        "equities": ValidationPreset(0.03, "warn", asset_class=AssetClass.EQUITIES, description="Equities"),
        "skip": ValidationPreset(0.0, "skip", description="No validation"),
        "audit": ValidationPreset(0.002, "error", description="Data-quality audit"),
    }
)

_CRYPTO_BASES: Final = [
    "BTC",
    "ETH",
    "BNB",
    "SOL",
    "XRP",
    "ADA",
    "DOGE",
    "DOT",
    "MATIC",
    "AVAX",
    "LINK",
    "UNI",
    "ATOM",
    "LTC",
    "ETC",
    "XLM",
    "ALGO",
    "NEAR",
    "FIL",
    "APT",
]
_CRYPTO_QUOTES: Final = ("USDT", "BUSD", "USDC", "TUSD", "FDUSD")
_FX_CURRENCIES: Final = frozenset(["EUR", "USD", "GBP", "JPY", "CHF", "AUD", "NZD", "CAD", "SEK", "NOK"])
_COMMODITIES: Final = ("XAU", "XAG", "BRENT", "WTI")


def detect_asset_class(symbol: str) -> AssetClass:
    """Asset class of a symbol by the reference's rules (``XAUUSD`` -> FOREX, ``AAPL`` -> UNKNOWN)."""
    sym = symbol.upper()
    if any(base in sym for base in _CRYPTO_BASES) or sym.endswith(_CRYPTO_QUOTES):
        return AssetClass.CRYPTO
    if len(sym) == 6 and sym[:3] in _FX_CURRENCIES and sym[3:] in _FX_CURRENCIES:
        return AssetClass.FOREX
    if any(c in sym for c in _COMMODITIES):
        return AssetClass.FOREX
    return AssetClass.UNKNOWN


def resolve_preset(
    validation: str | Mapping[str, Any] | ValidationPreset, asset_class: AssetClass
) -> tuple[ValidationPreset, str | None]:
    """The preset ``validation`` names (``"auto"``: by asset class), and the name to report."""
    if isinstance(validation, ValidationPreset):
        return validation, None
    if isinstance(validation, str):
        name = validation
        if name == "auto":
            name = asset_class.value if asset_class is not AssetClass.UNKNOWN else "standard"
        if name not in VALIDATION_PRESETS:
            raise ValueError(
                f"Unknown validation preset: {validation!r}. "
                f"Valid presets: {', '.join(VALIDATION_PRESETS)}, auto"
            )
        return VALIDATION_PRESETS[name], name  # "auto" reports the preset it resolved to
    if isinstance(validation, Mapping):
        tiers = validation.get("tier_thresholds", TierThresholds())
        if isinstance(tiers, Mapping):
            tiers = TierThresholds(**tiers)
        return ValidationPreset(float(validation["tolerance_pct"]), validation["mode"], tiers), None
    raise TypeError(
        f"validation must be a preset name, a dict or a ValidationPreset, found {type(validation).__name__}"
    )


__all__ = [
    "ASSET_CLASS_MULTIPLIERS",
    "VALIDATION_PRESETS",
    "AssetClass",
    "GapTier",
    "TierThresholds",
    "ValidationMode",
    "ValidationPreset",
    "detect_asset_class",
    "resolve_preset",
]
