"""Exness source: the real monthly archive over loopback HTTP and file://, exact mids, strictness, spreads."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import polars as pl
import pytest

from rangebar_pipeline.exceptions import CorruptArchiveError, DataNotFoundError, InvalidTradeError
from rangebar_pipeline.sources import (
    EXNESS_TICK_SCHEMA,
    ExnessSource,
    HttpClient,
    RetryPolicy,
    add_spread_stats,
    parse_exness_ticks,
)
from rangebar_pipeline.sources.exness import split_by_day
from tests.data_paths import SHARED_DATA
from tests.loopback import Fault, LoopbackServer

EXNESS_ROOT = SHARED_DATA / "exness"
ARCHIVE = EXNESS_ROOT / "ticks/EURGBP_Raw_Spread/2023/06/Exness_EURGBP_Raw_Spread_2023_06.zip"
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.02, read_timeout=1.5)
HEADER = b'"Exness","Symbol","Timestamp","Bid","Ask"'
EIGHT = Decimal("0.00000001")


def csv_of(*rows: str) -> bytes:
    return b"\n".join([HEADER, *(r.encode() for r in rows)]) + b"\n"


def row(ts: str, bid: str, ask: str) -> str:
    return f'"exness","EURGBP_Raw_Spread","{ts}",{bid},{ask}'


def fixture_csv() -> bytes:
    with zipfile.ZipFile(ARCHIVE) as archive:
        return archive.read(archive.namelist()[0])


@pytest.fixture(scope="module")
def month() -> pl.DataFrame:
    return parse_exness_ticks(fixture_csv(), origin="fixture", symbol="EURGBP", month=(2023, 6))


def test_month_over_http_equals_the_parsed_fixture(loopback: LoopbackServer, month: pl.DataFrame) -> None:
    source = ExnessSource(f"{loopback.url}/exness", client=HttpClient(retry=FAST_RETRY))
    fetched = source.fetch_month("eurgbp", 2023, 6)
    assert fetched.frame.equals(month)
    assert fetched.frame.height == 230_056
    assert fetched.url.endswith("/ticks/EURGBP_Raw_Spread/2023/06/Exness_EURGBP_Raw_Spread_2023_06.zip")
    assert loopback.count("*.zip") == 1


def test_file_mirror_and_environment_base_url(monkeypatch: pytest.MonkeyPatch, month: pl.DataFrame) -> None:
    monkeypatch.setenv("RANGEBAR_EXNESS_BASE_URL", EXNESS_ROOT.as_uri())
    assert ExnessSource().fetch_month("EURGBP", 2023, 6).frame.equals(month)


def test_rows_equal_the_csv_with_exact_mid_prices(month: pl.DataFrame) -> None:
    raw = pl.read_csv(fixture_csv(), infer_schema=False)
    assert month.schema == pl.Schema(EXNESS_TICK_SCHEMA)
    assert month.height == raw.height
    bids = [Decimal(b) for b in raw["Bid"]]
    asks = [Decimal(a) for a in raw["Ask"]]
    mids = [((b + a) / 2).quantize(EIGHT, rounding=ROUND_HALF_UP) for b, a in zip(bids, asks, strict=True)]
    assert month["bid"].to_list() == bids
    assert month["ask"].to_list() == asks
    assert month["price"].to_list() == mids
    assert month["quantity"].to_list() == [Decimal(0)] * month.height
    assert not month["is_buyer_maker"].any()
    first = month.row(0, named=True)
    assert first["timestamp"].isoformat() == "2023-06-23T00:00:00.335000+00:00"


def test_synthetic_ids_are_strictly_increasing_and_split_independent(month: pl.DataFrame) -> None:
    ids = month["agg_trade_id"]
    assert (ids.diff().drop_nulls() > 0).all()
    assert month["first_trade_id"].equals(ids.alias("first_trade_id"))
    assert month["last_trade_id"].equals(ids.alias("last_trade_id"))
    expected = month["timestamp"].cast(pl.Int64) * 1000
    assert ((ids - expected) >= 0).all()
    assert ((ids - expected) < 1000).all()
    # parsing each day's lines separately yields the same ids
    lines = fixture_csv().splitlines()
    by_day: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        by_day.setdefault(line.split(b",")[2][1:11], []).append(line)
    parts = [parse_exness_ticks(b"\n".join([lines[0], *v]), origin="day") for v in by_day.values()]
    assert pl.concat(parts).equals(month)


def test_same_timestamp_quotes_get_consecutive_ranks() -> None:
    frame = parse_exness_ticks(
        csv_of(
            row("2023-06-23 00:00:00.001Z", "0.85", "0.86"),
            row("2023-06-23 00:00:00.001Z", "0.85", "0.87"),
            row("2023-06-23T00:00:00.002Z", "0.85", "0.86"),
        ),
        origin="t",
    )
    base = 1687478400001000 * 1000
    assert frame["agg_trade_id"].to_list() == [base, base + 1, base + 1000 * 1000]


def test_month_splits_into_its_utc_days(month: pl.DataFrame) -> None:
    days = split_by_day(month)
    assert list(days) == [date(2023, 6, 23), date(2023, 6, 25), date(2023, 6, 26), date(2023, 6, 27)]
    assert sum(part.height for part in days.values()) == month.height
    for day, part in days.items():
        assert (part["timestamp"].dt.date() == day).all()


def test_mid_rounds_half_away_from_zero_at_the_eighth_decimal() -> None:
    frame = parse_exness_ticks(
        csv_of(
            row("2023-06-23 00:00:00.001Z", "0.00000001", "0.00000002"),
            row("2023-06-23 00:00:00.002Z", "0.85945", "0.85950001"),
            row("2023-06-23 00:00:00.003Z", "1", "1"),
        ),
        origin="t",
        strictness="permissive",
    )
    assert frame["price"].to_list() == [Decimal("0.00000002"), Decimal("0.85947501"), Decimal(1)]


@pytest.mark.parametrize(
    ("bid", "ask", "message"),
    [
        ("0", "0.86", "line 3: invalid bid price"),
        ("-0.1", "0.86", "line 3: invalid bid price"),
        ("0.86", "0", "line 3: invalid ask price"),
        ("0.87", "0.86", "line 3: crossed market"),
    ],
)
@pytest.mark.parametrize("strictness", ["permissive", "strict", "paranoid"])
def test_invalid_quotes_fail_at_every_strictness(bid: str, ask: str, message: str, strictness: str) -> None:
    csv = csv_of(row("2023-06-23 00:00:00.001Z", "0.85", "0.86"), row("2023-06-23 00:00:00.002Z", bid, ask))
    with pytest.raises(InvalidTradeError, match=message):
        parse_exness_ticks(csv, origin="t", strictness=strictness)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ask", "permissive", "strict", "paranoid"),
    [("1.005", True, True, True), ("1.05", True, True, False), ("1.2", True, False, False)],
)
def test_spread_limits_per_strictness(ask: str, permissive: bool, strict: bool, paranoid: bool) -> None:
    csv = csv_of(row("2023-06-23 00:00:00.001Z", "1", ask))
    for level, accepted in (("permissive", permissive), ("strict", strict), ("paranoid", paranoid)):
        if accepted:
            assert parse_exness_ticks(csv, origin="t", strictness=level).height == 1  # type: ignore[arg-type]
        else:
            with pytest.raises(InvalidTradeError, match="line 2: excessive spread"):
                parse_exness_ticks(csv, origin="t", strictness=level)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown strictness 'lax'"):
        ExnessSource("file:///x", strictness="lax")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([row("2023-06-23 00:00:00.002Z", "0.85", "0.86"), row("2023-06-23 00:00:00.001Z", "0.85", "0.86")],
         "line 3: timestamp earlier than the line before"),
        ([row("23/06/2023", "0.85", "0.86")], "line 2: timestamp does not parse"),
        ([row("2023-06-23 00:00:00.001Z", "0.851234567", "0.86")], "line 2: Bid is not a decimal"),
        ([row("2023-07-01 00:00:00.000Z", "0.85", "0.86")], "line 2: tick outside 2023-06"),
        (['"exness","EURUSD_Raw_Spread","2023-06-23 00:00:00Z",1,1.1'], "symbol is not EURGBP_RAW_SPREAD"),
    ],
)  # fmt: skip
def test_malformed_rows_name_the_line(rows: list[str], message: str) -> None:
    with pytest.raises(CorruptArchiveError, match=message):
        parse_exness_ticks(csv_of(*rows), origin="t", symbol="EURGBP", month=(2023, 6))


def test_wrong_header_and_archive_layouts_are_refused(loopback: LoopbackServer) -> None:
    with pytest.raises(CorruptArchiveError, match="expected header"):
        parse_exness_ticks(b"a,b,c\n1,2,3\n", origin="t")
    source = ExnessSource(f"{loopback.url}/exness", client=HttpClient(retry=FAST_RETRY))
    path = "/exness/ticks/EURGBP_Raw_Spread/2023/05/Exness_EURGBP_Raw_Spread_2023_05.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.csv", csv_of())
        archive.writestr("b.csv", csv_of())
    loopback.put(path, buffer.getvalue())
    with pytest.raises(CorruptArchiveError, match=r"2023_05\.zip: expected exactly one file in the zip"):
        source.fetch_month("EURGBP", 2023, 5)
    loopback.put(path, buffer.getvalue()[:100])
    with pytest.raises(CorruptArchiveError, match="corrupt or truncated zip"):
        source.fetch_month("EURGBP", 2023, 5)


def test_missing_month_and_retries(loopback: LoopbackServer) -> None:
    source = ExnessSource(f"{loopback.url}/exness", client=HttpClient(retry=FAST_RETRY))
    with pytest.raises(DataNotFoundError, match="Exness has no ticks for EURGBP in 2023-07"):
        source.fetch_month("EURGBP", 2023, 7)
    loopback.fault("*_2023_06.zip", Fault(status=502, times=1))
    assert source.fetch_month("EURGBP_Raw_Spread", 2023, 6).frame.height == 230_056
    assert loopback.count("*_2023_06.zip") == 2


# --- spread statistics --------------------------------------------------------------------------


def bars_over(ticks: pl.DataFrame, sizes: list[int]) -> pl.DataFrame:
    """Bars covering consecutive runs of ``sizes`` ticks (only the id columns matter here)."""
    ids = ticks["agg_trade_id"].to_list()
    rows, start = [], 0
    for size in sizes:
        rows.append(
            {"first_agg_trade_id": ids[start], "last_agg_trade_id": ids[start + size - 1], "close": 1.0}
        )
        start += size
    return pl.DataFrame(rows)


def test_spread_stats_per_bar_match_a_direct_computation(month: pl.DataFrame) -> None:
    ticks = month.head(5000)
    sizes = [1, 2, 997, 1500, 2000]
    stats = add_spread_stats(bars_over(ticks, sizes), ticks)
    assert stats.columns == ["first_agg_trade_id", "last_agg_trade_id", "close", *SPREADS]
    spreads = [a - b for a, b in zip(ticks["ask"].to_list(), ticks["bid"].to_list(), strict=True)]
    start = 0
    for size, got in zip(sizes, stats.iter_rows(named=True), strict=True):
        part = spreads[start : start + size]
        start += size
        assert got["spread_tick_count"] == size
        assert got["spread_min"] == float(min(part))
        assert got["spread_max"] == float(max(part))
        assert got["spread_avg"] == pytest.approx(float(sum(part) / size), rel=1e-12)
    assert stats.schema["spread_tick_count"] == pl.Int64
    assert stats.schema["spread_avg"] == pl.Float64


def test_bars_without_ticks_get_zero_count(month: pl.DataFrame) -> None:
    ticks = month.head(10)
    bars = pl.DataFrame(
        {
            "first_agg_trade_id": [1, ticks["agg_trade_id"][0]],
            "last_agg_trade_id": [2, ticks["agg_trade_id"][9]],
        }
    )
    stats = add_spread_stats(bars, ticks)
    assert stats["spread_tick_count"].to_list() == [0, 10]
    assert stats["spread_min"][0] is None
    with pytest.raises(ValueError, match="missing column"):
        add_spread_stats(bars.drop("last_agg_trade_id"), ticks)


SPREADS = ["spread_min", "spread_max", "spread_avg", "spread_tick_count"]
