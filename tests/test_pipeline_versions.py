"""Data versions: identical bars keep downstream fresh; a new kernel makes the bars stale; new data
makes the feature tables stale."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from rangebar_pipeline.assets import bars as bars_module
from rangebar_pipeline.definitions import build_definitions
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.ticks import TickStore
from tests.pipeline_support import DAYS, SERIES, PipelineEnv, materializations, pipeline_env

PARTITION = f"{DAYS[0]}|{SERIES}"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch)


def status(defs: dg.Definitions, instance: dg.DagsterInstance, asset: str) -> StaleStatus:
    """What the UI shows for the partition (Dagster's own resolver)."""
    resolver = CachingStaleStatusResolver(
        instance, defs.resolve_asset_graph(), LoadingContextForTest(instance)
    )
    return resolver.get_status(dg.AssetKey(asset), PARTITION)


def test_identical_bars_keep_features_fresh_and_a_new_kernel_makes_them_stale(
    env: PipelineEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    first = env.materialize(["ticks", "range_bars_10", "features_10"], PARTITION, instance=instance)
    assert first.success
    assert status(env.defs, instance, "range_bars_10") == StaleStatus.FRESH
    assert status(env.defs, instance, "features_10") == StaleStatus.FRESH

    again = env.materialize(["range_bars_10"], PARTITION, instance=instance, checks=False)
    assert again.success
    versions = [
        m.tags["dagster/data_version"]
        for run in (first, again)
        for m in materializations(run, "range_bars_10")
        if m.tags
    ]
    assert len(versions) == 2 and versions[0] == versions[1]  # same ticks, same bars, same version
    assert status(env.defs, instance, "features_10") == StaleStatus.FRESH

    # A kernel upgrade: the bars are stale (code version); recomputed identically, nothing downstream is.
    monkeypatch.setattr(bars_module, "BARS_CODE_VERSION", "kernel-next")
    upgraded = build_definitions(env.config)
    assert status(upgraded, instance, "range_bars_10") == StaleStatus.STALE
    rerun = dg.materialize(
        [*(upgraded.assets or [])],  # type: ignore[list-item]
        selection=dg.AssetSelection.assets("range_bars_10").without_checks(),
        partition_key=PARTITION,
        resources=dict(upgraded.resources or {}),
        instance=instance,
    )
    assert rerun.success
    assert status(upgraded, instance, "range_bars_10") == StaleStatus.FRESH
    assert status(upgraded, instance, "features_10") == StaleStatus.FRESH

    # Different ticks (the day's first 200 trades dropped): new bars, a new data version, stale features.
    store = TickStore(env.root)
    day = date.fromisoformat(DAYS[0])
    ticks = store.read_day(Series("binance", "spot", "BTCUSDT"), day)
    store.write_day(Series("binance", "spot", "BTCUSDT"), day, ticks.tail(ticks.height - 200))
    changed = env.materialize(["range_bars_10"], PARTITION, instance=instance, checks=False)
    assert changed.success
    assert status(env.defs, instance, "features_10") == StaleStatus.STALE
