"""The opt-in intra group against an independent oracle: every column recomputed with plain NumPy
(antropy for the Hurst exponent and the permutation entropy) from the raw ticks of the shared real
trades, at several thresholds; identical across splits (chunks, days, checkpoints); edge cases.

The oracle follows issue 21's definitions and nothing of the kernel: it finds each bar's trades by
its first and last agg trade ids, and computes in floats (exact integers where the definition sums
fixed-point values).
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import antropy
import numpy as np
import polars as pl
import pytest

from rangebar_pipeline import RangeBarProcessor
from rangebar_pipeline.schema import BAR_SCHEMA, INTRA_SCHEMA, LOOKBACK_SCHEMA
from tests.data_paths import FIXTURE_SERIES, REAL_BNB, Market, fixture_ticks, read_fixture_trades

_INTRA = tuple(INTRA_SCHEMA)
_THRESHOLDS = (5, 25, 100, 250)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _epochs(nav: np.ndarray[Any, Any], h: float, *, bull: bool) -> dict[str, float]:
    """The investment-time-horizon state machine of one side, as issue 21 states it."""
    n = len(nav)
    gain = loss = 0.0
    anchor = far = near = float(nav[0])
    gains: list[float] = []
    positions: list[int] = []
    for k in range(1, n):  # the k = 2..n; its 0-based position k - 1 is this k
        x = float(nav[k])
        if bull:
            if x > far:
                gain, far = x / anchor - 1, x
            if x < near:
                loss, near = 1 - x / anchor, x
        else:
            if x < far:
                gain, far = anchor / x - 1, x
            if x > near:
                loss, near = 1 - anchor / x, x
        gains.append(gain)
        if gain > loss and gain > h:
            positions.append(k)
        moved = far >= anchor if bull else far <= anchor
        if gain > abs(loss) and gain > h and moved:
            anchor, near, gain, loss = far, float(nav[k - 1]), 0.0, 0.0
    intervals = np.diff(np.array([0, *positions], dtype=np.float64))
    cv = float(intervals.std() / intervals.mean()) if positions else 0.0
    return {
        "epoch_density": _sigmoid(10 * (len(positions) / n - 0.5)),
        "excess_gain": math.tanh(5 * math.fsum(gains)),
        "cv": _sigmoid(4 * (cv - 0.5)),
    }


def _oracle(bar: dict[str, Any]) -> dict[str, Any]:
    """The intra columns of one bar from its trades (``p``, ``q``, ``t``, ``sell``, ``m``)."""
    p, q, t, sell, m = bar["p"], bar["q"], bar["t"], bar["sell"], bar["m"]
    n = len(p)
    out: dict[str, Any] = dict.fromkeys(_INTRA)
    out |= {"intra_trade_count": n, "intra_duration_us": int(t[-1] - t[0])}
    if n == 1:
        return out | {"intra_intensity": 0.0, "intra_ofi": 0.0}
    raw_p = [round(v * 10**8) for v in p.tolist()]  # exact fixed point, as SPEC §1 defines prices
    raw_q = [round(v * 10**8) for v in q.tolist()]
    buy_vol = sum(v for v, s in zip(raw_q, sell.tolist(), strict=True) if not s)
    sell_vol = sum(raw_q) - buy_vol
    volume = buy_vol + sell_vol
    nb, ns = int(m[~sell].sum()), int(m[sell].sum())
    o, c, high, low = p[0], p[-1], p.max(), p.min()
    duration = out["intra_duration_us"]
    ofi = 0.0 if volume == 0 else (buy_vol - sell_vol) / volume
    out |= {
        "intra_intensity": float(n) if duration == 0 else n / (duration / 1e6),
        "intra_ofi": ofi,
        "intra_count_imbalance": 0.0 if nb + ns == 0 else (nb - ns) / (nb + ns),
        "intra_kyle_lambda": None if ofi == 0 else ((c - o) / o) / ofi,
        "intra_garman_klass_vol": math.sqrt(
            max(0.0, 0.5 * math.log(high / low) ** 2 - (2 * math.log(2) - 1) * math.log(c / o) ** 2)
        ),
    }
    if high == low:
        out["intra_vwap_position"] = 0.5
    elif volume:
        # (vwap - low) / (high - low) = (sum p q - low V) / ((high - low) V), exactly in integers
        turnover = sum(a * b for a, b in zip(raw_p, raw_q, strict=True))
        lo, hi = min(raw_p), max(raw_p)
        out["intra_vwap_position"] = min(1.0, max(0.0, (turnover - lo * volume) / ((hi - lo) * volume)))
    path = sum(abs(b - a) for a, b in pairwise(raw_p))
    out["intra_kaufman_er"] = None if path == 0 else abs(raw_p[-1] - raw_p[0]) / path
    if n >= 3:
        gaps = np.diff(t).astype(np.float64)
        mean, sd = gaps.mean(), gaps.std()
        out["intra_burstiness"] = None if sd == 0 else (sd - mean) / (sd + mean)
        d = q - q.mean()
        m2 = (d**2).mean()
        if m2 > 0:
            out["intra_volume_skew"] = (d**3).mean() / m2**1.5
            out["intra_volume_kurt"] = (d**4).mean() / m2**2 - 3
    if n >= 60:
        out["intra_permutation_entropy"] = antropy.perm_entropy(p, order=3, delay=1, normalize=True)
    if n >= 64:
        # ln(p_{k+1} / p_k) as log1p of the exact fixed-point difference over p_k: np.log of the
        # rounded quotient, or a difference of float prices, loses digits that DFA amplifies
        fixed = np.array(raw_p, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):  # a flat walk: log(0), no fit
            hurst = antropy.detrended_fluctuation(np.log1p(np.diff(fixed) / fixed[:-1]))
        out["intra_hurst"] = float(hurst) if np.isfinite(hurst) else None
    nav = p / p[0]
    drawdown = float((1 - nav / np.maximum.accumulate(nav)).max())
    runup = float((1 - np.minimum.accumulate(nav) / nav).max())
    out |= {"intra_max_drawdown": drawdown, "intra_max_runup": runup}
    for side, h in (("bull", drawdown), ("bear", runup)):
        for name, value in _epochs(nav, h, bull=side == "bull").items():
            out[f"intra_{side}_{name}"] = value
    return out


def _close(got: Any, expected: Any) -> bool:
    if expected is None or got is None:
        return got is None and expected is None
    if isinstance(expected, int):
        return bool(got == expected)
    return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12)


def _ticks_by_id(trades: pl.DataFrame) -> dict[str, np.ndarray[Any, Any]]:
    """The trades as NumPy columns; ``m`` the individual trades of each record (1 without ids)."""
    if "first_trade_id" in trades.columns:
        m = (trades["last_trade_id"] - trades["first_trade_id"] + 1).to_numpy()
    else:
        m = np.ones(trades.height, np.int64)
    return {
        "id": trades["agg_trade_id"].to_numpy(),
        "t": trades["timestamp"].dt.epoch("us").to_numpy(),
        "p": trades["price"].cast(pl.Float64).to_numpy(),
        "q": trades["quantity"].cast(pl.Float64).to_numpy(),
        "sell": trades["is_buyer_maker"].to_numpy(),
        "m": m,
    }


def _check(bars: pl.DataFrame, trades: pl.DataFrame) -> dict[str, int]:
    """Compare every intra column of every bar with the oracle; return the non-null counts."""
    ticks = _ticks_by_id(trades)
    checked = dict.fromkeys(_INTRA, 0)
    for row in bars.iter_rows(named=True):
        start = int(np.searchsorted(ticks["id"], row["first_agg_trade_id"]))
        end = int(np.searchsorted(ticks["id"], row["last_agg_trade_id"], side="right"))
        bar = {k: v[start:end] for k, v in ticks.items()}
        expected = _oracle(bar)
        for name in _INTRA:
            assert _close(row[name], expected[name]), (
                name,
                row["first_agg_trade_id"],
                row[name],
                expected[name],
            )
            checked[name] += expected[name] is not None
    return checked


def _bars(trades: pl.DataFrame, threshold: int, **options: Any) -> pl.DataFrame:
    processor = RangeBarProcessor(threshold, intra_bar=True, **options)
    return pl.concat([processor.process(trades), processor.incomplete_bar_frame()])


@pytest.mark.parametrize(("market", "symbol"), FIXTURE_SERIES)
@pytest.mark.parametrize("threshold", _THRESHOLDS)
def test_every_column_matches_the_oracle_on_the_fixture_trades(
    market: Market, symbol: str, threshold: int
) -> None:
    trades = read_fixture_trades(market, symbol)
    bars = _bars(trades, threshold)  # the closed bars and the one in progress
    assert bars.height >= 1
    checked = _check(bars, trades)
    assert all(
        checked[name] > 0 for name in _INTRA if name not in ("intra_hurst", "intra_permutation_entropy")
    )
    assert bars.height == int(bars["intra_trade_count"].ge(1).sum())


def test_the_long_bars_reach_every_column() -> None:
    """At 250 dbps the fixture bars are long enough for the Hurst exponent and the entropy."""
    counts = dict.fromkeys(_INTRA, 0)
    for market, symbol in FIXTURE_SERIES:
        trades = read_fixture_trades(market, symbol)
        for name, n in _check(_bars(trades, 250), trades).items():
            counts[name] += n
    assert all(counts.values()), counts


def test_every_column_matches_the_oracle_on_the_real_bnb_slice() -> None:
    """A real slice without trade ids (each record one trade) and with string sides."""
    raw = pl.read_parquet(REAL_BNB)
    trades = pl.DataFrame(
        {
            "agg_trade_id": pl.int_range(raw.height, eager=True),
            "timestamp": pl.from_epoch(raw["timestamp"], time_unit="ms").dt.replace_time_zone("UTC"),
            "price": raw["close"],
            "quantity": raw["quantity"],
            "is_buyer_maker": raw["is_buyer_maker"].str.to_lowercase() == "true",
        }
    )
    for threshold in (10, 50, 250):
        bars = _bars(trades, threshold)
        assert bars.height > 1
        _check(bars, trades)


def test_the_group_follows_the_bar_and_lookback_columns_and_off_changes_nothing() -> None:
    trades = read_fixture_trades("spot", "BTCUSDT")
    both = RangeBarProcessor(25, lookback_trades=100, intra_bar=True).process(trades)
    assert both.columns == [*BAR_SCHEMA, *LOOKBACK_SCHEMA, *INTRA_SCHEMA]
    assert dict(both.schema) == BAR_SCHEMA | LOOKBACK_SCHEMA | INTRA_SCHEMA
    floats = [c for c, d in INTRA_SCHEMA.items() if d == pl.Float64()]
    assert (
        not both.select(pl.any_horizontal(pl.col(floats).is_nan() | pl.col(floats).is_infinite()))
        .to_series()
        .any()
    )
    off = RangeBarProcessor(25).process(trades)
    assert off.columns == list(BAR_SCHEMA)
    assert both.select(list(BAR_SCHEMA)).equals(off), "the group does not change the bars"
    empty = RangeBarProcessor(25, intra_bar=True).process(trades.head(0))
    assert empty.columns == [*BAR_SCHEMA, *INTRA_SCHEMA]


@pytest.mark.parametrize("threshold", [5, 250])
def test_identical_across_chunks_days_and_checkpoints(threshold: int) -> None:
    market: Market = "spot"
    symbol = "BTCUSDT"
    trades = read_fixture_trades(market, symbol)
    whole = _bars(trades, threshold, lookback_trades=50)
    rng = np.random.default_rng(threshold)
    cuts = sorted({0, trades.height, *rng.integers(1, trades.height, 12).tolist()})
    processor = RangeBarProcessor(threshold, intra_bar=True, lookback_trades=50)
    parts = []
    for start, end in pairwise(cuts):
        parts.append(processor.process(trades.slice(start, end - start)))
        # a pickled checkpoint in the middle of a bar, restored before the next chunk
        processor = RangeBarProcessor.from_checkpoint(processor.checkpoint().to_bytes())
        assert processor.intra_bar and processor.checkpoint().version == 3
    parts.append(processor.incomplete_bar_frame())
    assert pl.concat(parts).equals(whole)
    by_day = RangeBarProcessor(threshold, intra_bar=True, lookback_trades=50)
    days = [by_day.process(day) for day in fixture_ticks(market, symbol)]
    assert len(days) > 1
    assert pl.concat([*days, by_day.incomplete_bar_frame()]).equals(whole)


def _stream(prices: list[float], times: list[int], *, sides: list[bool] | None = None) -> pl.DataFrame:
    n = len(prices)
    return pl.DataFrame(
        {
            "timestamp": [1_700_000_000_000_000 + t for t in times],
            "price": prices,
            "quantity": [1.0 + (i % 3) for i in range(n)],
            "agg_trade_id": list(range(1, n + 1)),
            "first_trade_id": [2 * i for i in range(n)],
            "last_trade_id": [2 * i + (i % 2) for i in range(n)],
            "is_buyer_maker": sides if sides is not None else [i % 2 == 0 for i in range(n)],
        }
    )


def _tail(trades: pl.DataFrame) -> dict[str, Any]:
    processor = RangeBarProcessor(250, intra_bar=True)
    assert processor.process(trades, timestamp_unit="us").height == 0
    frame = processor.incomplete_bar_frame()
    _check(frame, trades)
    return frame.row(0, named=True)


def test_a_bar_of_one_trade() -> None:
    row = _tail(_stream([100.0], [0]))
    assert (row["intra_trade_count"], row["intra_duration_us"]) == (1, 0)
    assert (row["intra_intensity"], row["intra_ofi"]) == (0.0, 0.0)
    assert all(row[c] is None for c in _INTRA[4:])


def test_equal_prices_and_zero_duration() -> None:
    """100 trades at one price in one microsecond: position 0.5, no path, no spread of arrivals."""
    row = _tail(_stream([100.0] * 100, [5] * 100))
    assert (row["intra_duration_us"], row["intra_intensity"]) == (0, 100.0)
    assert row["intra_vwap_position"] == 0.5 and row["intra_garman_klass_vol"] == 0.0
    assert row["intra_kaufman_er"] is None and row["intra_burstiness"] is None
    assert row["intra_hurst"] is None, "a flat walk has no fluctuation to fit"
    assert row["intra_permutation_entropy"] == 0.0
    assert (row["intra_max_drawdown"], row["intra_max_runup"]) == (0.0, 0.0)


def test_zero_duration_bars_close_like_any_other() -> None:
    """A breach in the opening microsecond closes a bar of duration 0."""
    processor = RangeBarProcessor(250, intra_bar=True)
    trades = _stream([100.0, 100.1, 99.9, 101.0, 101.0], [7, 7, 7, 7, 9])
    bars = processor.process(trades, timestamp_unit="us")
    assert bars.height == 1 and bars["intra_duration_us"][0] == 0
    assert bars["intra_intensity"][0] == 4.0
    _check(bars, trades)


def test_a_monotone_rise_has_no_bear_epochs_and_no_drawdown() -> None:
    prices = [100.0 + 0.001 * i for i in range(80)]
    row = _tail(_stream(prices, list(range(0, 80_000, 1000)), sides=[False] * 80))
    assert row["intra_max_drawdown"] == 0.0 and row["intra_max_runup"] > 0
    assert row["intra_kaufman_er"] == 1.0 and row["intra_ofi"] == 1.0
    assert row["intra_bear_epoch_density"] == pytest.approx(_sigmoid(-5), rel=1e-15)
    assert row["intra_bear_cv"] == pytest.approx(_sigmoid(-2), rel=1e-15), "no epochs: cv taken as 0"
    assert row["intra_bear_excess_gain"] == 0.0
    assert row["intra_bull_epoch_density"] > _sigmoid(-5), "every new high above the hurdle 0"
