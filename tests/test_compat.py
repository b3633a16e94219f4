"""Drop-in compatibility with rangebar 7.1.3 (installed as the oracle): the same names at the same
paths, the same keywords, and the same calls giving the same outputs, error types and message
prefixes on both packages. Documented differences (docs/migration.md) are asserted as such."""

from __future__ import annotations

import importlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest
import rangebar

import rangebar_pipeline
from rangebar_pipeline.exceptions import CheckpointError
from rangebar_pipeline.series import Series
from tests.api_support import Mirror, loopback_env
from tests.data_paths import REAL_BNB

#: The modules of 7.1.3 whose public names this package mirrors at the same path (``.clickhouse.cache``:
#: the cache names, tested below, docs/migration.md).
MODULES = [
    "",
    ".clickhouse",
    ".clickhouse.client",
    ".clickhouse.config",
    ".clickhouse.mixin",
    ".clickhouse.preflight",
    ".clickhouse.tunnel",
    ".exness",
    ".storage",
    ".storage.parquet",
    ".validation",
    ".validation.tier1",
    ".validation.tier2",
]
NOT_PROVIDED: set[str] = set()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Mirror]]:
    yield from loopback_env(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def trades() -> list[dict[str, Any]]:
    """Real BNBUSDT trades as 7.1.3's list of dicts (ms timestamps, float prices)."""
    frame = pl.read_parquet(REAL_BNB)  # its price column is named "close", its flag is text
    return frame.select(
        "timestamp", pl.col("close").alias("price"), "quantity", pl.col("is_buyer_maker") == "true"
    ).to_dicts()


def _public(module: Any) -> set[str]:
    """``__all__``, else the names whose objects 7.1.3 defines (not re-exported stdlib/typing helpers)."""
    if hasattr(module, "__all__"):
        return set(module.__all__)
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and str(getattr(value, "__module__", "")).startswith("rangebar")
    }


@pytest.mark.parametrize("suffix", MODULES)
def test_every_public_name_of_7_1_3_exists_at_the_same_path(suffix: str) -> None:
    reference = importlib.import_module(f"rangebar{suffix}")
    ours = importlib.import_module(f"rangebar_pipeline{suffix}")
    missing = sorted(n for n in _public(reference) - NOT_PROVIDED if not hasattr(ours, n))
    assert not missing, f"rangebar_pipeline{suffix} lacks {missing}"


# --- the same calls on both packages ----------------------------------------------------------------


def _close(ours: Any, ref: Any) -> bool:
    """Same instant: 7.1.3 renders times through a float, off by < 1 us (docs/migration.md)."""
    return abs(pd.Timestamp(ours).value - pd.Timestamp(ref).value) < 1_000


def _frames_equal(ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(ours.columns) == list(ref.columns) and len(ours) == len(ref) > 0
    assert all(_close(a, b) for a, b in zip(ours.index, ref.index, strict=True))
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), ref.reset_index(drop=True), rtol=1e-12)


def _bars_equal(ours: list[dict[str, Any]], ref: list[dict[str, Any]]) -> None:
    assert len(ours) == len(ref) > 0
    for mine, theirs in zip(ours, ref, strict=True):
        assert _close(mine["timestamp"], theirs["timestamp"])
        assert list(mine)[: len(theirs)] == list(theirs)  # 7.1.3's keys first, in its order
        for key in ("open", "high", "low", "close", "volume", "vwap", "buy_volume", "sell_volume"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-12, abs=1e-8), key
        assert mine["individual_trade_count"] == theirs["individual_trade_count"]


