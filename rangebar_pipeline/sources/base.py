"""The source protocol: what a source is (schema, archives, ids, spreads, probe), and the registry.

Each source is one :class:`TickSource` subclass; the tick cache, the bar store, the engine, the checks
and the sensors ask it (``source_type(series)`` for what it is, an instance for downloads) instead of
comparing source names.
"""

from __future__ import annotations

import importlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, ClassVar, Final, Literal

import polars as pl

from rangebar_pipeline.calendar import days
from rangebar_pipeline.series import MARKETS, SOURCES, Market, Series, Source
from rangebar_pipeline.sources.http import HttpClient

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "MARKETS",
    "SOURCES",
    "Emit",
    "Fetched",
    "Market",
    "Source",
    "TickSource",
    "normalize_symbol",
    "source_for",
    "source_type",
    "split_by_day",
]

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9_]{0,63}$")
#: Receives parsed rows in their final tick-schema form (an Arrow record batch), in file order,
#: while parsing goes on; then ``None`` once the whole archive is parsed.
Emit = Callable[["pa.RecordBatch | None"], None]
#: Where each source is implemented (module under ``rangebar_pipeline.sources``, class), imported
#: on first use: describing a series needs no parser.
_IMPLEMENTATIONS: Final[dict[Source, tuple[str, str]]] = {
    "binance": ("binance_vision", "BinanceVision"),
    "exness": ("exness", "ExnessSource"),
}


@dataclass(frozen=True, slots=True)
class Fetched:
    """Ticks parsed from one source archive.

    ``frame`` follows the source's ``tick_schema`` (``schema.TICK_SCHEMA``, plus ``bid``/``ask`` for
    Exness), sorted by ``(timestamp, agg_trade_id)`` with exact duplicates removed
    (``duplicates_removed`` of them); ``checksum`` is the sha256 of the archive, ``url`` where it came
    from. ``streamed`` is True when every row of ``frame`` was also handed, in order and in its final
    form, to the ``emit`` callback of the fetch while the archive was parsed (so the caller may have
    stored it already).
    """

    frame: pl.DataFrame
    url: str
    checksum: str
    duplicates_removed: int
    streamed: bool = False


class TickSource(ABC):
    """One source of ticks, described once.

    Class attributes say what the source is; an instance (with its mirror and download client)
    fetches and probes archives.
    """

    #: The source's name in a :class:`~rangebar_pipeline.series.Series`.
    name: ClassVar[Source]
    #: The markets it serves.
    markets: ClassVar[tuple[Market, ...]]
    #: Columns and dtypes of its stored ticks.
    tick_schema: ClassVar[Mapping[str, pl.DataType]]
    #: Spread statistics it adds to bars (empty: none).
    spread_schema: ClassVar[Mapping[str, pl.DataType]] = {}
    #: Whether trade ids run on without gaps across days (a jump at a day boundary means lost ticks).
    contiguous_ids: ClassVar[bool]
    #: What one archive holds: one UTC day or one calendar month.
    archive: ClassVar[Literal["day", "month"]]
    #: How a tick's price is formed.
    price: ClassVar[str]
    #: The public archive root, and the environment variable naming a mirror instead.
    default_base_url: ClassVar[str]
    base_url_env: ClassVar[str]

    def __init__(self, base_url: str | None = None, *, client: HttpClient | None = None) -> None:
        self.base_url = (base_url or os.environ.get(self.base_url_env) or self.default_base_url).rstrip("/")
        self._client = client

    @property
    def client(self) -> HttpClient:
        """The download client (a default one is created on first use)."""
        if self._client is None:
            self._client = HttpClient()
        return self._client

    @client.setter
    def client(self, value: HttpClient | None) -> None:
        self._client = value

    # --- what the source is ---------------------------------------------------------------------

    @classmethod
    def instrument(cls, symbol: str) -> str:
        """``symbol`` as the source's archives name it (upper case, checked)."""
        return normalize_symbol(symbol)

    @classmethod
    def archive_days(cls, day: date) -> list[date]:
        """The UTC days of the archive that holds ``day``."""
        if cls.archive == "day":
            return [day]
        first = day.replace(day=1)
        last = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        return days(first, date.fromordinal(last.toordinal() - 1))

    @classmethod
    def archive_key(cls, day: date) -> str:
        """Names the archive holding ``day`` (``YYYY-MM-DD`` or ``YYYY-MM``)."""
        return day.isoformat() if cls.archive == "day" else f"{day:%Y-%m}"

    @classmethod
    def add_spread_stats(cls, bars: pl.DataFrame, ticks: pl.DataFrame) -> pl.DataFrame:
        """``bars`` with the source's spread statistics from ``ticks`` (unchanged without spreads)."""
        return bars

    # --- archives -------------------------------------------------------------------------------

    @abstractmethod
    def probe_url(self, series: Series, day: date) -> str:
        """The URL whose presence means ``day`` of ``series`` is published."""

    def published(self, series: Series, day: date) -> bool:
        """Whether ``day`` of ``series`` is published (one HEAD request through :attr:`client`)."""
        return self.client.exists(self.probe_url(series, day))

    @abstractmethod
    def fetch(self, series: Series, day: date, *, emit: Emit | None = None) -> Fetched:
        """Download, verify and parse the archive holding ``day`` (every day of it).

        With ``emit`` a source may also hand over the rows while parsing (see :class:`Fetched`).

        Raises:
            DataNotFoundError: The source has no archive for that day.
            ChecksumMismatchError, CorruptArchiveError, DownloadError: The download failed.
        """

    @staticmethod
    def split_days(frame: pl.DataFrame) -> dict[date, pl.DataFrame]:
        """An archive's ticks split into their UTC days (days without ticks absent)."""
        return split_by_day(frame)


def normalize_symbol(symbol: str) -> str:
    """``symbol`` upper-cased, checked to be a plain instrument name (letters, digits, ``_``)."""
    normalized = symbol.strip().upper()
    if not _SYMBOL.fullmatch(normalized):
        raise ValueError(f"invalid symbol {symbol!r}: expected letters, digits and '_' (e.g. 'BTCUSDT')")
    return normalized


def split_by_day(frame: pl.DataFrame) -> dict[date, pl.DataFrame]:
    """``frame`` (sorted ticks) split into its UTC calendar days, in day order."""
    if frame.height == 0:
        return {}
    parts = frame.with_columns(pl.col("timestamp").dt.date().alias("_day")).partition_by(
        "_day", maintain_order=True, as_dict=True, include_key=False
    )
    return {key[0]: part for key, part in parts.items()}


def source_type(source: Source | Series) -> type[TickSource]:
    """The :class:`TickSource` class of a source name or of a series' source."""
    name = source.source if isinstance(source, Series) else source
    if name not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown source {name!r}: expected one of {SOURCES}")
    module, attr = _IMPLEMENTATIONS[name]
    found: type[TickSource] = getattr(importlib.import_module(f"rangebar_pipeline.sources.{module}"), attr)
    return found


def source_for(source: Source | Series, *, client: HttpClient | None = None) -> TickSource:
    """A source with its default mirror (``RANGEBAR_<SOURCE>_BASE_URL``) downloading through ``client``."""
    return source_type(source)(client=client)
