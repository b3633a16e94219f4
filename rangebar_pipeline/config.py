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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal, cast, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from rangebar_pipeline.constants import resolve_threshold
from rangebar_pipeline.exceptions import InvalidThresholdError, PipelineConfigError
from rangebar_pipeline.labels import LabelSpec, TripleBarrier
from rangebar_pipeline.manifest import Group
from rangebar_pipeline.options import DEFAULT_OPTIONS, BarOptions
from rangebar_pipeline.series import Series, parse_market, parse_source

__all__ = ["CONFIG_ENV", "PipelineConfig", "PipelineConfigError", "load_config", "parse_config"]

CONFIG_ENV: Final = "RANGEBAR_PIPELINE_CONFIG"
#: Lookback window when the ``lookback`` group is on and ``features.lookback_trades`` is not given.
DEFAULT_LOOKBACK_TRADES: Final = 500
#: The optional feature groups, in column order (``core`` is always on).
FEATURE_GROUPS: Final[tuple[Group, ...]] = ("microstructure", "lookback", "intra")


def _problem(expected: str) -> PydanticCustomError:
    """A validation error whose message reads ``must be <expected>`` after the key path."""
    return PydanticCustomError("rangebar", "must be {expected}", {"expected": expected})


def _threshold(value: Any) -> int:
    try:
        return resolve_threshold(value)
    except InvalidThresholdError as exc:
        raise _problem(f"a valid threshold ({exc})") from None


def _threshold_or_none(value: Any) -> int | None:
    return None if value is None else _threshold(value)


