"""The Python API of the kernel: inputs, units, aliases, outputs, state, chunking, pickling."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rangebar_pipeline import RangeBarProcessor
from rangebar_pipeline.exceptions import InvalidTradeError
from rangebar_pipeline.processing import (
    Checkpoint,
    process_trades_chunked,
    process_trades_polars,
    process_trades_to_dataframe,
)
from rangebar_pipeline.schema import BAR_SCHEMA
from rangebar_pipeline.streaming import prefetch
from tests.data_paths import REAL_BNB, read_fixture_trades, round_tripped


@pytest.fixture(scope="module")
def btc() -> pl.DataFrame:
    return read_fixture_trades("spot", "BTCUSDT")


def test_every_input_container_gives_the_same_bars(btc: pl.DataFrame) -> None:
    expected = RangeBarProcessor(25).process(btc)
    assert expected.height > 10
    floats = btc.with_columns(pl.col("price", "quantity").cast(pl.Float64))
    containers: list[Any] = [
        floats,
        floats.lazy(),
        floats.to_pandas(),
        floats.to_arrow(),
        floats.to_arrow().to_batches()[0] if len(floats.to_arrow().to_batches()) == 1 else floats.to_arrow(),
        {c: floats[c].to_numpy() for c in floats.columns},
        floats.to_numpy(structured=True),
        floats.head(3000).to_dicts(),
        btc.with_columns(pl.col("price", "quantity").cast(pl.String)),
        btc.with_columns(pl.col("price").cast(pl.Decimal(18, 2)), pl.col("quantity").cast(pl.Decimal(20, 8))),
    ]
    for container in containers:
        bars = RangeBarProcessor(25).process(container)
        n = bars.height
        assert n > 0, type(container)
        assert bars.equals(expected.head(n)), type(container)


def test_aliases_and_timestamp_units(btc: pl.DataFrame) -> None:
    expected = RangeBarProcessor(50).process(btc)
    btc = btc.with_columns(pl.col("timestamp").dt.epoch("ms"))  # integer epoch milliseconds
    assert RangeBarProcessor(50).process(btc).equals(expected)
    aliased = btc.rename({"timestamp": "T", "price": "p", "quantity": "q", "agg_trade_id": "a",
                          "first_trade_id": "f", "last_trade_id": "l", "is_buyer_maker": "m"})  # fmt: skip
    assert RangeBarProcessor(50).process(aliased).equals(expected)
    as_us = btc.with_columns(pl.col("timestamp") * 1000)
    assert RangeBarProcessor(50).process(as_us).equals(expected)
    as_ns = btc.with_columns(pl.col("timestamp") * 1_000_000)
    assert RangeBarProcessor(50).process(as_ns).equals(expected)
    as_datetime = btc.with_columns(pl.from_epoch("timestamp", time_unit="ms").dt.replace_time_zone("UTC"))
    assert RangeBarProcessor(50).process(as_datetime).equals(expected)
    as_naive_ns = btc.with_columns(pl.from_epoch("timestamp", time_unit="ms").cast(pl.Datetime("ns")))
    assert RangeBarProcessor(50).process(as_naive_ns).equals(expected)
    seconds_scale = btc.with_columns(pl.col("timestamp") * 1000)
    assert RangeBarProcessor(50).process(seconds_scale, timestamp_unit="us").equals(expected)


def test_real_bnb_slice_with_string_flags_and_volume_alias() -> None:
    trades = pl.read_parquet(REAL_BNB).rename({"close": "price"})
    bars = process_trades_polars(trades, 10, include_microstructure=True)
    assert isinstance(bars, pd.DataFrame)
    assert len(bars) > 50
    assert (bars["buy_volume"] > 0).any() and (bars["sell_volume"] > 0).any()
    flags = trades["is_buyer_maker"] == "true"
    total_sell = trades.filter(flags)["quantity"].sum()
    tail = RangeBarProcessor(10)
    tail.process(trades)
    last = tail.incomplete_bar()
    assert last is not None
    assert bars["sell_volume"].sum() + last["sell_volume"] == pytest.approx(total_sell, rel=1e-12)


def test_pandas_output_is_backtesting_ready(btc: pl.DataFrame) -> None:
    df = process_trades_to_dataframe(btc, "micro", include_microstructure=True)
    assert list(df.columns[:5]) == ["Open", "High", "Low", "Close", "Volume"]
    assert isinstance(df.index, pd.DatetimeIndex)
    assert str(df.index.dtype) == "datetime64[us, UTC]"
    assert df.index.name == "timestamp"
    assert df.index.is_monotonic_increasing
    assert not df[["Open", "High", "Low", "Close", "Volume"]].isna().any().any()
    for column in ("vwap", "ofi", "first_agg_trade_id", "last_trade_id", "duration_us", "open_time"):
        assert column in df.columns
    bars = process_trades_polars(btc, 10, output="polars")
    assert isinstance(bars, pl.DataFrame)
    assert bars.schema == pl.Schema(BAR_SCHEMA)
    # The index equals the exact close times in microseconds (no float artefacts).
    np.testing.assert_array_equal(df.index.asi8, bars["close_time"].dt.epoch("us").to_numpy())
    arrow = process_trades_polars(btc, 10, output="arrow")
    assert isinstance(arrow, pa.Table)
    assert arrow.num_rows == bars.height
    plain = process_trades_to_dataframe(btc, 10)
    assert list(plain.columns) == ["Open", "High", "Low", "Close", "Volume"]


def test_backtesting_runs_on_the_output(btc: pl.DataFrame) -> None:
    from backtesting import Backtest, Strategy

    class Hold(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            pass

        def next(self) -> None:
            if not self.position:
                self.buy(size=1)

    df = process_trades_to_dataframe(btc, 5)
    stats = Backtest(df, Hold, cash=1_000_000, finalize_trades=True).run()
    assert stats["# Trades"] == 1


def test_include_incomplete_appends_the_trailing_bar(btc: pl.DataFrame) -> None:
    closed = process_trades_polars(btc, 250, output="polars")
    full = process_trades_polars(btc, 250, output="polars", include_incomplete=True)
    assert isinstance(closed, pl.DataFrame) and isinstance(full, pl.DataFrame)
    assert full.height == closed.height + 1
    assert full["agg_record_count"].sum() == btc.height


@pytest.mark.parametrize("chunk_size", [1, 7, 1000, 10**6])
def test_chunked_equals_one_shot(btc: pl.DataFrame, chunk_size: int) -> None:
    trades = btc.head(4000).to_dicts()
    one_shot = process_trades_to_dataframe(trades, 5, include_microstructure=True)
    chunks = list(process_trades_chunked(iter(trades), 5, chunk_size=chunk_size, include_microstructure=True))
    assert all(len(c) for c in chunks)
    pd.testing.assert_frame_equal(pd.concat(chunks), one_shot)


def test_chunked_accepts_frames_and_appends_the_tail(btc: pl.DataFrame) -> None:
    frames = [btc.slice(i, 997) for i in range(0, btc.height, 997)]
    chunks = list(process_trades_chunked(frames, 25, include_incomplete=True))
    expected = process_trades_to_dataframe(btc, 25, include_incomplete=True)
    pd.testing.assert_frame_equal(pd.concat(chunks), expected)


def test_checkpoint_round_trips_and_pickles(btc: pl.DataFrame) -> None:
    head, tail = btc.head(5000), btc.tail(btc.height - 5000)
    whole = RangeBarProcessor(10).process(btc)
    p = RangeBarProcessor(10)
    first = p.process(head)
    cp = p.checkpoint()
    assert cp.has_incomplete_bar and cp.threshold_decimal_bps == 10
    for restored in (
        RangeBarProcessor.from_checkpoint(cp),
        RangeBarProcessor.from_checkpoint(cp.to_bytes()),
        RangeBarProcessor.from_checkpoint(cp.to_json()),
        RangeBarProcessor.from_checkpoint(pickle.loads(pickle.dumps(cp))),
        pickle.loads(pickle.dumps(p)),
    ):
        assert pl.concat([first, restored.process(tail)]).equals(whole)
    assert Checkpoint.from_json(cp.to_json()) == cp


def test_processor_is_unchanged_by_a_failed_call(btc: pl.DataFrame) -> None:
    p = RangeBarProcessor(10)
    p.process(btc.head(100))
    before = p.checkpoint()
    bad = btc.slice(100, 50).with_columns(
        pl.when(pl.int_range(50) == 30).then(-1.0).otherwise(pl.col("price").cast(pl.Float64)).alias("price")
    )
    with pytest.raises(ValueError, match="row 30"):
        p.process(bad)
    assert p.checkpoint() == before
    assert pl.concat([RangeBarProcessor(10).process(btc.head(100)), p.process(btc.slice(100))]).equals(
        RangeBarProcessor(10).process(btc)
    )


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 11_349), max_size=6),
    threshold=st.sampled_from([5, 10, 25, 250]),
    via=st.sampled_from(["bytes", "json", "pickle", "none"]),
)
def test_split_invariance_on_real_trades(cuts: list[int], threshold: int, via: str) -> None:
    trades = _BTC
    expected = RangeBarProcessor(threshold).process(trades)
    p = RangeBarProcessor(threshold)
    parts, start = [], 0
    for end in [*sorted(cuts), trades.height]:
        parts.append(p.process(trades.slice(start, end - start)))
        p = round_tripped(p, via)
        start = end
    assert pl.concat(parts).equals(expected)


_BTC = read_fixture_trades("spot", "BTCUSDT")


def test_streamed_inputs_equal_the_one_shot_result(btc: pl.DataFrame, tmp_path: Path) -> None:
    expected = RangeBarProcessor(10).process(btc)
    paths = []
    for i, part in enumerate(btc.iter_slices(4000)):
        paths.append(tmp_path / f"part{i}.parquet")
        part.write_parquet(paths[-1], row_group_size=1000)
    assert RangeBarProcessor(10).process_parquet(paths).equals(expected)
    assert RangeBarProcessor(10).process(pl.scan_parquet(paths)).equals(expected)
    reader = pa.RecordBatchReader.from_batches(
        btc.to_arrow().schema, btc.to_arrow().to_batches(max_chunksize=777)
    )
    assert RangeBarProcessor(10).process(reader).equals(expected)


def test_a_bad_row_in_a_stream_names_its_batch(btc: pl.DataFrame, tmp_path: Path) -> None:
    bad = btc.with_columns(
        pl.when(pl.int_range(pl.len()) == 2500).then(pl.lit(None)).otherwise(pl.col("price")).alias("price")
    )
    path = tmp_path / "bad.parquet"
    bad.write_parquet(path, row_group_size=1000)
    with pytest.raises(InvalidTradeError, match="price at row 500") as info:
        RangeBarProcessor(10).process_parquet(path)
    assert "starting at input row 2000" in "".join(info.value.__notes__)


def test_prefetch_propagates_errors_and_stops_early() -> None:
    def produce() -> Iterator[int]:
        yield 1
        raise RuntimeError("decode failed")

    with pytest.raises(RuntimeError, match="decode failed"):
        list(prefetch(produce()))
    produced: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = prefetch(endless(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # the consumer stops: the producer thread must stop too
    assert len(produced) <= 3 + 2 + 1


def test_same_timestamp_gate_from_python_and_across_a_checkpoint() -> None:
    """A trade at the bar's open timestamp cannot close it when the gate is on (SPEC §1); the gate
    travels with every form of checkpoint, so a split stream gives the unsplit stream's bars."""
    import json

    t0 = 1_700_000_000_000
    trades = [
        {"timestamp": t0, "price": 100.0, "quantity": 1.0, "agg_trade_id": 1},
        {"timestamp": t0, "price": 101.0, "quantity": 1.0, "agg_trade_id": 2},  # breach at the open time
        {"timestamp": t0 + 5, "price": 100.9, "quantity": 1.0, "agg_trade_id": 3},
        {"timestamp": t0 + 9, "price": 99.0, "quantity": 1.0, "agg_trade_id": 4},
    ]
    plain = RangeBarProcessor(250).process(trades)
    assert plain["close"].to_list()[0] == 101.0  # off: the second trade closes the first bar
    gated_once = RangeBarProcessor(250, same_timestamp_gate=True).process(trades)
    assert gated_once["last_agg_trade_id"].to_list()[0] == 3  # on: the first later trade beyond closes it
    frame = process_trades_polars(trades, 250, same_timestamp_gate=True, output="polars")
    assert isinstance(frame, pl.DataFrame) and frame.equals(gated_once)
    first = RangeBarProcessor(250, "X", same_timestamp_gate=True)
    first.process(trades[:2])
    resumed = [
        RangeBarProcessor.from_checkpoint(first.checkpoint().to_bytes()),
        RangeBarProcessor.from_checkpoint(first.checkpoint().to_json()),
        RangeBarProcessor.from_checkpoint(json.loads(json.dumps(first.create_checkpoint()))),
        pickle.loads(pickle.dumps(first)),
    ]
    for processor in resumed:
        assert processor.same_timestamp_gate
        assert processor.process(trades[2:]).equals(gated_once)
