"""What a user sees in the Dagster UI, in a real browser: Debian's chromium, headless, driven by Playwright.

A short pipeline on a temporary instance: ``dagster-webserver`` and ``dagster-daemon`` on 127.0.0.1
(``examples/ui_session.py``, the demo's driver), one backfill of two days through the daemon, then a
planted defect in day 1's stored bars re-checked. The pages are then read as a user reads them: the
check's Partitions tab, a run page's Re-execute button, the Backfills page, the bar chart. Waits are
on UI state with generous bounds (the machine may be busy); screenshots go to ``docs/images`` when
``RANGEBAR_UPDATE_SCREENSHOTS=1``. Every process started here is stopped by its own id.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, Final

import dagster as dg
import pytest
import yaml

from tests.pipeline_support import DAYS, SERIES, PipelineEnv, pipeline_env
from tests.test_pipeline_materialize import SPOT, _plant_impossible_bar

REPO: Final = Path(__file__).resolve().parents[1]
CHROMIUM: Final = Path(os.environ.get("RANGEBAR_CHROMIUM", "/usr/bin/chromium"))
CONFIG: Final[dict[str, Any]] = {
    "start_date": DAYS[0],
    "thresholds": [10, 25],
    "series": [{"source": "binance", "market": "spot", "symbol": "BTCUSDT"}],
    "datasets": {"last_n_bars": 250, "consumer_threshold": 10},
}
ASSETS: Final = ("ticks", "range_bars_10", "range_bars_25", "features_10", "features_25")
DAY1, DAY2 = (f"{day}|{SERIES}" for day in DAYS)
#: Bounds of the waits on UI state (ms): generous, the machine is shared.
UI_WAIT: Final = 120_000
BACKFILL_TIMEOUT: Final = 600.0


def _ui_session_module() -> Any:
    spec = importlib.util.spec_from_file_location("ui_session", REPO / "examples" / "ui_session.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ui_session"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `apt-get install chromium` (scripts/bootstrap.sh does)"
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    settings["auto_materialize"] = {"enabled": False, "use_sensors": False}  # only the test's runs
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    yield from pipeline_env(tmp_path, monkeypatch, CONFIG)


def test_the_ui_shows_per_day_checks_reexecutable_runs_the_backfill_and_the_chart(
    env: PipelineEnv, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    ui_session = _ui_session_module()
    with dg.DagsterInstance.get():  # creates the SQLite storage before any process does
        pass
    shots = REPO / "docs" / "images" if os.environ.get("RANGEBAR_UPDATE_SCREENSHOTS") else tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    with ui_session.ui_session(tmp_path / "logs") as ui:
        backfill = ui.launch_backfill(ASSETS, [DAY1, DAY2], title="browser test: two days")
        page_state = ui.wait_backfill(backfill, BACKFILL_TIMEOUT)
        assert page_state["status"] == "COMPLETED_SUCCESS", page_state
        run_id = page_state["runs"][0]["runId"]
        # The planted defect: day 1's stored bars go bad and are re-checked (not recomputed).
        _plant_impossible_bar(SPOT, 10, date.fromisoformat(DAYS[0]))
        selection = dg.AssetSelection.assets("features_10") | dg.AssetSelection.checks_for_assets(
            "range_bars_10"
        )
        with dg.DagsterInstance.get() as instance:
            recheck = env.run_range(selection, DAY1, DAY2, instance=instance, raise_on_error=False)
        assert not recheck.success

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                context = browser.new_context(viewport={"width": 1600, "height": 1000})
                # The first-visit community dialog would cover every page.
                context.add_init_script("window.localStorage.setItem('communityNux', '1')")
                page = context.new_page()
                page.set_default_timeout(UI_WAIT)

                # 1. The tier1 check's Partitions tab: day 2 Passed, the planted day 1 Failed.
                page.goto(f"{ui.base}/assets/range_bars_10?view=checks")
                page.get_by_text("tier1", exact=True).first.click()
                page.wait_for_timeout(3000)
                page.get_by_text(re.compile("^Partitions")).last.click()
                expect(page.get_by_text(re.compile(r"Passed \(1\)")).first).to_be_visible(timeout=UI_WAIT)
                expect(page.get_by_text(re.compile(r"Failed \(1\)")).first).to_be_visible(timeout=UI_WAIT)
                page.screenshot(path=str(shots / "check_partitions.png"))
                # The continuity check was not re-run against the planted bars: both days Passed.
                page.goto(f"{ui.base}/assets/range_bars_10?view=checks")
                page.get_by_text("continuity", exact=True).first.click()
                page.wait_for_timeout(3000)
                page.get_by_text(re.compile("^Partitions")).last.click()
                expect(page.get_by_text(re.compile(r"Passed \(2\)")).first).to_be_visible(timeout=UI_WAIT)

                # 2. A backfill run's page: Re-execute is enabled (the run belongs to the code location).
                page.goto(f"{ui.base}/runs/{run_id}")
                reexecute = page.get_by_role("button", name=re.compile("Re-execute")).first
                expect(reexecute).to_be_enabled(timeout=UI_WAIT)
                page.screenshot(path=str(shots / "run_reexecute.png"))

                # 3. The Backfills page lists the backfill.
                page.goto(f"{ui.base}/overview/backfills")
                expect(page.get_by_text(backfill).first).to_be_visible(timeout=UI_WAIT)
                page.screenshot(path=str(shots / "backfills.png"))

                # 4. Day 2's materialization shows the chart image in its metadata.
                partition = DAY2.replace("|", "%7C")
                page.goto(f"{ui.base}/assets/range_bars_10?view=events&partition={partition}")
                page.get_by_text(re.compile(r"Show Markdown")).first.click()
                chart = page.locator("img[src^='data:image/png']").first
                expect(chart).to_be_visible(timeout=UI_WAIT)
                width = chart.evaluate("img => img.naturalWidth")
                assert width == 720, width
                page.screenshot(path=str(shots / "range_bars_chart.png"))
            finally:
                browser.close()