def test_processor_calls_give_the_same_bars(trades: list[dict[str, Any]]) -> None:
    ref, ours = rangebar.RangeBarProcessor(25, "BNBUSDT"), rangebar_pipeline.RangeBarProcessor(25, "BNBUSDT")
    half = len(trades) // 2
    split = ref.process_trades(trades[:half]) + ref.process_trades(trades[half:])
    expected = rangebar.RangeBarProcessor(25).process_trades(trades)
    assert len(split) == len(expected) - 1  # 7.1.3 loses the bar open at the split (fixed here)
    got = ours.process_trades(trades[:half]) + ours.process_trades(trades[half:])
    _bars_equal(got, expected)
    _frames_equal(ours.to_dataframe(got), ref.to_dataframe(expected))
    wide_ref = ref.to_dataframe(expected, include_microstructure=True)
    wide = ours.to_dataframe(got, include_microstructure=True)
    assert set(wide_ref.columns) <= set(wide.columns)
    ref = rangebar.RangeBarProcessor(25, "BNBUSDT")
    ref.process_trades(trades)
    tail, ref_tail = ours.get_incomplete_bar(), ref.get_incomplete_bar()
    assert tail is not None and ref_tail is not None and tail["open"] == ref_tail["open"]
    checkpoint, ref_checkpoint = ours.create_checkpoint(), ref.create_checkpoint()
    for key in (
        "symbol",
        "threshold_decimal_bps",
        "has_incomplete_bar",
        "last_timestamp_us",
        "last_timestamp_ms",
    ):
        assert checkpoint[key] == ref_checkpoint[key], key
    assert list(checkpoint)[: len(ref_checkpoint)] == list(ref_checkpoint)  # 7.1.3's keys, its order
    assert checkpoint["anomaly_summary"] == ref_checkpoint["anomaly_summary"]
    assert checkpoint["thresholds"] == pytest.approx(ref_checkpoint["thresholds"], rel=1e-12)
    assert checkpoint["incomplete_bar_raw"] == pytest.approx(ref_checkpoint["incomplete_bar_raw"], rel=1e-12)
    assert isinstance(checkpoint["price_hash"], int) and 0 <= checkpoint["price_hash"] < 2**64
    tampered = {**checkpoint, "state": {**checkpoint["state"], "trades_seen": 1}}
    with pytest.raises(CheckpointError, match=r"^Price hash mismatch"):  # 7.1.3's message prefix
        rangebar_pipeline.RangeBarProcessor.from_checkpoint(tampered)
    resumed = rangebar_pipeline.RangeBarProcessor.from_checkpoint(json.loads(json.dumps(checkpoint)))
    assert resumed.get_incomplete_bar() == tail and resumed.symbol == "BNBUSDT"
    with pytest.raises(CheckpointError, match="Invalid checkpoint"):  # 7.1.3's dicts are lossy
        rangebar_pipeline.RangeBarProcessor.from_checkpoint(ref_checkpoint)
    ours.reset()
    assert ours.get_incomplete_bar() is None
    assert ours.process_trades(trades[:half]) == rangebar_pipeline.RangeBarProcessor(25).process_trades(
        trades[:half]
    )


