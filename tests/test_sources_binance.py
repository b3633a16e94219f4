"""Binance Vision source: real fixtures over a loopback HTTP server and file://, faults, exact parsing."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from rangebar_pipeline._core import AggTradesCsvParser
from rangebar_pipeline.exceptions import (
    ChecksumMismatchError,
    CorruptArchiveError,
    DataNotFoundError,
    DownloadError,
)
from rangebar_pipeline.schema import PRICE_DECIMAL, TICK_SCHEMA, UTC_US
from rangebar_pipeline.sources import BinanceVision, HttpClient, Market, RetryPolicy, parse_agg_trades
from rangebar_pipeline.sources._parsing import iter_zip_member, read_zip_member
from rangebar_pipeline.sources.binance_vision import parse_agg_trades_pieces
from tests.data_paths import BINANCE_ROOT, fixture_zip
from tests.loopback import Fault, LoopbackServer

FAST_RETRY = RetryPolicy(
    max_attempts=3,
    backoff_initial=0.01,
    backoff_max=0.02,
    total_timeout=120,
    connect_timeout=30,
    read_timeout=30,  # never reached by a healthy answer, however loaded the machine: counts stay exact
)
#: For the timeout faults: the server holds the faulted answer until the client gives up (``hang``) and
#: logs that request as abandoned, so the counts below come from the server, not from a race of clocks.
TIMEOUT_RETRY = dataclasses.replace(FAST_RETRY, read_timeout=5)
FIXTURE_SERIES: list[tuple[Market, str, str]] = [
    ("spot", "BTCUSDT", "2024-08-08"),
    ("spot", "BTCUSDT", "2024-08-09"),
    ("spot", "ETHUSDT", "2024-08-08"),
    ("spot", "ETHUSDT", "2024-08-09"),
    ("um", "BTCUSDT", "2024-08-08"),
    ("um", "ETHUSDT", "2024-08-08"),
    ("um", "ETHUSDT", "2024-08-09"),
    ("cm", "BTCUSD_PERP", "2024-08-08"),
    ("cm", "BTCUSD_PERP", "2024-08-09"),
    ("cm", "ETHUSD_PERP", "2024-08-08"),
    ("cm", "ETHUSD_PERP", "2024-08-09"),
]
DAY = date(2024, 8, 8)
SPOT_ZIP = "*/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-08.zip"
SPOT_PATH = "/binance_vision/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-08.zip"


def expected_frame(market: Market, symbol: str, day: str) -> pl.DataFrame:
    """The fixture rows read independently: by position, ms -> us, TICK_SCHEMA order."""
    with zipfile.ZipFile(fixture_zip(market, symbol, day)) as archive:
        data = archive.read(archive.namelist()[0])
    has_header = not data[:1].isdigit()
    names = ["a", "p", "q", "f", "l", "t", "m", "best"]
    frame = pl.read_csv(
        data, has_header=has_header, new_columns=names[: data.split(b"\n")[0].count(b",") + 1]
    )
    return frame.select(
        (pl.col("t") * 1000).cast(UTC_US).alias("timestamp"),
        pl.col("p").cast(pl.String).cast(PRICE_DECIMAL).alias("price"),
        pl.col("q").cast(pl.String).cast(PRICE_DECIMAL).alias("quantity"),
        pl.col("a").alias("agg_trade_id"),
        pl.col("f").alias("first_trade_id"),
        pl.col("l").alias("last_trade_id"),
        pl.col("m").alias("is_buyer_maker"),
    )


def source_for(server: LoopbackServer) -> BinanceVision:
    return BinanceVision(f"{server.url}/binance_vision", client=HttpClient(retry=FAST_RETRY))


def zip_bytes(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def publish(server: LoopbackServer, path: str, archive: bytes) -> None:
    """Serve ``archive`` at ``path`` with a matching ``.CHECKSUM``."""
    server.put(path, archive)
    digest = hashlib.sha256(archive).hexdigest()
    server.put(path + ".CHECKSUM", f"{digest}  {path.rsplit('/', 1)[-1]}\n".encode())


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("market", "symbol", "day"), FIXTURE_SERIES)
def test_every_market_over_http_equals_the_fixture_rows(
    loopback: LoopbackServer, market: Market, symbol: str, day: str
) -> None:
    fetched = source_for(loopback).fetch_day(market, symbol, date.fromisoformat(day))
    assert fetched.frame.schema == pl.Schema(TICK_SCHEMA)
    assert fetched.frame.equals(expected_frame(market, symbol, day))
    published = fixture_zip(market, symbol, day).with_suffix(".zip.CHECKSUM").read_text().split()[0]
    assert fetched.checksum == published
    assert fetched.duplicates_removed == 0
    assert loopback.count("*.zip") == 1
    assert loopback.count("*.zip.CHECKSUM") == 1


def test_file_mirror_gives_the_same_rows() -> None:
    source = BinanceVision(BINANCE_ROOT.as_uri())
    fetched = source.fetch_day("um", "ETHUSDT", date(2024, 8, 9))
    assert fetched.frame.height == 15
    assert fetched.frame.equals(expected_frame("um", "ETHUSDT", "2024-08-09"))
    assert fetched.url.startswith("file://")


def test_base_url_comes_from_the_environment(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANGEBAR_BINANCE_BASE_URL", f"{loopback.url}/binance_vision")
    source = BinanceVision(client=HttpClient(retry=FAST_RETRY))
    assert source.base_url == f"{loopback.url}/binance_vision"
    assert source.fetch_day("spot", "ethusdt", date(2024, 8, 9)).frame.height > 0
    assert loopback.count("*/ETHUSDT-aggTrades-2024-08-09.zip") == 1


def test_url_layout_of_each_market() -> None:
    source = BinanceVision("https://mirror.example/")
    assert source.archive_url("spot", "btcusdt", DAY) == (
        "https://mirror.example/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-08.zip"
    )
    assert "/data/futures/um/daily/aggTrades/" in source.archive_url("um", "BTCUSDT", DAY)
    assert "/data/futures/cm/daily/aggTrades/BTCUSD_PERP/" in source.archive_url("cm", "BTCUSD_PERP", DAY)
    with pytest.raises(ValueError, match="unknown Binance market 'usdm'"):
        source.archive_url("usdm", "BTCUSDT", DAY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid symbol"):
        source.archive_url("spot", "../etc", DAY)


# --- faults -------------------------------------------------------------------------------------


def test_5xx_is_retried_until_success(loopback: LoopbackServer) -> None:
    loopback.fault(SPOT_ZIP, Fault(status=500, times=2))
    fetched = source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)
    assert fetched.frame.equals(expected_frame("spot", "BTCUSDT", "2024-08-08"))
    assert [r.status for r in loopback.requests if r.path == SPOT_PATH] == [500, 500, 200]


def test_persistent_5xx_fails_after_the_bounded_attempts(loopback: LoopbackServer) -> None:
    loopback.fault(SPOT_ZIP, Fault(status=503))
    with pytest.raises(DownloadError, match=r"failed after 3 attempt\(s\): HTTP 503") as info:
        source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)
    assert SPOT_PATH in str(info.value)
    assert loopback.count(SPOT_ZIP) == 3


def test_404_means_no_data_for_that_day_and_is_not_retried(loopback: LoopbackServer) -> None:
    with pytest.raises(DataNotFoundError, match="no spot aggTrades for BTCUSDT on 2024-08-07"):
        source_for(loopback).fetch_day("spot", "BTCUSDT", date(2024, 8, 7))
    assert loopback.count("*2024-08-07.zip") == 1


def test_other_4xx_fail_at_once(loopback: LoopbackServer) -> None:
    loopback.fault(SPOT_ZIP, Fault(status=403))
    with pytest.raises(DownloadError, match="HTTP 403"):
        source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)
    assert loopback.count(SPOT_ZIP) == 1


def _zip_requests(loopback: LoopbackServer) -> list[tuple[bool, bool]]:
    """(faulted, abandoned by the client) of each archive request, in arrival order."""
    return [(r.faulted, r.abandoned) for r in loopback.requests if r.path == SPOT_PATH]


def test_a_timeout_is_retried(loopback: LoopbackServer) -> None:
    loopback.fault(SPOT_ZIP, Fault(hang=True, times=1))
    source = BinanceVision(f"{loopback.url}/binance_vision", client=HttpClient(retry=TIMEOUT_RETRY))
    fetched = source.fetch_day("spot", "BTCUSDT", DAY)
    assert fetched.frame.height == 5798
    loopback.wait_for(lambda log: any(r.abandoned for r in log))  # the server saw the client give up
    assert _zip_requests(loopback) == [(True, True), (False, False)]


def test_persistent_timeouts_fail_with_a_download_error(loopback: LoopbackServer) -> None:
    loopback.fault(SPOT_ZIP, Fault(hang=True))
    source = BinanceVision(f"{loopback.url}/binance_vision", client=HttpClient(retry=TIMEOUT_RETRY))
    with pytest.raises(DownloadError, match=r"(?i)timeout|timed out"):
        source.fetch_day("spot", "BTCUSDT", DAY)
    loopback.wait_for(lambda log: sum(r.abandoned for r in log) == 3)
    assert _zip_requests(loopback) == [(True, True)] * 3  # each attempt given up by the client, no 4th


@pytest.mark.parametrize("reset", [True, False], ids=["rst", "fin"])
def test_connection_dropped_mid_body_is_retried(loopback: LoopbackServer, reset: bool) -> None:
    loopback.fault(SPOT_ZIP, Fault(truncate=10_000, reset=reset, times=1))
    fetched = source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)
    assert fetched.frame.height == 5798
    assert loopback.count(SPOT_ZIP) == 2


def test_connection_always_dropped_mid_body_fails(loopback: LoopbackServer) -> None:
    loopback.fault(SPOT_ZIP, Fault(truncate=10_000, reset=True))
    with pytest.raises(DownloadError, match=SPOT_PATH):
        source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)
    assert loopback.count(SPOT_ZIP) == 3


def test_wrong_checksum_is_refused(loopback: LoopbackServer) -> None:
    loopback.fault(SPOT_ZIP + ".CHECKSUM", Fault(body=b"0" * 64 + b"  BTCUSDT-aggTrades-2024-08-08.zip\n"))
    with pytest.raises(ChecksumMismatchError, match=r"BTCUSDT-aggTrades-2024-08-08\.zip: sha256 41ff9583"):
        source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)


def test_checksum_file_that_is_not_a_digest_is_refused(loopback: LoopbackServer) -> None:
    loopback.fault(SPOT_ZIP + ".CHECKSUM", Fault(body=b"<html>oops</html>"))
    with pytest.raises(CorruptArchiveError, match=r"\.CHECKSUM: expected a sha256 hex digest"):
        source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)


def test_truncated_zip_with_its_own_checksum_is_corrupt(loopback: LoopbackServer) -> None:
    whole = fixture_zip("spot", "BTCUSDT", "2024-08-08").read_bytes()
    publish(loopback, SPOT_PATH, whole[: len(whole) // 2])
    with pytest.raises(
        CorruptArchiveError, match=r"BTCUSDT-aggTrades-2024-08-08\.zip: corrupt or truncated zip"
    ):
        source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)


def test_a_damaged_download_of_the_published_zip_is_a_checksum_mismatch(loopback: LoopbackServer) -> None:
    # the zip is hashed while it is parsed: the damage found first must not hide the mismatch
    whole = fixture_zip("spot", "BTCUSDT", "2024-08-08").read_bytes()
    publish(loopback, SPOT_PATH, whole)
    loopback.put(SPOT_PATH, whole[: len(whole) // 2])
    with pytest.raises(ChecksumMismatchError, match=r"2024-08-08\.zip: sha256 [0-9a-f]{64} does not match"):
        source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)
    csv = b"1,61837.63,0.02,1,1,1723161255342,True,True\n2,not-a-price,0.5,2,2,1723161255343,False,True\n"
    loopback.put(SPOT_PATH, zip_bytes("BTCUSDT-aggTrades-2024-08-08.csv", csv))
    with pytest.raises(ChecksumMismatchError, match="does not match the published checksum"):
        source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)


def test_garbage_csv_is_refused_naming_the_file(loopback: LoopbackServer) -> None:
    csv = b"1,61837.63,0.02,1,1,1723161255342,True,True\n2,not-a-price,0.5,2,2,1723161255343,False,True\n"
    publish(loopback, SPOT_PATH, zip_bytes("BTCUSDT-aggTrades-2024-08-08.csv", csv))
    with pytest.raises(CorruptArchiveError, match=r"aggTrades-2024-08-08\.csv: line 2: price is not"):
        source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)


def test_a_crc_mismatch_found_after_parsing_is_refused_naming_the_zip_once(loopback: LoopbackServer) -> None:
    csv = b"1,61837.63,0.02,1,1,1723161255342,True,True\n" * 3
    archive = bytearray(zip_bytes("BTCUSDT-aggTrades-2024-08-08.csv", csv))
    archive[archive.rfind(b"PK\x01\x02") + 16] ^= 0x01  # the central directory's CRC-32
    publish(loopback, SPOT_PATH, bytes(archive))
    with pytest.raises(CorruptArchiveError, match=r"^http://[^ ]*\.zip: corrupt .*bad CRC-32") as info:
        source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)
    assert ".csv" not in str(info.value).split(": corrupt")[0]


def test_zip_with_binary_garbage_is_refused(loopback: LoopbackServer) -> None:
    publish(loopback, SPOT_PATH, zip_bytes("BTCUSDT-aggTrades-2024-08-08.csv", bytes(range(256)) * 50))
    with pytest.raises(CorruptArchiveError, match=r"aggTrades-2024-08-08\.csv"):
        source_for(loopback).fetch_day("spot", "BTCUSDT", DAY)


def test_the_pool_reuses_connections(loopback: LoopbackServer) -> None:
    source = source_for(loopback)
    for day in ("2024-08-08", "2024-08-09"):
        source.fetch_day("spot", "ETHUSDT", date.fromisoformat(day))
    adapter = source.client._session.get_adapter(loopback.url)
    pools = adapter.poolmanager.pools  # type: ignore[attr-defined]
    assert len(pools) == 1
    assert loopback.count("*.zip*") == 4


# --- parsing ------------------------------------------------------------------------------------

SPOT_LINES = [
    b"10,100.5,1.25,100,101,1723075200000,True,True",
    b"11,100.50000001,0.00000001,102,102,1723075200001,False,True",
    b"12,99.99999999,3,103,105,1723075200001,true,True",
]
FUTURES_HEADER = b"agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"


def parse(lines: list[bytes], *, day: date | None = DAY) -> tuple[pl.DataFrame, int]:
    return parse_agg_trades(b"\n".join(lines) + b"\n", origin="test.csv", day=day)


def test_prices_parse_exactly_at_eight_decimals() -> None:
    frame, _ = parse(SPOT_LINES)
    assert frame["price"].to_list() == [Decimal("100.5"), Decimal("100.50000001"), Decimal("99.99999999")]
    assert frame["quantity"].to_list() == [Decimal("1.25"), Decimal("0.00000001"), Decimal(3)]
    assert frame["is_buyer_maker"].to_list() == [True, False, True]


def test_more_than_eight_decimals_is_refused_not_rounded() -> None:
    lines = [*SPOT_LINES, b"13,1.123456789,1,106,106,1723075200002,True,True"]
    with pytest.raises(CorruptArchiveError, match=r"test\.csv: line 4: price is not a non-negative decimal"):
        parse(lines)
    trailing_zeros = [*SPOT_LINES, b"13,1.1234567800,1,106,106,1723075200002,True,True"]
    assert parse(trailing_zeros)[0]["price"][-1] == Decimal("1.12345678")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"13,1e3,1,106,106,1723075200002,True,True", "price is not"),
        (b"13,-1,1,106,106,1723075200002,True,True", "price is not"),
        (b"13,0,1,106,106,1723075200002,True,True", "price must be > 0"),
        (b"13,1,-2,106,106,1723075200002,True,True", "quantity is not"),
        (b"13,1,,106,106,1723075200002,True,True", "empty field"),
        (b"13,12345678901,1,106,106,1723075200002,True,True", "does not fit Decimal"),
        (b"13,1,1,106,106,1723075200002,maybe,True", "line 4: is_buyer_maker is not Boolean"),
        (b"13,1,1,106,1x6,1723075200002,True,True", "line 4: last_trade_id is not Int64"),
        (b"13,1,1,106,106,1723075200002,True,True,9", "does not parse as aggTrades"),
    ],
)
def test_bad_fields_name_the_line(line: bytes, message: str) -> None:
    with pytest.raises(CorruptArchiveError, match=message):
        parse([*SPOT_LINES, line])


def test_microsecond_files_equal_millisecond_files() -> None:
    us_lines = [
        b"10,100.5,1.25,100,101,1723075200000000,True,True",
        b"11,100.50000001,0.00000001,102,102,1723075200001000,False,True",
        b"12,99.99999999,3,103,105,1723075200001000,true,True",
    ]
    assert parse(us_lines)[0].equals(parse(SPOT_LINES)[0])
    sub_ms = parse([b"1,1,1,1,1,1723075200000123,True,True"])[0]
    assert sub_ms["timestamp"].cast(pl.Int64).item() == 1723075200000123


def test_mixed_timestamp_units_are_refused() -> None:
    with pytest.raises(
        CorruptArchiveError, match=r"line 4: timestamp unit differs from line 1's: mixed timestamp units"
    ):
        parse([*SPOT_LINES, b"13,1,1,106,106,1723075200002000,True,True"])


def test_rows_outside_the_day_are_refused() -> None:
    with pytest.raises(CorruptArchiveError, match="line 2: timestamp outside the file's UTC day 2024-08-08"):
        parse([SPOT_LINES[0], b"11,1,1,102,102,1723161600000,True,True"])
    assert parse([b"11,1,1,102,102,1723161599999,True,True"])[0].height == 1


def test_futures_header_and_seven_columns() -> None:
    lines = [FUTURES_HEADER, *(line.rsplit(b",", 1)[0] for line in SPOT_LINES)]
    assert parse(lines)[0].equals(parse(SPOT_LINES)[0])
    with pytest.raises(CorruptArchiveError, match="unexpected aggTrades header"):
        parse([FUTURES_HEADER.replace(b"price", b"prize"), *lines[1:]])
    with pytest.raises(CorruptArchiveError, match="expected 7 or 8 columns, found 6"):
        parse([b"1,2,3,4,5,6"])


def test_exact_duplicates_are_removed_and_counted_unsorted_rows_sorted() -> None:
    frame, removed = parse([SPOT_LINES[2], SPOT_LINES[0], SPOT_LINES[1], SPOT_LINES[0], SPOT_LINES[2]])
    assert removed == 2
    assert frame.equals(parse(SPOT_LINES)[0])


def test_conflicting_rows_with_one_agg_id_are_refused() -> None:
    conflicting = b"10,100.6,1.25,100,101,1723075200000,True,True"
    with pytest.raises(CorruptArchiveError, match="different rows share agg_trade_id 10"):
        parse([*SPOT_LINES, conflicting])


def test_empty_file_gives_an_empty_frame() -> None:
    frame, removed = parse_agg_trades(b"", origin="empty.csv")
    assert frame.schema == pl.Schema(TICK_SCHEMA)
    assert (frame.height, removed) == (0, 0)
    assert parse([FUTURES_HEADER])[0].height == 0


@pytest.mark.parametrize("accelerated", [True, False], ids=["isal", "zlib"])
def test_zip_members_inflate_and_crc_check_on_both_paths(accelerated: bool) -> None:
    data = fixture_zip("spot", "BTCUSDT", "2024-08-08").read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        expected = archive.read("BTCUSDT-aggTrades-2024-08-08.csv")
    name, content = read_zip_member(data, origin="z", accelerated=accelerated)
    assert (name, content) == ("BTCUSDT-aggTrades-2024-08-08.csv", expected)
    damaged = bytearray(data)
    damaged[len(data) // 3] ^= 0x55  # inside the deflate stream
    with pytest.raises(CorruptArchiveError, match="z: corrupt or truncated zip archive"):
        read_zip_member(bytes(damaged), origin="z", accelerated=accelerated)
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("x.csv", b"1,2\n")
    assert read_zip_member(stored.getvalue(), origin="z", accelerated=accelerated) == ("x.csv", b"1,2\n")


@pytest.mark.parametrize("piece_size", [7, 997, 1 << 20])
@pytest.mark.parametrize("accelerated", [True, False], ids=["isal", "zlib"])
def test_members_stream_in_pieces_and_are_checked_at_the_end(piece_size: int, accelerated: bool) -> None:
    data = fixture_zip("um", "ETHUSDT", "2024-08-08").read_bytes()
    whole = read_zip_member(data, origin="z")[1]
    name, pieces = iter_zip_member(data, origin="z", accelerated=accelerated, piece_size=piece_size)
    assert name == "ETHUSDT-aggTrades-2024-08-08.csv"
    assert b"".join(pieces) == whole
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.infolist()[0]
    wrong_crc = bytearray(data)
    wrong_crc[info.header_offset + 14] ^= 0x01  # the CRC-32 in the local header is not used ...
    central = data.rfind(b"PK\x01\x02")
    wrong_crc[central + 16] ^= 0x01  # ... the central directory's is
    _, pieces = iter_zip_member(bytes(wrong_crc), origin="z", accelerated=accelerated, piece_size=piece_size)
    with pytest.raises(CorruptArchiveError, match=r"z: corrupt .*bad CRC-32 or size"):
        list(pieces)
    truncated = bytearray(data)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    truncated[start : start + info.compress_size] = bytes(info.compress_size)  # stored blocks of zeros
    _, pieces = iter_zip_member(bytes(truncated), origin="z", accelerated=accelerated, piece_size=piece_size)
    with pytest.raises(CorruptArchiveError, match="z: corrupt or truncated zip archive"):
        list(pieces)


@pytest.mark.parametrize(
    ("market", "symbol"), [("spot", "BTCUSDT"), ("um", "ETHUSDT"), ("cm", "BTCUSD_PERP")]
)
@pytest.mark.parametrize("piece_size", [61, 4096])
def test_a_csv_in_pieces_parses_like_the_whole(market: Market, symbol: str, piece_size: int) -> None:
    csv = read_zip_member(fixture_zip(market, symbol, "2024-08-08").read_bytes(), origin="z")[1]
    pieces = [csv[i : i + piece_size] for i in range(0, len(csv), piece_size)]
    whole = parse_agg_trades(csv, origin="x", day=DAY)
    streamed = parse_agg_trades_pieces(pieces, origin="x", day=DAY)
    assert streamed[1] == whole[1]
    assert streamed[0].equals(whole[0])
    assert streamed[0].height > 1000


def test_errors_in_later_pieces_name_the_line_of_the_file() -> None:
    lines = [FUTURES_HEADER] + [
        f"{i},1.5,2,{i},{i},{1723075200000 + i},true".encode() for i in range(1, 5000)
    ]
    lines[4321] = b"4321,1.5,2,4321,4321,1723075204321,yes"
    csv = b"\r\n".join(lines)
    pieces = [csv[i : i + 333] for i in range(0, len(csv), 333)]
    with pytest.raises(
        CorruptArchiveError, match=r"^f\.csv: line 4322: is_buyer_maker is not Boolean: \"yes\""
    ):
        parse_agg_trades_pieces(pieces, origin="f.csv", day=DAY)
    lines[4321] = lines[4321].replace(b"yes", b"TRUE")
    fixed = b"\r\n".join(lines)
    frame, _ = parse_agg_trades_pieces(
        [fixed[i : i + 333] for i in range(0, len(fixed), 333)], origin="f", day=DAY
    )
    assert frame["agg_trade_id"].to_list() == list(range(1, 5000))


def test_an_empty_first_line_before_data_is_refused_not_read_as_empty() -> None:
    with pytest.raises(CorruptArchiveError, match="line 1 is empty"):
        parse([b"", *SPOT_LINES])
    assert parse_agg_trades(b"\n\n", origin="x")[0].height == 0


def test_the_rust_parser_reports_order_and_timestamp_range() -> None:
    parser = AggTradesCsvParser(8, decimal128=True)
    assert (parser.rows, parser.is_sorted, parser.timestamp_range) == (0, True, None)
    columns = parser.feed(b"\n".join(SPOT_LINES) + b"\n")
    assert columns["price"].tolist() == [10_050_000_000, 0, 10_050_000_001, 0, 9_999_999_999, 0]
    assert (parser.rows, parser.is_sorted) == (3, True)
    assert parser.timestamp_range == (1723075200000, 1723075200001)
    parser.feed(SPOT_LINES[0] + b"\n")
    assert (parser.rows, parser.is_sorted, parser.next_line) == (4, False, 5)
    with pytest.raises(ValueError, match="7 or 8 fields"):
        AggTradesCsvParser(9)


# --- the download client ------------------------------------------------------------------------


def test_client_progress_bar_and_file_urls(
    loopback: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = bytes(range(256)) * (9 * 4096)  # 9 MiB: above the progress threshold
    loopback.put("/big.bin", body)
    with HttpClient(retry=FAST_RETRY, progress=True) as client:
        download = client.get(f"{loopback.url}/big.bin")
    assert download.content == body
    assert download.sha256 == hashlib.sha256(body).hexdigest()
    assert "big.bin" in capsys.readouterr().err  # tqdm drew its bar on stderr
    (tmp_path / "a b.bin").write_bytes(b"xyz")
    assert HttpClient().get((tmp_path / "a b.bin").as_uri()).content == b"xyz"
    with pytest.raises(DataNotFoundError, match="no file"):
        HttpClient().get((tmp_path / "missing.bin").as_uri())
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        HttpClient().get("ftp://127.0.0.1/x")
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        RetryPolicy(max_attempts=0)


def test_connection_refused_is_retried_then_reported() -> None:
    client = HttpClient(retry=FAST_RETRY)
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1:9/x failed after 3 attempt\(s\): ConnectionError"):
        client.get("http://127.0.0.1:9/x")
