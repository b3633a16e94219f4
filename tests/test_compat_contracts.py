"""The last 7.1.3 contracts (issue 22), each call run on the installed rangebar 7.1.3 and on this package
and the outcomes compared: ``fetch_if_missing=False`` never touches the network (offline: every socket
refused and counted, an empty cache), warnings start with 7.1.3's phrases, a negative threshold is an
``OverflowError`` as in 7.1.3, ``TickStorage``'s own-symbol store behaves as 7.1.3's call for call, and
7.1.3's result classes can be built from 7.1.3's fields. Deliberate differences are asserted as such
(docs/migration.md)."""

from __future__ import annotations

import dataclasses
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest
import rangebar
import rangebar.exness
import rangebar.storage.parquet

import rangebar_pipeline
import rangebar_pipeline.exness
from rangebar_pipeline import cli
from rangebar_pipeline.exceptions import DataNotFoundError, InvalidThresholdError, StoreError
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.parquet import TickStorage
from rangebar_pipeline.storage.ticks import TickStore
from tests.data_paths import fixture_zip, read_fixture_day

OHLCV = ["Open", "High", "Low", "Close", "Volume"]


@dataclass
class Offline:
    """Every network attempt made while the fixture is active (each one refused)."""

    attempts: list[str] = field(default_factory=list)


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Offline:
    """No network: name lookups and connects raise (and are counted); an empty cache; the sources at
    their public defaults (so an attempt would go to the internet, not to a loopback port)."""
    seen = Offline()

    def refuse(what: str) -> Callable[..., Any]:
        def guard(*args: Any, **_: Any) -> Any:
            seen.attempts.append(f"{what}{args[1:] if what.startswith('socket') else args[:2]}")
            raise OSError(f"network access attempted offline: {what}")

        return guard

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    for name in ("RANGEBAR_BINANCE_BASE_URL", "RANGEBAR_EXNESS_BASE_URL", "RANGEBAR_CLICKHOUSE_DSN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANGEBAR_CACHE_DIR", str(tmp_path / "cache"))
    return seen


@dataclass(frozen=True)
class Outcome:
    """A call's result as compared across the packages."""

    error: type[BaseException] | None
    message: str
    columns: list[str]
    rows: int
    warned: list[str]


def outcome(call: Callable[[Any], Any], module: Any) -> Outcome:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call(module)
        except Exception as exc:  # the outcome is what is compared
            return Outcome(type(exc), str(exc), [], 0, [str(w.message) for w in caught])
    shown = [str(w.message) for w in caught if "ClickHouse cache not available" not in str(w.message)]
    frame = result if isinstance(result, pd.DataFrame) else pd.DataFrame()
    return Outcome(None, "", list(frame.columns), len(frame), shown)


def first_sentence(message: str) -> str:
    return message.split(". ", maxsplit=1)[0] + "."


# --- fetch_if_missing=False never touches the network -------------------------------------------------

SAME_OUTCOME: dict[str, Callable[[Any], Any]] = {
    "n_bars_no_cache": lambda m: m.get_n_range_bars(
        "BTCUSDT", n_bars=100, use_cache=False, fetch_if_missing=False
    ),
    "n_bars_cache": lambda m: m.get_n_range_bars("BTCUSDT", n_bars=100, fetch_if_missing=False),
    "n_bars_dated": lambda m: m.get_n_range_bars(
        "ETHUSDT", 50, 25, end_date="2024-08-09", market="um", use_cache=False, fetch_if_missing=False
    ),
    "range_no_cache": lambda m: m.get_range_bars(
        "BTCUSDT", "2024-08-08", "2024-08-09", use_cache=False, fetch_if_missing=False
    ),
    "range_exness_no_cache": lambda m: m.get_range_bars(
        "EURGBP", "2023-06-23", "2023-06-23", source="exness", use_cache=False, fetch_if_missing=False
    ),
}


@pytest.mark.parametrize("case", SAME_OUTCOME)
def test_fetch_if_missing_false_gives_7_1_3_s_outcome_offline(case: str, offline: Offline) -> None:
    theirs = outcome(SAME_OUTCOME[case], rangebar)
    offline.attempts.clear()
    ours = outcome(SAME_OUTCOME[case], rangebar_pipeline)
    assert offline.attempts == [], f"{case}: network attempted: {offline.attempts}"
    assert theirs.error is None and ours.error is None, (theirs, ours)
    assert (ours.columns, ours.rows) == (theirs.columns, theirs.rows) == (OHLCV, 0)
    assert [first_sentence(w) for w in ours.warned] == [first_sentence(w) for w in theirs.warned], (
        theirs.warned,
        ours.warned,
    )