def test_verify_position_answers_as_7_1_3() -> None:
    start = {"timestamp": 1704067200000, "price": 1.0, "quantity": 1.0, "agg_trade_id": 5}
    nexts = [{"timestamp": 1704067201000, "price": 1.0, "quantity": 1.0}]
    nexts += [{**nexts[0], "agg_trade_id": i} for i in (6, 9)]

    def answers(module: Any, first: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        processor = module.RangeBarProcessor(250, "X")
        processor.process_trades(first)
        checks = [processor.verify_position(t) for t in nexts]
        return [(v.is_exact, v.has_gap, v.gap_details(), v.timestamp_gap_ms()) for v in checks]

    for first in ([start], []):
        assert answers(rangebar_pipeline, first) == answers(rangebar, first)


def test_one_shot_helpers_give_the_same_frames(trades: list[dict[str, Any]]) -> None:
    frame = pd.DataFrame(trades)
    calls: list[Callable[[Any], Any]] = [
        lambda m: m.process_trades_to_dataframe(trades, threshold_decimal_bps=25),
        lambda m: m.process_trades_to_dataframe(frame, 25),
        lambda m: m.process_trades_polars(pl.DataFrame(trades).lazy(), threshold_decimal_bps=25),
    ]
    for call in calls:
        _frames_equal(call(rangebar_pipeline), call(rangebar))
    cached = rangebar_pipeline.process_trades_to_dataframe_cached(
        trades, "BNBUSDT", 25
    )  # no ClickHouse needed
    _frames_equal(cached, rangebar.process_trades_to_dataframe(trades, 25))
    one_shot = rangebar.process_trades_to_dataframe(trades, 25)
    for chunked in (
        rangebar_pipeline.process_trades_chunked(iter(trades), 25, 3_000),
        rangebar_pipeline.process_trades_chunked(
            trades_iterator=iter(trades), threshold_decimal_bps=25, chunk_size=3_000
        ),
    ):  # 7.1.3 loses bars at chunk boundaries; here chunked == one shot
        _frames_equal(pd.concat(list(chunked)), one_shot)
    dated = pd.DataFrame({
        "timestamp": pd.date_range("2024-01-01", periods=100, freq="min"),
        "price": [42000 + i * 10 for i in range(100)],
        "quantity": [1.5] * 100,
    })  # fmt: skip
    ours = rangebar_pipeline.process_trades_to_dataframe(dated, threshold_decimal_bps=25)
    ref = rangebar.process_trades_to_dataframe(dated, threshold_decimal_bps=25)
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), ref.reset_index(drop=True))
    assert ours.index[0] == pd.Timestamp("2024-01-01 00:02", tz="UTC")  # 7.1.3 read datetime64[us]
    assert ref.index[0].year == 1970  # as milliseconds: its bars land in 1970 (docs/migration.md)


def test_validation_results_read_like_7_1_3_dicts(trades: list[dict[str, Any]]) -> None:
    from rangebar.validation.tier1 import validate_tier1 as ref_tier1

    from rangebar_pipeline.validation.tier1 import validate_tier1

    wide = rangebar_pipeline.process_trades_to_dataframe(trades, 25, include_microstructure=True)
    ours, ref = rangebar_pipeline.validate_continuity(wide), rangebar.validate_continuity(wide)
    assert set(ref) <= set(ours) and "is_valid" in ours and ours.get("nope") is None
    assert {k: dict(ours)[k] for k in ("is_valid", "bar_count", "discontinuity_count")} == {
        k: ref[k] for k in ("is_valid", "bar_count", "discontinuity_count")
    }
    jump = pd.DataFrame(
        {
            "Open": [1.0, 1.2],
            "High": [1.0, 1.2],
            "Low": [1.0, 1.2],
            "Close": [1.0, 1.2],
            "Volume": [1.0, 1.0],
        },
        index=pd.date_range("2024-01-01", periods=2, tz="UTC"),
    )
    broken, ref_broken = dict(rangebar_pipeline.validate_continuity(jump)), rangebar.validate_continuity(jump)
    assert broken["is_valid"] is ref_broken["is_valid"] is False
    ours_gap, ref_gap = broken["discontinuities"][0], ref_broken["discontinuities"][0]  # type: ignore[index]
    assert {k: ours_gap[k] for k in ref_gap} == ref_gap  # type: ignore[index]
    from rangebar_pipeline.validation.tier2 import validate_tier2

    assert validate_tier2(wide, target_col="forward_return").target == "forward_return"
    tier1 = validate_tier1(df=wide)
    assert tier1["tier1_passed"] and "no_nan" in tier1 and list(tier1.keys()) == list(tier1)
    for empty in (pd.DataFrame(), pl.DataFrame()):  # 7.1.3: a failed dict; before: a crash
        assert validate_tier1(empty)["tier1_passed"] is False is ref_tier1(pd.DataFrame())["tier1_passed"]
    for symbol in ("BTCUSDT", "EURUSD", None):
        tiered = rangebar_pipeline.validate_continuity_tiered(df=wide, validation="auto", symbol=symbol)
        assert (
            tiered.preset_used
            == rangebar.validate_continuity_tiered(wide, validation="auto", symbol=symbol).preset_used
        )


def _outcome(call: Callable[[Any], Any], module: Any) -> tuple[type[BaseException], str] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call(module)
    except Exception as error:  # the outcome is what we compare
        return type(error), str(error)
    return None


