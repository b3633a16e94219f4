"""An example downstream consumer: a linear model of the next bar's log return on a few features.

This is how an ML user plugs into the pipeline: read a ``ml_dataset_{thr}`` file (it names the feature
table version it was read from), evaluate out of sample with purged walk-forward folds
(:class:`rangebar_pipeline.labels.PurgedWalkForward`: every fold trains only on bars whose label ended
before the fold's first bar), then fit on everything (statsmodels OLS, HAC errors) and record both. It
lives in its own group (``ml_consumers``) and follows its dataset automatically.
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotation at runtime.

import base64
import io
import json
from collections.abc import Sequence
from typing import Any, Final

import dagster as dg
import numpy as np
import polars as pl

from rangebar_pipeline.assets._common import OWNERS, AssetResult, markdown_table
from rangebar_pipeline.assets.datasets import PROVENANCE_KEYS, dataset_key, follow_any_update
from rangebar_pipeline.config import PipelineConfig
from rangebar_pipeline.labels import PurgedWalkForward, label_end
from rangebar_pipeline.partitions import series_partitions
from rangebar_pipeline.resources import DatasetStoreResource
from rangebar_pipeline.series import Series

__all__ = [
    "LOOKBACK_MODEL_FEATURES",
    "MODEL_FEATURES",
    "MODEL_KEY",
    "TARGET",
    "build_consumer_asset",
    "fit_forward_return_model",
    "folds_chart_png",
    "model_features",
    "model_frame",
    "walk_forward_metrics",
]

MODEL_KEY: Final = dg.AssetKey("forward_return_model")
#: The label the example model predicts: the next bar's log return (across day boundaries).
TARGET: Final = "fwd_return_1"
MODEL_FEATURES: Final = ("ofi", "vwap_close_deviation", "turnover_imbalance", "log_duration_s")
#: The regressors when the feature tables carry the lookback group but not the microstructure one.
LOOKBACK_MODEL_FEATURES: Final = (
    "lookback_ofi",
    "lookback_vwap_position",
    "lookback_kaufman_er",
    "log_duration_s",
)
MIN_OBSERVATIONS: Final = 20
#: Walk-forward test folds of the out-of-sample evaluation (fewer when the dataset is short).
FOLDS: Final = 5


def model_features(columns: Sequence[str]) -> tuple[str, ...]:
    """The regressors available in a dataset: the microstructure set, else the lookback set, else
    the bar's log duration alone (``features.groups`` decides which groups a dataset has)."""
    for features in (MODEL_FEATURES, LOOKBACK_MODEL_FEATURES):
        if all(f in columns for f in features[:-1]):
            return features
    return ("log_duration_s",)


def model_frame(dataset: pl.DataFrame) -> pl.DataFrame:
    """The rows with a :data:`TARGET` label: close time, label end, target and the regressors."""
    features = model_features(dataset.columns)
    frame = dataset.select(
        "close_time",
        label_end(1),
        TARGET,
        *features[:-1],
        ((pl.col("close_time") - pl.col("open_time")).dt.total_microseconds() / 1e6)
        .log1p()
        .alias("log_duration_s"),
    ).drop_nulls()
    if frame.height < MIN_OBSERVATIONS:
        raise ValueError(f"need at least {MIN_OBSERVATIONS} bars with a {TARGET} label, found {frame.height}")
    return frame


def fit_forward_return_model(dataset: pl.DataFrame) -> Any:
    """OLS of :data:`TARGET` on :func:`model_features` with HAC (Newey-West) standard errors."""
    import statsmodels.api as sm  # imported here: it costs seconds of every code-location load

    frame = model_frame(dataset)
    x = sm.add_constant(frame.select(model_features(dataset.columns)).to_numpy(), has_constant="add")
    return sm.OLS(frame[TARGET].to_numpy(), x).fit(cov_type="HAC", cov_kwds={"maxlags": 5})


