"""Bar options and feature groups through the pipeline config, Tier 2, feature tables, checks and Dagster."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from polars.testing import assert_frame_equal

from rangebar_pipeline.assets._common import column_schema
from rangebar_pipeline.assets.bars import BARS_CODE_VERSION
from rangebar_pipeline.assets.consumers import (
    LOOKBACK_MODEL_FEATURES,
    MODEL_FEATURES,
    fit_forward_return_model,
    model_features,
)
from rangebar_pipeline.assets.features import FeatureDay, feature_table, gate_tables
from rangebar_pipeline.config import PipelineConfigError, parse_config
from rangebar_pipeline.manifest import COLUMNS, columns_of
from rangebar_pipeline.options import BarOptions
from rangebar_pipeline.resources import DatasetStoreResource
from rangebar_pipeline.schema import FEATURE_COLUMNS, INTRA_SCHEMA, LOOKBACK_SCHEMA, SCHEMA_VERSION
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import KERNEL_VERSION, BarStore
from rangebar_pipeline.storage.ticks import TickStore
from tests.pipeline_support import (
    DAYS,
    TEST_CONFIG,
    PipelineEnv,
    check_evaluations,
    materializations,
    pipeline_env,
)

CM = Series("binance", "cm", "BTCUSD_PERP")
OPTIONS = BarOptions(min_duration_us=2_000_000, lookback_trades=300)
CONFIG: dict[str, Any] = TEST_CONFIG | {
    "thresholds": [25],
    "bars": {"min_duration_us": 2_000_000},
    "features": {"groups": ["lookback"], "lookback_trades": 300},
    "datasets": {"last_n_bars": 50},
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch, CONFIG)


def test_config_options_flow_through_the_bar_step(env: PipelineEnv) -> None:
    assert env.config.bar_options == OPTIONS
    assert env.config.feature_groups == ("core", "lookback")
    instance = dg.DagsterInstance.ephemeral()
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: f"{DAYS[0]}|{CM.key}",
        ASSET_PARTITION_RANGE_END_TAG: f"{DAYS[1]}|{CM.key}",
    }
    result = env.defs.resolve_job_def("rangebar_daily").execute_in_process(tags=tags, instance=instance)
    assert result.success
    for name in ("range_bars_25:tier1", "range_bars_25:continuity", "features_25:expectations"):
        assert all(e.passed for e in check_evaluations(result, name).values()), name

    # Tier 2 holds the bars of these options only, equal to one processor over both days
    days = [date.fromisoformat(d) for d in DAYS]
    ticks = TickStore(env.root)
    stream = pl.concat([ticks.read_day(Series("binance", "cm", "BTCUSD_PERP"), d) for d in days])
    expected = OPTIONS.processor(25).process(stream)
    with BarStore() as store:
        assert_frame_equal(store.read_bars(CM, 25, *days, options=OPTIONS), expected)
        assert store.coverage(CM, 25, *days) == {}, "no bars under the default options"
        assert [s.options for s in store.status().series] == [OPTIONS]
    assert expected["duration_us"].min() >= 2_000_000  # type: ignore[operator]

    # the materializations say what produced them; the code version carries the options
    events = materializations(result, "range_bars_25")
    assert [e.partition for e in events] == [f"{d}|{CM.key}" for d in DAYS]
    first = events[0]
    assert (
        first.tags is not None
        and first.tags["dagster/code_version"] == f"{BARS_CODE_VERSION}-options-{OPTIONS.key}"
    )
    schema = first.metadata["dagster/column_schema"].value
    assert isinstance(schema, dg.TableSchema)
    assert [c.name for c in schema.columns][-16:] == list(LOOKBACK_SCHEMA)
    assert first.metadata["bar_options"].value == OPTIONS.key
    assert first.metadata["kernel_version"].value == KERNEL_VERSION
    graph = env.defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("range_bars_25")).code_version == first.tags["dagster/code_version"]
    assert OPTIONS.key in str(graph.get(dg.AssetKey("features_25")).code_version)

    # feature tables: core + lookback (microstructure off), versions recorded in the file
    datasets = DatasetStoreResource().store()
    table = datasets.read_features(25, CM, days[1])
    assert set(LOOKBACK_SCHEMA) <= set(table.columns)
    assert not set(FEATURE_COLUMNS) & set(table.columns)
    assert table.height == expected.filter(pl.col("close_time").dt.date() == days[1]).height
    assert datasets.table_versions(25, CM, days[1]) == (SCHEMA_VERSION, KERNEL_VERSION)


def test_the_gate_checks_lookback_columns(env: PipelineEnv) -> None:
    del env
    bars = OPTIONS.processor(25).process(
        {
            "timestamp": [1_700_000_000_000 + i * 500 for i in range(4000)],
            "price": [100 + 0.05 * ((i * 7919) % 13 - 6) for i in range(4000)],
            "quantity": [1 + (i % 5) for i in range(4000)],
        }
    )
    table = feature_table(bars, CM, 25, (1,), groups=("core", "lookback"))
    day = date(2023, 11, 14)
    assert gate_tables([FeatureDay(CM, 25, day, table)], ("core", "lookback"))[0].passed
    broken = table.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(1.5).otherwise(pl.col("lookback_ofi")).alias("lookback_ofi")
    )
    verdict = gate_tables([FeatureDay(CM, 25, day, broken)], ("core", "lookback"))[0]
    assert not verdict.passed
    assert any("lookback_ofi" in f for f in verdict.failures)
    missing = table.drop("lookback_hurst")
    assert not gate_tables([FeatureDay(CM, 25, day, missing)], ("core", "lookback"))[0].passed


INTRA = BarOptions(intra_bar=True)
INTRA_CONFIG: dict[str, Any] = TEST_CONFIG | {
    "thresholds": [25],
    "features": {"groups": ["microstructure", "intra"]},
    "datasets": {"last_n_bars": 50},
}


@pytest.fixture
def intra_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch, INTRA_CONFIG)


def test_the_intra_group_flows_through_the_pipeline(intra_env: PipelineEnv) -> None:
    """``features.groups: [intra]``: the bar step stores intra bars whose values equal one processor
    over both days (a bar split across days and partitions is unchanged), the checks pass, the
    column schema and the feature tables carry the group."""
    env = intra_env
    assert env.config.bar_options == INTRA
    assert env.config.feature_groups == ("core", "microstructure", "intra")
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: f"{DAYS[0]}|{CM.key}",
        ASSET_PARTITION_RANGE_END_TAG: f"{DAYS[1]}|{CM.key}",
    }
    instance = dg.DagsterInstance.ephemeral()
    result = env.defs.resolve_job_def("rangebar_daily").execute_in_process(tags=tags, instance=instance)
    assert result.success
    for name in ("range_bars_25:tier1", "range_bars_25:continuity", "features_25:expectations"):
        assert all(e.passed for e in check_evaluations(result, name).values()), name
    days = [date.fromisoformat(d) for d in DAYS]
    stream = pl.concat([TickStore(env.root).read_day(CM, d) for d in days])
    expected = INTRA.processor(25).process(stream)
    with BarStore() as store:
        stored = store.read_bars(CM, 25, *days, options=INTRA)
    assert_frame_equal(stored, expected)
    assert stored["intra_trade_count"].sum() > 0 and stored["intra_hurst"].drop_nulls().len() > 0
    first = materializations(result, "range_bars_25")[0]
    schema = first.metadata["dagster/column_schema"].value
    assert isinstance(schema, dg.TableSchema)
    assert [c.name for c in schema.columns][-22:] == list(INTRA_SCHEMA)
    assert first.metadata["bar_options"].value == "intra_bar"
    table = DatasetStoreResource().store().read_features(25, CM, days[1])
    assert set(INTRA_SCHEMA) | set(FEATURE_COLUMNS) <= set(table.columns)
    assert not set(LOOKBACK_SCHEMA) & set(table.columns)


def test_the_gate_checks_intra_ranges_from_the_manifest(env: PipelineEnv) -> None:
    del env
    bars = INTRA.processor(25).process(
        {
            "timestamp": [1_700_000_000_000 + i * 500 for i in range(4000)],
            "price": [100 + 0.05 * ((i * 7919) % 13 - 6) for i in range(4000)],
            "quantity": [1 + (i % 5) for i in range(4000)],
        }
    )
    groups = ("core", "intra")
    table = feature_table(bars, CM, 25, (1,), groups=groups)
    day = date(2023, 11, 14)
    assert gate_tables([FeatureDay(CM, 25, day, table)], groups)[0].passed
    for column, value in (("intra_ofi", 1.5), ("intra_max_drawdown", -0.1), ("intra_trade_count", 0)):
        broken = table.with_columns(
            pl.when(pl.int_range(pl.len()) == 3).then(value).otherwise(pl.col(column)).alias(column)
        )
        verdict = gate_tables([FeatureDay(CM, 25, day, broken)], groups)[0]
        assert not verdict.passed and any(column in f for f in verdict.failures), column
    assert not gate_tables([FeatureDay(CM, 25, day, table.drop("intra_hurst"))], groups)[0].passed


def test_dagster_table_schema_comes_from_the_manifest() -> None:
    schema = column_schema(BarOptions(lookback_trades=10, intra_bar=True).bar_schema)
    described = {c.name: c for c in COLUMNS}
    assert [c.name for c in schema.columns] == [c.name for c in COLUMNS]
    for column in schema.columns:
        entry = described[column.name]
        assert column.description is not None and entry.formula in column.description
        assert column.constraints.nullable == entry.nullable
    assert len(columns_of("lookback")) == 16


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("features", {"groups": ["volume"]}, "features.groups"),
        ("features", {"groups": ["intra"], "lookback_trades": 10}, "only with 'lookback'"),
        ("features", {"lookback_trades": 10}, "only with 'lookback'"),
        ("features", {"groups": ["lookback"], "lookback_trades": 0}, "features.lookback_trades"),
        ("features", {"groups": ["lookback"], "lookback_trades": 2_000_000}, "1000000"),
        ("bars", {"min_duration_us": -1}, "bars.min_duration_us"),
        ("bars", {"same_timestamp_gate": "yes"}, "bars.same_timestamp_gate"),
        ("bars", {"gate": True}, "made of the keys"),
    ],
)
def test_config_errors_name_the_key(section: str, value: Any, message: str) -> None:
    with pytest.raises(PipelineConfigError, match=message):
        parse_config(TEST_CONFIG | {section: value}, origin="x.yaml")


def test_default_config_keeps_the_plain_options() -> None:
    config = parse_config(TEST_CONFIG)
    assert config.bar_options == BarOptions() and config.feature_groups == ("core", "microstructure")
    gated = parse_config(
        TEST_CONFIG
        | {"bars": {"same_timestamp_gate": True}, "features": {"groups": ["microstructure", "lookback"]}}
    )
    assert gated.bar_options == BarOptions(same_timestamp_gate=True, lookback_trades=500)
    both = parse_config(TEST_CONFIG | {"features": {"groups": ["lookback", "intra"], "lookback_trades": 64}})
    assert both.bar_options == BarOptions(lookback_trades=64, intra_bar=True)
    assert both.feature_groups == ("core", "lookback", "intra")


def test_the_example_model_uses_the_groups_a_dataset_has() -> None:
    walk = [100 + 0.05 * ((i * 7919) % 13 - 6) + 0.01 * (i // 40) for i in range(20_000)]
    trades = {
        "timestamp": [1_700_000_000_000 + i * 300 for i in range(20_000)],
        "price": walk,
        "quantity": [1 + (i % 7) for i in range(20_000)],
        "is_buyer_maker": [(i * 31) % 7 < 3 for i in range(20_000)],
    }
    bars = BarOptions(lookback_trades=200).processor(10).process(trades)
    lookback_only = feature_table(bars, CM, 10, (1,), groups=("core", "lookback"))
    everything = feature_table(bars, CM, 10, (1,), groups=("core", "microstructure", "lookback"))
    assert model_features(lookback_only.columns) == LOOKBACK_MODEL_FEATURES
    assert model_features(everything.columns) == MODEL_FEATURES
    assert model_features(feature_table(bars, CM, 10, (1,), groups=("core",)).columns) == ("log_duration_s",)
    fit = fit_forward_return_model(lookback_only)
    assert len(fit.params) == 1 + len(LOOKBACK_MODEL_FEATURES) and fit.nobs > 20