def _symbol(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _day(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise _problem("a YYYY-MM-DD date") from None
    return value


def _cron(value: Any) -> Any:
    if not isinstance(value, str) or len(value.split()) != 5:
        raise _problem("a five-field cron string")
    return value


Threshold = Annotated[int, BeforeValidator(_threshold)]
Positive = Annotated[int, Field(gt=0)]


class _Section(BaseModel):
    """A mapping of the config file: strict types, and an unknown (misspelt) key is an error."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SeriesEntry(_Section):
    """One ``series`` item: ``{source, market, symbol}`` (source and market spelt as users do)."""

    source: str = "binance"
    market: str = "spot"
    symbol: Annotated[str, BeforeValidator(_symbol)]
    #: The series' first published day (days before it are recorded empty, never fetched).
    start: Annotated[date | None, BeforeValidator(_day)] = None

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        try:
            return parse_source(value)
        except ValueError as exc:
            raise _problem(f"a known source ({exc})") from None

    @field_validator("market")
    @classmethod
    def _known_market(cls, value: str, info: Any) -> str:
        source = info.data.get("source", "binance")
        try:
            return parse_market(value, source=source)
        except ValueError as exc:
            raise _problem(f"a valid market ({exc})") from None

    def series(self) -> Series:
        return Series.of(self.symbol, source=self.source, market=self.market)

    @field_validator("symbol")
    @classmethod
    def _valid_symbol(cls, value: str) -> str:
        try:
            Series.of(value)
        except ValueError as exc:
            raise _problem(f"a valid symbol ({exc})") from None
        return value


class BarsSection(_Section):
    """``bars``: the bar rule options (docs/bar-options.md)."""

    same_timestamp_gate: bool = False
    min_duration_us: Annotated[int, Field(ge=0)] = 0


class FeaturesSection(_Section):
    """``features``: the optional feature groups and the lookback window (``label_horizons``: the
    former place of ``labels.horizons``, still read)."""

    groups: list[Literal["microstructure", "lookback", "intra"]] = ["microstructure"]
    lookback_trades: Positive = DEFAULT_LOOKBACK_TRADES
    label_horizons: list[Positive] | None = None


PositiveMultiple = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=False)]


class TripleBarrierSection(_Section):
    """``labels.triple_barrier``: horizon in bars, barrier multiples of the threshold."""

    horizon_bars: Positive = 20
    upper: PositiveMultiple = 2.0
    lower: PositiveMultiple = 2.0


class LabelsSection(_Section):
    """``labels``: forward-return horizons and the triple barrier (``null``: none), computed across
    days at the dataset level (:mod:`rangebar_pipeline.labels`)."""

    horizons: Annotated[list[Positive], Field(min_length=1)] = [1, 5]
    triple_barrier: TripleBarrierSection | None = TripleBarrierSection()


class DatasetsSection(_Section):
    """``datasets``: the ML dataset size and the threshold the example consumer reads."""

    last_n_bars: Positive = 2000
    consumer_threshold: Annotated[int | None, BeforeValidator(_threshold_or_none)] = None


class AutomationSection(_Section):
    """``automation``: the schedule, freshness and sensor bounds."""

    schedule_cron: Annotated[str, BeforeValidator(_cron)] = "30 2 * * *"
    freshness_deadline_hours: Positive = 6
    sensor_max_requests: Positive = 20
    sensor_lookback_days: Positive = 3
    automation_lookback_days: Positive = 7
    max_days_per_run: Positive = 31


class ConfigFile(_Section):
    """The YAML file as written (validated; :func:`parse_config` turns it into a :class:`PipelineConfig`)."""

    start_date: Annotated[date, BeforeValidator(_day)]
    thresholds: Annotated[list[Threshold], Field(min_length=1)]
    series: Annotated[list[SeriesEntry], Field(min_length=1)]
    bars: BarsSection = BarsSection()
    features: FeaturesSection = FeaturesSection()
    datasets: DatasetsSection = DatasetsSection()
    labels: LabelsSection = LabelsSection()
    automation: AutomationSection = AutomationSection()


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """What the Dagster code location materializes."""

    series: tuple[Series, ...]
    thresholds: tuple[int, ...]
    start_date: date
    #: The labels of the ML datasets (forward returns, triple barrier), computed across days.
    labels: LabelSpec = field(default_factory=LabelSpec)
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
    #: A series' first published day when it is after ``start_date`` (by series key).
    series_starts: Mapping[str, date] = field(default_factory=dict)
    #: At most this many days of one series in one run of a backfill (BackfillPolicy.multi_run).
    max_days_per_run: int = 31
    origin: str = "<memory>"

    def first_day(self, series: Series) -> date:
        """The first day of ``series`` the pipeline fetches: its own start, else ``start_date``."""
        return max(self.start_date, self.series_starts.get(series.key, self.start_date))

    @property
    def series_keys(self) -> tuple[str, ...]:
        """Partition keys of the series dimension, e.g. ``"binance-spot-BTCUSDT"``."""
        return tuple(s.key for s in self.series)

    @property
    def label_horizons(self) -> tuple[int, ...]:
        """The forward-return horizons (bars) of :attr:`labels`."""
        return self.labels.horizons

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
    """Validate a parsed YAML mapping; errors name the file, the key path, what was expected and found."""

    def fail(key: str, expected: str, found: Any) -> PipelineConfigError:
        return PipelineConfigError(f"pipeline config {origin}: {key!r} must be {expected}, found {found!r}")

    if not isinstance(raw, Mapping):
        raise fail("<top level>", "a mapping with start_date, thresholds and series", raw)
    try:
        file = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise PipelineConfigError(f"pipeline config {origin}: " + _describe(exc)) from None

    thresholds = file.thresholds
    if len(set(thresholds)) != len(thresholds):
        raise fail("thresholds", "distinct", thresholds)
    series = [entry.series() for entry in file.series]
    keys = [s.key for s in series]
    if len(set(keys)) != len(keys):
        raise fail("series", "distinct", keys)
    consumer = file.datasets.consumer_threshold
    if consumer is not None and consumer not in thresholds:
        raise fail("datasets.consumer_threshold", f"one of the thresholds {thresholds}", consumer)
    features = file.features
    groups: tuple[Group, ...] = ("core", *(g for g in FEATURE_GROUPS if g in features.groups))
    lookback = features.lookback_trades
    if "lookback_trades" in features.model_fields_set and "lookback" not in groups:
        raise fail("features.lookback_trades", "set only with 'lookback' in features.groups", lookback)
    try:
        options = BarOptions(
            file.bars.same_timestamp_gate,
            file.bars.min_duration_us,
            lookback if "lookback" in groups else 0,
            "intra" in groups,
        )
    except ValueError as exc:
        raise fail("features.lookback_trades", f"valid ({exc})", lookback) from None
    labels = file.labels
    horizons = labels.horizons
    if features.label_horizons is not None:
        if "horizons" in labels.model_fields_set:
            raise fail("features.label_horizons", "absent when labels.horizons is given", horizons)
        horizons = features.label_horizons
    if len(set(horizons)) != len(horizons):
        raise fail("labels.horizons", "distinct", horizons)
    barrier = labels.triple_barrier
    spec = LabelSpec(
        tuple(horizons),
        None if barrier is None else TripleBarrier(barrier.horizon_bars, barrier.upper, barrier.lower),
    )
    automation = file.automation
    return PipelineConfig(
        series=tuple(series),
        thresholds=tuple(thresholds),
        start_date=file.start_date,
        labels=spec,
        last_n_bars=file.datasets.last_n_bars,
        consumer_threshold=consumer,
        schedule_cron=automation.schedule_cron,
        freshness_deadline_hours=automation.freshness_deadline_hours,
        sensor_max_requests=automation.sensor_max_requests,
        sensor_lookback_days=automation.sensor_lookback_days,
        automation_lookback_days=automation.automation_lookback_days,
        bar_options=options,
        feature_groups=groups,
        series_starts={
            s.key: entry.start
            for s, entry in zip(series, file.series, strict=True)
            if entry.start is not None and entry.start > file.start_date
        },
        max_days_per_run=automation.max_days_per_run,
        origin=origin,
    )


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as ``'key.path[i]' must be <expected>, found <value>``, joined by ``; ``."""
    out = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "<top level>"
        kind, message = error["type"], error["msg"]
        if kind == "missing":
            out.append(f"{path!r} must be present")
        elif kind == "extra_forbidden" and loc:
            parent = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[:-1]).lstrip(".")
            allowed = sorted(_model_at(loc[:-1]).model_fields)
            where = parent or "<top level>"
            out.append(f"{where!r} must be made of the keys {allowed}, found unknown key {loc[-1]!r}")
        else:
            if kind == "rangebar":
                expected = message
            elif kind == "too_short":
                expected = "must be a non-empty list"
            elif message.startswith("Input should be "):
                message = re.sub(r"valid dictionary( or instance of \w+)?", "mapping", message)
                expected = "must be " + message.removeprefix("Input should be ")
            else:
                expected = f"is invalid ({message})"
            out.append(f"{path!r} {expected}, found {error['input']!r}")
    return "; ".join(out)


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel]:
    """The model validating the mapping at ``loc`` (for the allowed keys of an unknown-key error)."""
    model: type[BaseModel] = ConfigFile
    for part in loc:
        if isinstance(part, str):
            field = model.model_fields[part].annotation
            inner = get_args(field)
            model = cast(type[BaseModel], inner[0] if inner else field)
    return model
