"""The ``rangebar`` command line, run in-process against the loopback mirror and a temp cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from rangebar_pipeline.cli import main
from tests.api_support import SHARED, Mirror, loopback_env

GOLDEN = SHARED / "golden"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Mirror]]:
    yield from loopback_env(tmp_path, monkeypatch)


def test_bars_precompute_and_cache_commands(
    env: tuple[Path, Mirror], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, _ = env
    out = tmp / "bars.parquet"
    assert main(["bars", "BTCUSD_PERP", "2024-08-08", "2024-08-09", "--threshold", "50", "--market", "cm",
                 "--out", str(out)]) == 0  # fmt: skip
    expected = pl.read_parquet(GOLDEN / "cm_BTCUSD_PERP_50.parquet")
    written = pl.read_parquet(out)
    assert written["close_time"].dt.epoch("us").to_list() == expected["close_time_us"].to_list()
    assert f"wrote {expected.height} bars" in capsys.readouterr().out

    assert main(["precompute", "BTCUSD_PERP", "2024-08-08", "2024-08-09", "--threshold", "tight", "--market",
                 "cm", "--no-progress"]) == 0  # fmt: skip
    assert "0 days computed, 2 cached" in capsys.readouterr().out  # 'tight' == 50: already stored

    assert main(["cache", "status"]) == 0
    status = capsys.readouterr().out
    assert "binance-cm-BTCUSD_PERP     50 dbps: 2 days 2024-08-08..2024-08-09" in status
    assert "binance-cm-BTCUSD_PERP: 2 days" in status

    assert main(["cache", "clear", "--symbol", "BTCUSD_PERP", "--market", "cm", "--ticks"]) == 0
    assert "cleared 2 bar days of binance-cm-BTCUSD_PERP and 2 tick days" in capsys.readouterr().out
    assert main(["cache", "status"]) == 0
    assert "total: 0 days, 0 bars" in capsys.readouterr().out


def test_errors_are_one_clear_line(env: tuple[Path, Mirror], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bars", "BTCUSDT", "2024-08-09", "2024-08-08"]) == 1
    assert capsys.readouterr().err.strip() == (
        "rangebar: error: start_date must be <= end_date, got 2024-08-09 > 2024-08-08"
    )
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "rangebar bars BTCUSDT 2024-08-08 2024-08-09" in capsys.readouterr().out
