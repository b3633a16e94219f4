"""The opt-in minimum-duration gate (``min_duration_us=D``): a bar closes only on a trade at or beyond a
threshold whose timestamp is ``>= open_time + D``; checked against a plain Python loop of the rule."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rangebar_pipeline import RangeBarProcessor
from rangebar_pipeline.processing import (
    process_trades_chunked,
    process_trades_polars,
    process_trades_to_dataframe,
)
from tests.data_paths import read_fixture_trades, round_tripped

_BTC = read_fixture_trades("spot", "BTCUSDT")
_SCALE = 100_000_000


def _fixed(values: list[Any]) -> list[int]:
    return [int(Decimal(str(v)) * _SCALE) for v in values]


def _reference(
    ts: list[int], price: list[int], qty: list[int], threshold: int, d: int
) -> list[dict[str, int]]:
    """Closed bars by the rule as written (SPEC §1 plus the gate), in fixed point."""
    bars: list[dict[str, int]] = []
    bar: dict[str, int] | None = None
    for i, (t, p, q) in enumerate(zip(ts, price, qty, strict=True)):
        if bar is None:
            delta = p * threshold // 100_000
            bar = {"first": i, "open_time": t, "open": p, "high": p, "low": p, "volume": q,
                   "upper": p + delta, "lower": p - delta}  # fmt: skip
            continue
        bar["high"], bar["low"], bar["volume"] = max(bar["high"], p), min(bar["low"], p), bar["volume"] + q
        if (p >= bar["upper"] or p <= bar["lower"]) and t - bar["open_time"] >= d:
            bars.append(bar | {"last": i, "close_time": t, "close": p})
            bar = None
    return bars


def _check(bars: pl.DataFrame, trades: pl.DataFrame, threshold: int, d: int) -> None:
    ts = trades["timestamp"].dt.epoch("us").to_list()
    ids = trades["agg_trade_id"].to_list()
    expected = _reference(
        ts, _fixed(trades["price"].to_list()), _fixed(trades["quantity"].to_list()), threshold, d
    )
    assert bars.height == len(expected)
    assert bars["first_agg_trade_id"].to_list() == [ids[b["first"]] for b in expected]
    assert bars["last_agg_trade_id"].to_list() == [ids[b["last"]] for b in expected]
    assert bars["open_time"].dt.epoch("us").to_list() == [b["open_time"] for b in expected]
    assert bars["close_time"].dt.epoch("us").to_list() == [b["close_time"] for b in expected]
    for column in ("open", "high", "low", "close", "volume"):
        got = [round(v * _SCALE) for v in bars[column].to_list()]
        assert got == [b[column] for b in expected], column
    assert (bars["duration_us"] >= d).all()


@pytest.mark.parametrize(
    ("threshold", "d"), [(5, 0), (5, 1), (10, 250_000), (25, 2_000_000), (250, 60_000_000)]
)
def test_real_trades_match_the_reference_loop(threshold: int, d: int) -> None:
    bars = RangeBarProcessor(threshold, min_duration_us=d).process(_BTC)
    assert bars.height > 0
    _check(bars, _BTC, threshold, d)


def test_a_gated_bar_can_exceed_the_threshold() -> None:
    plain = RangeBarProcessor(5).process(_BTC)
    gated = RangeBarProcessor(5, min_duration_us=5_000_000).process(_BTC)
    assert gated.height < plain.height
    span = (gated["high"] - gated["low"]) / gated["open"]
    assert (span > 2 * 5e-5).any()  # wider than both thresholds together: early breaches stayed in


@st.composite
def _streams(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 300))
    steps = draw(st.lists(st.integers(-40, 40), min_size=n, max_size=n))
    gaps = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    ts, price, p, t = [], [], 10_000, 1_700_000_000_000_000
    for step, gap in zip(steps, gaps, strict=True):
        p, t = max(p + step, 1), t + gap * 1000
        ts.append(t)
        price.append(Decimal(p) / 100)
    return pl.DataFrame(
        {
            "timestamp": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
            "price": pl.Series(price, dtype=pl.Decimal(18, 8)),
            "quantity": pl.Series([Decimal("0.5")] * n, dtype=pl.Decimal(18, 8)),
            "agg_trade_id": range(n),
            "is_buyer_maker": [i % 3 == 0 for i in range(n)],
        }
    )


@settings(max_examples=80, deadline=None)
@given(
    trades=_streams(), threshold=st.sampled_from([10, 50, 250]), d=st.sampled_from([0, 1, 1000, 2500, 10_000])
)
def test_streams_match_the_reference_loop(trades: pl.DataFrame, threshold: int, d: int) -> None:
    _check(RangeBarProcessor(threshold, min_duration_us=d).process(trades), trades, threshold, d)


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.integers(0, _BTC.height), max_size=5),
    threshold=st.sampled_from([5, 25, 250]),
    d=st.sampled_from([1, 500_000, 5_000_000]),
    via=st.sampled_from(["bytes", "json", "dict", "pickle", "none"]),
)
def test_split_invariance_with_the_gate(cuts: list[int], threshold: int, d: int, via: str) -> None:
    expected = RangeBarProcessor(threshold, min_duration_us=d).process(_BTC)
    p = RangeBarProcessor(threshold, "BTCUSDT", min_duration_us=d)
    parts, start = [], 0
    for end in [*sorted(cuts), _BTC.height]:
        parts.append(p.process(_BTC.slice(start, end - start)))
        p = round_tripped(p, via)
        assert p.min_duration_us == d
        start = end
    assert pl.concat(parts).equals(expected)


@pytest.mark.parametrize("threshold", [5, 25, 250])
def test_zero_gives_bit_identical_bars_and_checkpoints(threshold: int) -> None:
    plain, zero = RangeBarProcessor(threshold), RangeBarProcessor(threshold, min_duration_us=0)
    assert zero.process(_BTC).equals(plain.process(_BTC))
    assert zero.checkpoint().to_bytes() == plain.checkpoint().to_bytes()
    assert zero.checkpoint().version == 1 and repr(zero) == repr(plain)


def test_one_shot_helpers_accept_the_gate_and_negative_is_rejected() -> None:
    expected = RangeBarProcessor(25, min_duration_us=1_000_000).process(_BTC)
    frame = process_trades_polars(_BTC, 25, min_duration_us=1_000_000, output="polars")
    assert isinstance(frame, pl.DataFrame) and frame.equals(expected)
    pandas = process_trades_to_dataframe(_BTC, 25, min_duration_us=1_000_000)
    assert pandas["Close"].tolist() == expected["close"].to_list()
    chunked = process_trades_chunked(_BTC.iter_slices(1000), 25, min_duration_us=1_000_000)
    assert sum(len(f) for f in chunked) == expected.height
    p = RangeBarProcessor(25, min_duration_us=1_000_000)
    p.reset()
    assert p.min_duration_us == 1_000_000 and p.checkpoint().min_duration_us == 1_000_000
    with pytest.raises(ValueError, match="min_duration_us"):
        RangeBarProcessor(25, min_duration_us=-1)


def test_tier1_accepts_gated_bars() -> None:
    from rangebar_pipeline.validation.tier1 import validate_tier1

    gated = RangeBarProcessor(5, min_duration_us=5_000_000).process(_BTC)
    assert validate_tier1(gated, threshold_decimal_bps=5).failures == ["breach_consistent"]
    result = validate_tier1(gated, threshold_decimal_bps=5, min_duration_us=5_000_000)
    assert result.failures == []
