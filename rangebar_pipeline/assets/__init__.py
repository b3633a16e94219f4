"""Dagster assets of the pipeline, built from the pipeline config (one factory call per threshold)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import dagster as dg

from rangebar_pipeline.assets.bars import build_range_bars_asset, range_bars_key
from rangebar_pipeline.assets.checks import build_bar_checks, build_freshness_check
from rangebar_pipeline.assets.consumers import MODEL_KEY, build_consumer_asset
from rangebar_pipeline.assets.datasets import build_dataset_asset, dataset_key
from rangebar_pipeline.assets.features import build_features_asset, features_key
from rangebar_pipeline.assets.ticks import TICKS_KEY, build_ticks_asset
from rangebar_pipeline.config import PipelineConfig

__all__ = [
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
    range_bars: dict[int, dg.AssetsDefinition]
    features: dict[int, dg.AssetsDefinition]
    datasets: dict[int, dg.AssetsDefinition]
    consumer: dg.AssetsDefinition
    checks: list[dg.AssetChecksDefinition]

    @property
    def all_assets(self) -> list[dg.AssetsDefinition]:
        return [
            self.ticks,
            *self.range_bars.values(),
            *self.features.values(),
            *self.datasets.values(),
            self.consumer,
        ]

    @property
    def freshness_checks(self) -> list[dg.AssetChecksDefinition]:
        return [c for c in self.checks if any(k.name == "freshness" for k in c.check_keys)]


def build_assets(pipeline: PipelineConfig) -> PipelineAssets:
    """Every asset and check for ``pipeline``."""
    with warnings.catch_warnings():  # backfill policies and multi-partition mappings are "beta" in Dagster
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _build(pipeline)


def _build(pipeline: PipelineConfig) -> PipelineAssets:
    thresholds = pipeline.thresholds
    checks: list[dg.AssetChecksDefinition] = [build_freshness_check(pipeline, TICKS_KEY)]
    for thr in thresholds:
        checks.extend(build_bar_checks(pipeline, thr))
        checks.append(build_freshness_check(pipeline, range_bars_key(thr)))
    return PipelineAssets(
        ticks=build_ticks_asset(pipeline),
        range_bars={t: build_range_bars_asset(pipeline, t) for t in thresholds},
        features={t: build_features_asset(pipeline, t) for t in thresholds},
        datasets={t: build_dataset_asset(pipeline, t) for t in thresholds},
        consumer=build_consumer_asset(pipeline),
        checks=checks,
    )
