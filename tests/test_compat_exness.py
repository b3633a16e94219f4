"""``rangebar_pipeline.exness`` against rangebar 7.1.3's ``rangebar.exness`` (installed as the oracle) on
the shared EURGBP fixture. The bar rule differs by design (docs/migration.md): 7.1.3's breaching tick
closes a bar and also opens the next; the difference is asserted exactly by rebuilding 7.1.3's bars
from this package's builder restarted at each closing tick."""

from __future__ import annotations

import itertools
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest
import rangebar.exness as ref

import rangebar_pipeline.exness as ours
from rangebar_pipeline import get_range_bars
from rangebar_pipeline.exceptions import InvalidQuoteError, RangeBarError
from tests.api_support import loopback_env
from tests.data_paths import SHARED_DATA

ARCHIVE = SHARED_DATA / "exness/ticks/EURGBP_Raw_Spread/2023/06/Exness_EURGBP_Raw_Spread_2023_06.zip"
THRESHOLD = 10


@pytest.fixture(scope="module")
def ticks() -> list[dict[str, Any]]:
    """The fixture's first 6000 quotes as 7.1.3's tick dicts."""
    with zipfile.ZipFile(ARCHIVE) as archive:
        raw = pl.read_csv(archive.read(archive.namelist()[0]), n_rows=6000)
    ms = raw["Timestamp"].str.strptime(pl.Datetime("ms"), "%Y-%m-%d %H:%M:%S%.fZ").cast(pl.Int64)
    return pl.DataFrame({"bid": raw["Bid"], "ask": raw["Ask"], "timestamp_ms": ms}).to_dicts()


