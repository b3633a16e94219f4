"""Bad input at the edges, each a clear error and nothing written: symbols with path characters wherever
a symbol is accepted (API, CLI, config, TickStorage, the 7.1.3 cache), archives whose entry names escape
(zip-slip) or whose CSV has extra or missing columns, NaN or negative values, a malformed pipeline.yaml
(a code-location error naming the key, in the UI), and no DSN password in any log line, exception,
metadata value, instance file or UI answer."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, Final

import dagster as dg
import polars as pl
import pytest
import yaml

import rangebar_pipeline as api
from rangebar_pipeline import cli
from rangebar_pipeline.clickhouse import RangeBarCache, detect_clickhouse_state, get_available_clickhouse_host
from rangebar_pipeline.clickhouse.cache import count_bars as cache_count_bars
from rangebar_pipeline.config import parse_config
from rangebar_pipeline.exceptions import CorruptArchiveError, PipelineConfigError, RangeBarError
from rangebar_pipeline.series import Series
from rangebar_pipeline.sources import BinanceVision, ExnessSource, HttpClient, RetryPolicy
from rangebar_pipeline.storage.parquet import TickStorage
from rangebar_pipeline.storage.ticks import TickStore
from tests.loopback import Fault, LoopbackServer
from tests.pipeline_support import DAYS, SERIES, TEST_CONFIG, pipeline_env
from tests.test_pipeline_backfill_daemon import BIN, REPO, _free_port, _post, _process, _tail
from tests.test_sources_binance import publish, zip_bytes
from tests.test_sources_exness import HEADER, row

BAD_SYMBOLS: Final = ["../x", "a/b", "/etc/passwd", "x\x00y", "..", "x\\y"]
ONE_TRY: Final = RetryPolicy(max_attempts=1, read_timeout=30)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# --- symbols --------------------------------------------------------------------------------------------

SYMBOL_CALLS: dict[str, Callable[[str], Any]] = {
    "get_range_bars": lambda s: api.get_range_bars(s, "2024-08-08", "2024-08-08", 25),
    "get_n_range_bars": lambda s: api.get_n_range_bars(s, 5, 25, end_date="2024-08-08"),
    "precompute_range_bars": lambda s: api.precompute_range_bars(s, "2024-08-08", "2024-08-08", 25),
    "get_cached_bars": lambda s: api.get_cached_bars(s, "2024-08-08", "2024-08-08", 25),
    "count_bars": lambda s: api.count_bars(s, 25),
    "invalidate": lambda s: api.invalidate(s, 25),
    "Series.of": lambda s: Series.of(s, market="um"),
    "TickStorage.write_ticks": lambda s: TickStorage().write_ticks(s, pl.DataFrame({"timestamp": [1]})),
    "TickStorage.read_ticks": lambda s: TickStorage().read_ticks(s),
    "TickStorage.delete_ticks": lambda s: TickStorage().delete_ticks(s),
    "clickhouse.cache.count_bars": lambda s: cache_count_bars(s, 25),
}


@pytest.mark.parametrize("symbol", BAD_SYMBOLS, ids=repr)
@pytest.mark.parametrize("call", SYMBOL_CALLS)
def test_a_symbol_with_path_characters_is_refused_by_every_entry_point(
    call: str, symbol: str, tmp_path: Path, loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("RANGEBAR_CACHE_DIR", str(cache))
    monkeypatch.setenv("RANGEBAR_BINANCE_BASE_URL", f"{loopback.url}/binance_vision")
    with pytest.raises(ValueError, match=r"(?i)invalid symbol"):
        SYMBOL_CALLS[call](symbol)
    assert _files(tmp_path) == [] and not loopback.requests  # nothing written, nothing fetched


@pytest.mark.parametrize("symbol", BAD_SYMBOLS, ids=repr)
def test_the_cli_and_the_config_refuse_them_too(
    symbol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANGEBAR_CACHE_DIR", str(tmp_path / "cache"))
    for argv in (
        ["bars", symbol, "2024-08-08", "2024-08-08"],
        ["precompute", symbol, "2024-08-08", "2024-08-08", "--threshold", "25"],
        ["cache", "clear", "--symbol", symbol, "--ticks"],
    ):
        assert cli.main(argv) == 1, argv
        assert "invalid symbol" in capsys.readouterr().err, argv
    raw = {**TEST_CONFIG, "series": [{"source": "binance", "market": "spot", "symbol": symbol}]}
    with pytest.raises(PipelineConfigError, match=r"'series\[0\]\.symbol' must be a valid symbol"):
        parse_config(raw, origin="pipeline.yaml")
    assert _files(tmp_path) == []


@pytest.mark.parametrize("symbol", BAD_SYMBOLS, ids=repr)
def test_the_7_1_3_cache_refuses_them(symbol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANGEBAR_CACHE_DIR", str(tmp_path / "cache"))
    with RangeBarCache() as cache:  # the store is opened (created) by the constructor, as in 7.1.3
        opened = _files(tmp_path)
        for call in (
            lambda: cache.count_bars(symbol, 25),
            lambda: cache.get_n_bars(symbol, 25, 10),
            lambda: cache.invalidate_range_bars_by_range(symbol, 25, 0, 1),
        ):
            with pytest.raises(ValueError, match=r"(?i)invalid symbol"):
                call()
        assert _files(tmp_path) == opened


# --- archives -------------------------------------------------------------------------------------------

BINANCE_PATH: Final = "/binance_vision/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-08-08.zip"
GOOD_LINE: Final = "1,61837.63,0.02,1,1,1723075255342,True,True"
BINANCE_ARCHIVES: dict[str, tuple[str, str, str]] = {  # (entry name, second CSV line, error)
    "zip-slip ..": ("../../evil.csv", "2,61837.64,0.5,2,2,1723075255343,False,True", "unsafe entry name"),
    "zip-slip absolute": (
        "/tmp/evil.csv",
        "2,61837.64,0.5,2,2,1723075255343,False,True",
        "unsafe entry name",
    ),
    "zip-slip backslash": (
        "..\\evil.csv",
        "2,61837.64,0.5,2,2,1723075255343,False,True",
        "unsafe entry name",
    ),
    "zip-slip drive": ("C:/evil.csv", "2,61837.64,0.5,2,2,1723075255343,False,True", "unsafe entry name"),
    "extra column": ("x.csv", "2,61837.64,0.5,2,2,1723075255343,False,True,9", "found 9"),
    "missing column": ("x.csv", "2,61837.64,0.5,2,2,1723075255343", "found 6"),
    "NaN price": ("x.csv", "2,NaN,0.5,2,2,1723075255343,False,True", "line 2: price"),
    "negative price": ("x.csv", "2,-61837.64,0.5,2,2,1723075255343,False,True", "line 2: price"),
    "infinite price": ("x.csv", "2,inf,0.5,2,2,1723075255343,False,True", "line 2: price"),
    "zero price": ("x.csv", "2,0,0.5,2,2,1723075255343,False,True", "line 2: price must be > 0"),
    "negative quantity": ("x.csv", "2,61837.64,-0.5,2,2,1723075255343,False,True", "line 2: quantity"),
}


@pytest.mark.parametrize("case", BINANCE_ARCHIVES)
def test_a_bad_binance_archive_is_refused_and_nothing_is_written(
    case: str, loopback: LoopbackServer, tmp_path: Path
) -> None:
    name, line, error = BINANCE_ARCHIVES[case]
    publish(loopback, BINANCE_PATH, zip_bytes(name, f"{GOOD_LINE}\n{line}\n".encode()))
    store = TickStore(
        tmp_path, binance=BinanceVision(f"{loopback.url}/binance_vision", client=HttpClient(retry=ONE_TRY))
    )
    with pytest.raises(CorruptArchiveError, match=error):
        store.fetch_day(Series("binance", "spot", "BTCUSDT"), date(2024, 8, 8))
    assert [p for p in _files(tmp_path) if not p.name.endswith(".lock")] == []
    assert not (tmp_path.parent / "evil.csv").exists() and not Path("/tmp/evil.csv").exists()


EXNESS_PATH: Final = "/exness/ticks/EURGBP_Raw_Spread/2023/06/Exness_EURGBP_Raw_Spread_2023_06.zip"
EXNESS_ARCHIVES: dict[str, tuple[str, bytes, str]] = {
    "zip-slip": ("../evil.csv", HEADER + b"\n" + row("2023-06-23 00:00:00.001Z", "0.85", "0.86").encode(),
                 "unsafe entry name"),
    "extra column": ("x.csv", HEADER + b"\n" + row("2023-06-23 00:00:00.001Z", "0.85", "0.86,1").encode(),
                     "does not parse as Exness ticks"),
    "missing column": ("x.csv", HEADER + b'\n"exness","EURGBP_Raw_Spread","2023-06-23 00:00:00.001Z",0.85',
                       "line 2"),
    "NaN bid": ("x.csv", HEADER + b"\n" + row("2023-06-23 00:00:00.001Z", "NaN", "0.86").encode(),
                "line 2: Bid"),
    "negative ask": ("x.csv", HEADER + b"\n" + row("2023-06-23 00:00:00.001Z", "0.85", "-0.86").encode(),
                     "line 2"),
}  # fmt: skip


@pytest.mark.parametrize("case", EXNESS_ARCHIVES)
def test_a_bad_exness_archive_is_refused_and_nothing_is_written(
    case: str, loopback: LoopbackServer, tmp_path: Path
) -> None:
    name, csv, error = EXNESS_ARCHIVES[case]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, csv + b"\n")
    loopback.put(EXNESS_PATH, buffer.getvalue())
    store = TickStore(
        tmp_path, exness=ExnessSource(f"{loopback.url}/exness", client=HttpClient(retry=ONE_TRY))
    )
    with pytest.raises(RangeBarError, match=error):  # CorruptArchiveError, or InvalidTradeError for a quote
        store.fetch_day(Series("exness", "spot", "EURGBP"), date(2023, 6, 23))
    assert [p for p in _files(tmp_path) if not p.name.endswith(".lock")] == []


# --- through the UI: a malformed pipeline.yaml, and no DSN password -------------------------------------

LOCATION: Final = "rangebar_pipeline.definitions"
LOCATION_STATE: Final = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message stack causes { message } } } } } } }
"""
RELOAD: Final = """
mutation { reloadRepositoryLocation(repositoryLocationName: "rangebar_pipeline.definitions") { __typename } }
"""
#: Bounds a hung webserver only (it loads the code location in a few seconds, minutes on a loaded host).
UI_TIMEOUT: Final = 240.0


