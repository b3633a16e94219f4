"""Every documented bad input raises its documented error, naming the row where there is one."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from rangebar_pipeline import exceptions as exc
from rangebar_pipeline.constants import resolve_threshold
from rangebar_pipeline.processing import Checkpoint, RangeBarProcessor, process_trades_polars

T0 = 1_723_161_600_000


def trades(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "timestamp": [T0, T0 + 1, T0 + 2, T0 + 3],
        "price": [100.0, 100.1, 100.2, 100.3],
        "quantity": [1.0, 1.0, 1.0, 1.0],
        "agg_trade_id": [1, 2, 3, 4],
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("overrides", "error", "pattern"),
    [
        ({"timestamp": [T0, T0 + 2, T0 + 1, T0 + 3]}, exc.UnsortedTradesError, "row 2"),
        (
            {"timestamp": [T0, T0, T0 + 1, T0 + 2], "agg_trade_id": [1, 1, 2, 3]},
            exc.UnsortedTradesError,
            "row 1",
        ),
        ({"price": [100.0, float("nan"), 100.0, 100.0]}, exc.InvalidTradeError, "price at row 1"),
        ({"price": [100.0, 100.0, float("inf"), 100.0]}, exc.InvalidTradeError, "price at row 2"),
        ({"price": [100.0, 100.0, 100.0, 0.0]}, exc.InvalidTradeError, "price at row 3"),
        ({"price": [-5.0, 100.0, 100.0, 100.0]}, exc.InvalidTradeError, "price at row 0"),
        ({"quantity": [1.0, -1.0, 1.0, 1.0]}, exc.InvalidTradeError, "quantity at row 1"),
        ({"quantity": [1.0, 1.0, None, 1.0]}, exc.InvalidTradeError, "quantity at row 2: null"),
        ({"agg_trade_id": [1.0, 2.0, 3.0, 4.0]}, exc.InvalidTradeError, "floats are refused"),
        ({"timestamp": [T0 + 0.5, T0 + 1.0, T0 + 2.0, T0 + 3.0]}, exc.InvalidTradeError, "float timestamps"),
        ({"first_trade_id": [1, 9, 3, 4], "last_trade_id": [1, 2, 3, 4]}, exc.InvalidTradeError, "row 1"),
        ({"price": [1e12, 100.0, 100.0, 100.0]}, exc.InvalidTradeError, "price at row 0"),
        (
            {"price": ["100.0", "100.123456789", "1", "1"]},
            exc.InvalidTradeError,
            "row 1.*more than 8 decimals",
        ),
        (
            {"is_buyer_maker": ["true", "yes", "false", "true"]},
            exc.InvalidTradeError,
            "is_buyer_maker at row 1",
        ),
        ({"is_buyer_maker": [0, 1, 2, 0]}, exc.InvalidTradeError, "is_buyer_maker at row 2"),
    ],
)
def test_bad_rows(overrides: dict[str, Any], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        RangeBarProcessor(250).process(pl.DataFrame(trades(**overrides), strict=False))


def test_errors_are_value_errors_and_rangebar_errors() -> None:
    with pytest.raises(ValueError) as info:
        RangeBarProcessor(250).process(trades(price=[100.0, 0.0, 1.0, 1.0]))
    assert isinstance(info.value, exc.RangeBarError)


def test_missing_columns_are_named() -> None:
    with pytest.raises(exc.MissingColumnError, match=r"quantity \(or volume, qty, q\)"):
        RangeBarProcessor(250).process({"timestamp": [T0], "price": [1.0]})
    with pytest.raises(exc.MissingColumnError, match="timestamp"):
        RangeBarProcessor(250).process({"time": [T0], "price": [1.0], "qty": [1.0]})


@pytest.mark.parametrize("threshold", [0, -1, 100_001, 10**12, "huge", 2.5, True])
def test_invalid_thresholds(threshold: Any) -> None:
    with pytest.raises(exc.InvalidThresholdError):
        RangeBarProcessor(threshold)
    with pytest.raises(exc.InvalidThresholdError):
        process_trades_polars(pl.DataFrame(trades()), threshold)


def test_presets_are_accepted_everywhere() -> None:
    assert resolve_threshold("medium") == 250
    assert resolve_threshold("MICRO") == 10
    assert resolve_threshold(np.int64(100)) == 100
    assert RangeBarProcessor("macro").threshold_decimal_bps == 1000


def test_delta_zero_is_refused() -> None:
    with pytest.raises(exc.ThresholdTooSmallError, match=r"row 0.*delta == 0"):
        RangeBarProcessor(250).process(trades(price=[0.000001] * 4))


def test_accumulator_overflow_is_refused() -> None:
    # price x quantity near i64::MAX each: the i128 turnover overflows on the second trade.
    big = 92_233_720_368.0
    with pytest.raises(exc.AccumulatorOverflowError, match="row"):
        RangeBarProcessor(1).process(trades(price=[big] * 4, quantity=[big] * 4))


def test_timestamp_units_are_never_guessed_wrong() -> None:
    with pytest.raises(exc.TimestampUnitError, match="cannot infer"):
        RangeBarProcessor(250).process(trades(timestamp=[1, 2, 3, 4]))
    with pytest.raises(exc.TimestampUnitError, match="mix units"):
        RangeBarProcessor(250).process(trades(timestamp=[T0, T0 + 1, T0 * 1000, T0 * 1000 + 1]))
    with pytest.raises(exc.TimestampUnitError, match="unknown timestamp_unit"):
        RangeBarProcessor(250).process(trades(), timestamp_unit="days")  # type: ignore[arg-type]
    bars = RangeBarProcessor(250).process(
        trades(timestamp=[1, 2, 3, 4], price=[1.0, 2.0, 3.0, 4.0]), timestamp_unit="s"
    )
    assert bars["close_time"].dt.epoch("us").to_list() == [2_000_000, 4_000_000]


def test_corrupt_checkpoints_are_refused() -> None:
    with pytest.raises(exc.CheckpointError, match="magic"):
        Checkpoint.from_bytes(b"garbage")
    with pytest.raises(exc.CheckpointError):
        Checkpoint.from_json('{"version": 1}')
    good = RangeBarProcessor(250)
    good.process(trades())
    text = good.checkpoint().to_json().replace('"version":1', '"version":99')
    with pytest.raises(exc.CheckpointError, match="unsupported version 99"):
        RangeBarProcessor.from_checkpoint(text)


def test_unsupported_containers() -> None:
    with pytest.raises(exc.InvalidTradeError, match="unsupported trades type"):
        RangeBarProcessor(250).process(42)
    with pytest.raises(exc.InvalidTradeError, match="structured array"):
        RangeBarProcessor(250).process(np.arange(4))


def test_empty_input_gives_empty_frames() -> None:
    assert RangeBarProcessor(250).process([]).height == 0
    df = process_trades_polars(
        pl.DataFrame(schema={"timestamp": pl.Int64, "price": pl.Float64, "quantity": pl.Float64})
    )
    assert len(df) == 0 and list(df.columns) == ["Open", "High", "Low", "Close", "Volume"]
