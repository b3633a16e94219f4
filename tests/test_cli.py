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


def test_bars_options(env: tuple[Path, Mirror], capsys: pytest.CaptureFixture[str]) -> None:
    tmp, mirror = env
    args = ["bars", "BTCUSDT", "2024-08-08", "2024-08-09", "--threshold", "25"]
    with pytest.warns(UserWarning, match="fetch_if_missing=False"):  # nothing cached yet: empty
        assert main([*args, "--no-fetch"]) == 0
    assert "0 bars" in capsys.readouterr().out and not mirror.requests
    before = sorted(tmp.rglob("*"))
    assert main([*args, "--no-cache"]) == 0
    assert "106 bars" in capsys.readouterr().out
    assert sorted(tmp.rglob("*")) == before, "--no-cache reads and writes no store"
    expected = pl.read_parquet(GOLDEN / "spot_BTCUSDT_25.parquet")
    for name in ("bars.csv", "bars.parquet"):
        assert main([*args, "--out", str(tmp / name)]) == 0
        assert f"wrote {expected.height} bars" in capsys.readouterr().out
    from_csv = pl.read_csv(tmp / "bars.csv", try_parse_dates=True)
    from_parquet = pl.read_parquet(tmp / "bars.parquet")
    assert from_csv.columns == from_parquet.columns and from_csv.height == from_parquet.height
    assert from_parquet["close"].to_list() == expected["close"].to_list()
    assert main([*args, "--no-fetch", "--microstructure", "--incomplete"]) == 0  # now cached: no download
    out = capsys.readouterr().out
    assert "turnover_imbalance" in out and f"{expected.height + 1} bars" in out


def test_precompute_recompute_and_cache_clear(
    env: tuple[Path, Mirror], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["BTCUSDT", "2024-08-08", "2024-08-09", "--no-progress"]
    assert main(["precompute", *base, "--threshold", "25", "--threshold", "50"]) == 0
    assert capsys.readouterr().out.count("2 days computed, 0 cached") == 2
    assert main(["precompute", *base, "--threshold", "25", "--recompute"]) == 0
    assert "2 days computed, 0 cached" in capsys.readouterr().out
    assert main(["cache", "clear", "--ticks"]) == 2
    assert "--ticks needs --symbol" in capsys.readouterr().err
    assert main(["cache", "clear", "--symbol", "BTCUSDT", "--threshold", "50"]) == 0
    assert "cleared 2 bar days of binance-spot-BTCUSDT" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "cleared 2 bar days" in capsys.readouterr().out  # the 25 dbps days
    assert main(["cache", "status"]) == 0
    assert "total: 0 days, 0 bars" in capsys.readouterr().out


def test_console_script(env: tuple[Path, Mirror]) -> None:
    """``[project.scripts] rangebar`` names ``cli:main``; run as a process it prints and exits as main."""
    import subprocess
    import sys
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"rangebar": "rangebar_pipeline.cli:main"}
    command = [sys.executable, "-m", "rangebar_pipeline.cli"]
    done = subprocess.run(
        [*command, "cache", "status"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0 and "total: 0 days, 0 bars" in done.stdout, done.stderr
    failed = subprocess.run(
        [*command, "bars", "BTCUSDT", "x", "y"], capture_output=True, text=True, timeout=300, check=False
    )
    assert failed.returncode == 1 and failed.stderr.startswith("rangebar: error: Invalid date format")
