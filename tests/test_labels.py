"""Labels (forward returns, triple barrier) against independent loops; purged folds' properties."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import cross_val_score

from rangebar_pipeline.config import PipelineConfigError, parse_config
from rangebar_pipeline.labels import (
    LabelSpec,
    PurgedKFold,
    PurgedWalkForward,
    TripleBarrier,
    add_labels,
    forward_returns,
    triple_barrier,
)
from tests.pipeline_support import TEST_CONFIG

T0 = datetime(2024, 8, 8, tzinfo=UTC)
NAIVE = datetime(2024, 8, 8)  # numpy datetimes carry no time zone


def walk(n: int, seed: int = 7) -> pl.DataFrame:
    """A random walk of closes, one bar every 1..90 s (several bars may share a close time)."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([-1.0, 1.0], size=n) * 0.0025
    close = 100.0 * np.exp(np.cumsum(steps))
    seconds = np.cumsum(rng.integers(0, 90, size=n))
    return pl.DataFrame(
        {"close_time": [T0 + timedelta(seconds=int(s)) for s in seconds], "close": close}
    ).with_columns(pl.col("close_time").cast(pl.Datetime("us", "UTC")))


def reference_barrier(
    times: list[datetime], close: list[float], threshold: int, *, h: int, up: float, down: float
) -> list[tuple[int | None, datetime | None, float | None]]:
    """The triple barrier as the issue states it, one bar at a time."""
    t = threshold / 100_000
    out: list[tuple[int | None, datetime | None, float | None]] = []
    for i, c in enumerate(close):
        upper, lower = c * (1 + up * t), c * (1 - down * t)
        found: tuple[int | None, datetime | None, float | None] = (None, None, None)
        for j in range(i + 1, min(i + h, len(close) - 1) + 1):
            if close[j] >= upper or close[j] <= lower:
                found = (1 if close[j] >= upper else -1, times[j], math.log(close[j] / c))
                break
        else:
            if i + h < len(close):
                found = (0, times[i + h], math.log(close[i + h] / c))
        out.append(found)
    return out


def test_forward_returns_are_log_returns_null_only_past_the_end() -> None:
    bars = walk(300)
    out = forward_returns(bars, (1, 5))
    close = bars["close"].to_numpy()
    for k in (1, 5):
        column = out[f"fwd_return_{k}"]
        assert column.null_count() == k and column[-k:].is_null().all()
        np.testing.assert_allclose(column[:-k].to_numpy(), np.log(close[k:] / close[:-k]), rtol=1e-15)
    assert out.columns == ["close_time", "close", "fwd_return_1", "fwd_return_5"]


@pytest.mark.parametrize(("h", "up", "down"), [(1, 1.0, 1.0), (10, 2.0, 1.0), (40, 3.0, 3.0)])
def test_triple_barrier_equals_the_stated_rule_bar_by_bar(h: int, up: float, down: float) -> None:
    bars = walk(400, seed=h)
    out = triple_barrier(bars, 250, horizon_bars=h, upper=up, lower=down)
    expected = reference_barrier(
        bars["close_time"].to_list(), bars["close"].to_list(), 250, h=h, up=up, down=down
    )
    assert out["tb_label"].dtype == pl.Int8
    assert out["tb_label"].to_list() == [e[0] for e in expected]
    assert out["tb_exit_close_time"].to_list() == [e[1] for e in expected]
    got = out["tb_return"].to_list()
    assert [g is None for g in got] == [e[2] is None for e in expected]
    np.testing.assert_allclose(
        [g for g in got if g is not None], [e[2] for e in expected if e[2] is not None], rtol=1e-14
    )
    assert {-1, 0, 1} >= set(out["tb_label"].drop_nulls()) and out["tb_label"].null_count() <= h
    if h == 40:  # some labels end at a barrier, some at the vertical one
        assert {-1, 0, 1} == set(out["tb_label"].drop_nulls())


def test_a_barrier_reached_before_the_horizon_is_final_even_near_the_end() -> None:
    times = [T0 + timedelta(minutes=i) for i in range(4)]
    bars = pl.DataFrame({"close_time": times, "close": [100.0, 100.6, 99.0, 99.0]})
    out = triple_barrier(bars, 250, horizon_bars=10, upper=2.0, lower=2.0)  # barriers at +-0.5 %
    assert out["tb_label"].to_list() == [1, -1, None, None]
    assert out["tb_exit_close_time"].to_list() == [times[1], times[2], None, None]


def test_pandas_and_lazy_frames_get_the_same_labels() -> None:
    bars = walk(200)
    spec = LabelSpec((1, 3), TripleBarrier(15, 1.5, 2.5))
    eager = add_labels(bars, 250, spec)
    assert add_labels(bars.lazy(), 250, spec).collect().equals(eager)
    frame = bars.to_pandas()
    frame.index = pd.RangeIndex(10, 210)
    labelled = add_labels(frame, 250, spec)
    assert isinstance(labelled, pd.DataFrame) and list(labelled.index) == list(frame.index)
    assert pl.from_pandas(labelled.reset_index(drop=True)).equals(eager)
    assert list(eager.columns[2:]) == list(spec.columns)


def test_label_errors_name_what_was_expected() -> None:
    with pytest.raises(ValueError, match="close_time and close"):
        forward_returns(pl.DataFrame({"close": [1.0]}), (1,))
    with pytest.raises(ValueError, match="upper must be a positive"):
        TripleBarrier(5, 0.0, 1.0)
    with pytest.raises(ValueError, match="horizons"):
        LabelSpec((1, 1))


