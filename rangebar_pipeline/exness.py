"""rangebar 7.1.3's ``rangebar.exness`` names over this package's Exness source and bar kernel.

Quotes (dicts or a frame with ``bid``, ``ask``, ``timestamp_ms``) go through the Exness source's
parser (:func:`~rangebar_pipeline.sources.exness.parse_exness_ticks`: validation by strictness, exact
mid price, synthetic ids), the bars through :class:`~rangebar_pipeline.processing.RangeBarProcessor`
(the batch rule) and the spreads through :func:`~rangebar_pipeline.sources.exness.add_spread_stats`.
Unlike 7.1.3, the tick that closes a bar does not also open the next one (docs/migration.md).

>>> builder = ExnessRangeBarBuilder(ExnessInstrument.EURUSD, 250)
>>> ticks = [{"bid": 1.0800, "ask": 1.0805, "timestamp_ms": 1_600_000_000_000},
...          {"bid": 1.0830, "ask": 1.0835, "timestamp_ms": 1_600_001_000_000}]
>>> [bar["close"] for bar in builder.process_ticks(ticks)]
[1.08325]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from enum import IntEnum
from typing import Any, Final, cast

import pandas as pd
import polars as pl

from rangebar_pipeline.exceptions import (
    CorruptArchiveError,
    InvalidQuoteError,
    InvalidThresholdError,
    InvalidTradeError,
    MissingColumnError,
)
from rangebar_pipeline.processing import RangeBarProcessor
from rangebar_pipeline.records import rfc3339
from rangebar_pipeline.schema import PRICE_DECIMAL
from rangebar_pipeline.sources.exness import (
    EXNESS_RANK_LIMIT,
    Strictness,
    add_spread_stats,
    parse_exness_ticks,
)

__all__ = [
    "ExnessInstrument",
    "ExnessRangeBarBuilder",
    "ValidationStrictness",
    "is_exness_available",
    "process_exness_ticks_to_dataframe",
]

_TICK_KEYS: Final = ("bid", "ask", "timestamp_ms")
_TRADE_COLUMNS: Final = ("timestamp", "price", "quantity", "agg_trade_id", "first_trade_id", "last_trade_id")


class ExnessInstrument(IntEnum):
    """The Exness Raw_Spread instruments of 7.1.3 (same members and values)."""

    EURUSD = 0
    GBPUSD = 1
    USDJPY = 2
    AUDUSD = 3
    USDCAD = 4
    NZDUSD = 5
    EURGBP = 6
    EURJPY = 7
    GBPJPY = 8
    XAUUSD = 9

    @property
    def symbol(self) -> str:
        """``"EURUSD"``."""
        return self.name

    @property
    def raw_spread_symbol(self) -> str:
        """``"EURUSD_Raw_Spread"``."""
        return f"{self.name}_Raw_Spread"

    @property
    def is_jpy_pair(self) -> bool:
        return self.name.endswith("JPY")

    @staticmethod
    def all() -> list[ExnessInstrument]:
        """Every instrument, in 7.1.3's order."""
        return list(ExnessInstrument)


class ValidationStrictness(IntEnum):
    """Quote validation level (7.1.3's values): every level refuses ``bid <= 0``, ``ask <= 0`` and
    ``bid > ask``; ``Strict`` also a spread above 10 % of the bid, ``Paranoid`` above 1 %."""

    Permissive = 0
    Strict = 1
    Paranoid = 2

    @property
    def level(self) -> Strictness:
        """The source's name of this level (``"strict"``)."""
        levels: dict[int, Strictness] = {0: "permissive", 1: "strict", 2: "paranoid"}
        return levels[self.value]


def is_exness_available() -> bool:
    """Always True: Exness support is part of this package."""
    return True