ERROR_CASES: dict[str, tuple[Callable[[Any], Any], str]] = {
    "source": (
        lambda m: m.get_range_bars("BTCUSDT", "2024-08-08", "2024-08-08", source="kraken"),
        "Unknown source",
    ),
    "market": (
        lambda m: m.get_range_bars("BTCUSDT", "2024-08-08", "2024-08-08", market="xx"),
        "Unknown market",
    ),
    "date": (lambda m: m.get_range_bars("BTCUSDT", "2024/08/08", "2024-08-08"), "Invalid date format"),
    "preset": (
        lambda m: m.get_range_bars("BTCUSDT", "2024-08-08", "2024-08-08", "huge"),
        "Unknown threshold preset",
    ),
    "order": (
        lambda m: m.get_range_bars("BTCUSDT", "2024-08-09", "2024-08-08"),
        "start_date must be <= end_date",
    ),
    "n_bars": (lambda m: m.get_n_range_bars("BTCUSDT", 0), "n_bars must be > 0"),
    "n_source": (lambda m: m.get_n_range_bars("BTCUSDT", 5, source="kraken"), "Unknown source"),
    "n_date": (lambda m: m.get_n_range_bars("BTCUSDT", 5, end_date="2024/01/01"), "Invalid date format"),
    "pre_date": (
        lambda m: m.precompute_range_bars("BTCUSDT", "2024-08", "2024-08-08"),
        "Invalid date format",
    ),
    "columns": (
        lambda m: m.process_trades_to_dataframe(pd.DataFrame({"timestamp": [1], "price": [1.0]})),
        "missing required columns",
    ),
    "threshold": (lambda m: m.RangeBarProcessor(0), ""),
    "field": (
        lambda m: m.RangeBarProcessor(250).process_trades([{"timestamp": 1704067200000, "price": 1.0}]),
        "",
    ),
    "unsorted": (
        lambda m: m.RangeBarProcessor(250).process_trades(
            [
                {"timestamp": 1704067201000, "price": 1.0, "quantity": 1.0},
                {"timestamp": 1704067200000, "price": 1.0, "quantity": 1.0},
            ]
        ),
        "",
    ),
    "symbol": (
        lambda m: m.RangeBarProcessor(250).create_checkpoint(),
        "Symbol required for checkpoint creation",
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_errors_have_7_1_3_types_and_message_prefixes(case: str) -> None:
    call, prefix = ERROR_CASES[case]
    expected, ours = _outcome(call, rangebar), _outcome(call, rangebar_pipeline)
    assert expected is not None and ours is not None
    assert issubclass(ours[0], expected[0]), (ours[0].__mro__, expected[0])
    if prefix:
        assert expected[1].removeprefix("DataFrame ").startswith(prefix)
        assert ours[1].startswith(prefix), ours[1]


# --- the edge contracts (loopback mirror; 7.1.3 itself is not called: it would go online) ------------


def _pandas(frame: object) -> pd.DataFrame:
    assert isinstance(frame, pd.DataFrame)
    return frame


def _downloads(mirror: Mirror, since: int = 0) -> set[str]:
    """Archives served since request ``since`` (a set: retries on a loaded machine count once)."""
    return {r.path for r in mirror.requests[since:] if r.path.endswith(".zip") and r.status == 200}


def test_use_cache_false_neither_reads_nor_writes_a_store(env: tuple[Path, Mirror]) -> None:
    cache, mirror = env
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    first = _pandas(
        rangebar_pipeline.get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", 25, use_cache=False)
    )
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before
    assert len(_downloads(mirror)) == 2
    cached = _pandas(rangebar_pipeline.get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", 25))
    pd.testing.assert_frame_equal(first, cached)
    mark = len(mirror.requests)
    second = _pandas(
        rangebar_pipeline.get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", 25, use_cache=False)
    )
    assert len(_downloads(mirror, mark)) == 2  # the stored days were not read: downloaded again
    pd.testing.assert_frame_equal(first, second)
    mark = len(mirror.requests)
    n = rangebar_pipeline.get_n_range_bars("BTCUSDT", 5, 25, end_date="2024-08-09", use_cache=False)
    assert len(n) == 5 and len(_downloads(mirror, mark)) == 1


def test_fetch_if_missing_false_and_zero_lookback_give_empty_frames(env: tuple[Path, Mirror]) -> None:
    _, mirror = env
    with pytest.warns(UserWarning, match=r"2024-08-08, 2024-08-09 and fetch_if_missing=False"):
        empty = _pandas(
            rangebar_pipeline.get_range_bars("ETHUSDT", "2024-08-08", "2024-08-09", fetch_if_missing=False)
        )
    assert empty.empty and list(empty.columns) == ["Open", "High", "Low", "Close", "Volume"]
    with pytest.warns(UserWarning, match="max_lookback_days=0"):
        none = _pandas(
            rangebar_pipeline.get_n_range_bars("ETHUSDT", 10, end_date="2024-08-09", max_lookback_days=0)
        )
    assert none.empty and not mirror.requests


def test_7_1_3_keywords_are_accepted(env: tuple[Path, Mirror]) -> None:
    seen: list[Any] = []
    result = rangebar_pipeline.precompute_range_bars(
        "BTCUSDT", "2024-08-08", "2024-08-09", 25, chunk_size=50_000, include_microstructure=True,
        continuity_tolerance_pct=0.001, progress_callback=seen.append, validate_on_complete="error",
    )  # fmt: skip
    assert result.symbol == "BTCUSDT" and result.cache_key == "BTCUSDT_25"
    assert result.continuity_valid is True and result.total_bars == 106
    assert [(p.current_month, p.months_completed, p.months_total) for p in seen] == [
        ("2024-08", 0, 1),
        ("2024-08", 1, 1),
    ]
    bars = rangebar_pipeline.get_n_range_bars(
        "BTCUSDT",
        50,
        25,
        end_date="2024-08-09",
        validate_on_return=True,
        continuity_action="raise",
        chunk_size=10,
    )
    assert len(bars) == 50
    spreads = rangebar_pipeline.get_range_bars(
        "EURGBP", "2023-06-23", "2023-06-23", "standard", source="exness", validation="paranoid"
    )
    assert len(spreads) > 0
    with pytest.raises(ValueError, match="Unknown validation level"):
        rangebar_pipeline.get_range_bars(
            "EURGBP",
            "2023-06-23",
            "2023-06-23",
            source="exness",
            validation="lax",  # type: ignore[arg-type]
        )


def test_clickhouse_names_read_the_bar_store(env: tuple[Path, Mirror]) -> None:
    from rangebar_pipeline.clickhouse import CacheKey, ClickHouseConfig, RangeBarCache
    from rangebar_pipeline.clickhouse.cache import count_bars, get_cached_bars

    assert ClickHouseConfig(host="ch", port=9000, database="db").dsn == "http://ch:9000/db"
    rangebar_pipeline.precompute_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", 25)
    bars = _pandas(rangebar_pipeline.get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", 25))
    close_ms = [int(t.value // 1_000_000) for t in bars.index]
    assert (
        count_bars("BTCUSDT", 25) == 106
        and get_cached_bars("BTCUSDT", "2024-08-08", "2024-08-09", 25) is not None
    )
    with RangeBarCache() as cache:
        assert cache.count_bars("BINANCE_SPOT_BTCUSDT", 25) == 106
        with cache.lock():  # the store's own client, for users' queries (issue 22)
            sql = f"SELECT count() FROM {cache.database}.range_bars WHERE threshold_decimal_bps = 25"
            assert cache.client.query(sql).result_rows == [(106,)]
        assert cache.count_bars("BTCUSDT", 25, before_ts=close_ms[60]) == 60
        tail, n = cache.get_n_bars("BTCUSDT", 25, 10, before_ts=close_ms[60])
        assert n == 10 and tail is not None
        pd.testing.assert_frame_equal(tail, bars.iloc[50:60])
        last = cache.get_last_bar_before("BTCUSDT", 25, close_ms[60])
        assert last is not None and pd.Timestamp(last["timestamp"]) == bars.index[59]
        assert cache.get_oldest_bar_timestamp("BTCUSDT", 25) == close_ms[0]
        assert cache.get_newest_bar_timestamp("BTCUSDT", 25) == close_ms[-1]
        middle = cache.get_bars_by_timestamp_range("BTCUSDT", 25, close_ms[10], close_ms[20])
        assert middle is not None
        pd.testing.assert_frame_equal(middle, bars.iloc[10:21])
        key = CacheKey("BTCUSDT", 25, close_ms[0], close_ms[-1])
        assert cache.has_range_bars(key) and len(key.hash_key) == 32
        assert len(_pandas(cache.get_range_bars(key))) == 106
        with pytest.raises(RuntimeError, match="store_range_bars is not supported"):
            cache.store_range_bars(key, bars)
        assert cache.invalidate_range_bars(CacheKey("BTCUSDT", 25, close_ms[-1], close_ms[-1])) == 1
        assert not cache.has_range_bars(key) and cache.get_range_bars(key) is None


#: 7.1.3's cache symbol of a series: TickStorage reads and writes the tick cache for it (your own symbols
#: get 7.1.3's month files: tests/test_compat_contracts.py).
CACHE = "BINANCE_SPOT_BTCUSDT"


def test_tick_storage_cache_symbols_read_and_write_the_tick_store(tmp_path: Path) -> None:
    from rangebar_pipeline.storage import TickStorage, get_cache_dir
    from rangebar_pipeline.storage.ticks import TickStore

    storage = TickStorage(cache_dir=tmp_path)
    assert storage.cache_dir == tmp_path and storage.ticks_dir == tmp_path / "ticks"
    assert get_cache_dir() == Path(os.environ["RANGEBAR_CACHE_DIR"])
    assert storage.get_stats(CACHE)["exists"] is False and storage.list_symbols() == []
    day1, day2 = 1704067200000, 1704153600000  # 2024-01-01 and 2024-01-02, 00:00 UTC
    trades = pl.DataFrame({
        "timestamp": [day1, day1 + 10_000, day2], "price": [42000.0, 42105.5, 42200.0],
        "quantity": [1.5, 2.3, 1.0], "agg_trade_id": [1, 2, 3], "is_buyer_maker": [True, False, True],
    })  # fmt: skip
    assert storage.write_ticks(CACHE, trades) == 3
    assert storage.write_ticks(CACHE, trades.to_pandas()) == 3  # merged, not doubled
    assert TickStore(tmp_path).list_days(Series("binance", "spot", "BTCUSDT")) == [
        date(2024, 1, 1),
        date(2024, 1, 2),
    ]
    assert storage.list_symbols() == ["BINANCE_SPOT_BTCUSDT"] and storage.list_months(CACHE) == ["2024-01"]
    stats = storage.get_stats(CACHE)
    assert (stats["exists"], stats["file_count"], stats["total_rows"], stats["months"]) == (
        True,
        2,
        3,
        ["2024-01"],
    )
    first = storage.read_ticks(CACHE, day1, day1 + 10_000)
    assert first["agg_trade_id"].to_list() == [1, 2] and str(first["price"][1]) == "42105.50000000"
    assert storage.get_ticks(CACHE, day2, None)["agg_trade_id"].to_list() == [3]
    assert storage.has_ticks(CACHE, day1, day2) and not storage.has_ticks(CACHE, day1, day2 + 86_400_000)
    assert [c.height for c in storage.read_ticks_streaming(CACHE, chunk_size=1)] == [1, 1, 1]
    assert storage.fetch_month(CACHE, 2024, 1).collect().height == 3
    assert storage.fetch_month(CACHE, 2024, 2).collect().height == 0
    assert [f.collect().height for f in storage.fetch_date_range(CACHE, "2023-12-01", "2024-02-01")] == [3]
    assert storage.delete_ticks(CACHE, "2024-01") and storage.list_months(CACHE) == []
