"""Bar options and stale days through the library API and the CLI (loopback mirror, real chDB)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rangebar_pipeline.api import (
    count_bars,
    get_cached_bars,
    get_n_range_bars,
    get_range_bars,
    invalidate,
    precompute_range_bars,
)
from rangebar_pipeline.cli import main
from rangebar_pipeline.exceptions import StaleBarsWarning
from rangebar_pipeline.options import BarOptions
from rangebar_pipeline.schema import BAR_SCHEMA, INTRA_SCHEMA, LOOKBACK_SCHEMA
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.bars import records as bar_records
from rangebar_pipeline.storage.ticks import TickStore
from tests.api_support import Mirror, loopback_env

SERIES = Series("binance", "um", "ETHUSDT")
DAYS = (date(2024, 8, 8), date(2024, 8, 9))
OPTIONS = BarOptions(min_duration_us=2_000_000, lookback_trades=300)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Mirror]]:
    yield from loopback_env(tmp_path, monkeypatch)


def _stream_bars(cache: Path, options: BarOptions, threshold: int = 25) -> pl.DataFrame:
    """The bars of both fixture days fed to one processor in one piece (the reference answer)."""
    ticks = TickStore(cache)
    frame = pl.concat([ticks.read_day(SERIES, d) for d in DAYS])
    return options.processor(threshold).process(frame)


def _polars_bars(**kwargs: object) -> pl.DataFrame:
    """``get_range_bars`` of the fixture days at 25 dbps as a polars frame."""
    frame = get_range_bars("ETHUSDT", *DAYS, 25, market="um", output="polars", **kwargs)  # type: ignore[arg-type]
    assert isinstance(frame, pl.DataFrame)
    return frame


def test_options_flow_through_get_range_bars_and_are_stored_apart(env: tuple[Path, Mirror]) -> None:
    cache, mirror = env
    plain = get_range_bars("ETHUSDT", *DAYS, 25, market="um", output="polars")
    optioned = get_range_bars(
        "ETHUSDT", *DAYS, 25, market="um", output="polars", min_duration_us=2_000_000, lookback_trades=300
    )
    assert isinstance(plain, pl.DataFrame) and isinstance(optioned, pl.DataFrame)
    assert list(plain.columns) == list(BAR_SCHEMA)
    assert list(optioned.columns) == list(BAR_SCHEMA | LOOKBACK_SCHEMA)
    assert_frame_equal(plain, _stream_bars(cache, BarOptions()))
    assert_frame_equal(optioned, _stream_bars(cache, OPTIONS))
    assert optioned.height < plain.height, "the duration gate merges fast bars"
    assert optioned["duration_us"].min() >= 2_000_000  # type: ignore[operator]

    served = len(mirror.requests)
    again = _polars_bars(min_duration_us=2_000_000, lookback_trades=300)
    assert len(mirror.requests) == served
    assert_frame_equal(again, optioned)
    cached = get_cached_bars("ETHUSDT", *DAYS, 25, market="um", output="polars", lookback_trades=300)
    assert cached is None, "no bars of lookback_trades=300 without the gate are stored"
    with BarStore(cache_dir=cache) as store:
        keys = sorted(item.options.key for item in store.status().series)
    assert keys == ["", OPTIONS.key]
    assert (
        count_bars("ETHUSDT", 25, market="um", min_duration_us=2_000_000, lookback_trades=300)
        == optioned.height
    )

    pandas_bars = get_range_bars("ETHUSDT", *DAYS, 25, market="um", lookback_trades=300)
    assert isinstance(pandas_bars, pd.DataFrame)
    assert [c for c in pandas_bars.columns if c.startswith("lookback_")] == list(LOOKBACK_SCHEMA)
    assert invalidate("ETHUSDT", 25, market="um", options=OPTIONS) == 2
    assert count_bars("ETHUSDT", 25, market="um") == plain.height


def test_the_intra_group_through_the_api_and_the_cli(
    env: tuple[Path, Mirror], capsys: pytest.CaptureFixture[str]
) -> None:
    """``intra_bar=True`` / ``--intra-bar``: computed day by day through the tick cache and the bar
    store, equal to one processor over both days (bars split across days are unchanged), stored
    under their own key, served from the store the second time, and in the pandas output."""
    cache, mirror = env
    intra = BarOptions(intra_bar=True)
    bars = _polars_bars(intra_bar=True)
    assert list(bars.columns) == list(BAR_SCHEMA | INTRA_SCHEMA)
    assert_frame_equal(bars, _stream_bars(cache, intra))
    assert_frame_equal(bars.select(list(BAR_SCHEMA)), _polars_bars(), check_exact=True)
    served = len(mirror.requests)
    cached = get_cached_bars("ETHUSDT", *DAYS, 25, market="um", output="polars", intra_bar=True)
    assert isinstance(cached, pl.DataFrame)
    assert_frame_equal(cached, bars)
    assert len(mirror.requests) == served
    assert count_bars("ETHUSDT", 25, market="um", intra_bar=True) == bars.height
    pandas_bars = get_range_bars("ETHUSDT", *DAYS, 25, market="um", intra_bar=True)
    assert isinstance(pandas_bars, pd.DataFrame)
    assert [c for c in pandas_bars.columns if c.startswith("intra_")] == list(INTRA_SCHEMA)
    assert pandas_bars["intra_trade_count"].dtype == "Int64"
    out = cache / "intra.parquet"
    assert main(["bars", "ETHUSDT", *map(str, DAYS), "--threshold", "25", "--market", "um", "--intra-bar",
                 "--no-fetch", "--out", str(out)]) == 0  # fmt: skip
    assert_frame_equal(pl.read_parquet(out), bars)
    capsys.readouterr()
    assert main(["cache", "status"]) == 0
    assert "binance-um-ETHUSDT     25 dbps [intra_bar]: 2 days" in capsys.readouterr().out


def test_get_n_range_bars_and_precompute_take_the_options(env: tuple[Path, Mirror]) -> None:
    cache, _ = env
    result = precompute_range_bars(
        "ETHUSDT", *DAYS, 25, market="um", lookback_trades=300, min_duration_us=2_000_000
    )
    assert result.days_computed == 2
    expected = _stream_bars(cache, OPTIONS)
    assert result.total_bars == expected.height
    last = get_n_range_bars(
        "ETHUSDT", 20, 25, market="um", end_date=DAYS[1], output="polars", lookback_trades=300,
        min_duration_us=2_000_000,
    )  # fmt: skip
    assert isinstance(last, pl.DataFrame)
    assert_frame_equal(last, expected.tail(20))


def test_stale_days_are_recomputed_from_cached_ticks(
    env: tuple[Path, Mirror], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, mirror = env
    first = _polars_bars()
    with BarStore(cache_dir=cache) as store:
        writes = {d: r.write_id for d, r in store.coverage(SERIES, 25, *DAYS).items()}
    monkeypatch.setattr(bar_records, "KERNEL_VERSION", "99.0.0")  # as if the kernel were upgraded
    with BarStore(cache_dir=cache) as store:
        assert store.stale_days(SERIES, 25, *DAYS) == list(DAYS)
    assert main(["cache", "status"]) == 0
    served = len(mirror.requests)
    second = _polars_bars()
    assert len(mirror.requests) == served, "recomputed from Tier 1, nothing downloaded"
    assert_frame_equal(second, first)
    with BarStore(cache_dir=cache) as store:
        records = store.coverage(SERIES, 25, *DAYS)
        assert store.stale_days(SERIES, 25, *DAYS) == []
    assert all(records[d].write_id > writes[d] and records[d].kernel_version == "99.0.0" for d in DAYS)

    # without the ticks a stale day is served as stored, with a warning naming it
    ticks = TickStore(cache)
    ticks.delete_day(SERIES, DAYS[0])
    monkeypatch.setattr(bar_records, "KERNEL_VERSION", "100.0.0")
    with pytest.warns(StaleBarsWarning, match="2024-08-08"):
        third = _polars_bars(fetch_if_missing=False)
    assert_frame_equal(third, first)


def test_cli_options_and_stale_status(
    env: tuple[Path, Mirror], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, _ = env
    out = cache / "bars.parquet"
    gated = ["--min-duration-us", "2000000", "--lookback-trades", "300"]
    assert main(["bars", "ETHUSDT", *map(str, DAYS), "--threshold", "25", "--market", "um", *gated,
                 "--out", str(out)]) == 0  # fmt: skip
    assert_frame_equal(pl.read_parquet(out), _stream_bars(cache, OPTIONS))
    csv = cache / "bars.csv"
    assert main(["bars", "ETHUSDT", *map(str, DAYS), "--threshold", "25", "--market", "um",
                 "--lookback-trades", "300", "--no-fetch", "--out", str(csv)]) == 0  # fmt: skip
    assert pl.read_csv(csv).columns == list(BAR_SCHEMA | LOOKBACK_SCHEMA)
    capsys.readouterr()
    monkeypatch.setattr(bar_records, "KERNEL_VERSION", "99.0.0")
    assert main(["cache", "status"]) == 0
    status = capsys.readouterr().out
    assert f"binance-um-ETHUSDT     25 dbps [{OPTIONS.key}]: 2 days" in status
    assert "2 stale (older schema or kernel)" in status
    assert "4 stale days are recomputed" in status


def test_cli_rejects_a_negative_option(env: tuple[Path, Mirror], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bars", "ETHUSDT", "2024-08-08", "2024-08-08", "--min-duration-us", "-5"])
    assert exit_info.value.code == 2
    assert "--min-duration-us: must be >= 0, got -5" in capsys.readouterr().err
    assert main(["bars", "ETHUSDT", "2024-08-08", "2024-08-08", "--lookback-trades", "2000000"]) == 1
    assert "lookback_trades must be 0..=1000000" in capsys.readouterr().err
