"""The code location loads and validates; the config and partitions behave as documented."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import yaml

from rangebar_pipeline.config import PipelineConfigError, load_config, parse_config
from rangebar_pipeline.definitions import build_definitions
from rangebar_pipeline.partitions import (
    contiguous_ranges,
    daily_series_partitions,
    days_by_series,
    parse_partition_key,
    partition_key,
    previous_day_mapping,
)
from rangebar_pipeline.series import Series

DEFAULT_SERIES = [
    "binance-spot-BTCUSDT",
    "binance-spot-ETHUSDT",
    "binance-um-BTCUSDT",
    "binance-um-ETHUSDT",
    "binance-cm-BTCUSD_PERP",
    "binance-cm-ETHUSD_PERP",
    "exness-spot-EURGBP",
]


def test_packaged_definitions_load_and_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANGEBAR_PIPELINE_CONFIG", raising=False)
    config = load_config()
    assert list(config.series_keys) == DEFAULT_SERIES and config.start_date == date(2024, 8, 8)
    defs = build_definitions(config)
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    thresholds = config.thresholds
    assert keys == {
        "ticks",
        "forward_return_model",
        *(f"{kind}_{t}" for kind in ("range_bars", "features", "ml_dataset") for t in thresholds),
    }
    assert "range_bars_10" in keys  # the asset the documented `dagster asset materialize` example selects
    bars = graph.get(dg.AssetKey(f"range_bars_{thresholds[0]}"))
    assert bars.group_name == "range_bars"
    assert bars.backfill_policy == dg.BackfillPolicy.multi_run(config.max_days_per_run)  # bounded runs
    assert dg.AssetKey(f"range_bars_{thresholds[0]}") in bars.parent_keys  # its own previous day
    assert graph.get(dg.AssetKey("forward_return_model")).group_name == "ml_consumers"
    checks = {f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys}
    assert {f"range_bars_{thresholds[0]}:tier1", f"range_bars_{thresholds[0]}:continuity"} <= checks
    assert {
        f"features_{thresholds[0]}:expectations",
        f"features_{thresholds[0]}:tier2",
        "ticks:freshness",
        f"range_bars_{thresholds[0]}:freshness",
    } <= checks
    assert {s.name for s in defs.schedules or []} == {"daily_yesterday", "hourly_freshness"}
    assert {s.name for s in defs.sensors or []} == {
        "new_days",
        "heal_gaps",
        "record_failures",
        "rangebar_automation",
    }


def test_partition_keys_are_date_and_series() -> None:
    config = load_config()
    keys = daily_series_partitions(config).get_partition_keys(current_time=None)
    assert "2024-08-08|binance-spot-BTCUSDT" in keys and "2024-08-09|exness-spot-EURGBP" in keys
    day, series = parse_partition_key("2024-08-09|binance-cm-BTCUSD_PERP")
    assert day == date(2024, 8, 9) and series == Series("binance", "cm", "BTCUSD_PERP")
    assert partition_key(day, series) == "2024-08-09|binance-cm-BTCUSD_PERP"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_partition_key("2024-13-01|binance-spot-BTCUSDT")
    grouped = days_by_series(["2024-08-10|binance-spot-BTCUSDT", "2024-08-08|binance-spot-BTCUSDT"])
    assert grouped == {Series("binance", "spot", "BTCUSDT"): [date(2024, 8, 8), date(2024, 8, 10)]}
    assert contiguous_ranges([date(2024, 8, 10), date(2024, 8, 8), date(2024, 8, 9), date(2024, 8, 12)]) == [
        (date(2024, 8, 8), date(2024, 8, 10)),
        (date(2024, 8, 12), date(2024, 8, 12)),
    ]


def test_previous_day_mapping_maps_to_the_same_series_one_day_earlier() -> None:
    parts = daily_series_partitions(load_config())
    subset = parts.subset_with_partition_keys(["2024-08-09|binance-um-ETHUSDT"])
    upstream = previous_day_mapping().get_upstream_mapped_partitions_result_for_partitions(
        subset, parts, parts, current_time=None
    )
    assert set(upstream.partitions_subset.get_partition_keys()) == {"2024-08-08|binance-um-ETHUSDT"}
    first = parts.subset_with_partition_keys(["2024-08-08|binance-um-ETHUSDT"])
    none = previous_day_mapping().get_upstream_mapped_partitions_result_for_partitions(
        first, parts, parts, current_time=None
    )
    assert not set(none.partitions_subset.get_partition_keys())  # the first day starts fresh


def test_config_from_the_environment_adds_a_threshold_without_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {"start_date": "2024-01-01", "thresholds": ["micro", 100], "series": [{"symbol": "solusdt"}]}
        )
    )
    monkeypatch.setenv("RANGEBAR_PIPELINE_CONFIG", str(path))
    config = load_config()
    assert config.thresholds == (10, 100) and config.series_keys == ("binance-spot-SOLUSDT",)
    keys = {k.to_user_string() for k in build_definitions(config).resolve_asset_graph().get_all_asset_keys()}
    assert {"range_bars_10", "range_bars_100", "features_100", "ml_dataset_10"} <= keys


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"thresholds": [0], "series": [{"symbol": "BTCUSDT"}]},
            r"'thresholds\[0\]' must be a valid threshold",
        ),
        ({"thresholds": [25, 25], "series": [{"symbol": "BTCUSDT"}]}, "'thresholds' must be distinct"),
        (
            {"thresholds": [25], "series": [{"source": "exness", "market": "um", "symbol": "EURGBP"}]},
            "only market",
        ),
        ({"thresholds": [25], "series": [{"symbol": "BTCUSDT"}], "symbols": []}, "made of the keys"),
        ({"thresholds": [25]}, "'series' must be present"),
        (
            {"thresholds": [25], "series": [{"symbol": "BTCUSDT"}], "datasets": {"consumer_threshold": 250}},
            "one of the thresholds",
        ),
    ],
)
def test_config_errors_name_the_file_key_and_value(raw: dict[str, object], message: str) -> None:
    with pytest.raises(PipelineConfigError, match=message) as error:
        parse_config({"start_date": "2024-08-08", **raw}, origin="/etc/rangebar.yaml")
    assert "/etc/rangebar.yaml" in str(error.value)


def test_missing_config_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANGEBAR_PIPELINE_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(PipelineConfigError, match=r"absent\.yaml.*RANGEBAR_PIPELINE_CONFIG"):
        load_config()
