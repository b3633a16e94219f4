"""The pipeline config: series, thresholds and start date of the Dagster code location (one YAML file).

The file comes from ``RANGEBAR_PIPELINE_CONFIG`` when set, else the ``pipeline.yaml`` shipped in the
package. Adding a series or a threshold is a config change: partitions, assets and schedules are all
built from :class:`PipelineConfig`.

>>> config = load_config()  # doctest: +SKIP
>>> config.series_keys  # doctest: +SKIP
('binance-spot-BTCUSDT', ...)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from rangebar_pipeline.constants import resolve_threshold
from rangebar_pipeline.exceptions import InvalidThresholdError, PipelineConfigError
from rangebar_pipeline.manifest import Group
from rangebar_pipeline.options import DEFAULT_OPTIONS, BarOptions
from rangebar_pipeline.series import Series

__all__ = ["CONFIG_ENV", "PipelineConfig", "PipelineConfigError", "load_config", "parse_config"]

CONFIG_ENV: Final = "RANGEBAR_PIPELINE_CONFIG"
_SECTIONS: Final = {
    "start_date": None,
    "thresholds": None,
    "series": None,
    "bars": {"same_timestamp_gate", "min_duration_us"},
    "features": {"groups", "lookback_trades", "label_horizons"},
    "datasets": {"last_n_bars", "consumer_threshold"},
    "automation": {
        "schedule_cron",
        "freshness_deadline_hours",
        "sensor_max_requests",
        "sensor_lookback_days",
        "automation_lookback_days",
    },
}


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """What the Dagster code location materializes."""

    series: tuple[Series, ...]
    thresholds: tuple[int, ...]
    start_date: date
    label_horizons: tuple[int, ...] = (1, 5)
    last_n_bars: int = 2000
    consumer_threshold: int | None = None
    schedule_cron: str = "30 2 * * *"
    freshness_deadline_hours: int = 6
    sensor_max_requests: int = 20
    sensor_lookback_days: int = 3
    automation_lookback_days: int = 7
    #: The bar options of every bar asset (the lookback window comes from the ``lookback`` group).
    bar_options: BarOptions = DEFAULT_OPTIONS
    #: Feature groups of the feature tables (``core`` is always on).
    feature_groups: tuple[Group, ...] = ("core", "microstructure")
    origin: str = "<memory>"

    @property
    def series_keys(self) -> tuple[str, ...]:
        """Partition keys of the series dimension, e.g. ``"binance-spot-BTCUSDT"``."""
        return tuple(s.key for s in self.series)

    @property
    def model_threshold(self) -> int:
        """The threshold whose dataset the example consumer reads."""
        return self.consumer_threshold if self.consumer_threshold is not None else self.thresholds[0]


def load_config(path: str | Path | None = None) -> PipelineConfig:
    """Read the config from ``path``, else ``$RANGEBAR_PIPELINE_CONFIG``, else the packaged default."""
    chosen = path if path is not None else os.environ.get(CONFIG_ENV) or None
    if chosen is None:
        text = resources.files("rangebar_pipeline").joinpath("pipeline.yaml").read_text(encoding="utf-8")
        origin = "rangebar_pipeline/pipeline.yaml"
    else:
        file = Path(chosen).expanduser()
        origin = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            source = "" if path is not None else f" (from {CONFIG_ENV})"
            raise PipelineConfigError(f"cannot read the pipeline config {file}{source}: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"pipeline config {origin} is not valid YAML: {exc}") from None
    return parse_config(raw, origin=origin)


def parse_config(raw: Any, *, origin: str = "<memory>") -> PipelineConfig:
    """Validate a parsed YAML mapping; errors name the file, the key, what was expected and found."""

    def fail(key: str, expected: str, found: Any) -> PipelineConfigError:
        return PipelineConfigError(f"pipeline config {origin}: {key!r} must be {expected}, found {found!r}")

    if not isinstance(raw, Mapping):
        raise fail("<top level>", "a mapping with start_date, thresholds and series", raw)
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise fail("<top level>", f"made of the keys {sorted(_SECTIONS)}", unknown)
    for section, allowed in _SECTIONS.items():
        if allowed is None or section not in raw:
            continue
        if not isinstance(raw[section], Mapping):
            raise fail(section, "a mapping", raw[section])
        extra = sorted(set(raw[section]) - allowed)
        if extra:
            raise fail(section, f"made of the keys {sorted(allowed)}", extra)
    for key in ("start_date", "thresholds", "series"):
        if key not in raw:
            raise fail(key, "present", None)

    start = raw["start_date"]
    if isinstance(start, str):
        try:
            start = date.fromisoformat(start)
        except ValueError:
            raise fail("start_date", "a YYYY-MM-DD date", start) from None
    if not isinstance(start, date):
        raise fail("start_date", "a YYYY-MM-DD date", start)

    thresholds_raw = raw["thresholds"]
    if not isinstance(thresholds_raw, list) or not thresholds_raw:
        raise fail(
            "thresholds", "a non-empty list of decimal bps (1..=100000) or preset names", thresholds_raw
        )
    thresholds: list[int] = []
    for item in thresholds_raw:
        try:
            thresholds.append(resolve_threshold(item))
        except InvalidThresholdError as exc:
            raise fail("thresholds", f"valid thresholds ({exc})", item) from None
    if len(set(thresholds)) != len(thresholds):
        raise fail("thresholds", "distinct", thresholds)

    series_raw = raw["series"]
    if not isinstance(series_raw, list) or not series_raw:
        raise fail("series", "a non-empty list of {source, market, symbol}", series_raw)
    series: list[Series] = []
    for item in series_raw:
        if (
            not isinstance(item, Mapping)
            or set(item) - {"source", "market", "symbol"}
            or "symbol" not in item
        ):
            raise fail("series", "entries {source, market, symbol}", item)
        try:
            series.append(
                Series.of(
                    str(item["symbol"]),
                    source=item.get("source", "binance"),
                    market=item.get("market", "spot"),
                )
            )
        except ValueError as exc:
            raise fail("series", f"valid series ({exc})", item) from None
    keys = [s.key for s in series]
    if len(set(keys)) != len(keys):
        raise fail("series", "distinct", keys)

    features = raw.get("features") or {}
    datasets = raw.get("datasets") or {}
    automation = raw.get("automation") or {}
    groups, options = _feature_groups(raw.get("bars") or {}, features, fail)
    horizons = features.get("label_horizons", [1, 5])
    if not isinstance(horizons, list) or not all(_positive_int(h) for h in horizons):
        raise fail("features.label_horizons", "a list of positive integers (bars ahead)", horizons)
    consumer = datasets.get("consumer_threshold")
    if consumer is not None:
        try:
            consumer = resolve_threshold(consumer)
        except InvalidThresholdError:
            raise fail("datasets.consumer_threshold", "a configured threshold", consumer) from None
        if consumer not in thresholds:
            raise fail("datasets.consumer_threshold", f"one of the thresholds {thresholds}", consumer)
    ints: dict[str, int] = {}
    for block, key, default in (
        (datasets, "last_n_bars", 2000),
        (automation, "freshness_deadline_hours", 6),
        (automation, "sensor_max_requests", 20),
        (automation, "sensor_lookback_days", 3),
        (automation, "automation_lookback_days", 7),
    ):
        value = block.get(key, default)
        if not _positive_int(value):
            raise fail(key, "a positive integer", value)
        ints[key] = value
    cron = automation.get("schedule_cron", "30 2 * * *")
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise fail("automation.schedule_cron", "a five-field cron string", cron)
    return PipelineConfig(
        series=tuple(series),
        thresholds=tuple(thresholds),
        start_date=start,
        label_horizons=tuple(horizons),
        consumer_threshold=consumer,
        schedule_cron=cron,
        bar_options=options,
        feature_groups=groups,
        origin=origin,
        **ints,
    )


#: Lookback window when the ``lookback`` group is on and ``features.lookback_trades`` is not given.
DEFAULT_LOOKBACK_TRADES: Final = 500


def _feature_groups(
    bars: Mapping[str, Any], features: Mapping[str, Any], fail: Any
) -> tuple[tuple[Group, ...], BarOptions]:
    """``features.groups`` (+ ``lookback_trades``) and the ``bars`` section as bar options."""
    groups_raw = features.get("groups", ["microstructure"])
    allowed: tuple[Group, ...] = ("microstructure", "lookback")
    if not isinstance(groups_raw, list) or not all(g in allowed for g in groups_raw):
        raise fail("features.groups", f"a list drawn from {list(allowed)} (core is always on)", groups_raw)
    groups: tuple[Group, ...] = ("core", *(g for g in allowed if g in groups_raw))
    lookback = features.get("lookback_trades", DEFAULT_LOOKBACK_TRADES)
    if not _positive_int(lookback):
        raise fail("features.lookback_trades", "a positive integer (trades)", lookback)
    if "lookback_trades" in features and "lookback" not in groups:
        raise fail("features.lookback_trades", "set only with 'lookback' in features.groups", lookback)
    gate = bars.get("same_timestamp_gate", False)
    if not isinstance(gate, bool):
        raise fail("bars.same_timestamp_gate", "true or false", gate)
    min_duration = bars.get("min_duration_us", 0)
    if isinstance(min_duration, bool) or not isinstance(min_duration, int) or min_duration < 0:
        raise fail("bars.min_duration_us", "an integer >= 0 (microseconds)", min_duration)
    try:
        options = BarOptions(gate, min_duration, lookback if "lookback" in groups else 0)
    except ValueError as exc:
        raise fail("features.lookback_trades", f"valid ({exc})", lookback) from None
    return groups, options


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
