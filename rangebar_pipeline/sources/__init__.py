"""Data sources: Binance Vision aggTrades and Exness tick archives, over a shared download client.

Each source is one :class:`TickSource`; :func:`source_type` names it for a series (what it is),
:func:`source_for` gives a downloader with its default mirror.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rangebar_pipeline.sources.base import (
    MARKETS,
    SOURCES,
    Fetched,
    Market,
    Source,
    TickSource,
    source_for,
    source_type,
)

if TYPE_CHECKING:
    from rangebar_pipeline.sources.binance_vision import BinanceVision, parse_agg_trades
    from rangebar_pipeline.sources.exness import (
        EXNESS_RANK_LIMIT,
        EXNESS_TICK_SCHEMA,
        SPREAD_COLUMNS,
        ExnessSource,
        Strictness,
        add_spread_stats,
        parse_exness_ticks,
    )
    from rangebar_pipeline.sources.http import Download, HttpClient, RetryPolicy

# The sources import on first access (PEP 562): reading the tick cache needs none of them.
_LAZY: dict[str, str] = {
    "BinanceVision": "binance_vision",
    "parse_agg_trades": "binance_vision",
    **dict.fromkeys(
        (
            "EXNESS_RANK_LIMIT",
            "EXNESS_TICK_SCHEMA",
            "SPREAD_COLUMNS",
            "ExnessSource",
            "Strictness",
            "add_spread_stats",
            "parse_exness_ticks",
        ),
        "exness",
    ),
    **dict.fromkeys(("Download", "HttpClient", "RetryPolicy"), "http"),
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value


__all__ = [
    "EXNESS_RANK_LIMIT",
    "EXNESS_TICK_SCHEMA",
    "MARKETS",
    "SOURCES",
    "SPREAD_COLUMNS",
    "BinanceVision",
    "Download",
    "ExnessSource",
    "Fetched",
    "HttpClient",
    "Market",
    "RetryPolicy",
    "Source",
    "Strictness",
    "TickSource",
    "add_spread_stats",
    "parse_agg_trades",
    "parse_exness_ticks",
    "source_for",
    "source_type",
]
