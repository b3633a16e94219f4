"""The fused path for plain polars frames (``float_pieces`` -> ``Processor.process_float_pieces``):
the bars, errors and state of the general path, without copying the frame."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import polars as pl
import pytest

from rangebar_pipeline import RangeBarError, RangeBarProcessor
from rangebar_pipeline._core import Processor
from rangebar_pipeline.trades import TimestampUnit, float_pieces

START_MS = 1_723_075_200_000
ROWS = 50_000


def _trades(rows: int = ROWS, *, unit: TimestampUnit = "ms", seed: int = 5) -> pl.DataFrame:
    steps = (pl.int_range(rows, eager=True).shuffle(seed) % 5 - 2).cast(pl.Int64)
    scale = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    return pl.DataFrame(
        {
            "timestamp": START_MS * scale // 1000 + pl.int_range(rows, eager=True) * scale // 250,
            "price": (6_000_000 + steps.cum_sum() * 25).cast(pl.Float64) / 100,
            "quantity": (pl.int_range(rows, eager=True) % 97 + 1).cast(pl.Float64) / 8,
            "agg_trade_id": pl.int_range(rows, eager=True) + 1,
            "first_trade_id": pl.int_range(rows, eager=True) * 2,
            "last_trade_id": pl.int_range(rows, eager=True) * 2 + 1,
            "is_buyer_maker": pl.int_range(rows, eager=True) % 3 == 0,
        }
    )


def _general(trades: pl.DataFrame, threshold: int = 25, **options: Any) -> pl.DataFrame:
    """The general path: an Arrow table is converted column by column (``normalize_trades``)."""
    unit = options.pop("timestamp_unit", None)
    return RangeBarProcessor(threshold, **options).process(trades.to_arrow(), timestamp_unit=unit)


def _fused(trades: pl.DataFrame, threshold: int = 25, **options: Any) -> pl.DataFrame:
    unit = options.pop("timestamp_unit", None)
    assert float_pieces(trades, unit) is not None
    return RangeBarProcessor(threshold, **options).process(trades, timestamp_unit=unit)


def _rechunked_differently(trades: pl.DataFrame) -> pl.DataFrame:
    """Columns whose chunks end at different rows."""
    columns = []
    for i, name in enumerate(trades.columns):
        cut = 1_000 + 7_919 * i
        s = trades[name]
        columns.append(pl.concat([s[:cut], s[cut : cut * 3], s[cut * 3 :]], rechunk=False))
    return pl.DataFrame(columns)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_every_timestamp_unit_gives_the_bars_of_the_general_path(unit: TimestampUnit) -> None:
    trades = _trades(unit=unit)
    given = unit if unit == "s" else None  # seconds cannot be inferred
    bars = _fused(trades, timestamp_unit=given)
    assert bars.height > 20
    assert bars.equals(_general(trades, timestamp_unit=given))


def test_negative_nanoseconds_round_down_like_the_general_path() -> None:
    trades = _trades(unit="ns").with_columns(pl.col("timestamp") - 2 * START_MS * 1_000_000 - 1)
    assert (trades["timestamp"] < 0).all()
    assert _fused(trades).equals(_general(trades))


@pytest.mark.parametrize("tz", [None, "UTC", "Asia/Tokyo"])
def test_microsecond_datetimes(tz: str | None) -> None:
    trades = _trades(unit="us").with_columns(pl.col("timestamp").cast(pl.Datetime("us", tz)))
    assert _fused(trades).equals(_general(trades))


def test_aliases_and_optional_columns() -> None:
    trades = _trades().rename({"timestamp": "T", "price": "p", "quantity": "q", "agg_trade_id": "a"})
    assert _fused(trades).equals(_general(trades))
    minimal = trades.select("T", "p", "q")
    assert _fused(minimal).equals(_general(minimal))


def test_columns_chunked_at_different_rows() -> None:
    trades = _rechunked_differently(_trades())
    assert len({tuple(trades[c].chunk_lengths()) for c in trades.columns}) > 1
    pieces = float_pieces(trades, None)
    assert pieces is not None and len(pieces[0]) > 3
    assert _fused(trades).equals(_general(trades))


def test_the_views_share_the_frames_memory() -> None:
    trades = _trades()
    pieces = float_pieces(trades, None)
    assert pieces is not None
    [(timestamp, price, quantity, agg, *_)], mul, div = pieces
    assert (mul, div) == (1_000, 1)
    for view in (timestamp, price, quantity, agg):
        assert view is not None and not view.flags.owndata


@pytest.mark.parametrize(
    "options",
    [{"lookback_trades": 500}, {"min_duration_us": 2_000_000}, {"same_timestamp_gate": True}],
)
def test_options(options: dict[str, Any]) -> None:
    trades = _trades()
    assert _fused(trades, **options).equals(_general(trades, **options))


def test_state_carries_across_calls() -> None:
    trades = _trades()
    fused, general = RangeBarProcessor(25, lookback_trades=100), RangeBarProcessor(25, lookback_trades=100)
    for start in range(0, ROWS, 17_000):
        part = trades.slice(start, 17_000)
        assert fused.process(part).equals(general.process(part.to_arrow()))
        assert fused.checkpoint() == general.checkpoint()
    assert fused.incomplete_bar_frame().equals(general.incomplete_bar_frame())


@pytest.mark.parametrize(
    "change",
    [
        pl.col("price").cast(pl.Float32),
        pl.col("quantity").cast(pl.Decimal(20, 8)),
        pl.col("price").cast(pl.String),
        pl.col("agg_trade_id").cast(pl.Int32),
        pl.col("is_buyer_maker").cast(pl.Int8),
        pl.col("timestamp").cast(pl.Datetime("ms")),
        pl.col("timestamp").cast(pl.UInt64),
        pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise(pl.col("quantity")).alias("quantity"),
    ],
)
def test_other_dtypes_and_nulls_take_the_general_path(change: pl.Expr) -> None:
    trades = _trades().with_columns(change)
    assert float_pieces(trades, None) is None
    if trades["quantity"].null_count() == 0:
        assert RangeBarProcessor(25).process(trades).equals(_general(trades))


def _refused(trades: pl.DataFrame, row: int, **values: Any) -> pl.DataFrame:
    return trades.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
        for c, v in values.items()
    )


@pytest.mark.parametrize(
    ("row", "values", "unit"),
    [
        (40_000, {"price": float("nan")}, None),
        (40_000, {"quantity": float("inf")}, None),
        (40_000, {"price": 1e12}, None),  # beyond the fixed-point range
        (40_000, {"price": -5.0}, None),
        (40_000, {"timestamp": START_MS - 1}, None),  # out of order
        (40_000, {"timestamp": 2**62}, "s"),  # overflows in microseconds
        (40_000, {"first_trade_id": 10**12}, None),  # first > last
    ],
)
def test_refused_trades_raise_the_general_error_and_change_nothing(
    row: int, values: dict[str, Any], unit: TimestampUnit | None
) -> None:
    trades = _trades()
    if unit == "s":
        trades = trades.with_columns(pl.col("timestamp") // 1000)
    bad = _refused(trades, row, **values)
    fused, general = RangeBarProcessor(25), RangeBarProcessor(25)
    head = trades.head(10_000)
    fused.process(head, timestamp_unit=unit)
    general.process(head.to_arrow(), timestamp_unit=unit)
    before = fused.checkpoint()
    rest = bad.slice(10_000)
    with pytest.raises(RangeBarError) as expected:
        general.process(rest.to_arrow(), timestamp_unit=unit)
    with pytest.raises(type(expected.value), match=f"^{re.escape(str(expected.value))}$"):
        fused.process(rest, timestamp_unit=unit)
    assert fused.checkpoint() == before


def test_the_kernel_call_returns_none_and_keeps_the_state_when_a_trade_is_refused() -> None:
    trades = _trades()
    processor = Processor(25, lookback_trades=50)
    ok = float_pieces(trades.head(20_000), None)
    assert ok is not None
    processor.process_float_pieces(*ok)
    before = processor.checkpoint()
    bad = float_pieces(_refused(trades.slice(20_000), 25_000, price=float("nan")), None)
    assert bad is not None
    assert processor.process_float_pieces(*bad) is None
    assert processor.checkpoint() == before
    empty = np.empty(0, dtype=np.int64)
    lengths = [(empty, np.zeros(1), np.zeros(1), None, None, None, None)]
    assert processor.process_float_pieces(lengths) is None  # unequal lengths: refused too
    with pytest.raises(ValueError, match=">= 1"):
        processor.process_float_pieces([], timestamp_mul=0)
