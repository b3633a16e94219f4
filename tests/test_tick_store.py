"""Tier 1 tick store: end to end over loopback HTTP, idempotence, faults, corruption, locks and crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rangebar_pipeline.exceptions import (
    ChecksumMismatchError,
    CorruptArchiveError,
    DataNotFoundError,
    DownloadError,
    SourceError,
    StoreError,
)
from rangebar_pipeline.schema import TICK_SCHEMA
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources import BinanceVision, ExnessSource, HttpClient, Market, RetryPolicy
from rangebar_pipeline.storage import TickStore, default_cache_dir
from tests.data_paths import BINANCE_ROOT, fixture_zip
from tests.loopback import Fault, LoopbackServer
from tests.test_sources_binance import expected_frame, publish, zip_bytes

REPO = Path(__file__).resolve().parents[1]
FAST_RETRY = RetryPolicy(max_attempts=2, backoff_initial=0.01, backoff_max=0.02, read_timeout=5)
SERIES = [
    ("spot", "BTCUSDT"),
    ("spot", "ETHUSDT"),
    ("um", "ETHUSDT"),
    ("cm", "BTCUSD_PERP"),
    ("cm", "ETHUSD_PERP"),
]
DAY = date(2024, 8, 8)
SPOT_PATH = "/binance_vision/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-08.zip"


def store_for(server: LoopbackServer, root: Path, *, max_workers: int = 4) -> TickStore:
    client = HttpClient(retry=FAST_RETRY)
    return TickStore(
        root,
        binance=BinanceVision(f"{server.url}/binance_vision", client=client),
        exness=ExnessSource(f"{server.url}/exness", client=client),
        max_workers=max_workers,
    )


def files_under(root: Path) -> list[Path]:
    """Every data or temp file under ``root`` (lock files excluded)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def ticks_of(n: int, day: date, *, price: str = "100.5", first_id: int = 1) -> pl.DataFrame:
    """``n`` synthetic ticks spread over UTC ``day`` in TICK_SCHEMA."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    ids = pl.int_range(first_id, first_id + n, eager=True, dtype=pl.Int64)
    return pl.DataFrame(
        {
            "timestamp": (start + (ids - first_id) * (86_400_000_000 // n)).cast(TICK_SCHEMA["timestamp"]),
            "price": pl.Series([price] * n).cast(TICK_SCHEMA["price"]),
            "quantity": pl.Series(["0.001"] * n).cast(TICK_SCHEMA["quantity"]),
            "agg_trade_id": ids,
            "first_trade_id": ids * 2,
            "last_trade_id": ids * 2 + 1,
            "is_buyer_maker": (ids % 2 == 0),
        }
    )


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("market", "symbol"), SERIES)
def test_get_ticks_fetches_stores_and_equals_the_fixture_rows(
    loopback: LoopbackServer, tmp_path: Path, market: Market, symbol: str
) -> None:
    store = store_for(loopback, tmp_path)
    ticks = store.get_ticks(Series("binance", market, symbol), start="2024-08-08", end=date(2024, 8, 9))
    expected = pl.concat([expected_frame(market, symbol, d) for d in ("2024-08-08", "2024-08-09")])
    assert ticks.equals(expected)
    assert store.list_days(Series("binance", market, symbol)) == [date(2024, 8, 8), date(2024, 8, 9)]
    assert files_under(tmp_path) == [
        tmp_path / "ticks" / "binance" / market / symbol / "2024-08-08.parquet",
        tmp_path / "ticks" / "binance" / market / symbol / "2024-08-09.parquet",
    ]
    requests = loopback.count()
    again = store.get_ticks(Series("binance", market, symbol), "2024-08-08", "2024-08-09")
    assert again.equals(expected)
    assert loopback.count() == requests  # served from the cache
    lazy = store.get_ticks(Series("binance", market, symbol), "2024-08-08", "2024-08-09", lazy=True)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(expected)


def test_file_mirror_fills_the_store(tmp_path: Path) -> None:
    store = TickStore(tmp_path, binance=BinanceVision(BINANCE_ROOT.as_uri()))
    result = store.fetch_day(Series("binance", "um", "ETHUSDT"), "2024-08-09")
    assert (result.rows, result.duplicates_removed, result.day) == (15, 0, date(2024, 8, 9))
    assert (
        result.checksum
        == fixture_zip("um", "ETHUSDT", "2024-08-09").with_suffix(".zip.CHECKSUM").read_text()[:64]
    )
    assert result.bytes == result.path.stat().st_size
    assert store.read_day(Series("binance", "um", "ETHUSDT"), date(2024, 8, 9)).equals(
        expected_frame("um", "ETHUSDT", "2024-08-09")
    )


def test_day_files_store_decimals_as_delta_encoded_int64_and_read_back_exactly(tmp_path: Path) -> None:
    store = TickStore(tmp_path)
    ticks = ticks_of(5000, DAY, price="61837.12345678").with_columns(
        pl.Series(["0.00000001", "99999.9", "0", "1234567890.12345678", "3"] * 1000)
        .cast(TICK_SCHEMA["quantity"])
        .alias("quantity")
    )
    result = store.write_day(Series("binance", "um", "BTCUSDT"), DAY, ticks)
    metadata = pq.ParquetFile(result.path).metadata
    columns = {metadata.schema.column(i).name: metadata.row_group(0).column(i) for i in range(7)}
    for name in ("price", "quantity"):
        assert columns[name].physical_type == "INT64"
        assert {"price": "DELTA_BINARY_PACKED", "quantity": "BYTE_STREAM_SPLIT"}[name] in columns[
            name
        ].encodings
        logical = json.loads(metadata.schema.column(list(columns).index(name)).logical_type.to_json())
        assert logical == {"Type": "Decimal", "precision": 18, "scale": 8}
    assert pq.read_schema(result.path).field("price").type == pa.decimal128(18, 8)
    assert store.read_day(Series("binance", "um", "BTCUSDT"), DAY).equals(ticks)
    lazy = store.get_ticks(Series("binance", "um", "BTCUSDT"), DAY, DAY, lazy=True, fetch_if_missing=False)
    assert lazy.collect().equals(ticks)


def test_default_root_and_sources_come_from_the_environment(
    loopback: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANGEBAR_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setenv("RANGEBAR_BINANCE_BASE_URL", f"{loopback.url}/binance_vision")
    store = TickStore()
    assert store.root == tmp_path / "env-cache" == default_cache_dir()
    store.fetch_day(Series("binance", "cm", "ETHUSD_PERP"), DAY)
    assert (tmp_path / "env-cache/ticks/binance/cm/ETHUSD_PERP/2024-08-08.parquet").is_file()


def test_days_are_utc_whatever_the_local_time_zone(
    loopback: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    try:
        ticks = store_for(loopback, tmp_path).get_ticks(
            Series("binance", "spot", "BTCUSDT"), "2024-08-09", "2024-08-09"
        )
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert ticks.equals(expected_frame("spot", "BTCUSDT", "2024-08-09"))
    assert (ticks["timestamp"].dt.date() == date(2024, 8, 9)).all()


def test_missing_days_and_fetch_if_missing(loopback: LoopbackServer, tmp_path: Path) -> None:
    store = store_for(loopback, tmp_path)
    with pytest.raises(DataNotFoundError, match=r"no data for 2 day\(s\): 2024-08-06, 2024-08-07"):
        store.get_ticks(Series("binance", "spot", "ETHUSDT"), "2024-08-06", "2024-08-09")
    assert store.list_days(Series("binance", "spot", "ETHUSDT")) == [
        date(2024, 8, 8),
        date(2024, 8, 9),
    ]  # kept
    before = loopback.count()
    ticks = store.get_ticks(
        Series("binance", "spot", "ETHUSDT"), "2024-08-06", "2024-08-10", fetch_if_missing=False
    )
    assert loopback.count() == before
    assert ticks.height == sum(
        expected_frame("spot", "ETHUSDT", d).height for d in ("2024-08-08", "2024-08-09")
    )
    empty = store.get_ticks(
        Series("binance", "spot", "BTCUSDT"), "2024-08-08", "2024-08-09", fetch_if_missing=False
    )
    assert empty.schema == pl.Schema(TICK_SCHEMA)
    assert empty.height == 0
    with pytest.raises(DataNotFoundError, match="is not in the tick store"):
        store.read_day(Series("binance", "spot", "BTCUSDT"), DAY)


def test_argument_errors(tmp_path: Path) -> None:
    store = TickStore(tmp_path)
    with pytest.raises(ValueError, match=r"start \(2024-08-09\) must be <= end \(2024-08-08\)"):
        store.get_ticks(Series("binance", "spot", "BTCUSDT"), "2024-08-09", "2024-08-08")
    with pytest.raises(TypeError, match="got datetime"):
        store.get_ticks(Series("binance", "spot", "BTCUSDT"), datetime(2024, 8, 8), "2024-08-09")
    with pytest.raises(ValueError, match="start must be a date or 'YYYY-MM-DD', got '08/08/2024'"):
        store.get_ticks(Series("binance", "spot", "BTCUSDT"), "08/08/2024", "2024-08-09")
    with pytest.raises(ValueError, match="Unknown source: 'kraken'"):
        store.day_path(Series("kraken", "spot", "BTCUSDT"), DAY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Unknown market: 'margin'"):
        store.day_path(Series("binance", "margin", "BTCUSDT"), DAY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source 'exness' has only market 'spot'"):
        store.day_path(Series("exness", "um", "EURUSD"), DAY)
    with pytest.raises(ValueError, match="invalid symbol"):
        store.day_path(Series("binance", "spot", "../../etc"), DAY)
    with pytest.raises(ValueError, match="invalid symbol"):
        store.day_path(Series("binance", "spot", "BTC.USDT"), DAY)  # a series name, not an archive's


# --- idempotence --------------------------------------------------------------------------------


def test_fetching_a_day_twice_is_idempotent(loopback: LoopbackServer, tmp_path: Path) -> None:
    store = store_for(loopback, tmp_path)
    first = store.fetch_day(Series("binance", "spot", "BTCUSDT"), DAY)
    content = first.path.read_bytes()
    assert store.fetch_day(Series("binance", "spot", "BTCUSDT"), DAY) == first  # stored: no download
    assert loopback.count("*.zip") == 1
    forced = store.fetch_day(Series("binance", "spot", "BTCUSDT"), DAY, force=True)
    assert loopback.count("*.zip") == 2
    assert forced == first
    assert forced.path.read_bytes() == content  # byte-identical rewrite
    assert files_under(tmp_path) == [first.path]


def test_concurrent_readers_download_each_day_once(loopback: LoopbackServer, tmp_path: Path) -> None:
    store = store_for(loopback, tmp_path, max_workers=2)
    results: list[pl.DataFrame] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                store.get_ticks(Series("binance", "cm", "BTCUSD_PERP"), DAY, "2024-08-09")
            )
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert all(r.equals(results[0]) for r in results)
    assert loopback.count("*.zip") == 2


def test_duplicates_are_removed_counted_and_rows_sorted(tmp_path: Path) -> None:
    store = TickStore(tmp_path)
    ticks = ticks_of(1000, DAY)
    shuffled = pl.concat([ticks.sample(fraction=1.0, shuffle=True, seed=7), ticks.head(3)])
    result = store.write_day(Series("binance", "spot", "TEST"), DAY, shuffled)
    assert (result.rows, result.duplicates_removed) == (1000, 3)
    assert store.read_day(Series("binance", "spot", "TEST"), DAY).equals(ticks)
    assert result.first_timestamp == ticks["timestamp"][0]
    assert result.last_timestamp == ticks["timestamp"][-1]
    with pytest.raises(ValueError, match="outside UTC day 2024-08-09"):
        store.write_day(Series("binance", "spot", "TEST"), DAY + timedelta(days=1), ticks)
    with pytest.raises(ValueError, match="expected columns"):
        store.write_day(Series("binance", "spot", "TEST"), DAY, ticks.drop("first_trade_id"))


# --- Exness -------------------------------------------------------------------------------------


def test_one_exness_download_stores_every_day_of_the_month(loopback: LoopbackServer, tmp_path: Path) -> None:
    store = store_for(loopback, tmp_path)
    ticks = store.get_ticks(Series("exness", "spot", "EURGBP"), "2023-06-23", "2023-06-27")
    assert ticks.height == 230_056
    assert loopback.count("*.zip") == 1
    days = store.list_days(Series("exness", "spot", "EURGBP"))
    assert days == [date(2023, 6, 1) + timedelta(days=i) for i in range(30)]
    assert store.read_day(Series("exness", "spot", "EURGBP"), "2023-06-24").height == 0  # Saturday: no quotes
    assert store.get_ticks(Series("exness", "spot", "EURGBP"), "2023-06-26", "2023-06-26").height == 71_446
    assert loopback.count("*.zip") == 1
    status = store.status()
    assert (status.days, status.rows) == (30, 230_056)
    assert status.series[0].symbol == "EURGBP"
    with pytest.raises(DataNotFoundError, match="Exness has no ticks for EURGBP in 2023-07"):
        store.get_ticks(Series("exness", "spot", "EURGBP"), "2023-06-30", "2023-07-01")


# --- faults leave nothing behind ----------------------------------------------------------------

FAULTS: dict[str, tuple[Callable[[LoopbackServer], object], type[SourceError], str]] = {
    "http-500": (lambda s: s.fault("*.zip", Fault(status=500)), DownloadError, "HTTP 500"),
    "timeout": (lambda s: s.fault("*.zip", Fault(hang=True)), DownloadError, "(?i)timed? ?out"),
    "http-404": (lambda s: s.fault("*.zip", Fault(status=404)), DataNotFoundError, "no spot aggTrades"),
    "reset-mid-body": (
        lambda s: s.fault("*.zip", Fault(truncate=5000, reset=True)),
        DownloadError,
        "attempt",
    ),
    "bad-checksum": (
        lambda s: s.fault("*.CHECKSUM", Fault(body=b"f" * 64 + b"  x.zip")),
        ChecksumMismatchError,
        "does not match the published checksum",
    ),
    "truncated-zip": (
        lambda s: publish(s, SPOT_PATH, fixture_zip("spot", "BTCUSDT", "2024-08-08").read_bytes()[:9000]),
        CorruptArchiveError,
        "corrupt or truncated zip",
    ),
    "garbage-csv": (
        lambda s: publish(s, SPOT_PATH, zip_bytes("BTCUSDT-aggTrades-2024-08-08.csv", b"1,2,3,x,5,6,7,8\n")),
        CorruptArchiveError,
        "line 1",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_failed_download_leaves_no_file(loopback: LoopbackServer, tmp_path: Path, fault: str) -> None:
    inject, error, message = FAULTS[fault]
    store = store_for(loopback, tmp_path)
    inject(loopback)
    with pytest.raises(error, match=message):
        store.fetch_day(Series("binance", "spot", "BTCUSDT"), DAY)
    assert files_under(tmp_path) == []
    assert not store.has_day(Series("binance", "spot", "BTCUSDT"), DAY)
    loopback.clear()
    assert store.fetch_day(Series("binance", "spot", "BTCUSDT"), DAY).rows == 5798


# --- corruption ---------------------------------------------------------------------------------


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        _flip_middle,
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        lambda p: p.write_bytes(b""),
    ],
    ids=["bit-flips", "truncated", "empty"],
)
def test_a_corrupt_file_is_detected_and_fetched_again(
    loopback: LoopbackServer, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    store = store_for(loopback, tmp_path)
    path = store.fetch_day(Series("binance", "spot", "BTCUSDT"), DAY).path
    good = path.read_bytes()
    damage(path)
    assert store.read_day(Series("binance", "spot", "BTCUSDT"), DAY).equals(
        expected_frame("spot", "BTCUSDT", "2024-08-08")
    )
    assert loopback.count("*.zip") == 2
    assert path.read_bytes() == good
    damage(path)
    with pytest.raises(StoreError, match=r"corrupt tick file .*2024-08-08\.parquet.*deleted"):
        store.read_day(Series("binance", "spot", "BTCUSDT"), DAY, refetch_corrupt=False)
    assert not path.exists()
    assert store.status().days == 0


def test_every_flipped_byte_is_refused_naming_the_file_or_changes_nothing(tmp_path: Path) -> None:
    """One flipped byte anywhere in a day file (data pages, page headers, footer, Arrow schema, the
    footer entry): the read refuses it with the path named, or the bytes it changed were not data (a
    statistic, an unused copy) and the ticks read are exactly those written. Never other ticks."""
    store, series = TickStore(tmp_path), Series("binance", "spot", "BTCUSDT")
    written = ticks_of(100, DAY)
    path = store.write_day(series, DAY, written).path
    good = path.read_bytes()
    refused = harmless = 0
    for at in range(len(good)):
        damaged = bytearray(good)
        damaged[at] ^= 0xFF
        for lazy in (False, True) if at % 5 == 0 else (False,):
            path.write_bytes(bytes(damaged))
            try:
                ticks = (
                    store.get_ticks(series, DAY, DAY, fetch_if_missing=False, lazy=True).collect()
                    if lazy
                    else store.read_day(series, DAY, refetch_corrupt=False)
                )
            except StoreError as exc:
                assert f"corrupt tick file {path}" in str(exc), (at, exc)
                assert not path.exists()  # deleted, not left to be served later
                refused += 1
                continue
            assert ticks.equals(written), f"byte {at} flipped: other ticks served"
            harmless += 1
    assert refused > len(good) // 3 and harmless > 0  # both kinds of position exist


@pytest.mark.parametrize(
    "damage",
    [lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), lambda p: p.write_bytes(b"PAR1")],
    ids=["truncated", "no-footer"],
)
def test_a_lazy_scan_checks_footers_and_refetches(
    loopback: LoopbackServer, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    store = store_for(loopback, tmp_path)
    path = store.fetch_day(Series("binance", "spot", "BTCUSDT"), DAY).path
    damage(path)
    lazy = store.get_ticks(Series("binance", "spot", "BTCUSDT"), DAY, DAY, lazy=True)
    assert lazy.collect().equals(expected_frame("spot", "BTCUSDT", "2024-08-08"))
    assert loopback.count("*.zip") == 2


# --- delete and status --------------------------------------------------------------------------


def test_delete_and_status(tmp_path: Path) -> None:
    store = TickStore(tmp_path)
    for offset in range(3):
        store.write_day(
            Series("binance", "um", "TEST"),
            DAY + timedelta(days=offset),
            ticks_of(100 + offset, DAY + timedelta(days=offset)),
        )
    store.write_day(Series("binance", "cm", "TEST_PERP"), DAY, ticks_of(10, DAY))
    status = store.status()
    assert (status.days, status.rows) == (4, 100 + 101 + 102 + 10)
    assert status.bytes == sum(p.stat().st_size for p in files_under(tmp_path))
    um = next(s for s in status.series if s.market == "um")
    assert (um.days, um.rows, um.first_day, um.last_day) == (3, 303, DAY, DAY + timedelta(days=2))
    assert store.delete_day(Series("binance", "um", "TEST"), DAY) is True
    assert store.delete_day(Series("binance", "um", "TEST"), DAY) is False
    assert store.list_days(Series("binance", "um", "TEST")) == [
        DAY + timedelta(days=1),
        DAY + timedelta(days=2),
    ]
    assert store.status().rows == 101 + 102 + 10


# --- processes: concurrent writers and a writer killed mid-way ----------------------------------


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


WRITER_LOOP = """
    import sys
    from datetime import date
    from pathlib import Path
    from rangebar_pipeline.series import Series
    from rangebar_pipeline.storage import TickStore
    from tests.test_tick_store import ticks_of
    root, price, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    day = date(2024, 8, 8)
    store = TickStore(root, lock_timeout=None)
    ticks = ticks_of(int(sys.argv[4]), day, price=price)
    print("READY", flush=True)
    i = 0
    while rounds == 0 or i < rounds:
        store.write_day(Series("binance", "spot", "RACE"), day, ticks)
        i += 1
    print("DONE", flush=True)