def test_get_range_bars_from_an_empty_cache_is_empty_where_7_1_3_raised(offline: Offline) -> None:
    call = SAME_OUTCOME["range_no_cache"]

    def cached(m: Any) -> Any:
        return m.get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", fetch_if_missing=False)

    theirs = outcome(cached, rangebar)  # its cache needs a ClickHouse server (docs/migration.md)
    assert theirs.error is not None and issubclass(theirs.error, RuntimeError), theirs
    offline.attempts.clear()
    ours = outcome(cached, rangebar_pipeline)
    assert offline.attempts == [] and ours.error is None and (ours.columns, ours.rows) == (OHLCV, 0)
    assert ours.warned and "2024-08-08, 2024-08-09 and fetch_if_missing=False" in ours.warned[0]
    assert outcome(call, rangebar_pipeline).warned == []  # as 7.1.3: an empty frame, no warning


def _corrupt_cached_day(cache: Path) -> Path:
    series = Series("binance", "spot", "BTCUSDT")
    store = TickStore(cache)
    path = store.write_day(
        series, "2024-08-08", read_fixture_day(fixture_zip("spot", "BTCUSDT", "2024-08-08"), "spot")
    ).path
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped byte inside a data page
    path.write_bytes(bytes(data))
    return path


ONLY_OURS: dict[str, Callable[[], Any]] = {
    "precompute": lambda: rangebar_pipeline.precompute_range_bars(
        "BTCUSDT", "2024-08-08", "2024-08-09", 25, fetch_if_missing=False
    ),
    "cli_bars": lambda: cli.main(["bars", "BTCUSDT", "2024-08-08", "2024-08-08", "--no-fetch"]),
    "cli_bars_no_cache": lambda: cli.main(
        ["bars", "BTCUSDT", "2024-08-08", "2024-08-09", "--no-fetch", "--no-cache"]
    ),
    "tick_storage": lambda: [
        TickStorage().fetch_month("BINANCE_SPOT_BTCUSDT", 2024, 8).collect(),
        list(TickStorage().fetch_date_range("BINANCE_SPOT_BTCUSDT", "2024-08-01", "2024-08-31")),
        TickStorage().read_ticks("BINANCE_SPOT_BTCUSDT"),
    ],
}


