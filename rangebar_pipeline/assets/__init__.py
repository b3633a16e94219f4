"""Dagster assets of the pipeline, built from the pipeline config (one factory call per threshold)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import dagster as dg

from rangebar_pipeline.assets.bars import BARS_STEP, build_bars_step, range_bars_key
from rangebar_pipeline.assets.checks import build_freshness_check
from rangebar_pipeline.assets.consumers import MODEL_KEY, build_consumer_asset
from rangebar_pipeline.assets.datasets import build_dataset_asset, dataset_key
from rangebar_pipeline.assets.features import features_key
from rangebar_pipeline.assets.ticks import TICKS_KEY, build_ticks_asset
from rangebar_pipeline.config import PipelineConfig

__all__ = [
    "BARS_STEP",
    "MODEL_KEY",
    "TICKS_KEY",
    "PipelineAssets",
    "build_assets",
    "dataset_key",
    "features_key",
    "range_bars_key",
]


@dataclass(frozen=True, slots=True)
class PipelineAssets:
    """The assets and checks of one config, by role."""

    ticks: dg.AssetsDefinition
    #: One subsettable step for every ``range_bars_{thr}`` and ``features_{thr}`` (with their checks).
    bars_and_features: dg.AssetsDefinition
    datasets: dict[int, dg.AssetsDefinition]
    consumer: dg.AssetsDefinition
    checks: list[dg.AssetChecksDefinition]
    thresholds: tuple[int, ...]

    @property
    def range_bars(self) -> dict[int, dg.AssetKey]:
        return {t: range_bars_key(t) for t in self.thresholds}

    @property
    def features(self) -> dict[int, dg.AssetKey]:
        return {t: features_key(t) for t in self.thresholds}

    @property
    def all_assets(self) -> list[dg.AssetsDefinition]:
        return [self.ticks, self.bars_and_features, *self.datasets.values(), self.consumer]

    @property
    def freshness_checks(self) -> list[dg.AssetCheckKey]:
        """``ticks:freshness`` (an asset check) and ``range_bars_{thr}:freshness`` (in the bar step)."""
        return [
            dg.AssetCheckKey(TICKS_KEY, "freshness"),
            *(dg.AssetCheckKey(range_bars_key(t), "freshness") for t in self.thresholds),
        ]


def build_assets(pipeline: PipelineConfig) -> PipelineAssets:
    """Every asset and check for ``pipeline``."""
    with warnings.catch_warnings():  # backfill policies, multi-partition mappings and partitioned
        warnings.simplefilter("ignore", dg.BetaWarning)  # checks are "beta"/"preview" in Dagster
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return _build(pipeline)


def _build(pipeline: PipelineConfig) -> PipelineAssets:
    thresholds = pipeline.thresholds
    checks: list[dg.AssetChecksDefinition] = [build_freshness_check(pipeline, TICKS_KEY)]
    return PipelineAssets(
        ticks=build_ticks_asset(pipeline),
        bars_and_features=build_bars_step(pipeline),
        datasets={t: build_dataset_asset(pipeline, t) for t in thresholds},
        consumer=build_consumer_asset(pipeline),
        checks=checks,
        thresholds=thresholds,
    )
