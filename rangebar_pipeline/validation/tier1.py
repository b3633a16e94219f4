"""Invariant checks (7.1.3's "tier 1"): fast, blocking invariants of bars (SPEC §7, REFERENCE §8.1 fixed).

Every check is vectorised in polars; a failure names the offending rows and their values.
Prices are compared in fixed point (value x 1e8) where the bar rule is defined in integers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from rangebar_pipeline.exceptions import InvalidThresholdError
from rangebar_pipeline.manifest import COLUMNS
from rangebar_pipeline.schema import BASIS_POINTS_SCALE, FEATURE_COLUMNS
from rangebar_pipeline.validation._frames import (
    Violation,
    as_bar_frame,
    float_columns,
    missing,
    raw_tolerance,
    resolve,
    to_raw,
    violation_check,
)
from rangebar_pipeline.validation.results import (
    CheckedResult,
    CheckOutcome,
    JSONValue,
    failed_check,
    json_safe,
    not_applicable,
    passed_check,
)

_PRICE_COLUMNS = ("open", "high", "low", "close")
#: Rows needed before the ofi/return correlation is computed (as the reference).
MIN_ROWS_FOR_CORRELATION = 50
_TURNOVER_REL_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Tier1Result(CheckedResult):
    """Outcome of :func:`validate_tier1`: check outcomes plus informational statistics."""

    bar_count: int
    features_found: tuple[str, ...]
    statistics: Mapping[str, float | None]
    threshold_decimal_bps: int | None

    @property
    def tier1_passed(self) -> bool:
        """The reference's name for :attr:`passed`."""
        return self.passed

    def to_dict(self) -> dict[str, JSONValue]:
        """The reference's keys (``no_nan``, ``ofi_bounded``, ..., ``tier1_passed``) plus ours."""
        out: dict[str, JSONValue] = {
            "features_present": bool(self.features_found),
            "features_found": list(self.features_found),
            "bar_count": self.bar_count,
            "threshold_decimal_bps": self.threshold_decimal_bps,
        }
        for outcome in self.checks:
            out[outcome.name] = None if outcome.status == "not_applicable" else outcome.passed
        out.update({k: json_safe(v) for k, v in self.statistics.items()})
        out["tier1_passed"] = self.passed
        out["failures"] = list[JSONValue](self.failures)
        out["checks"] = [c.to_dict() for c in self.checks]
        return out

    def to_metadata(self) -> dict[str, JSONValue]:
        """JSON-able metadata for a Dagster check or materialization."""
        meta = self._checks_metadata()
        meta["bar_count"] = self.bar_count
        meta["threshold_decimal_bps"] = self.threshold_decimal_bps
        meta.update({k: json_safe(v) for k, v in self.statistics.items()})
        return meta


def validate_tier1(
    df: Any,
    *,
    threshold_decimal_bps: int | None = None,
    same_timestamp_gate: bool = False,
    min_duration_us: int = 0,
) -> Tier1Result:
    """Check the invariants every closed range bar must satisfy.

    ``df``: our polars bar frame (closed bars, ascending close time) or the pandas output frame.
    ``threshold_decimal_bps`` enables the breach checks (they report ``not_applicable`` without it);
    with ``same_timestamp_gate=True`` a bar may legitimately close below its high (or above its low),
    so ``breach_consistent`` is not applicable; likewise with a minimum-duration gate
    (``min_duration_us > 0``), under which early breaches stay inside a bar.

    >>> from rangebar_pipeline import process_trades_polars
    >>> trades = {"timestamp": [1_700_000_000_000, 1_700_000_001_000], "price": [100.0, 100.25],
    ...           "quantity": [1, 2]}
    >>> bars = process_trades_polars(trades, 250, output="polars")
    >>> validate_tier1(bars, threshold_decimal_bps=250).failures
    []
    """
    if threshold_decimal_bps is not None and not 1 <= threshold_decimal_bps <= BASIS_POINTS_SCALE:
        raise InvalidThresholdError(
            f"threshold_decimal_bps must be in 1..={BASIS_POINTS_SCALE}, found {threshold_decimal_bps}"
        )
    frame = as_bar_frame(df)
    features = tuple(c for c in FEATURE_COLUMNS if c in frame.columns)
    present = (
        passed_check("features_present", ", ".join(features))
        if features
        else failed_check(
            "features_present",
            f"expected at least one of the feature columns {list(FEATURE_COLUMNS)}, found none",
        )
    )
    if absent := missing(frame, _PRICE_COLUMNS):  # e.g. an empty frame: nothing to check, a failure
        columns = failed_check(
            "columns_present", f"missing required columns: {absent}; found {frame.columns}"
        )
        return Tier1Result((present, columns), frame.height, features, {}, threshold_decimal_bps)
    checks = resolve(
        [  # every row rule of a frame in one polars pass
            present,
            *_value_checks(frame),
            *_ohlc_checks(frame),
            *_breach_checks(
                frame,
                threshold_decimal_bps,
                same_timestamp_gate=same_timestamp_gate,
                min_duration_us=min_duration_us,
            ),
            *_count_and_time_checks(frame),
            *_feature_bound_checks(frame),
            *_conservation_checks(frame),
            *_order_checks(frame),
        ]
    )
    statistics = _statistics(frame)
    checks.extend(_informational_checks(statistics))
    return Tier1Result(
        checks=tuple(checks),
        bar_count=frame.height,
        features_found=features,
        statistics=statistics,
        threshold_decimal_bps=threshold_decimal_bps,
    )