@pytest.mark.parametrize("corrupt", [False, True], ids=["empty-cache", "corrupt-day"])
@pytest.mark.parametrize("case", ONLY_OURS)
def test_no_entry_point_downloads_with_fetching_off(
    case: str, corrupt: bool, offline: Offline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The entry points 7.1.3 lacked (or that cannot run offline there): no attempt, whatever the cache
    holds; a corrupt cached day is refused naming its file (it would otherwise be fetched again)."""
    path = _corrupt_cached_day(tmp_path / "cache") if corrupt else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ONLY_OURS[case]()
        except (DataNotFoundError, StoreError) as exc:
            assert path is None or str(path) in str(exc) or case.startswith("precompute"), exc
        except SystemExit as exc:  # the CLI reports the error and exits non-zero
            assert exc.code not in (0, None)
    assert offline.attempts == [], f"{case}: network attempted: {offline.attempts}"
    if path is not None and case == "cli_bars":
        assert str(path) in capsys.readouterr().err


def test_a_corrupt_cached_day_is_refused_by_name_with_fetching_off(offline: Offline, tmp_path: Path) -> None:
    path = _corrupt_cached_day(tmp_path / "cache")
    with pytest.raises(StoreError, match=rf"corrupt tick file {path}"):
        rangebar_pipeline.get_range_bars("BTCUSDT", "2024-08-08", "2024-08-08", 25, fetch_if_missing=False)
    assert offline.attempts == [] and not path.exists()  # deleted, never served, nothing downloaded


# --- warnings and errors in 7.1.3's words ------------------------------------------------------------


def test_the_fewer_bars_warning_matches_7_1_3_s_phrase(offline: Offline) -> None:
    with pytest.warns(UserWarning) as caught:
        rangebar.get_n_range_bars("BTCUSDT", 7, use_cache=False, fetch_if_missing=False)
    with pytest.warns(UserWarning, match="bars instead of requested") as ours:
        rangebar_pipeline.get_n_range_bars("BTCUSDT", 7, use_cache=False, fetch_if_missing=False)
    assert str(ours[0].message) == str(caught[0].message)
    with pytest.warns(UserWarning, match=r"^Returning 0 bars instead of requested 7\. max_lookback_days=0"):
        rangebar_pipeline.get_n_range_bars("BTCUSDT", 7, end_date="2024-08-09", max_lookback_days=0)


TRADE = {"timestamp": 1704067200000, "price": 42000.0, "quantity": 1.5}
THRESHOLD_CALLS: dict[str, Callable[[Any, int], Any]] = {
    "processor": lambda m, t: m.RangeBarProcessor(t),
    "to_dataframe": lambda m, t: m.process_trades_to_dataframe([TRADE], threshold_decimal_bps=t),
    "polars": lambda m, t: m.process_trades_polars(pl.DataFrame([TRADE]), t),
    "chunked": lambda m, t: list(m.process_trades_chunked(iter([TRADE]), t)),
    "exness": lambda m, t: __import__(f"{m.__name__}.exness").exness.ExnessRangeBarBuilder(
        __import__(f"{m.__name__}.exness").exness.ExnessInstrument.EURUSD, t
    ),
    "get_range_bars": lambda m, t: m.get_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", t),
    "get_n_range_bars": lambda m, t: m.get_n_range_bars("BTCUSDT", 5, t),
    "precompute": lambda m, t: m.precompute_range_bars("BTCUSDT", "2024-08-08", "2024-08-09", t),
}


@pytest.mark.parametrize("threshold", [-1, -250, 2**32, 0, 100_001])
@pytest.mark.parametrize("call", THRESHOLD_CALLS)
def test_out_of_range_thresholds_raise_what_7_1_3_raised(call: str, threshold: int, offline: Offline) -> None:
    theirs = outcome(lambda m: THRESHOLD_CALLS[call](m, threshold), rangebar)
    ours = outcome(lambda m: THRESHOLD_CALLS[call](m, threshold), rangebar_pipeline)
    assert theirs.error is not None and ours.error is not None, (theirs, ours)
    assert issubclass(ours.error, theirs.error), (ours.error.__mro__, theirs.error)  # except clauses hold
    assert issubclass(ours.error, InvalidThresholdError)
    if threshold < 0 or threshold >= 2**32:  # 7.1.3: OverflowError from the kernel's u32
        assert issubclass(ours.error, OverflowError) and issubclass(ours.error, ValueError)
    if theirs.message.startswith("threshold_decimal_bps must be between"):
        assert ours.message.startswith(theirs.message.split(",")[0]), (ours.message, theirs.message)
    assert offline.attempts == []


# --- TickStorage: 7.1.3's store for your own symbols --------------------------------------------------

JAN31, FEB1 = 1706659200000, 1706745600000  # 2024-01-31 and 2024-02-01 00:00 UTC


def _ticks(first: int, n: int, start_ms: int) -> pl.DataFrame:
    return pl.DataFrame({
        "timestamp": [start_ms + 3_600_000 * i for i in range(n)],
        "price": [42000.0 + i for i in range(n)],
        "quantity": [1.5] * n,
        "agg_trade_id": list(range(first, first + n)),
    })  # fmt: skip


def _plain(value: Any) -> Any:
    """A comparable form of what TickStorage returns."""
    if isinstance(value, pl.LazyFrame):
        value = value.collect()
    if isinstance(value, pl.DataFrame):
        return (value.columns, [str(t) for t in value.dtypes], value.rows())
    if isinstance(value, Iterator):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def tick_storage_session(storage: Any) -> list[tuple[str, Any]]:
    """The same calls, in order, as a 7.1.3 user makes them; each call's (name, result)."""
    pandas_ticks = _ticks(100, 3, FEB1 + 20 * 3_600_000).to_pandas()
    pandas_ticks["timestamp"] = pd.to_datetime(pandas_ticks["timestamp"], unit="ms", utc=True)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("stats of nothing", lambda: storage.get_stats("BTCUSDT")),
        ("symbols of nothing", storage.list_symbols),
        ("write two months", lambda: storage.write_ticks("BTCUSDT", _ticks(1, 30, JAN31))),
        ("append to a month", lambda: storage.write_ticks("BTCUSDT", _ticks(31, 5, FEB1 + 40 * 3_600_000))),
        (
            "write again (kept twice)",
            lambda: storage.write_ticks("BTCUSDT", _ticks(31, 2, FEB1 + 40 * 3_600_000)),
        ),
        ("write datetimes", lambda: storage.write_ticks("MY_TICKS", pandas_ticks)),
        ("symbols", storage.list_symbols),
        ("months", lambda: storage.list_months("BTCUSDT")),
        ("read all", lambda: storage.read_ticks("BTCUSDT")),
        ("read a range", lambda: storage.read_ticks("BTCUSDT", JAN31 + 10 * 3_600_000, FEB1 + 2 * 3_600_000)),
        ("read from", lambda: storage.read_ticks("BTCUSDT", FEB1 + 40 * 3_600_000)),
        ("read datetimes", lambda: storage.read_ticks("MY_TICKS")),
        ("stream", lambda: storage.read_ticks_streaming("BTCUSDT", JAN31, FEB1 + 86_400_000, chunk_size=7)),
        ("has, covered", lambda: storage.has_ticks("BTCUSDT", JAN31, JAN31 + 20 * 3_600_000)),
        ("has, not covered", lambda: storage.has_ticks("BTCUSDT", JAN31, FEB1 + 30 * 86_400_000)),
        ("stats", lambda: {k: v for k, v in storage.get_stats("BTCUSDT").items() if "size" not in k}),
        ("month", lambda: storage.fetch_month("BTCUSDT", 2024, 2)),
        ("month absent", lambda: storage.fetch_month("BTCUSDT", 2024, 3)),
        ("month refresh", lambda: storage.fetch_month("BTCUSDT", 2024, 1, force_refresh=True)),
        ("date range", lambda: storage.fetch_date_range("BTCUSDT", "2023-12-15", "2024-03-01")),
        ("read unknown", lambda: storage.read_ticks("NOPE")),
        ("delete a month", lambda: storage.delete_ticks("BTCUSDT", "2024-01")),
        ("delete it again", lambda: storage.delete_ticks("BTCUSDT", "2024-01")),
        ("months after", lambda: storage.list_months("BTCUSDT")),
        ("delete all", lambda: storage.delete_ticks("MY_TICKS")),
        ("symbols after", storage.list_symbols),
    ]
    return [(name, _plain(step())) for name, step in steps]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))


