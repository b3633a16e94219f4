"""Types shared by the sources and the tick store."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, get_args

import polars as pl

__all__ = ["MARKETS", "SOURCES", "Fetched", "Market", "Source", "normalize_symbol", "parse_day"]

Source = Literal["binance", "exness"]
Market = Literal["spot", "um", "cm"]
SOURCES: tuple[Source, ...] = get_args(Source)
MARKETS: tuple[Market, ...] = get_args(Market)

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Fetched:
    """Ticks parsed from one source archive.

    ``frame`` follows ``schema.TICK_SCHEMA`` (plus ``bid``/``ask`` for Exness), sorted by
    ``(timestamp, agg_trade_id)`` with exact duplicates removed (``duplicates_removed`` of them);
    ``checksum`` is the sha256 of the archive, ``url`` where it came from. ``streamed`` is True
    when every row of ``frame`` was also handed, in order and in its final form, to the ``emit``
    callback of the fetch while the archive was parsed (so the caller may have stored it already).
    """

    frame: pl.DataFrame
    url: str
    checksum: str
    duplicates_removed: int
    streamed: bool = False


def normalize_symbol(symbol: str) -> str:
    """``symbol`` upper-cased, checked to be a plain instrument name (letters, digits, ``_``)."""
    normalized = symbol.strip().upper()
    if not _SYMBOL.fullmatch(normalized):
        raise ValueError(f"invalid symbol {symbol!r}: expected letters, digits and '_' (e.g. 'BTCUSDT')")
    return normalized


def parse_day(value: date | str, *, name: str = "day") -> date:
    """A UTC calendar day from a :class:`datetime.date` or a ``'YYYY-MM-DD'`` string."""
    if isinstance(value, datetime):
        raise TypeError(f"{name} must be a date or 'YYYY-MM-DD' (a UTC calendar day), got datetime {value!r}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be a date or 'YYYY-MM-DD', got {value!r}")
