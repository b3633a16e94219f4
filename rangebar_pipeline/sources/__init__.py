"""Data sources: Binance Vision aggTrades and Exness tick archives, over a shared download client."""

from __future__ import annotations

from rangebar_pipeline.sources.base import MARKETS, SOURCES, Fetched, Market, Source
from rangebar_pipeline.sources.binance_vision import BinanceVision, parse_agg_trades
from rangebar_pipeline.sources.exness import (
    EXNESS_TICK_SCHEMA,
    SPREAD_COLUMNS,
    ExnessSource,
    Strictness,
    add_spread_stats,
    parse_exness_ticks,
)
from rangebar_pipeline.sources.http import Download, HttpClient, RetryPolicy

__all__ = [
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
    "add_spread_stats",
    "parse_agg_trades",
    "parse_exness_ticks",
]