def test_tick_storage_is_7_1_3_s_store_call_for_call(tmp_path: Path) -> None:
    theirs_root, ours_root = tmp_path / "theirs", tmp_path / "ours"
    theirs = tick_storage_session(rangebar.storage.parquet.TickStorage(cache_dir=theirs_root))
    ours = tick_storage_session(TickStorage(cache_dir=ours_root))
    for (name, expected), (_, got) in zip(theirs, ours, strict=True):
        assert got == expected, name
    assert _files(ours_root) == _files(theirs_root) == ["ticks/BTCUSDT/2024-02.parquet"]  # 7.1.3's paths
    mine, ref = ours_root / "ticks/BTCUSDT/2024-02.parquet", theirs_root / "ticks/BTCUSDT/2024-02.parquet"
    assert pl.read_parquet(mine).equals(pl.read_parquet(ref))  # zstd-3, the columns as written
    assert (
        rangebar.storage.parquet.TickStorage(cache_dir=ours_root)
        .read_ticks("BTCUSDT")
        .equals(TickStorage(cache_dir=theirs_root).read_ticks("BTCUSDT"))
    )  # each reads the other's files


def test_tick_storage_cache_symbols_are_the_tick_cache(tmp_path: Path) -> None:
    """Deliberate difference: 7.1.3's cache symbols name this package's tick cache (verified day files in
    the tick schema), so the ticks get_range_bars cached are read back through TickStorage."""
    storage = TickStorage(cache_dir=tmp_path)
    series = Series("binance", "spot", "BTCUSDT")
    day = read_fixture_day(fixture_zip("spot", "BTCUSDT", "2024-08-08"), "spot")
    TickStore(tmp_path).write_day(series, "2024-08-08", day)
    storage.write_ticks("BTCUSDT", _ticks(1, 3, JAN31))
    assert storage.list_symbols() == ["BINANCE_SPOT_BTCUSDT", "BTCUSDT"]
    assert storage.read_ticks("BINANCE_SPOT_BTCUSDT").equals(day)
    assert storage.read_ticks("BTCUSDT").columns == ["timestamp", "price", "quantity", "agg_trade_id"]
    assert storage.get_stats("BINANCE_SPOT_BTCUSDT")["file_count"] == 1  # one day file