"""


def test_two_processes_writing_one_day_never_corrupt_it(tmp_path: Path) -> None:
    writers = [_python(WRITER_LOOP, str(tmp_path), price, "15", "50000") for price in ("1.5", "2.5")]
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
        assert out.split() == ["READY", "DONE"]
    store = TickStore(tmp_path)
    stored = store.read_day(Series("binance", "spot", "RACE"), DAY, refetch_corrupt=False)
    assert any(stored.equals(ticks_of(50_000, DAY, price=p)) for p in ("1.5", "2.5"))
    assert files_under(tmp_path) == [store.day_path(Series("binance", "spot", "RACE"), DAY)]


def test_a_write_killed_mid_way_leaves_the_previous_file(tmp_path: Path) -> None:
    store = TickStore(tmp_path)
    old = store.write_day(Series("binance", "spot", "RACE"), DAY, ticks_of(1000, DAY, price="1"))
    old_bytes = old.path.read_bytes()
    script = """
        import io, sys
        from pathlib import Path
        import pyarrow.parquet as pq
        from rangebar_pipeline.storage._atomic import atomic_write
        from tests.test_tick_store import ticks_of, DAY
        buffer = io.BytesIO()
        pq.write_table(ticks_of(200_000, DAY, price="2").to_arrow(), buffer, compression="zstd")
        data = buffer.getvalue()
        def write(handle):
            handle.write(data[: len(data) // 2])
            handle.flush()
            print("HALF-WRITTEN", flush=True)
            sys.stdin.readline()  # wait to be killed
            handle.write(data[len(data) // 2 :])
        atomic_write(Path(sys.argv[1]), write)
    """
    writer = _python(script, str(old.path))
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "HALF-WRITTEN"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    assert old.path.read_bytes() == old_bytes  # the previous file, untouched
    leftovers = [p for p in files_under(tmp_path) if p != old.path]
    assert len(leftovers) == 1  # the killed writer's temp file: hidden, never read as data
    assert leftovers[0].name.startswith(".2024-08-08.parquet.")
    assert store.list_days(Series("binance", "spot", "RACE")) == [DAY]
    assert store.read_day(Series("binance", "spot", "RACE"), DAY, refetch_corrupt=False).height == 1000
    store.write_day(Series("binance", "spot", "RACE"), DAY, ticks_of(10, DAY))  # the next writer cleans up
    assert files_under(tmp_path) == [old.path]


def test_a_real_write_killed_at_any_point_leaves_a_whole_file(tmp_path: Path) -> None:
    store = TickStore(tmp_path)
    old_ticks, new_ticks = ticks_of(1000, DAY, price="1"), ticks_of(300_000, DAY, price="3")
    path = store.write_day(Series("binance", "spot", "RACE"), DAY, old_ticks).path
    writer = _python(WRITER_LOOP, str(tmp_path), "3", "0", "300000")
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "READY"
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".tmp") for p in path.parent.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.001)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    stored = store.read_day(Series("binance", "spot", "RACE"), DAY, refetch_corrupt=False)
    assert stored.equals(old_ticks) or stored.equals(new_ticks)


def test_a_corrupt_exness_day_is_refetched_without_rewriting_the_month(
    loopback: LoopbackServer, tmp_path: Path
) -> None:
    store = store_for(loopback, tmp_path)
    store.fetch_day(Series("exness", "spot", "EURGBP"), "2023-06-26")
    others = {p: p.stat().st_mtime_ns for p in files_under(tmp_path) if p.name != "2023-06-26.parquet"}
    path = store.day_path(Series("exness", "spot", "EURGBP"), "2023-06-26")
    good = path.read_bytes()
    _flip_middle(path)
    assert store.read_day(Series("exness", "spot", "EURGBP"), "2023-06-26").height == 71_446
    assert path.read_bytes() == good
    assert loopback.count("*.zip") == 2
    assert {p: p.stat().st_mtime_ns for p in others} == others  # the other 29 days untouched
    store.close()
