"""An example downstream consumer: an OLS of the next bar's return on a few features (statsmodels).

This is how an ML user plugs into the pipeline: read a ``ml_dataset_{thr}`` file, fit, record the
result. It lives in its own group (``ml_consumers``) and follows its dataset automatically.
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at runtime.

from collections.abc import Sequence
from typing import Any, Final

import dagster as dg
import numpy as np
import polars as pl

from rangebar_pipeline.assets._common import OWNERS, AssetResult, markdown_table
from rangebar_pipeline.assets.datasets import dataset_key, follow_any_update
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.partitions import series_partitions
from rangebar_pipeline.resources import DatasetStoreResource
from rangebar_pipeline.series import Series

__all__ = [
    "LOOKBACK_MODEL_FEATURES",
    "MODEL_FEATURES",
    "MODEL_KEY",
    "build_consumer_asset",
    "fit_forward_return_model",
    "model_features",
]

MODEL_KEY: Final = dg.AssetKey("forward_return_model")
MODEL_FEATURES: Final = ("ofi", "vwap_close_deviation", "turnover_imbalance", "log_duration_s")
#: The regressors when the feature tables carry the lookback group but not the microstructure one.
LOOKBACK_MODEL_FEATURES: Final = (
    "lookback_ofi",
    "lookback_vwap_position",
    "lookback_kaufman_er",
    "log_duration_s",
)
MIN_OBSERVATIONS: Final = 20


def model_features(columns: Sequence[str]) -> tuple[str, ...]:
    """The regressors available in a dataset: the microstructure set, else the lookback set, else
    the bar's log duration alone (``features.groups`` decides which groups a dataset has)."""
    for features in (MODEL_FEATURES, LOOKBACK_MODEL_FEATURES):
        if all(f in columns for f in features[:-1]):
            return features
    return ("log_duration_s",)


def fit_forward_return_model(dataset: pl.DataFrame) -> Any:
    """OLS of ``forward_return_1`` on :func:`model_features` with HAC (Newey-West) standard errors."""
    import statsmodels.api as sm  # imported here: it costs seconds of every code-location load

    features = model_features(dataset.columns)
    frame = dataset.select(
        "fwd_return_1",
        *features[:-1],
        ((pl.col("close_time") - pl.col("open_time")).dt.total_microseconds() / 1e6)
        .log1p()
        .alias("log_duration_s"),
    ).drop_nulls()
    if frame.height < MIN_OBSERVATIONS:
        raise ValueError(
            f"need at least {MIN_OBSERVATIONS} bars with a fwd_return_1 label, found {frame.height}"
        )
    y = frame["fwd_return_1"].to_numpy()
    x = sm.add_constant(frame.select(features).to_numpy(), has_constant="add")
    return sm.OLS(y, x).fit(cov_type="HAC", cov_kwds={"maxlags": 5})


def build_consumer_asset(pipeline: PipelineConfig) -> dg.AssetsDefinition:
    """The ``forward_return_model`` asset on ``ml_dataset_{consumer threshold}``."""
    threshold = pipeline.model_threshold

    @dg.asset(
        key=MODEL_KEY,
        partitions_def=series_partitions(pipeline),
        deps=[dg.AssetDep(dataset_key(threshold))],
        automation_condition=follow_any_update(),
        group_name="ml_consumers",
        kinds={"statsmodels", "python"},
        owners=OWNERS,
        code_version="1",
        description=(
            f"Example consumer: OLS (HAC errors) of the next bar's return on ofi, vwap_close_deviation, "
            f"turnover_imbalance and log duration (the lookback group's ofi, vwap position and efficiency "
            f"ratio when the feature tables carry it instead), fitted on ml_dataset_{threshold}."
        ),
    )
    def forward_return_model(
        context: dg.AssetExecutionContext, datasets: DatasetStoreResource
    ) -> AssetResult:
        series = Series.from_key(context.partition_key)
        store = datasets.store()
        try:
            dataset, _ = store.read_dataset(threshold, series)
        except FileNotFoundError as exc:
            raise dg.Failure(description=f"{exc}: materialize ml_dataset_{threshold} for {series}") from None
        try:
            fit = fit_forward_return_model(dataset)
        except ValueError as exc:
            raise dg.Failure(description=f"{series}: {exc}") from None
        names = ["const", *model_features(dataset.columns)]
        rows = [
            {"term": n, "coef": float(c), "std_err": float(s), "z": float(t), "p_value": float(p)}
            for n, c, s, t, p in zip(names, fit.params, fit.bse, fit.tvalues, fit.pvalues, strict=True)
        ]
        summary = {
            "series": series.key,
            "threshold_decimal_bps": threshold,
            "nobs": int(fit.nobs),
            "r_squared": float(fit.rsquared),
            "coefficients": rows,
        }
        uri = store.write_model("forward_return_model", series, summary)
        return dg.MaterializeResult(
            metadata={
                "nobs": int(fit.nobs),
                "r_squared": float(fit.rsquared),
                "adj_r_squared": float(fit.rsquared_adj) if np.isfinite(fit.rsquared_adj) else 0.0,
                "coefficients": dg.MetadataValue.md(markdown_table(rows)),
                "dagster/uri": uri,
            }
        )

    return forward_return_model
