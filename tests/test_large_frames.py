"""Eager polars frames larger than one batch are processed in slices: same bars, same unit rules."""

from __future__ import annotations

import polars as pl
import pytest

from rangebar_pipeline import InvalidTradeError, RangeBarProcessor, TimestampUnitError
from rangebar_pipeline.streaming import DEFAULT_BATCH_ROWS, is_large_frame

ROWS = DEFAULT_BATCH_ROWS * 2 + 12_345
START_MS = 1_723_075_200_000


def _trades(rows: int = ROWS) -> pl.DataFrame:
    steps = (pl.int_range(rows, eager=True).shuffle(3) % 5 - 2).cast(pl.Int64)
    return pl.DataFrame(
        {
            "timestamp": START_MS + pl.int_range(rows, eager=True) // 7,
            "price": (6_000_000 + steps.cum_sum() * 25).cast(pl.Float64) / 100,
            "quantity": (pl.int_range(rows, eager=True) % 97 + 1).cast(pl.Float64) / 8,
            "agg_trade_id": pl.int_range(rows, eager=True) + 1,
            "is_buyer_maker": pl.int_range(rows, eager=True) % 3 == 0,
        }
    )


def test_sliced_frame_gives_the_bars_of_the_whole_input() -> None:
    trades = _trades()
    assert is_large_frame(trades)
    sliced = RangeBarProcessor(25).process(trades)
    whole = RangeBarProcessor(25).process(trades.to_arrow())  # converted in one piece
    assert sliced.height > 100
    assert sliced.equals(whole)


def test_one_timestamp_unit_for_the_whole_frame() -> None:
    trades = _trades()
    ts = trades["timestamp"]
    # ms in the first slice, us after it: each slice alone looks consistent
    mixed = trades.with_columns(pl.concat([ts[:DEFAULT_BATCH_ROWS], ts[DEFAULT_BATCH_ROWS:] * 1000]))
    with pytest.raises(TimestampUnitError, match="mix units"):
        RangeBarProcessor(25).process(mixed)


def test_errors_in_a_later_slice_name_the_slice_and_change_nothing() -> None:
    trades = _trades()
    processor = RangeBarProcessor(25)
    processor.process(trades.head(1000))
    before = processor.checkpoint().to_bytes()
    rest = trades.slice(1000)
    bad = rest.with_columns(  # a null price in the second slice, after a whole slice was processed
        pl.when(pl.int_range(pl.len()) == DEFAULT_BATCH_ROWS + 5)
        .then(None)
        .otherwise(pl.col("price"))
        .alias("price")
    )
    with pytest.raises(InvalidTradeError, match="invalid price at row 5: null") as info:
        processor.process(bad)
    assert f"in the streamed batch starting at input row {DEFAULT_BATCH_ROWS}" in (info.value.__notes__ or [])
    assert processor.checkpoint().to_bytes() == before  # all or nothing, like one call
    assert processor.process(rest).equals(RangeBarProcessor.from_checkpoint(before).process(rest))
