"""Feature tables, datasets and the consumer through Dagster: gates, time travel, labels across days."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rangebar_pipeline import read_dataset
from rangebar_pipeline.api import get_range_bars
from rangebar_pipeline.api.datasets import DatasetRecipe
from rangebar_pipeline.assets._common import frame_sha256
from rangebar_pipeline.labels import LabelSpec, TripleBarrier, add_labels
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.datasets import DatasetStore
from tests.pipeline_support import (
    DAYS,
    SERIES,
    TEST_CONFIG,
    PipelineEnv,
    check_evaluations,
    materializations,
    metadata,
    pipeline_env,
)

SPOT = Series("binance", "spot", "BTCUSDT")
CM = Series("binance", "cm", "BTCUSD_PERP")
DAY1, DAY2 = (date.fromisoformat(d) for d in DAYS)
BAR_ASSETS = ["ticks", "range_bars_10", "features_10"]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch)


def test_labels_become_final_when_the_next_day_arrives_and_the_dataset_is_rebuilt_from_its_version(
    env: PipelineEnv,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    spec = env.config.labels
    assert env.materialize(BAR_ASSETS, f"{DAYS[0]}|{SERIES}", instance=instance).success
    first = env.materialize(["ml_dataset_10"], SERIES, instance=instance, checks=False)
    before = metadata(first, "ml_dataset_10")[0]
    stored_before, provenance = DatasetStore().read_dataset(10, SPOT)
    assert before["labels_pending"] > 0 and stored_before["fwd_return_1"][-1] is None

    # Day 2 arrives: the automation asks for the dataset again (labels of day 1's last bars complete)
    when = datetime(2024, 8, 10, 12, tzinfo=UTC)  # day 2 is a complete partition by then
    cursor = dg.evaluate_automation_conditions(defs=env.defs, instance=instance, evaluation_time=when).cursor
    assert env.materialize(BAR_ASSETS, f"{DAYS[1]}|{SERIES}", instance=instance).success
    requested = dg.evaluate_automation_conditions(
        defs=env.defs, instance=instance, evaluation_time=when, cursor=cursor
    )
    assert SERIES in requested.get_requested_partitions(dg.AssetKey("ml_dataset_10"))
    second = env.materialize(["ml_dataset_10"], SERIES, instance=instance, checks=False)
    after = metadata(second, "ml_dataset_10")[0]
    assert after["feature_table_version"] > before["feature_table_version"]
    assert after["source_partitions"] == [f"{d}|{SERIES}" for d in DAYS]
    assert set(after["bars_data_versions"]) == set(DAYS)

    # Labels across the boundary equal a recomputation over both days' bars from the bar store
    bars = get_range_bars("BTCUSDT", DAYS[0], DAYS[1], 10, fetch_if_missing=False, output="polars")
    assert isinstance(bars, pl.DataFrame)
    expected = add_labels(bars.select("close_time", "close"), 10, spec)
    dataset, _ = DatasetStore().read_dataset(10, SPOT)
    tail = expected.tail(dataset.height)
    assert_frame_equal(dataset.select(tail.columns), tail)
    boundary = dataset.filter(pl.col("day") == DAY1)
    assert boundary.height and boundary["fwd_return_5"].null_count() == 0  # final now

    # The first dataset is rebuilt from its recorded version exactly (the table has moved on)
    recipe = DatasetRecipe(
        10, SERIES, before["feature_table_version"], spec, DAY1, DAY1, env.config.last_n_bars
    )
    rebuilt = recipe.read().collect()
    assert_frame_equal(rebuilt, stored_before)
    assert frame_sha256(rebuilt) == before["content_sha256"] == provenance["rangebar.content_sha256"]
    assert not rebuilt.equals(read_dataset(10, SPOT, DAY1, DAY1, labels=spec).collect().tail(rebuilt.height))
    assert f"version={before['feature_table_version']}" in str(before["rebuild"])


LOOKBACK_CONFIG: dict[str, Any] = TEST_CONFIG | {
    "thresholds": [25],
    "features": {"groups": ["lookback"], "lookback_trades": 300},
    "datasets": {"last_n_bars": 5000, "consumer_threshold": 25},
    "labels": {"horizons": [1], "triple_barrier": {"horizon_bars": 5, "upper": 1.0, "lower": 1.0}},
}


@pytest.fixture
def lookback_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch, LOOKBACK_CONFIG)


def _plant(series: Series, day: date, options: Any) -> None:
    """Bar 3 of a stored day gets lookback_ofi 1.5 (tier1 does not look; the feature gate does)."""
    with BarStore() as store:
        bars = store.read_bars(series, 25, day, day, options=options)
        record = store.coverage(series, 25, day, day, options=options)[day]
        checkpoint = store.checkpoint_for(series, 25, day, options=options)
        parent = store.checkpoint_for(series, 25, day - timedelta(days=1), options=options)
        assert checkpoint is not None
        planted = bars.with_columns(
            pl.when(pl.int_range(pl.len()) == 3)
            .then(1.5)
            .otherwise(pl.col("lookback_ofi"))
            .alias("lookback_ofi")
        )
        store.write_day(
            series, 25, day, planted, checkpoint=checkpoint, tick_count=record.tick_count,
            parent_checkpoint=None if record.fresh_start else parent, options=options,
        )  # fmt: skip


def test_a_day_failing_its_gate_is_not_in_the_table_nor_the_dataset_and_is_named(
    lookback_env: PipelineEnv,
) -> None:
    env = lookback_env
    options = env.config.bar_options
    instance = dg.DagsterInstance.ephemeral()
    bars_only = dg.AssetSelection.assets("ticks", "range_bars_25")
    for day in DAYS:
        assert env.run(bars_only, f"{day}|{CM.key}", instance=instance).success
    assert env.materialize(["features_25"], f"{DAYS[0]}|{CM.key}", instance=instance).success
    store = DatasetStore()
    day1 = store.read_features(25, CM, DAY1)
    _plant(CM, DAY2, options)  # never published: the failing day must stay absent
    _plant(CM, DAY1, options)  # published: its previous rows must stay visible
    result = env.run_range(
        dg.AssetSelection.assets("features_25"), f"{DAYS[0]}|{CM.key}", f"{DAYS[1]}|{CM.key}",
        instance=instance, raise_on_error=False,
    )  # fmt: skip
    gate = check_evaluations(result, "features_25:expectations")
    assert not gate[f"{DAYS[1]}|{CM.key}"].passed and "lookback_ofi" in str(
        gate[f"{DAYS[1]}|{CM.key}"].description
    )
    events = {m.partition: m.metadata for m in materializations(result, "features_25")}
    assert events[f"{DAYS[1]}|{CM.key}"]["visible"].value is False
    assert "lookback_ofi" in str(events[f"{DAYS[1]}|{CM.key}"]["rejection"].value)
    assert store.feature_days(25, CM) == [DAY1]
    assert_frame_equal(store.read_features(25, CM, DAY1), day1)  # the previous version stays
    rejected = store.rejected_days(25, CM)
    assert set(rejected) == {DAY1, DAY2} and not rejected[DAY2]["withdrawn"]
    commit = store.commits(25)[-1]
    assert set(commit["rejected"]) == set(DAYS) and commit["published"] == []
    dataset = env.materialize(["ml_dataset_25"], CM.key, instance=instance, checks=False)
    meta = metadata(dataset, "ml_dataset_25")[0]
    assert DAYS[1] in meta["rejected_days"] and "lookback_ofi" in str(meta["rejected_days"][DAYS[1]])
    assert meta["source_partitions"] == [f"{DAYS[0]}|{CM.key}"]
    rows, _ = store.read_dataset(25, CM)
    assert set(rows["day"]) == {DAY1} and rows.height == day1.height


def test_the_consumer_names_its_version_and_records_purged_walk_forward_folds(env: PipelineEnv) -> None:
    instance = dg.DagsterInstance.ephemeral()
    for day in DAYS:
        assert env.materialize(BAR_ASSETS, f"{day}|{SERIES}", instance=instance).success
    result = env.materialize(["ml_dataset_10", "forward_return_model"], SERIES, instance=instance)
    dataset = metadata(result, "ml_dataset_10")[0]
    model = metadata(result, "forward_return_model")[0]
    assert model["feature_table_version"] == dataset["feature_table_version"]
    assert model["dataset_sha256"] == dataset["content_sha256"]
    assert model["folds"] == 5 and "oos_r2" in model["fold_metrics"] and "| 5 |" in model["fold_metrics"]
    assert "data:image/png;base64," in model["fold_chart"]
    assert model["nobs"] > 200 and "ofi" in model["coefficients"]
    assert LabelSpec((1, 5), TripleBarrier(20, 2.0, 2.0)) == env.config.labels
