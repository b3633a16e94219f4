"""rangebar 7.1.3's processor API over the core :class:`~rangebar_pipeline.processing.RangeBarProcessor`.

The user-facing :class:`RangeBarProcessor` (``from rangebar_pipeline import RangeBarProcessor``) is the
core processor plus 7.1.3's methods: bars as dicts (``process_trades``), ``to_dataframe``,
``get_incomplete_bar``, the checkpoint dict (``create_checkpoint``, and ``from_checkpoint`` accepting
it) and ``verify_position``. The core (engine, stores, assets) uses the core class only.

>>> p = RangeBarProcessor(250, "BTCUSDT")
>>> [bar["close"] for bar in p.process_trades([
...     {"timestamp": 1_700_000_000_000, "price": 100.0, "quantity": 1.0, "agg_trade_id": 1},
...     {"timestamp": 1_700_000_001_000, "price": 100.25, "quantity": 2.0, "agg_trade_id": 2}])]
[100.25]
>>> p.create_checkpoint()["last_trade_id"]
2
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import polars as pl

from rangebar_pipeline import processing
from rangebar_pipeline.exceptions import CheckpointError
from rangebar_pipeline.frames import bars_to_pandas
from rangebar_pipeline.processing import Checkpoint, process_trades_to_dataframe
from rangebar_pipeline.records import bars_from_records, bars_to_records
from rangebar_pipeline.schema import SCALE
from rangebar_pipeline.trades import TradesLike, normalize_trades

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PositionVerification", "RangeBarProcessor", "process_trades_to_dataframe_cached"]


@dataclass(frozen=True, slots=True)
class PositionVerification:
    """Where the next trade stands against the last one (:meth:`RangeBarProcessor.verify_position`).

    With a last trade id: exact when the next id is ``last + 1``, else a gap; without one (nothing
    processed yet), only the time since the last trade is known.
    """

    expected_id: int | None
    actual_id: int
    gap_ms: int

    @property
    def is_exact(self) -> bool:
        return self.expected_id is not None and self.actual_id == self.expected_id

    @property
    def has_gap(self) -> bool:
        return self.expected_id is not None and self.actual_id != self.expected_id

    def gap_details(self) -> tuple[int, int, int] | None:
        """``(expected_id, actual_id, missing)`` when there is a gap."""
        if self.expected_id is None or not self.has_gap:
            return None
        return self.expected_id, self.actual_id, self.actual_id - self.expected_id

    def timestamp_gap_ms(self) -> int | None:
        """Milliseconds since the last trade, when no trade id is known."""
        return self.gap_ms if self.expected_id is None else None


class RangeBarProcessor(processing.RangeBarProcessor):
    """The core processor (see :class:`rangebar_pipeline.processing.RangeBarProcessor`) with rangebar
    7.1.3's methods. Stateful across calls, like the core (7.1.3's batch calls reset; see
    docs/migration.md)."""

    __slots__ = ()

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Checkpoint | bytes | str | Mapping[str, Any], *, symbol: str | None = None
    ) -> Self:
        """Continue from a checkpoint (object, its bytes, its JSON text, or a
        :meth:`create_checkpoint` dict, whose ``price_hash`` is checked)."""
        if isinstance(checkpoint, Mapping):
            symbol = symbol if symbol is not None else checkpoint.get("symbol")
            if "state" not in checkpoint:
                raise CheckpointError(
                    "Invalid checkpoint: no lossless 'state' (a rangebar 7.1.3 checkpoint dict cannot "
                    "be resumed exactly; recompute from the trades, see docs/migration.md)"
                )
            if "price_hash" in checkpoint and checkpoint["price_hash"] != _state_hash(checkpoint["state"]):
                raise CheckpointError(
                    f"Price hash mismatch: checkpoint has {checkpoint['price_hash']}, computed "
                    f"{_state_hash(checkpoint['state'])} (the 'state' was altered)"
                )
            checkpoint = Checkpoint.from_json(json.dumps(checkpoint["state"]))
        return super().from_checkpoint(checkpoint, symbol=symbol)

    def process_trades(self, trades: TradesLike) -> list[dict[str, Any]]:
        """Process trades (7.1.3: a list of dicts); return the closed bars as dicts
        (``timestamp`` = close time in RFC 3339, then every bar column). Stateful, like :meth:`process`."""
        return bars_to_records(self.process(trades))

    def process_trades_streaming(self, trades: TradesLike) -> list[dict[str, Any]]:
        """7.1.3's streaming variant; here the same (stateful, batch rule) as :meth:`process_trades`."""
        return self.process_trades(trades)

    def to_dataframe(
        self, bars: Sequence[Mapping[str, Any]] | pl.DataFrame, include_microstructure: bool = False
    ) -> pd.DataFrame:
        """backtesting.py-ready pandas frame of bars from :meth:`process_trades` (or :meth:`process`)."""
        frame = bars if isinstance(bars, pl.DataFrame) else bars_from_records(bars)
        return bars_to_pandas(frame, include_microstructure=include_microstructure)

    def get_incomplete_bar(self) -> dict[str, Any] | None:
        """The trailing bar as a 7.1.3-style dict (``timestamp`` first), or None."""
        records = bars_to_records(self.incomplete_bar_frame())
        return records[0] if records else None

    def create_checkpoint(self, symbol: str | None = None) -> dict[str, Any]:
        """A JSON-able checkpoint dict: 7.1.3's keys (in its order) plus the lossless ``state``.

        ``thresholds`` are the open bar's breach prices, ``incomplete_bar_raw`` its OHLCV, times (us)
        and record count, ``price_hash`` a 64-bit digest of ``state`` (checked by
        :meth:`from_checkpoint`), ``anomaly_summary`` zeros (out-of-order trades are refused, never
        counted). Raises ``ValueError`` (7.1.3) when no symbol is given here or at construction.
        """
        symbol = symbol if symbol is not None else self.symbol
        if not symbol:
            raise CheckpointError(
                "Symbol required for checkpoint creation: pass symbol= here or to the processor"
            )
        checkpoint = self.checkpoint()
        state: dict[str, Any] = json.loads(checkpoint.to_json())
        bar: dict[str, Any] | None = state.get("bar")
        last_us = checkpoint.last_timestamp_us
        return {
            "symbol": symbol,
            "threshold_decimal_bps": self.threshold_decimal_bps,
            "incomplete_bar": self.get_incomplete_bar(),
            "incomplete_bar_raw": None if bar is None else _raw_bar(bar),
            "thresholds": None
            if bar is None
            else {"upper": bar["upper"] / SCALE, "lower": bar["lower"] / SCALE},
            "last_timestamp_us": last_us,
            "last_timestamp_ms": None if last_us is None else last_us // 1000,
            "last_trade_id": checkpoint.last_agg_trade_id,
            "price_hash": _state_hash(state),
            "anomaly_summary": {"gaps_detected": 0, "overlaps_detected": 0, "timestamp_anomalies": 0},
            "has_incomplete_bar": checkpoint.has_incomplete_bar,
            "state": state,
        }

    def verify_position(self, first_trade: Mapping[str, Any]) -> PositionVerification:
        """Check that ``first_trade`` (of the next file) continues the processed stream (7.1.3)."""
        state = self.checkpoint()
        timestamp = normalize_trades([dict(first_trade)]).timestamp_us[0]
        last = state.last_agg_trade_id
        gap_ms = int(timestamp - (state.last_timestamp_us or 0)) // 1000
        return PositionVerification(
            None if last is None else last + 1, int(first_trade.get("agg_trade_id", 0)), gap_ms
        )


