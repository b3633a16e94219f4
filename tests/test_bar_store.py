"""Tier 2 bar store against real ClickHouse (embedded chDB): exactness, atomic replace, coverage, locking."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rangebar_pipeline.exceptions import MissingColumnError, StoreError, StoreLockedError
from rangebar_pipeline.schema import BAR_COLUMNS, BAR_SCHEMA
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore, DayWrite, redact_dsn, resolve_dsn
from rangebar_pipeline.storage.bars import writes as bar_writes

REPO = Path(__file__).resolve().parents[1]
SPOT = Series("binance", "spot", "BTCUSDT")
UM = Series("binance", "um", "BTCUSDT")
D1 = date(2024, 8, 8)
D2 = date(2024, 8, 9)


def make_bars(day: date, n: int, *, seed: int = 0, first_id: int = 1_000) -> pl.DataFrame:
    """``n`` synthetic bars closing inside ``day`` with awkward float values (BAR_SCHEMA)."""
    rng = np.random.default_rng(seed)
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    close = np.sort(rng.integers(start, start + 86_400_000_000, n))
    open_ = close - rng.integers(0, 5_000_000, n)
    data: dict[str, object] = {}
    for name, dtype in BAR_SCHEMA.items():
        if dtype == pl.Float64:
            data[name] = rng.normal(60_000, 500, n) * (1 + 1e-13 * rng.standard_normal(n))
        else:
            data[name] = rng.integers(0, 1 << 40, n)
    ids = first_id + np.arange(n) * 10
    data |= {"open_time": open_, "close_time": close, "first_agg_trade_id": ids, "last_agg_trade_id": ids + 9}
    frame = pl.DataFrame(data)
    return frame.with_columns(
        pl.col("open_time").cast(pl.Datetime("us", "UTC")),
        pl.col("close_time").cast(pl.Datetime("us", "UTC")),
    ).cast(pl.Schema(BAR_SCHEMA))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BarStore]:
    monkeypatch.delenv("RANGEBAR_CLICKHOUSE_DSN", raising=False)
    with BarStore(cache_dir=tmp_path) as opened:
        yield opened


def test_round_trip_is_exact_and_ordered(store: BarStore) -> None:
    bars = make_bars(D1, 200, seed=1)
    shuffled = bars.sample(fraction=1.0, shuffle=True, seed=3)
    record = store.write_day(SPOT, 250, D1, shuffled, checkpoint=b"cp", tick_count=5_000)
    assert (record.bar_count, record.tick_count) == (200, 5_000)
    assert record.first_agg_trade_id == 1_000 and record.last_agg_trade_id == 1_000 + 199 * 10 + 9
    got = store.read_bars(SPOT, 250, D1, D1)
    assert got.columns == list(BAR_COLUMNS)
    assert_frame_equal(got, bars.sort("close_time", "first_agg_trade_id"), check_exact=True)
    some = ["close", "open_time", "last_agg_trade_id"]  # only these, in this order, times converted
    assert_frame_equal(store.read_bars(SPOT, 250, D1, D1, columns=some), got.select(some), check_exact=True)
    with pytest.raises(ValueError, match=r"unknown bar columns \['nope'\]"):
        store.read_bars(SPOT, 250, D1, D1, columns=["open", "nope"])


def test_rewriting_a_day_leaves_exactly_the_new_version(store: BarStore) -> None:
    store.write_day(SPOT, 250, D1, make_bars(D1, 50, seed=1), checkpoint=b"a", tick_count=10)
    store.write_day(SPOT, 250, D2, make_bars(D2, 7, seed=2), checkpoint=b"b", tick_count=10)
    new = make_bars(D1, 30, seed=9, first_id=5)
    store.write_day(SPOT, 250, D1, new, checkpoint=b"c", tick_count=11)
    store.write_day(SPOT, 250, D1, new, checkpoint=b"c", tick_count=11)
    assert_frame_equal(store.read_bars(SPOT, 250, D1, D1), new.sort("close_time"), check_exact=True)
    assert store.count_bars(SPOT, 250) == 37
    # garbage collection: no physical row of an old version of D1 remains
    with store._client() as client:
        physical = client.query(f"SELECT count() FROM {store.database}.range_bars").result_rows[0][0]
    assert physical == 37


def test_half_written_version_is_invisible(store: BarStore) -> None:
    old = make_bars(D1, 20, seed=1)
    store.write_day(SPOT, 250, D1, old, checkpoint=b"old", tick_count=1)
    # a writer that crashed after inserting its bars but before switching the coverage row
    crashed = DayWrite(SPOT, 250, D1, make_bars(D1, 99, seed=2), b"new", 1)
    rows = bar_writes.prepare_rows(crashed, 250, bar_writes.next_write_id())
    with store._client() as client:
        client.insert_arrow(
            f"{store.database}.range_bars", rows.to_arrow(compat_level=pl.CompatLevel.oldest())
        )
    assert_frame_equal(store.read_bars(SPOT, 250, D1, D1), old.sort("close_time"), check_exact=True)
    assert store.checkpoint_for(SPOT, 250, D1) == b"old"
    # the next complete write of the day removes the orphan rows as well
    store.write_day(SPOT, 250, D1, old, checkpoint=b"old", tick_count=1)
    with store._client() as client:
        assert client.query(f"SELECT count() FROM {store.database}.range_bars").result_rows[0][0] == 20


def test_keys_do_not_collide_across_markets_thresholds_or_same_close_time(store: BarStore) -> None:
    bars = make_bars(D1, 3, seed=4)
    same_close = bars.with_columns(pl.lit(bars["close_time"][0]).alias("close_time"))
    store.write_day(SPOT, 250, D1, same_close, checkpoint=b"x", tick_count=3)
    store.write_day(UM, 250, D1, bars, checkpoint=b"y", tick_count=3)
    store.write_day(SPOT, 100, D1, bars.head(1), checkpoint=b"z", tick_count=3)
    assert store.read_bars(SPOT, 250, D1, D1)["close_time"].n_unique() == 1
    assert store.count_bars(SPOT, 250) == 3
    assert store.count_bars(UM, 250) == 3
    assert store.count_bars(SPOT, 100) == 1
    assert store.checkpoint_for(UM, 250, D1) == b"y"


def test_duplicate_key_and_foreign_day_and_missing_columns_are_rejected(store: BarStore) -> None:
    bars = make_bars(D1, 3)
    with pytest.raises(ValueError, match="repeat the key"):
        store.write_day(SPOT, 250, D1, pl.concat([bars, bars.head(1)]), checkpoint=b"", tick_count=0)
    with pytest.raises(ValueError, match="outside day 2024-08-09"):
        store.write_day(SPOT, 250, D2, bars, checkpoint=b"", tick_count=0)
    with pytest.raises(MissingColumnError, match="vwap"):
        store.write_day(SPOT, 250, D1, bars.drop("vwap"), checkpoint=b"", tick_count=0)
    with pytest.raises(ValueError, match=r"1\.\.=100000"):
        store.write_day(SPOT, 0, D1, bars, checkpoint=b"", tick_count=0)
    assert store.coverage(SPOT, 250, D1, D2) == {}


def test_writes_prepared_ahead_store_what_a_plain_write_stores(store: BarStore) -> None:
    bars = make_bars(D1, 40, seed=5).sample(fraction=1.0, shuffle=True, seed=1)
    writes = [DayWrite(SPOT, 250, D1, bars, b"a", 9), DayWrite(UM, 250, D1, bars.head(0), b"b", 0)]
    prepared = store.prepare(writes)
    assert all(w.rows is not None for w in prepared) and prepared == writes  # the same writes
    stamped = bar_writes.prepare_rows(prepared[0], 250, 7, shaped=prepared[0].rows)
    assert_frame_equal(stamped, bar_writes.prepare_rows(writes[0], 250, 7), check_exact=True)
    store.write_days(prepared)
    assert_frame_equal(store.read_bars(SPOT, 250, D1, D1), bars.sort("close_time"), check_exact=True)
    assert store.coverage(UM, 250, D1, D1)[D1].bar_count == 0
    with pytest.raises(ValueError, match="outside day 2024-08-09"):  # refused when prepared
        store.prepare([DayWrite(SPOT, 250, D2, bars, b"", 0)])


def test_checkpoint_bytes_round_trip_and_empty_day(store: BarStore) -> None:
    blob = bytes(range(256)) * 3
    empty = make_bars(D1, 0)
    record = store.write_day(SPOT, 250, D1, empty, checkpoint=blob, tick_count=0)
    assert record.bar_count == 0 and record.first_agg_trade_id is None
    assert store.checkpoint_for(SPOT, 250, D1) == blob
    assert store.checkpoint_for(SPOT, 250, D2) is None
    assert store.is_covered(SPOT, 250, D1, D1)
    assert store.read_bars(SPOT, 250, D1, D1).schema == pl.Schema(BAR_SCHEMA)


def test_coverage_follows_the_checkpoint_chain(store: BarStore) -> None:
    d0 = D1 - timedelta(days=1)
    store.write_day(SPOT, 250, D1, make_bars(D1, 2), checkpoint=b"day1", tick_count=1)
    assert store.is_covered(SPOT, 250, D1, D1)
    assert not store.is_covered(SPOT, 250, D1, D2), "a range with a missing day is not covered"
    store.write_day(
        SPOT, 250, D2, make_bars(D2, 2), checkpoint=b"day2", tick_count=1, parent_checkpoint=b"day1"
    )
    assert store.is_covered(SPOT, 250, D1, D2)
    # D1 recomputed with another end state: D2 no longer continues it
    store.write_day(SPOT, 250, D1, make_bars(D1, 2), checkpoint=b"day1-v2", tick_count=1)
    assert store.covered_days(SPOT, 250, D1, D2) == {D1}
    store.write_day(
        SPOT, 250, D2, make_bars(D2, 2), checkpoint=b"d2", tick_count=1, parent_checkpoint=b"day1-v2"
    )
    assert store.is_covered(SPOT, 250, D1, D2)
    # a day stored from a fresh start is stale once its predecessor is stored
    store.write_day(SPOT, 250, d0, make_bars(d0, 1), checkpoint=b"day0", tick_count=1)
    assert store.covered_days(SPOT, 250, d0, D2) == {d0, D2}
    assert store.coverage(SPOT, 250, D1, D1)[D1].fresh_start


def test_invalidate_status_and_last_n(store: BarStore) -> None:
    store.write_day(SPOT, 250, D1, make_bars(D1, 5, seed=1), checkpoint=b"1", tick_count=10)
    store.write_day(SPOT, 250, D2, make_bars(D2, 4, seed=2, first_id=9_000), checkpoint=b"2", tick_count=20)
    store.write_day(UM, 100, D1, make_bars(D1, 3), checkpoint=b"3", tick_count=30)
    last = store.last_n_bars(SPOT, 250, 6, D2)
    everything = store.read_bars(SPOT, 250, D1, D2)
    assert_frame_equal(last, everything.tail(6), check_exact=True)
    assert_frame_equal(store.last_n_bars(SPOT, 250, 3, D1), everything.head(5).tail(3), check_exact=True)
    status = store.status()
    assert [(s.series, s.threshold, s.days, s.bars, s.ticks) for s in status.series] == [
        (SPOT, 250, 2, 9, 30),
        (UM, 100, 1, 3, 30),
    ]
    assert status.total_bars == 12
    assert store.invalidate(SPOT, 250, D2, D2) == 1
    assert store.count_bars(SPOT, 250) == 5
    assert store.coverage(SPOT, 250, D1, D2).keys() == {D1}
    assert store.clear() == 2
    assert store.status().series == ()
    with store._client() as client:
        assert client.query(f"SELECT count() FROM {store.database}.range_bars").result_rows[0][0] == 0


def test_exness_spread_columns_round_trip(store: BarStore) -> None:
    fx = Series("exness", "spot", "EURGBP")
    bars = make_bars(D1, 4).with_columns(
        spread_min=pl.lit(0.00001),
        spread_max=pl.lit(0.00009),
        spread_avg=pl.lit(0.00003),
        spread_tick_count=7,
    )
    store.write_day(fx, 10, D1, bars, checkpoint=b"fx", tick_count=28)
    got = store.read_bars(fx, 10, D1, D1)
    assert got.columns == [*BAR_COLUMNS, "spread_min", "spread_max", "spread_avg", "spread_tick_count"]
    assert got["spread_tick_count"].to_list() == [7] * 4
    assert got["spread_avg"].to_list() == [0.00003] * 4


def test_two_threads_share_one_store(store: BarStore) -> None:
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(4):
                day = D1 + timedelta(days=offset + 2 * i)
                store.write_day(SPOT, 250, day, make_bars(day, 10, seed=i), checkpoint=b"t", tick_count=1)
                assert store.read_bars(SPOT, 250, day, day).height == 10
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count_bars(SPOT, 250) == 80


def test_second_store_in_process_shares_the_engine(store: BarStore, tmp_path: Path) -> None:
    store.write_day(SPOT, 250, D1, make_bars(D1, 3), checkpoint=b"s", tick_count=1)
    with BarStore(cache_dir=tmp_path) as other:
        assert other.count_bars(SPOT, 250) == 3
    assert store.count_bars(SPOT, 250) == 3, "closing one store keeps the shared engine open"
    with pytest.raises(StoreError, match="one data directory per process"):
        BarStore(cache_dir=tmp_path / "elsewhere")


def test_a_second_process_gets_a_clear_error(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from rangebar_pipeline.storage.bars import BarStore\n"
        "store = BarStore(cache_dir=sys.argv[1])\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RANGEBAR_CLICKHOUSE_DSN"}
    env["PYTHONPATH"] = str(REPO)
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match=rf"held by another process \(PID {holder.pid}\)"):
            BarStore(cache_dir=tmp_path)
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=60)
    with BarStore(cache_dir=tmp_path) as store:  # free again once the holder exits
        assert store.status().series == ()


def test_dsn_resolution_and_credentials_never_leak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANGEBAR_CLICKHOUSE_DSN", raising=False)
    assert resolve_dsn(cache_dir=tmp_path) == f"chdb://{tmp_path.resolve()}/clickhouse"
    monkeypatch.setenv("RANGEBAR_CACHE_DIR", str(tmp_path / "c"))
    assert resolve_dsn() == f"chdb://{(tmp_path / 'c').resolve()}/clickhouse"
    monkeypatch.setenv("RANGEBAR_CLICKHOUSE_DSN", "https://u:p@example.org:8443/db")
    assert resolve_dsn(cache_dir=tmp_path) == "https://u:p@example.org:8443/db"
    assert redact_dsn("http://alice:s3cret@h:8123/rb") == "http://***@h:8123/rb"
    assert redact_dsn("chdb:///x/clickhouse") == "chdb:///x/clickhouse"
    # a real connection attempt to a closed port on 127.0.0.1: the error names the host, never the secrets
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dsn = f"http://alice:s3cretpw@127.0.0.1:{port}/rb"
    with pytest.raises(StoreError) as info:
        BarStore(dsn)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "s3cretpw" not in message and "alice" not in message


def test_the_store_names_its_days_and_keys(store: BarStore, tmp_path: Path) -> None:
    from rangebar_pipeline.options import BarOptions
    from rangebar_pipeline.storage.bars import BarKey, location

    where = f"chdb://{(tmp_path / 'clickhouse').resolve()}/rangebar.range_bars"
    assert store.uri(SPOT, 250, D1) == (
        f"{where}?source=binance&market=spot&symbol=BTCUSDT&threshold=250&day=2024-08-08"
    )
    gated = BarOptions(min_duration_us=1000)
    assert store.uri(UM, 25, D2, options=gated).endswith(
        f"symbol=BTCUSDT&threshold=25&day=2024-08-09&options={gated.key.replace('=', '%3D')}"
    )
    assert location("https://alice:s3cret@example.org/db") == "clickhouse://example.org:8443"
    assert location("http://example.org:9000/db") == "clickhouse://example.org:9000"
    with pytest.raises(ValueError, match="threshold"):
        BarKey(SPOT, 0)
    record = store.write_day(SPOT, 250, D1, make_bars(D1, 3), checkpoint=b"cp", tick_count=3)
    assert record.key == BarKey(SPOT, 250)
    with store.lock():
        assert store.client.query("SELECT count() FROM rangebar.range_bars").result_rows == [(3,)]


def test_probe_is_read_only(tmp_path: Path) -> None:
    from rangebar_pipeline.storage.bars import probe

    dsn = resolve_dsn(cache_dir=tmp_path)
    found = probe(dsn)
    assert (found.kind, found.database, found.reachable, found.has_schema) == (
        "chdb",
        "rangebar",
        True,
        False,
    )
    assert found.installed and found.version and found.lock_holder is None
    assert not (tmp_path / "clickhouse").exists()
    with BarStore(dsn):  # this process's own store: free for it, schema present
        assert probe(dsn).has_schema and probe(dsn).lock_holder is None
    with socket_port() as port:
        dead = probe(f"http://alice:s3cret@127.0.0.1:{port}/rb")
    assert (dead.kind, dead.reachable, dead.answered) == ("server", False, False) and dead.error
    assert "s3cret" not in repr(dead) and dead.database == "rb"


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    yield port


def test_one_batch_of_days_with_and_without_a_group(store: BarStore) -> None:
    """A day's insert carries only its own columns (the groups it lacks are stored as NULL without
    being sent); a batch mixing bar options stores each day as it came."""
    from rangebar_pipeline.options import BarOptions
    from rangebar_pipeline.schema import LOOKBACK_SCHEMA

    lookback = BarOptions(lookback_trades=50)
    plain = make_bars(D1, 30, seed=4)
    rng = np.random.default_rng(5)
    grouped = make_bars(D2, 20, seed=6).with_columns(
        pl.Series(c, rng.integers(1, 9, 20) if t == pl.Int64 else rng.random(20), dtype=t)
        for c, t in LOOKBACK_SCHEMA.items()
    )
    store.write_days(
        [
            DayWrite(SPOT, 250, D1, plain, b"a", 10),
            DayWrite(SPOT, 250, D2, grouped, b"b", 10, options=lookback),
        ]
    )
    assert_frame_equal(store.read_bars(SPOT, 250, D1, D1), plain.sort("close_time"), check_exact=True)
    got = store.read_bars(SPOT, 250, D2, D2, options=lookback)
    assert_frame_equal(got, grouped.sort("close_time"), check_exact=True)
    assert store.read_bars(SPOT, 250, D2, D2).is_empty(), "the default options store nothing on D2"