@pytest.mark.parametrize("symbol", ["../x", "a/b", "/etc", "x\x00y", "..", ".", "", "binance"])
def test_tick_storage_refuses_symbols_that_are_not_file_names(symbol: str, tmp_path: Path) -> None:
    storage = TickStorage(cache_dir=tmp_path / "cache")
    calls: list[Callable[[], Any]] = [
        lambda: storage.write_ticks(symbol, _ticks(1, 3, JAN31)),
        lambda: storage.read_ticks(symbol),
        lambda: storage.delete_ticks(symbol),
        lambda: storage.get_stats(symbol),
        lambda: storage.list_months(symbol),
        lambda: storage.fetch_month(symbol, 2024, 1),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"invalid symbol"):
            call()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # nothing written, anywhere


# --- 7.1.3's result classes from 7.1.3's fields ---------------------------------------------------------


def _fields(instance: Any) -> dict[str, Any]:
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}


def test_result_classes_are_built_from_7_1_3_s_fields() -> None:
    progress: dict[str, Any] = dict(
        phase="fetching", current_month="2024-01", months_completed=1, months_total=3,
        bars_generated=10, ticks_processed=100, elapsed_seconds=1.5,
    )  # fmt: skip
    result: dict[str, Any] = dict(
        symbol="BTCUSDT", threshold_decimal_bps=250, start_date="2024-01-01", end_date="2024-03-31",
        total_bars=1000, total_ticks=10**6, elapsed_seconds=12.0, continuity_valid=True,
        cache_key="BTCUSDT_250",
    )  # fmt: skip
    for name, values in (("PrecomputeProgress", progress), ("PrecomputeResult", result)):
        theirs = getattr(rangebar, name)(**values)
        for ours in (
            getattr(rangebar_pipeline, name)(**values),
            getattr(rangebar_pipeline, name)(*values.values()),
        ):
            assert {k: getattr(ours, k) for k in values} == _fields(theirs), name
    assert rangebar_pipeline.PrecomputeResult(*list(result.values())[:-1]).cache_key == "BTCUSDT_250"
    tiers = {tier: rangebar_pipeline.TierSummary() for tier in rangebar_pipeline.GapTier}
    tiered: dict[str, Any] = dict(
        is_valid=False, bar_count=5, gaps_by_tier=tiers, all_gaps=[], threshold_used_pct=0.0025,
        asset_class_detected=rangebar_pipeline.AssetClass.CRYPTO, preset_used=None,
    )  # fmt: skip
    names = [f.name for f in dataclasses.fields(rangebar.TieredValidationResult)]
    assert names == list(tiered)
    for built in (
        rangebar_pipeline.TieredValidationResult(**tiered),
        rangebar_pipeline.TieredValidationResult(*tiered.values()),
    ):
        assert {k: getattr(built, k) for k in names} == tiered
        assert built["is_valid"] is False and not built.has_session_breaks and built.failures == ["is_valid"]


def test_range_bar_cache_has_7_1_3_s_client_property() -> None:
    from rangebar.clickhouse import RangeBarCache as Theirs

    from rangebar_pipeline.clickhouse import RangeBarCache

    assert isinstance(Theirs.client, property) and isinstance(RangeBarCache.client, property)


def test_progress_events_carry_7_1_3_s_month_fields_and_the_day(tmp_path: Path) -> None:
    event = rangebar_pipeline.PrecomputeProgress(
        "computed", "2024-08", 0, 1, 10, 100, 0.5, date(2024, 8, 8), 1, 2
    )
    assert (event.current_month, event.current_day, event.days_completed) == ("2024-08", date(2024, 8, 8), 1)
    assert datetime(2024, 8, 8, tzinfo=UTC).strftime("%Y-%m") == event.current_month