def test_labels_are_configured_in_pipeline_yaml() -> None:
    default = parse_config(TEST_CONFIG)
    assert default.labels == LabelSpec((1, 5), TripleBarrier(20, 2.0, 2.0))
    custom = parse_config(
        TEST_CONFIG | {"labels": {"horizons": [2], "triple_barrier": {"horizon_bars": 7, "upper": 1}}}
    )
    assert custom.labels == LabelSpec((2,), TripleBarrier(7, 1.0, 2.0)) and custom.label_horizons == (2,)
    assert parse_config(TEST_CONFIG | {"labels": {"triple_barrier": None}}).labels.triple_barrier is None
    legacy = parse_config(TEST_CONFIG | {"features": {"label_horizons": [3]}})
    assert legacy.labels.horizons == (3,)
    with pytest.raises(PipelineConfigError, match=r"labels\.triple_barrier\.upper"):
        parse_config(TEST_CONFIG | {"labels": {"triple_barrier": {"upper": -1}}})
    with pytest.raises(PipelineConfigError, match="made of the keys"):
        parse_config(TEST_CONFIG | {"labels": {"triple_barrier": {"width": 2}}})


# --- folds -------------------------------------------------------------------------------------------

intervals = st.lists(st.tuples(st.integers(0, 500), st.integers(0, 60)), min_size=6, max_size=80).map(
    lambda pairs: ([s for s, _ in pairs], [s + d for s, d in pairs])
)


def _span(
    starts: np.ndarray[Any, Any], ends: np.ndarray[Any, Any], test: np.ndarray[Any, Any]
) -> tuple[int, int]:
    return int(starts[test].min()), int(ends[test].max())


@settings(max_examples=200, deadline=None)
@given(intervals, st.integers(2, 6), st.integers(0, 30))
def test_purged_kfold_never_trains_on_labels_touching_the_test_span_plus_embargo(
    data: tuple[list[int], list[int]], n_splits: int, embargo_minutes: int
) -> None:
    starts_min, ends_min = data
    if n_splits > len(starts_min):
        return
    starts = np.array([NAIVE + timedelta(minutes=m) for m in starts_min], dtype="datetime64[us]")
    ends = np.array([NAIVE + timedelta(minutes=m) for m in ends_min], dtype="datetime64[us]")
    embargo = timedelta(minutes=embargo_minutes)
    cv = PurgedKFold(n_splits, embargo=embargo, times=starts, end_times=ends)
    s, e = np.array(starts_min), np.array(ends_min)
    tested = np.zeros(len(s), dtype=int)
    for train, test in cv.split(np.zeros(len(s))):
        tested[test] += 1
        low, high = _span(s, e, test)
        high += embargo_minutes
        assert not np.any((s[train] <= high) & (e[train] >= low)), "a training label touches the test span"
        assert not set(train) & set(test)
        order = np.argsort(s, kind="stable")  # the test fold is contiguous in time
        positions = np.flatnonzero(np.isin(order, test))
        assert positions.max() - positions.min() + 1 == len(test)
    assert (tested == 1).all(), "every sample is tested exactly once"
    assert cv.get_n_splits() == n_splits


@settings(max_examples=150, deadline=None)
@given(intervals, st.integers(2, 5), st.integers(0, 5))
def test_walk_forward_trains_strictly_before_each_test_span(
    data: tuple[list[int], list[int]], n_splits: int, embargo_samples: int
) -> None:
    starts, ends = np.array(data[0]), np.array(data[1])
    if n_splits + 1 > len(starts):
        return
    cv = PurgedWalkForward(n_splits, embargo=embargo_samples, times=starts, end_times=ends)
    folds = list(cv.split())
    assert len(folds) == n_splits
    seen: set[int] = set()
    for train, test in folds:
        low, _ = _span(starts, ends, test)
        assert np.all(ends[train] < low) and np.all(starts[train] < low)
        assert not seen & set(test.tolist())
        seen |= set(test.tolist())


def test_a_sample_embargo_removes_the_next_samples_after_the_fold() -> None:
    times = np.arange(20)
    cv = PurgedKFold(4, embargo=2, times=times, end_times=times)  # labels end where they start
    train, test = next(iter(cv.split()))
    assert test.tolist() == [0, 1, 2, 3, 4]
    assert train.tolist() == list(range(7, 20))  # 5 and 6 embargoed


def test_purged_kfold_is_a_scikit_learn_cv() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3))
    y = x @ np.array([0.5, -0.2, 0.1]) + rng.normal(scale=0.1, size=300)
    starts = np.array([NAIVE + timedelta(minutes=i) for i in range(300)], dtype="datetime64[us]")
    ends = starts + np.timedelta64(5, "m")
    cv = PurgedKFold(5, embargo=timedelta(minutes=3), times=starts, end_times=ends)
    scores = cross_val_score(LinearRegression(), x, y, cv=cv, scoring="r2")
    assert len(scores) == 5 and np.all(scores > 0.8)
    forward = PurgedWalkForward(4, times=starts, end_times=ends)
    assert len(cross_val_score(LinearRegression(), x, y, cv=forward)) == 4
    with pytest.raises(ValueError, match="X has 10 samples"):
        list(cv.split(np.zeros((10, 3))))
    with pytest.raises(ValueError, match="ends before it starts"):
        PurgedKFold(2, times=[1, 2], end_times=[1, 0])