def walk_forward_metrics(dataset: pl.DataFrame, folds: int = FOLDS) -> list[dict[str, Any]]:
    """Out-of-sample metrics of a least-squares fit per purged walk-forward fold: sizes, the test span,
    R² against the test mean, the correlation of prediction and outcome, the sign hit rate."""
    frame = model_frame(dataset)
    x = np.column_stack([np.ones(frame.height), frame.select(model_features(dataset.columns)).to_numpy()])
    y = frame[TARGET].to_numpy()
    splits = max(2, min(folds, frame.height // MIN_OBSERVATIONS - 1))
    cv = PurgedWalkForward(splits, times=frame["close_time"], end_times=frame["label_end_1"])
    rows = []
    for number, (train, test) in enumerate(cv.split(x), start=1):
        coef, *_ = np.linalg.lstsq(x[train], y[train], rcond=None)
        predicted, actual = x[test] @ coef, y[test]
        spread = float(np.sum((actual - actual.mean()) ** 2))
        rows.append(
            {
                "fold": number,
                "train": len(train),
                "test": len(test),
                "test_from": str(frame["close_time"][int(test[0])]),
                "test_to": str(frame["close_time"][int(test[-1])]),
                "oos_r2": 1.0 - float(np.sum((actual - predicted) ** 2)) / spread if spread > 0 else 0.0,
                "correlation": float(np.corrcoef(predicted, actual)[0, 1])
                if np.std(predicted) > 0 and np.std(actual) > 0
                else 0.0,
                "hit_rate": float(np.mean(np.sign(predicted) == np.sign(actual))),
            }
        )
    return rows


def folds_chart_png(rows: Sequence[dict[str, Any]], *, title: str) -> bytes:
    """PNG bytes of a small chart: out-of-sample R² and hit rate per fold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.0, 1.8), dpi=80)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.14, 0.16, 0.72, 0.7))
    folds = [r["fold"] for r in rows]
    axes.bar(folds, [r["oos_r2"] for r in rows], color="#1f4e8c", width=0.6)
    axes.axhline(0, color="#444444", linewidth=0.8)
    axes.set_ylabel("OOS R²", fontsize=6)
    axes.set_xticks(folds, [str(f) for f in folds], fontsize=6)
    axes.tick_params(axis="y", labelsize=6)
    hits = axes.twinx()
    hits.plot(folds, [r["hit_rate"] for r in rows], color="#f0a030", marker="o", linewidth=1)
    hits.set_ylim(0, 1)
    hits.set_ylabel("hit rate", fontsize=6)
    hits.tick_params(axis="y", labelsize=6)
    axes.set_title(title, fontsize=7, loc="left")
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


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
        code_version="2",
        description=(
            f"Example consumer of ml_dataset_{threshold}: the next bar's log return ({TARGET}) on ofi, "
            "vwap_close_deviation, turnover_imbalance and log duration (the lookback group's ofi, vwap "
            "position and efficiency ratio when the feature tables carry it instead). Out-of-sample "
            f"metrics per purged walk-forward fold ({FOLDS} folds), then OLS with HAC errors on all rows."
        ),
    )
    def forward_return_model(
        context: dg.AssetExecutionContext, datasets: DatasetStoreResource
    ) -> AssetResult:
        series = Series.from_key(context.partition_key)
        store = datasets.store()
        try:
            dataset, provenance = store.read_dataset(threshold, series)
        except FileNotFoundError as exc:
            raise dg.Failure(description=f"{exc}: materialize ml_dataset_{threshold} for {series}") from None
        version = int(provenance[PROVENANCE_KEYS[0]])
        try:
            folds = walk_forward_metrics(dataset)
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
            "feature_table_version": version,
            "dataset_recipe": json.loads(provenance[PROVENANCE_KEYS[1]]),
            "dataset_sha256": provenance[PROVENANCE_KEYS[2]],
            "nobs": int(fit.nobs),
            "r_squared": float(fit.rsquared),
            "coefficients": rows,
            "walk_forward": folds,
        }
        uri = store.write_model("forward_return_model", series, summary)
        chart = folds_chart_png(folds, title=f"{series} @ {threshold} dbps: purged walk-forward folds")
        mean = float(np.mean([f["oos_r2"] for f in folds]))
        return dg.MaterializeResult(
            metadata={
                "feature_table_version": version,
                "dataset_sha256": provenance[PROVENANCE_KEYS[2]],
                "folds": len(folds),
                "oos_r2_mean": mean,
                "hit_rate_mean": float(np.mean([f["hit_rate"] for f in folds])),
                "fold_metrics": dg.MetadataValue.md(markdown_table(folds)),
                "fold_chart": dg.MetadataValue.md(
                    f"![folds](data:image/png;base64,{base64.b64encode(chart).decode()})"
                ),
                "nobs": int(fit.nobs),
                "r_squared": float(fit.rsquared),
                "adj_r_squared": float(fit.rsquared_adj) if np.isfinite(fit.rsquared_adj) else 0.0,
                "coefficients": dg.MetadataValue.md(markdown_table(rows)),
                "dagster/uri": uri,
            }
        )

    return forward_return_model
