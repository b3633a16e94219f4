"""A series is one instrument at one venue: (source, market, symbol)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, get_args

__all__ = [
    "MARKETS",
    "MARKET_ALIASES",
    "SOURCES",
    "SOURCE_MARKETS",
    "Market",
    "Series",
    "Source",
    "parse_market",
    "parse_source",
]

Source = Literal["binance", "exness"]
Market = Literal["spot", "um", "cm"]

SOURCES: Final[tuple[Source, ...]] = get_args(Source)
MARKETS: Final[tuple[Market, ...]] = get_args(Market)
#: The markets each source serves (Exness: spot only).
SOURCE_MARKETS: Final[dict[Source, tuple[Market, ...]]] = {"binance": MARKETS, "exness": ("spot",)}

#: Market spellings accepted from users (the reference's aliases included).
MARKET_ALIASES: Final[dict[str, Market]] = {
    "spot": "spot",
    "um": "um",
    "futures-um": "um",
    "futures_um": "um",
    "cm": "cm",
    "futures-cm": "cm",
    "futures_cm": "cm",
}

_SYMBOL_RE: Final = re.compile(r"^[A-Z0-9][A-Z0-9_.-]{0,63}$")


def parse_source(value: str) -> Source:
    """Return the canonical source name for ``value`` (case-insensitive)."""
    name = str(value).strip().lower()
    if name in SOURCES:
        return name
    raise ValueError(f"Unknown source: {value!r}; expected one of {list(SOURCES)}")


def parse_market(value: str, *, source: Source = "binance") -> Market:
    """Return the canonical market for ``value``; Exness has only ``spot``."""
    name = str(value).strip().lower()
    if name not in MARKET_ALIASES:
        raise ValueError(f"Unknown market: {value!r}; expected one of {sorted(MARKET_ALIASES)}")
    market = MARKET_ALIASES[name]
    _check_market(source, market, value)
    return market


def _check_market(source: Source, market: Market, value: str) -> None:
    served = SOURCE_MARKETS[source]
    if market not in served:
        only = "only market" if len(served) == 1 else "markets"
        raise ValueError(f"source {source!r} has {only} {', '.join(map(repr, served))}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Series:
    """One instrument at one venue, e.g. ``Series("binance", "um", "BTCUSDT")``."""

    source: Source
    market: Market
    symbol: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"Unknown source: {self.source!r}; expected one of {list(SOURCES)}")
        if self.market not in MARKETS:
            raise ValueError(f"Unknown market: {self.market!r}; expected one of {list(MARKETS)}")
        _check_market(self.source, self.market, self.market)
        if not _SYMBOL_RE.match(self.symbol):
            raise ValueError(
                f"invalid symbol {self.symbol!r}: expected upper-case letters, digits, '_', '.' or '-'"
            )

    @classmethod
    def of(cls, symbol: str, *, source: str = "binance", market: str = "spot") -> Series:
        """Build a series from user spellings (case-insensitive source, market aliases)."""
        src = parse_source(source)
        return cls(src, parse_market(market, source=src), str(symbol).strip().upper())

    @property
    def key(self) -> str:
        """Stable text key, e.g. ``"binance-spot-BTCUSDT"``."""
        return f"{self.source}-{self.market}-{self.symbol}"

    @classmethod
    def from_key(cls, key: str) -> Series:
        """Inverse of :attr:`key`."""
        parts = key.split("-", 2)
        if len(parts) != 3:
            raise ValueError(f"invalid series key {key!r}: expected 'source-market-SYMBOL'")
        return cls.of(parts[2], source=parts[0], market=parts[1])

    def __str__(self) -> str:
        return self.key