class ExnessRangeBarBuilder:
    """Range bars of Exness quotes at the mid price, with spread statistics, carried across calls.

    Args:
        instrument: The instrument (its ``_Raw_Spread`` symbol).
        threshold_decimal_bps: Threshold in decimal basis points (250 = 0.25 %).
        strictness: Quote validation level (default ``Strict``).

    Raises:
        ValueError: ``Failed to create builder: ...`` for a threshold outside 1..100_000.
    """

    def __init__(
        self,
        instrument: ExnessInstrument,
        threshold_decimal_bps: int,
        strictness: ValidationStrictness = ValidationStrictness.Strict,
    ) -> None:
        try:
            self._processor = RangeBarProcessor(threshold_decimal_bps)
        except InvalidThresholdError as exc:
            raise type(exc)(f"Failed to create builder: {exc}") from exc  # OverflowError too when negative
        self._instrument = ExnessInstrument(instrument)
        self._strictness = ValidationStrictness(strictness)
        # ticks (agg_trade_id, bid, ask) of the open bar, for its spread statistics
        self._pending = pl.DataFrame(
            schema={"agg_trade_id": pl.Int64, "bid": PRICE_DECIMAL, "ask": PRICE_DECIMAL}
        )
        self._last: tuple[int, int] | None = None  # (timestamp_us, synthetic id) of the last tick

    @property
    def threshold_decimal_bps(self) -> int:
        return self._processor.threshold_decimal_bps

    @property
    def instrument(self) -> ExnessInstrument:
        return self._instrument

    def process_tick(self, tick: Mapping[str, Any]) -> dict[str, Any] | None:
        """Process one quote (``bid``, ``ask``, ``timestamp_ms``); return the bar it closes, or None.

        Raises:
            KeyError: ``Missing 'bid'`` (a :class:`MissingColumnError`).
            RuntimeError: ``Processing failed: ...`` for a quote the strictness refuses or one older
                than the last (an :class:`InvalidQuoteError`).
        """
        bars = self.process_ticks([tick])
        return bars[0] if bars else None

    def process_ticks(self, ticks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Process quotes in order; return the bars they close (7.1.3's bar dicts). A failing call
        leaves the state unchanged."""
        if not ticks:
            return []
        frame = self._trades(ticks)
        try:
            bars = self._processor.process(frame.select(_TRADE_COLUMNS), timestamp_unit="us")
        except InvalidTradeError as exc:
            raise InvalidQuoteError(f"Processing failed: {exc}") from exc
        context = pl.concat([self._pending, frame.select(self._pending.columns)])
        if bars.height:
            bars = add_spread_stats(bars, context)
            context = context.filter(pl.col("agg_trade_id") > bars["last_agg_trade_id"][-1])
        self._pending = context
        self._last = (int(frame["timestamp"][-1]), int(frame["agg_trade_id"][-1]))
        return _bar_dicts(bars)

    def get_incomplete_bar(self) -> dict[str, Any] | None:
        """The bar in progress (7.1.3's bar dict), or None."""
        bar = self._processor.incomplete_bar_frame()
        if bar.height == 0:
            return None
        return _bar_dicts(add_spread_stats(bar, self._pending))[0]

    def _trades(self, ticks: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
        """Synthetic trades (``timestamp`` in us) of ``ticks`` by the Exness source's own parser."""
        for key in _TICK_KEYS:
            for tick in ticks:
                if key not in tick:
                    raise MissingColumnError(f"Missing '{key}'")
        symbol = self._instrument.raw_spread_symbol
        quotes = pl.DataFrame(
            {
                "Exness": ["exness"] * len(ticks),
                "Symbol": [symbol] * len(ticks),
                "Timestamp": pl.from_epoch(
                    pl.Series([int(t["timestamp_ms"]) for t in ticks], dtype=pl.Int64), "ms"
                ).dt.strftime("%Y-%m-%d %H:%M:%S%.3fZ"),
                "Bid": [_decimal_text(t["bid"]) for t in ticks],
                "Ask": [_decimal_text(t["ask"]) for t in ticks],
            }
        )
        origin = "Exness ticks (line n = tick n - 2)"
        try:
            frame = parse_exness_ticks(
                quotes.write_csv().encode(), origin=origin, strictness=self._strictness.level
            )
        except (InvalidTradeError, CorruptArchiveError) as exc:
            raise InvalidQuoteError(f"Processing failed: {exc}") from exc
        frame = frame.with_columns(pl.col("timestamp").cast(pl.Int64))
        if self._last is not None:  # continue the per-timestamp rank of the last call
            last_us, last_id = self._last
            shift = pl.when(pl.col("timestamp") == last_us).then(last_id % EXNESS_RANK_LIMIT + 1).otherwise(0)
            ids = pl.col("agg_trade_id") + shift
            frame = frame.with_columns(
                ids.alias("agg_trade_id"), ids.alias("first_trade_id"), ids.alias("last_trade_id")
            )
        return frame


def _decimal_text(value: Any) -> str:
    """Plain decimal text of a quote (at most 8 decimals, as 7.1.3's fixed point keeps)."""
    return format(Decimal(repr(round(float(value), 8))), "f")


def _bar_dicts(bars: pl.DataFrame) -> list[dict[str, Any]]:
    """7.1.3's Exness bar dicts: close time, OHLCV, ``spread_stats``, ``vwap``, ``tick_count``."""
    return [
        {
            "timestamp": rfc3339(row["close_time"]),
            **{k: row[k] for k in ("open", "high", "low", "close", "volume")},
            "spread_stats": {
                "min_spread": row["spread_min"],
                "max_spread": row["spread_max"],
                "avg_spread": row["spread_avg"],
                "tick_count": row["spread_tick_count"],
            },
            "vwap": row["vwap"],
            "tick_count": row["spread_tick_count"],
        }
        for row in bars.iter_rows(named=True)
    ]


def process_exness_ticks_to_dataframe(
    ticks: pd.DataFrame | Sequence[Mapping[str, Any]],
    instrument: ExnessInstrument,
    threshold_decimal_bps: int = 250,
    strictness: ValidationStrictness | None = None,
) -> pd.DataFrame:
    """Exness quotes -> backtesting.py-ready bars (``Open``..``Volume``, ``spread_stats``), the bar
    in progress included, indexed by close time (UTC).

    Raises:
        ValueError: ``Missing required columns: ...`` (a frame without ``bid``/``ask``/``timestamp_ms``);
            an invalid threshold. RuntimeError: ``Processing failed: ...`` for a refused quote.
    """
    builder = ExnessRangeBarBuilder(
        instrument, threshold_decimal_bps, ValidationStrictness.Strict if strictness is None else strictness
    )
    if isinstance(ticks, pd.DataFrame):
        missing = set(_TICK_KEYS) - set(ticks.columns)
        if missing:
            raise MissingColumnError(f"Missing required columns: {missing}")
        records: Sequence[Mapping[str, Any]] = cast(
            "list[dict[str, Any]]", ticks[list(_TICK_KEYS)].to_dict("records")
        )
    else:
        records = list(ticks)
    bars = builder.process_ticks(records)
    incomplete = builder.get_incomplete_bar()
    if incomplete:
        bars.append(incomplete)
    columns = ["Open", "High", "Low", "Close", "Volume", "spread_stats"]
    if not bars:
        return pd.DataFrame(columns=columns).set_index(pd.DatetimeIndex([], name="timestamp"))
    frame = pd.DataFrame(bars)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    names = {"open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}
    return frame.set_index("timestamp").rename(columns=names)[columns]