#: Columns whose nulls are legitimate (the manifest marks them nullable: e.g. a lookback feature
#: whose formula is undefined for its window).
_NULLABLE = frozenset(c.name for c in COLUMNS if c.nullable)


def _value_checks(frame: pl.DataFrame) -> list[CheckOutcome]:
    floats = float_columns(frame)
    nulls = {c: n for c, n in frame.null_count().row(0, named=True).items() if n and c not in _NULLABLE}
    out = [
        failed_check(
            "no_null",
            f"expected no null values; found nulls in {nulls}",
            violations=sum(nulls.values()),
        )
        if nulls
        else passed_check("no_null")
    ]
    for name, predicate, what in (
        ("no_nan", pl.Expr.is_nan, "NaN"),
        ("no_inf", pl.Expr.is_infinite, "inf"),
    ):
        if not floats:
            out.append(not_applicable(name, "no float columns"))
            continue
        counts = frame.select(predicate(pl.col(c)).sum().alias(c) for c in floats).row(0, named=True)
        bad = [c for c in floats if counts[c]]
        if not bad:
            out.append(passed_check(name))
            continue
        mask = pl.any_horizontal(predicate(pl.col(c)) for c in bad)
        outcome = violation_check(frame, name, mask, f"no {what} in any numeric column", bad)
        out.append(
            failed_check(
                name,
                f"{what} found in column(s) {bad}: {outcome.detail}",
                violations=outcome.violations,
                rows=outcome.rows,
            )
        )
    return out


def _ohlc_checks(frame: pl.DataFrame) -> list[CheckOutcome | Violation]:
    h, lo, o, c = pl.col("high"), pl.col("low"), pl.col("open"), pl.col("close")
    specs: list[tuple[str, list[str], pl.Expr, str]] = [
        (
            "prices_positive",
            ["open", "high", "low", "close"],
            pl.min_horizontal(o, h, lo, c) <= 0,
            "open, high, low, close > 0",
        ),
        ("high_ge_low", ["high", "low"], h < lo, "high >= low"),
        ("open_within_range", ["open", "high", "low"], (o < lo) | (o > h), "low <= open <= high"),
        ("close_within_range", ["close", "high", "low"], (c < lo) | (c > h), "low <= close <= high"),
        (
            "vwap_within_range",
            ["vwap", "high", "low"],
            (pl.col("vwap") < lo) | (pl.col("vwap") > h),
            "low <= vwap <= high",
        ),
    ]
    return [_guarded(frame, *spec) for spec in specs]


def _guarded(
    frame: pl.DataFrame, name: str, needs: list[str], violated: pl.Expr, rule: str
) -> CheckOutcome | Violation:
    absent = missing(frame, needs)
    if absent:
        return not_applicable(name, f"column(s) {absent} not in the frame")
    return Violation(frame, name, violated, rule, needs)