@contextlib.contextmanager
def webserver(home: Path, log: Path) -> Iterator[str]:
    """``dagster-webserver`` on a free loopback port over ``home``'s instance; yields its GraphQL URL."""
    port = _free_port()
    args = [
        str(BIN / "dagster-webserver"),
        "-w",
        str(REPO / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with _process(args, log):
        yield f"http://127.0.0.1:{port}/graphql"


def location_state(url: str, log: Path, *, after: float = 0.0) -> dict[str, Any]:
    """The code location's entry once loaded (or failed to load), as the UI's workspace query shows it."""
    deadline = time.monotonic() + UI_TIMEOUT
    while time.monotonic() < deadline:
        answer = _post(url, LOCATION_STATE)
        entries = (answer or {}).get("data", {}).get("workspaceOrError", {}).get("locationEntries", [])
        if entries and entries[0]["loadStatus"] == "LOADED" and time.monotonic() >= after:
            assert entries[0]["name"] == LOCATION
            state: dict[str, Any] = entries[0]["locationOrLoadError"]
            return state
        time.sleep(1)
    raise AssertionError(f"the code location did not load in {UI_TIMEOUT} s: {_tail(log)}")


def _ui_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return home


def test_a_malformed_pipeline_yaml_is_a_code_location_error_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ui_env(tmp_path, monkeypatch)
    config = tmp_path / "pipeline.yaml"
    monkeypatch.setenv("RANGEBAR_PIPELINE_CONFIG", str(config))
    cases = [  # (file content, what the UI's error must name)
        (yaml.safe_dump({**TEST_CONFIG, "thresholds": [25, "huge"]}), ["thresholds[1]", "huge"]),
        (yaml.safe_dump({**TEST_CONFIG, "datasetz": {"last_n_bars": 5}}), ["unknown key 'datasetz'"]),
        (yaml.safe_dump({**TEST_CONFIG, "series": [{**TEST_CONFIG["series"][0], "symbol": "../x"}]}),
         ["series[0].symbol", "invalid symbol"]),
        ("start_date: 2024-08-08\nthresholds: [25,\nseries: []\n", ["line"]),
    ]  # fmt: skip
    config.write_text(cases[0][0])
    with webserver(tmp_path / "dagster_home", tmp_path / "webserver.log") as url:
        for i, (content, named) in enumerate(cases):
            if i:
                config.write_text(content)
                reloaded = _post(url, RELOAD)
                assert reloaded is not None and "errors" not in reloaded, reloaded
            state = location_state(url, tmp_path / "webserver.log")
            assert state["__typename"] == "PythonError", (content, state)
            # the error and its causes, as the UI's code location page shows them
            message = "\n".join([state["message"], *(c["message"] for c in state["causes"])])
            assert str(config) in message and "PipelineConfigError" in message, message
            assert all(part in message for part in named), (named, message)


PASSWORD: Final = "Sup3rS3cretPassw0rd"
RUN_EVENTS: Final = """
query Events($runId: ID!) { logsForRun(runId: $runId) { __typename ... on EventConnection { events {
  __typename ... on MessageEvent { message }
  ... on ExecutionStepFailureEvent { error { message stack className cause { message stack } } }
  ... on RunFailureEvent { error { message stack cause { message stack } } } } } } }
"""
RUNS: Final = "{ runsOrError { ... on Runs { results { runId status tags { key value } } } } }"
RESOURCES: Final = """
query Resources($selector: RepositorySelector!) {
  allTopLevelResourceDetailsOrError(repositorySelector: $selector) {
  __typename ... on ResourceDetailsList { results { name configuredValues { key value type } } } } }
"""
ENV_VARS: Final = """
query Env($selector: RepositorySelector!) { utilizedEnvVarsOrError(repositorySelector: $selector) {
  __typename ... on EnvVarWithConsumersList { results { envVarName } } } }
"""


@pytest.mark.parametrize("server", ["refused", "answers-401"])
def test_no_dsn_password_in_logs_errors_metadata_files_or_the_ui(
    server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A ClickHouse server DSN with a password that the bar store cannot use (connection refused, or a
    server answering 401): the password appears in no exception (with its causes), log record, CLI
    output, preflight result, Dagster event or metadata, file of the instance or cache, or UI answer."""
    home = _ui_env(tmp_path, monkeypatch)
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with LoopbackServer() as fake:
        fake.fault("*", Fault(status=401, body=b"Code: 516. Authentication failed: password is incorrect"))
        port = _free_port() if server == "refused" else int(fake.url.rsplit(":", 1)[1])
        for env in pipeline_env(tmp_path, monkeypatch):
            monkeypatch.setenv(
                "RANGEBAR_CLICKHOUSE_DSN", f"http://rangebar:{PASSWORD}@127.0.0.1:{port}/rangebar"
            )
            for call in (
                lambda: api.get_range_bars("BTCUSDT", DAYS[0], DAYS[0], 25, fetch_if_missing=False),
                lambda: api.precompute_range_bars("BTCUSDT", DAYS[0], DAYS[0], 25),
                lambda: RangeBarCache().count_bars("BTCUSDT", 25),
            ):
                with pytest.raises(RangeBarError) as info:
                    call()
                texts.append("".join(traceback.format_exception(info.value)))
            assert cli.main(["cache", "status"]) == 1
            texts.append(repr(detect_clickhouse_state()))
            try:
                texts.append(repr(get_available_clickhouse_host()))
            except RangeBarError as exc:  # refused: says so
                texts.append("".join(traceback.format_exception(exc)))
            with dg.DagsterInstance.get() as instance:
                result = env.materialize(
                    ["ticks", "range_bars_25"], f"{DAYS[0]}|{SERIES}", instance=instance, raise_on_error=False
                )
                assert not result.success  # the bar step could not reach the store
                run_id = result.run_id
                texts += [str(e) for e in instance.all_logs(run_id)]
                texts += [str(e.dagster_event) for e in instance.all_logs(run_id)]
            with webserver(home, tmp_path / "webserver.log") as url:
                assert location_state(url, tmp_path / "webserver.log")["__typename"] == "RepositoryLocation"
                selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
                for query, variables in (
                    (RUNS, {}),
                    (RUN_EVENTS, {"runId": run_id}),
                    (RESOURCES, {"selector": selector}),
                    (ENV_VARS, {"selector": selector}),
                ):
                    answer = _post(url, query, variables)
                    assert answer is not None and "errors" not in answer, answer
                    texts.append(json.dumps(answer))
                assert "RANGEBAR_CLICKHOUSE_DSN" in texts[-1]  # the UI names the variable, not its value
            texts.append(_tail(tmp_path / "webserver.log"))
    out, err = capfd.readouterr()
    texts += [out, err, caplog.text]
    leaks = [t for t in texts if PASSWORD in t]
    assert not leaks, leaks[0][:3000]
    files = [p for p in tmp_path.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert files == [], files
