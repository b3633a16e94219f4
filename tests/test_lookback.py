"""The opt-in lookback group: every column against an independent NumPy oracle (antropy for the
Hurst exponent and permutation entropy) on real trades; no lookahead; split/checkpoint invariance."""

from __future__ import annotations

import math
from typing import Any

import antropy
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rangebar_pipeline import RangeBarProcessor
from rangebar_pipeline.processing import process_trades_polars
from rangebar_pipeline.schema import BAR_SCHEMA, LOOKBACK_SCHEMA
from tests.data_paths import read_fixture_trades, round_tripped

_BTC = read_fixture_trades("spot", "BTCUSDT")
_LOOKBACK = tuple(LOOKBACK_SCHEMA)


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _oracle(
    p: np.ndarray[Any, Any], q: np.ndarray[Any, Any], t: np.ndarray[Any, Any], sell: np.ndarray[Any, Any]
) -> dict[str, Any]:
    """The lookback columns of one window, straight from the formulas of issue 12."""
    n = len(p)
    out: dict[str, Any] = dict.fromkeys(_LOOKBACK)
    out["lookback_trade_count"] = n
    if n == 0:
        return out
    raw_q = np.round(q * 1e8).astype(np.int64)  # volumes in exact fixed point, as SPEC §1 defines them
    buy_vol, sell_vol = int(raw_q[~sell].sum()), int(raw_q[sell].sum())
    high, low, o, c = p.max(), p.min(), p[0], p[-1]
    duration = int(t[-1] - t[0])
    ofi = _ratio(buy_vol - sell_vol, buy_vol + sell_vol)
    vwap = _ratio(float((p * q).sum()), float(q.sum()))
    path = np.abs(np.diff(p)).sum()
    out |= {
        "lookback_duration_us": duration,
        "lookback_ofi": ofi,
        "lookback_count_imbalance": (int((~sell).sum()) - int(sell.sum())) / n,
        "lookback_intensity": _ratio(n, duration / 1e6),
        "lookback_vwap": vwap,
        "lookback_vwap_position": None if vwap is None else _ratio(vwap - low, high - low),
        # vwap - low cancels: an ulp of vwap (summed in floats here, exactly in the kernel) moves it
        "_vwap_position_scale": 0.0 if high == low else high / (high - low),
        "lookback_price_range": (high - low) / o,
        "lookback_kyle_lambda": None if not ofi else ((c - o) / o) / ofi,
        "lookback_kaufman_er": _ratio(abs(c - o), path),
        "lookback_garman_klass_vol": math.sqrt(
            max(0.0, 0.5 * math.log(high / low) ** 2 - (2 * math.log(2) - 1) * math.log(c / o) ** 2)
        ),
    }
    if n >= 3:
        gaps = np.diff(t).astype(np.float64)
        mean, sd = gaps.mean(), gaps.std()
        out["lookback_burstiness"] = _ratio(sd - mean, sd + mean)
        out["lookback_permutation_entropy"] = antropy.perm_entropy(p, order=3, delay=1, normalize=True)
    d = q - q.mean()
    m2 = (d**2).mean()
    if n >= 3 and m2 > 0:
        out["lookback_volume_skew"] = (d**3).mean() / m2**1.5
    if n >= 4 and m2 > 0:
        out["lookback_volume_kurt"] = (d**4).mean() / m2**2 - 3
    if n >= 64:
        hurst = antropy.detrended_fluctuation(np.log(p[1:] / p[:-1]))
        out["lookback_hurst"] = None if not np.isfinite(hurst) else hurst
    return out


def _close(got: Any, expected: Any, scale: float) -> bool:
    if expected is None or got is None:
        return got is None and expected is None
    return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12 * scale)


def _check_against_oracle(bars: pl.DataFrame, trades: pl.DataFrame, n: int) -> int:
    t = trades["timestamp"].dt.epoch("us").to_numpy()
    p = trades["price"].cast(pl.Float64).to_numpy()
    q = trades["quantity"].cast(pl.Float64).to_numpy()
    sell = trades["is_buyer_maker"].to_numpy()
    checked = 0
    for row in bars.iter_rows(named=True):
        open_us = int(row["open_time"].timestamp() * 1_000_000)
        end = int(np.searchsorted(t, open_us, side="left"))  # trades strictly before the open
        start = max(0, end - n)
        expected = _oracle(p[start:end], q[start:end], t[start:end], sell[start:end])
        for name in _LOOKBACK:
            scale = expected.get("_vwap_position_scale", 0.0) if name == "lookback_vwap_position" else 0.0
            assert _close(row[name], expected[name], 1.0 + 1e3 * scale), (
                name,
                row["first_agg_trade_id"],
                row[name],
                expected[name],
            )
            checked += expected[name] is not None
    return checked


@pytest.mark.parametrize(("threshold", "n"), [(10, 500), (25, 64), (50, 500), (5, 3)])
def test_every_column_matches_the_oracle_on_real_trades(threshold: int, n: int) -> None:
    p = RangeBarProcessor(threshold, lookback_trades=n)
    bars = pl.concat([p.process(_BTC), p.incomplete_bar_frame()])
    assert bars.height > 2
    checked = _check_against_oracle(bars, _BTC, n)
    assert checked > 0
    if n >= 64:
        assert bars["lookback_hurst"].drop_nulls().len() > 0