def _raw_bar(bar: Mapping[str, Any]) -> dict[str, Any]:
    """7.1.3's ``incomplete_bar_raw`` from the state's open bar (fixed point -> float)."""
    volume = bar["buy"]["volume"] + bar["sell"]["volume"]
    return {
        **{k: bar[k] / SCALE for k in ("open", "high", "low", "close")},
        "volume": volume / SCALE,
        "open_time": bar["open_time"],
        "close_time": bar["close_time"],
        "agg_record_count": bar["agg_record_count"],
    }


def _state_hash(state: Any) -> int:
    """Unsigned 64-bit digest of a checkpoint ``state`` (canonical JSON, BLAKE2b)."""
    text = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def process_trades_to_dataframe_cached(
    trades: TradesLike,
    symbol: str,
    threshold_decimal_bps: int | str = 250,
    cache: object | None = None,
) -> pd.DataFrame:
    """rangebar 7.1.3's cached variant of :func:`process_trades_to_dataframe`; same bars.

    The bar store keeps series by UTC day (:func:`~rangebar_pipeline.get_range_bars`), not arbitrary
    trade sets, so these bars are computed each call (the kernel is faster than a store round trip);
    ``symbol`` and ``cache`` are accepted for 7.1.3 callers and not used.
    """
    del symbol, cache
    return process_trades_to_dataframe(trades, threshold_decimal_bps)