def _all_bars(builder: Any, ticks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bars: list[dict[str, Any]] = builder.process_ticks(ticks)
    tail = builder.get_incomplete_bar()
    return bars + ([tail] if tail else [])


def _same_bar(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert list(mine) == list(theirs)
    assert abs(pd.Timestamp(mine["timestamp"]).value - pd.Timestamp(theirs["timestamp"]).value) < 1_000
    for key in ("open", "high", "low", "close", "volume", "vwap", "tick_count"):
        assert mine[key] == pytest.approx(theirs[key], rel=1e-12), key
    spreads, ref_spreads = mine["spread_stats"], theirs["spread_stats"]
    assert list(spreads) == list(ref_spreads)
    for key in ("min_spread", "max_spread", "tick_count"):
        assert spreads[key] == pytest.approx(ref_spreads[key], rel=1e-12), key
    assert spreads["avg_spread"] == pytest.approx(ref_spreads["avg_spread"], abs=1e-8)  # 7.1.3 truncates


def test_names_and_enums_as_in_7_1_3() -> None:
    assert set(ours.__all__) == set(ref.__all__) and ours.is_exness_available()
    pairs = zip(ours.ExnessInstrument.all(), ref.ExnessInstrument.all(), strict=True)
    for mine, theirs in pairs:
        assert (int(mine), mine.symbol, mine.raw_spread_symbol, mine.is_jpy_pair) == (
            int(theirs),
            theirs.symbol,
            theirs.raw_spread_symbol,
            theirs.is_jpy_pair,
        )
    for name in ("Permissive", "Strict", "Paranoid"):
        assert int(getattr(ours.ValidationStrictness, name)) == int(getattr(ref.ValidationStrictness, name))
    builder = ours.ExnessRangeBarBuilder(ours.ExnessInstrument.EURGBP, 250)
    assert (builder.instrument, builder.threshold_decimal_bps) == (ours.ExnessInstrument.EURGBP, 250)


def test_bars_differ_from_7_1_3_exactly_by_the_reopening_tick(ticks: list[dict[str, Any]]) -> None:
    instrument, ref_instrument = ours.ExnessInstrument.EURGBP, ref.ExnessInstrument.EURGBP
    mine = _all_bars(ours.ExnessRangeBarBuilder(instrument, THRESHOLD), ticks)
    theirs = _all_bars(ref.ExnessRangeBarBuilder(ref_instrument, THRESHOLD), ticks)
    assert len(theirs) > 10
    _same_bar(mine[0], theirs[0])  # the first bar is the same under both rules
    assert sum(b["tick_count"] for b in mine) == len(ticks)  # here each tick is in one bar ...
    assert sum(b["tick_count"] for b in theirs) == len(ticks) + len(theirs) - 1  # ... there closers twice
    # 7.1.3's bars are this package's bars with each closing tick fed again to open the next bar
    rebuilt, start = [], 0
    while True:
        bars = _all_bars(ours.ExnessRangeBarBuilder(instrument, THRESHOLD), ticks[start:])
        rebuilt.append(bars[0])
        if len(bars) == 1:
            break
        start += bars[0]["tick_count"] - 1
    assert len(rebuilt) == len(theirs)
    for a, b in zip(rebuilt, theirs, strict=True):
        _same_bar(a, b)
    assert all(b["open"] == a["close"] for a, b in itertools.pairwise(theirs))


def test_streaming_and_frames(ticks: list[dict[str, Any]]) -> None:
    instrument = ours.ExnessInstrument.EURGBP
    whole = _all_bars(ours.ExnessRangeBarBuilder(instrument, THRESHOLD), ticks)
    builder = ours.ExnessRangeBarBuilder(instrument, THRESHOLD)
    split = builder.process_ticks(ticks[:2500]) + [
        b for t in ticks[2500:2600] if (b := builder.process_tick(t))
    ]
    assert split + _all_bars(builder, ticks[2600:]) == whole  # any split, same bars and spreads
    frame = pd.DataFrame(ticks)
    got = ours.process_exness_ticks_to_dataframe(frame, instrument, THRESHOLD)
    expected = ref.process_exness_ticks_to_dataframe(frame, ref.ExnessInstrument.EURGBP, THRESHOLD)
    assert list(got.columns) == list(expected.columns) and got.index.name == expected.index.name
    assert len(got) == len(whole) and list(got["Close"]) == [b["close"] for b in whole]
    empty = ours.process_exness_ticks_to_dataframe([], instrument)
    ref_empty = ref.process_exness_ticks_to_dataframe([], ref.ExnessInstrument.EURGBP)
    assert list(empty.columns) == list(ref_empty.columns) and empty.empty and ref_empty.empty


@pytest.mark.parametrize(
    ("call", "error", "prefix"),
    [
        (lambda m, i: m.ExnessRangeBarBuilder(i, 0), ValueError, "Failed to create builder"),
        (
            lambda m, i: m.ExnessRangeBarBuilder(i, 250).process_tick(
                {"bid": 1.1, "ask": 1.0, "timestamp_ms": 1}
            ),
            RuntimeError,
            "Processing failed",
        ),
        (
            lambda m, i: m.ExnessRangeBarBuilder(i, 250).process_tick(
                {"bid": 1.0, "ask": 1.2, "timestamp_ms": 1}
            ),
            RuntimeError,
            "Processing failed",
        ),
        (
            lambda m, i: m.ExnessRangeBarBuilder(i, 250).process_tick({"ask": 1.0, "timestamp_ms": 1}),
            KeyError,
            None,
        ),
        (
            lambda m, i: m.process_exness_ticks_to_dataframe(pd.DataFrame({"bid": [1.0]}), i),
            ValueError,
            "Missing required columns",
        ),
    ],
)
def test_errors_as_in_7_1_3(call: Any, error: type[Exception], prefix: str | None) -> None:
    with pytest.raises(error, match=prefix) as theirs:
        call(ref, ref.ExnessInstrument.EURUSD)
    with pytest.raises(error, match=prefix) as mine:
        call(ours, ours.ExnessInstrument.EURUSD)
    assert isinstance(mine.value, RangeBarError)
    if isinstance(theirs.value, KeyError):
        assert str(mine.value) == theirs.value.args[0] == "Missing 'bid'"


def test_paranoid_and_permissive_levels() -> None:
    wide = {"bid": 1.0, "ask": 1.05, "timestamp_ms": 1_600_000_000_000}  # 5 % spread
    assert ours.ExnessRangeBarBuilder(ours.ExnessInstrument.EURUSD, 250).process_tick(wide) is None
    with pytest.raises(InvalidQuoteError, match="Processing failed"):
        ours.ExnessRangeBarBuilder(
            ours.ExnessInstrument.EURUSD, 250, ours.ValidationStrictness.Paranoid
        ).process_tick(wide)
    builder = ours.ExnessRangeBarBuilder(
        ours.ExnessInstrument.EURUSD, 250, ours.ValidationStrictness.Permissive
    )
    builder.process_tick(wide)
    with pytest.raises(InvalidQuoteError, match="Processing failed"):  # older than the last: refused
        builder.process_tick({**wide, "timestamp_ms": 1})
    assert builder.get_incomplete_bar() is not None  # the failing call changed nothing


def test_same_bars_as_get_range_bars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One rule: the adapter's bars of a day are the pipeline's ``source="exness"`` bars of that day."""
    with zipfile.ZipFile(ARCHIVE) as archive:
        raw = pl.read_csv(archive.read(archive.namelist()[0]))
    raw = raw.filter(pl.col("Timestamp").str.starts_with("2023-06-23"))
    ms = raw["Timestamp"].str.strptime(pl.Datetime("ms"), "%Y-%m-%d %H:%M:%S%.fZ").cast(pl.Int64)
    day = pl.DataFrame({"bid": raw["Bid"], "ask": raw["Ask"], "timestamp_ms": ms}).to_dicts()
    bars = ours.ExnessRangeBarBuilder(ours.ExnessInstrument.EURGBP, THRESHOLD).process_ticks(day)
    env = loopback_env(tmp_path, monkeypatch)
    next(env)
    try:
        stored = get_range_bars(
            "EURGBP", "2023-06-23", "2023-06-23", THRESHOLD, source="exness", output="polars"
        )
    finally:
        next(env, None)
    assert isinstance(stored, pl.DataFrame) and stored.height == len(bars) > 10
    for bar, row in zip(bars, stored.iter_rows(named=True), strict=True):
        assert pd.Timestamp(bar["timestamp"]) == pd.Timestamp(row["close_time"])
        assert [bar[k] for k in ("open", "high", "low", "close")] == [
            row[k] for k in ("open", "high", "low", "close")
        ]
        spreads = bar["spread_stats"]
        assert [spreads[k] for k in ("min_spread", "max_spread", "avg_spread", "tick_count")] == [
            row[k] for k in ("spread_min", "spread_max", "spread_avg", "spread_tick_count")
        ]