def _breach_checks(
    frame: pl.DataFrame, threshold: int | None, *, same_timestamp_gate: bool, min_duration_us: int = 0
) -> list[CheckOutcome | Violation]:
    names = ("threshold_reached", "breach_consistent")
    if threshold is None:
        return [not_applicable(n, "threshold_decimal_bps not given") for n in names]
    absent = missing(frame, ["open", "high", "low", "close"])
    if absent:
        return [not_applicable(n, f"column(s) {absent} not in the frame") for n in names]
    o = to_raw("open")
    # trunc(o * thr / 100_000) without overflowing int64 (o > 0; split o into quotient and remainder)
    delta = (o // BASIS_POINTS_SCALE) * threshold + (o % BASIS_POINTS_SCALE) * threshold // BASIS_POINTS_SCALE
    raw = frame.with_columns(
        __o=o,
        __upper=o + delta,
        __lower=o - delta,
        __h=to_raw("high"),
        __l=to_raw("low"),
        __c=to_raw("close"),
    )
    up = pl.col("__c") >= pl.col("__upper")
    down = pl.col("__c") <= pl.col("__lower")
    shown = ["open", "high", "low", "close", "__upper", "__lower"]
    out: list[CheckOutcome | Violation] = [
        Violation(
            raw,
            "threshold_reached",
            ~(up | down),
            f"close >= open + delta or close <= open - delta (delta = trunc(open_raw*{threshold}/100000))",
            shown,
        )
    ]
    if same_timestamp_gate:
        out.append(
            not_applicable("breach_consistent", "same_timestamp_gate=True: a bar may close inside its range")
        )
        return out
    if min_duration_us:
        out.append(
            not_applicable("breach_consistent", "min_duration_us > 0: early breaches stay inside a bar")
        )
        return out
    inconsistent = (up & ((pl.col("__c") != pl.col("__h")) | (pl.col("__l") <= pl.col("__lower")))) | (
        down & ((pl.col("__c") != pl.col("__l")) | (pl.col("__h") >= pl.col("__upper")))
    )
    out.append(
        Violation(
            raw,
            "breach_consistent",
            inconsistent,
            "the breaching trade closes the bar: an upward breach has close == high and low > lower, "
            "a downward breach close == low and high < upper",
            shown,
        )
    )
    return out


def _count_and_time_checks(frame: pl.DataFrame) -> list[CheckOutcome | Violation]:
    out = [
        _guarded(
            frame, "duration_nonnegative", ["duration_us"], pl.col("duration_us") < 0, "duration_us >= 0"
        ),
        _guarded(
            frame,
            "open_time_le_close_time",
            ["open_time", "close_time"],
            pl.col("open_time") > pl.col("close_time"),
            "open_time <= close_time",
        ),
        _guarded(
            frame,
            "duration_matches_times",
            ["duration_us", "open_time", "close_time"],
            (pl.col("close_time") - pl.col("open_time")).dt.total_microseconds() != pl.col("duration_us"),
            "duration_us == close_time - open_time (us)",
        ),
    ]
    counts = [c for c in ("individual_trade_count", "agg_record_count") if c in frame.columns]
    if counts:
        out.append(
            Violation(
                frame,
                "counts_positive",
                pl.any_horizontal(pl.col(c) < 1 for c in counts),
                f"{' and '.join(counts)} >= 1",
                counts,
            )
        )
    else:
        out.append(not_applicable("counts_positive", "no trade count columns in the frame"))
    out.append(
        _guarded(
            frame,
            "trade_counts_consistent",
            ["buy_trade_count", "sell_trade_count", "individual_trade_count"],
            pl.col("buy_trade_count") + pl.col("sell_trade_count") != pl.col("individual_trade_count"),
            "buy_trade_count + sell_trade_count == individual_trade_count",
        )
    )
    return out


def _feature_bound_checks(frame: pl.DataFrame) -> list[CheckOutcome | Violation]:
    return [
        # NaN is reported by no_nan only (polars orders NaN above every number)
        _guarded(
            frame,
            f"{col}_bounded",
            [col],
            ~pl.col(col).is_between(-1, 1) & ~pl.col(col).is_nan(),
            f"-1 <= {col} <= 1",
        )
        for col in ("ofi", "turnover_imbalance")
    ]


def _conservation_checks(frame: pl.DataFrame) -> list[CheckOutcome | Violation]:
    split = to_raw("buy_volume") + to_raw("sell_volume") - to_raw("volume")
    out = [
        _guarded(
            frame,
            "volume_split",
            ["buy_volume", "sell_volume", "volume"],
            split.abs() > raw_tolerance(to_raw("volume")),
            "buy_volume + sell_volume == volume (in fixed point, 1e-8 units)",
        )
    ]
    turnover_gap = (pl.col("buy_turnover") + pl.col("sell_turnover") - pl.col("turnover")).abs()
    out.append(
        _guarded(
            frame,
            "turnover_split",
            ["buy_turnover", "sell_turnover", "turnover"],
            turnover_gap > _TURNOVER_REL_TOLERANCE * pl.col("turnover").abs(),
            f"buy_turnover + sell_turnover == turnover (relative {_TURNOVER_REL_TOLERANCE:g})",
        )
    )
    return out


def _order_checks(frame: pl.DataFrame) -> list[CheckOutcome | Violation]:
    out = [
        _guarded(
            frame,
            "close_time_ascending",
            ["close_time"],
            pl.col("close_time") < pl.col("close_time").shift(1),
            "close_time ascending (non-decreasing)",
        ),
        _guarded(
            frame,
            "bars_do_not_overlap",
            ["open_time", "close_time"],
            pl.col("open_time") < pl.col("close_time").shift(1),
            "each bar opens at or after the previous bar's close_time",
        ),
    ]
    if {"close_time", "first_agg_trade_id"} <= set(frame.columns):
        key: list[str] = ["close_time", "first_agg_trade_id"]
        dup = pl.struct(key).is_duplicated()
        rule = "(close_time, first_agg_trade_id) unique"
    else:
        key = frame.columns
        dup = pl.struct(key).is_duplicated()
        rule = "no two identical bars (no trade ids to key on)"
    out.append(Violation(frame, "no_duplicate_bars", dup, rule, key[:4]))
    return out


def _statistics(frame: pl.DataFrame) -> dict[str, float | None]:
    stats: dict[str, float | None] = {
        "ofi_return_corr": None,
        "ofi_mean": None,
        "aggression_ratio_median": None,
    }
    if "ofi" in frame.columns and frame.height:
        stats["ofi_mean"] = _finite(frame["ofi"].mean())
        if "close" in frame.columns and frame.height > MIN_ROWS_FOR_CORRELATION:
            corr = frame.select(pl.corr(pl.col("ofi"), pl.col("close").pct_change(), method="pearson")).item()
            stats["ofi_return_corr"] = _finite(corr)
    if "aggression_ratio" in frame.columns and frame.height:
        stats["aggression_ratio_median"] = _finite(frame["aggression_ratio"].median())
    return stats


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _informational_checks(stats: Mapping[str, float | None]) -> list[CheckOutcome]:
    specs: tuple[tuple[str, str, Callable[[float], bool], str], ...] = (
        (
            "ofi_corr_sane",
            "ofi_return_corr",
            lambda v: 0.05 < abs(v) < 0.8,
            "0.05 < |corr(ofi, return)| < 0.8",
        ),
        ("ofi_mean_near_zero", "ofi_mean", lambda v: abs(v) < 0.3, "|mean(ofi)| < 0.3"),
        (
            "aggression_ratio_reasonable",
            "aggression_ratio_median",
            lambda v: v < 10,
            "median(aggression_ratio) < 10",
        ),
    )
    out: list[CheckOutcome] = []
    for name, key, ok, rule in specs:
        value = stats[key]
        if value is None:
            out.append(not_applicable(name, f"{key} not computed", blocking=False))
        elif ok(value):
            out.append(passed_check(name, f"{key}={value:.6g}", blocking=False))
        else:
            out.append(failed_check(name, f"expected {rule}, found {key}={value:.6g}", blocking=False))
    return out


__all__ = ["Tier1Result", "validate_tier1"]