def test_lookback_columns_follow_the_bar_columns_and_nulls_are_never_nan() -> None:
    bars = RangeBarProcessor(25, lookback_trades=200).process(_BTC)
    assert bars.columns == [*BAR_SCHEMA, *LOOKBACK_SCHEMA]
    assert dict(bars.schema) == BAR_SCHEMA | LOOKBACK_SCHEMA
    floats = [c for c, d in LOOKBACK_SCHEMA.items() if d == pl.Float64()]
    assert (
        not bars.select(pl.any_horizontal(pl.col(floats).is_nan() | pl.col(floats).is_infinite()))
        .to_series()
        .any()
    )
    first = bars.row(0, named=True)  # the stream's first bar has no history
    assert first["lookback_trade_count"] == 0 and all(first[c] is None for c in _LOOKBACK[1:])
    assert RangeBarProcessor(25).process(_BTC).columns == list(BAR_SCHEMA)  # off: no extra columns
    empty = RangeBarProcessor(25, lookback_trades=10).process(_BTC.head(0))
    assert empty.columns == [*BAR_SCHEMA, *LOOKBACK_SCHEMA]


@st.composite
def _streams(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(2, 250))
    steps = draw(st.lists(st.integers(-30, 30), min_size=n, max_size=n))
    gaps = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    qty = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    ts, price, p, t = [], [], 10_000, 1_700_000_000_000_000
    for step, gap in zip(steps, gaps, strict=True):
        p, t = max(p + step, 1), t + gap * 1000
        ts.append(t)
        price.append(p / 100)
    return pl.DataFrame(
        {
            "timestamp": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
            "price": price,
            "quantity": [v / 10 for v in qty],
            "agg_trade_id": range(n),
            "is_buyer_maker": [v % 3 == 0 for v in qty],
        }
    )


def _all_bars(trades: pl.DataFrame, n: int) -> pl.DataFrame:
    p = RangeBarProcessor(25, lookback_trades=n)
    return pl.concat([p.process(trades), p.incomplete_bar_frame()])


@settings(max_examples=40, deadline=None)
@given(trades=_streams(), n=st.sampled_from([1, 3, 10, 70]), data=st.data())
def test_changing_a_trade_at_or_after_the_open_never_changes_the_lookback(
    trades: pl.DataFrame, n: int, data: st.DataObject
) -> None:
    bars = _all_bars(trades, n)
    k = data.draw(st.integers(0, bars.height - 1))
    bar = bars.row(k, named=True)
    opens_at = bar["first_agg_trade_id"]  # = row index of the opening trade
    victim = data.draw(st.integers(opens_at, trades.height - 1))
    changed = trades.with_columns(
        pl.when(pl.int_range(pl.len()) == victim)
        .then(pl.col("price") * 1.5)
        .otherwise("price")
        .alias("price"),
        pl.when(pl.int_range(pl.len()) == victim)
        .then(pl.col("quantity") + 7)
        .otherwise("quantity")
        .alias("quantity"),
        pl.when(pl.int_range(pl.len()) == victim).then(~pl.col("is_buyer_maker")).otherwise("is_buyer_maker"),
    )
    after = _all_bars(changed, n).filter(pl.col("first_agg_trade_id") == opens_at)
    assert after.height == 1
    assert after.select(_LOOKBACK).row(0) == bars.select(_LOOKBACK).row(k)
    _check_against_oracle(bars, trades, n)


@settings(max_examples=20, deadline=None)
@given(
    cuts=st.lists(st.integers(0, _BTC.height), max_size=5),
    n=st.sampled_from([1, 64, 500]),
    via=st.sampled_from(["bytes", "json", "pickle", "none"]),
    min_duration_us=st.sampled_from([0, 2_000_000]),
)
def test_split_and_checkpoint_invariance_with_the_group_on(
    cuts: list[int], n: int, via: str, min_duration_us: int
) -> None:
    options: dict[str, Any] = {"lookback_trades": n, "min_duration_us": min_duration_us}
    expected = RangeBarProcessor(10, **options).process(_BTC)
    p = RangeBarProcessor(10, **options)
    parts, start = [], 0
    for end in [*sorted(cuts), _BTC.height]:
        parts.append(p.process(_BTC.slice(start, end - start)))
        p = round_tripped(p, via)
        assert p.lookback_trades == n
        start = end
    assert pl.concat(parts).equals(expected)


def test_one_shot_helpers_and_bad_values() -> None:
    expected = RangeBarProcessor(25, lookback_trades=100).process(_BTC)
    frame = process_trades_polars(_BTC, 25, lookback_trades=100, output="polars")
    assert isinstance(frame, pl.DataFrame) and frame.equals(expected)
    pandas = process_trades_polars(_BTC, 25, lookback_trades=100, include_microstructure=True)
    assert "lookback_hurst" in pandas.columns
    for bad in (-1, 1_000_001):
        with pytest.raises(ValueError, match="lookback_trades"):
            RangeBarProcessor(25, lookback_trades=bad)
    assert RangeBarProcessor(25, lookback_trades=100).checkpoint().version == 2
