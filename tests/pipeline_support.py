"""Helpers of the Dagster pipeline tests: a small config, loopback mirrors, golden comparison."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from rangebar_pipeline.config import PipelineConfig, parse_config
from rangebar_pipeline.definitions import build_definitions
from rangebar_pipeline.schema import FEATURE_COLUMNS
from tests.api_support import SHARED, Mirror, loopback_env

SERIES = "binance-spot-BTCUSDT"
DAYS = ("2024-08-08", "2024-08-09")
#: The small config of the pipeline tests: one Binance series with both fixture days, two thresholds.
TEST_CONFIG: dict[str, Any] = {
    "start_date": "2024-08-08",
    "thresholds": [10, 25],
    "series": [
        {"source": "binance", "market": "spot", "symbol": "BTCUSDT"},
        {"source": "binance", "market": "cm", "symbol": "BTCUSD_PERP"},
    ],
    "datasets": {"last_n_bars": 250, "consumer_threshold": 10},
}


@dataclass
class PipelineEnv:
    """A configured pipeline over loopback mirrors with its own cache, bar store and output dirs."""

    root: Path
    config: PipelineConfig
    defs: dg.Definitions
    binance: Mirror
    config_path: Path

    def job(self) -> dg.JobDefinition:
        return self.defs.resolve_implicit_global_asset_job_def()

    def materialize(
        self,
        keys: list[str],
        partition: str,
        *,
        instance: dg.DagsterInstance | None = None,
        checks: bool = True,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        """Materialize assets ``keys`` (with their checks unless ``checks=False``) for one partition."""
        selection: dg.AssetSelection = dg.AssetSelection.assets(*keys)
        if not checks:
            selection = selection.without_checks()
        return self.run(selection, partition, instance=instance, raise_on_error=raise_on_error)

    def run(
        self,
        selection: dg.AssetSelection,
        partition: str,
        *,
        instance: dg.DagsterInstance | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        """Execute ``selection`` (assets and checks) in process for one partition."""
        return dg.materialize(
            [*(self.defs.assets or []), *(self.defs.asset_checks or [])],  # type: ignore[list-item]
            selection=selection,
            partition_key=partition,
            resources=dict(self.defs.resources or {}),
            instance=instance or dg.DagsterInstance.ephemeral(),
            raise_on_error=raise_on_error,
        )

    def run_range(
        self,
        selection: dg.AssetSelection,
        first: str,
        last: str,
        *,
        instance: dg.DagsterInstance | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        """Execute ``selection`` in process as one single-run backfill of the keys ``first..last``."""
        job = dg.define_asset_job("range_run", selection=selection)
        defs = dg.Definitions(
            assets=self.defs.assets,
            asset_checks=self.defs.asset_checks,
            jobs=[job],
            resources=self.defs.resources,
        )
        return defs.resolve_job_def("range_run").execute_in_process(
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
            instance=instance or dg.DagsterInstance.ephemeral(),
            raise_on_error=raise_on_error,
        )


def pipeline_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: dict[str, Any] | None = None
) -> Iterator[PipelineEnv]:
    """Mirrors of the shared fixtures, ``RANGEBAR_*`` pointed into ``tmp_path``, the definitions built."""
    for root, binance in loopback_env(tmp_path, monkeypatch):
        monkeypatch.setenv("RANGEBAR_PIPELINE_DIR", str(root / "pipeline"))
        config_path = root / "pipeline.yaml"
        config_path.write_text(yaml.safe_dump(raw or TEST_CONFIG))
        monkeypatch.setenv("RANGEBAR_PIPELINE_CONFIG", str(config_path))
        config = parse_config(raw or TEST_CONFIG, origin=str(config_path))
        yield PipelineEnv(root, config, build_definitions(config), binance, config_path)


def golden(market: str, symbol: str, dbps: int) -> pl.DataFrame:
    return pl.read_parquet(SHARED / "golden" / f"{market}_{symbol}_{dbps}.parquet")


def assert_bars_equal_golden(bars: pl.DataFrame, expected: pl.DataFrame) -> None:
    """Our polars bar frame equals a golden series (exact times and counts, prices to 1e-8)."""
    assert bars.height == expected.height > 0
    assert bars["close_time"].dt.epoch("us").to_list() == expected["close_time_us"].to_list()
    assert bars["open_time"].dt.epoch("us").to_list() == expected["open_time_us"].to_list()
    for name in ("open", "high", "low", "close", "volume", "vwap", "buy_volume", "sell_volume"):
        np.testing.assert_allclose(bars[name].to_numpy(), expected[name].to_numpy(), rtol=0, atol=1e-8)
    for name in ("individual_trade_count", "agg_record_count", "duration_us"):
        assert bars[name].to_list() == expected[name].to_list()
    for name in FEATURE_COLUMNS:
        np.testing.assert_allclose(bars[name].to_numpy(), expected[name].to_numpy(), rtol=1e-9, atol=1e-12)


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """Check evaluations of a run by ``"asset:check"``."""
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in result.get_asset_check_evaluations()}


def materializations(result: dg.ExecuteInProcessResult, asset: str) -> list[dg.AssetMaterialization]:
    """The materializations of ``asset`` in a run, in the order they were recorded."""
    key = dg.AssetKey(asset)
    return [
        event.step_materialization_data.materialization
        for event in result.get_asset_materialization_events()
        if event.asset_key == key
    ]


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> list[dict[str, Any]]:
    """Metadata values of each materialization of ``asset`` in a run."""
    return [{k: v.value for k, v in m.metadata.items()} for m in materializations(result, asset)]


def check_evaluations(
    result: dg.ExecuteInProcessResult, check: str
) -> dict[str | None, dg.AssetCheckEvaluation]:
    """Evaluations of ``"asset:check"`` in a run by partition."""
    return {
        e.partition: e
        for e in result.get_asset_check_evaluations()
        if f"{e.asset_key.to_user_string()}:{e.check_name}" == check
    }
