"""Continuity between consecutive bars (REFERENCE §4.11/§8.3 with the unit slip fixed).

Our bars follow the batch rule: bar i+1 opens at the first trade after bar i's breaching trade.
So consecutive bars are continuous when (ids present) ``first_agg_trade_id[i+1] ==
last_agg_trade_id[i] + 1`` and ``open_time[i+1] >= close_time[i]``, across day and partition
boundaries too (pass the previous partition's last bar as ``previous_bar``). Price gaps between
``close[i]`` and ``open[i+1]`` are classified as in the reference, with the threshold in the right
unit: ``threshold_decimal_bps / 100_000`` (the reference divides by 10_000, 10x too loose).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

import polars as pl

from rangebar_pipeline.constants import (
    CONTINUITY_TOLERANCE_PCT,
    DEFAULT_CONTINUITY_TOLERANCE,
    resolve_tolerance,
)
from rangebar_pipeline.exceptions import (
    ContinuityError,
    ContinuityWarning,
    InvalidThresholdError,
    MissingColumnError,
)
from rangebar_pipeline.schema import BASIS_POINTS_SCALE
from rangebar_pipeline.validation._frames import as_bar_frame
from rangebar_pipeline.validation.continuity_presets import (
    ASSET_CLASS_MULTIPLIERS,
    VALIDATION_PRESETS,
    AssetClass,
    GapTier,
    TierThresholds,
    ValidationPreset,
    detect_asset_class,
    resolve_preset,
)
from rangebar_pipeline.validation.results import CheckedResult, CheckOutcome, JSONValue, json_safe

DiscontinuityKind: TypeAlias = Literal["price_gap", "id_gap", "time_overlap"]


def threshold_fraction(threshold_decimal_bps: int) -> float:
    """The bar threshold as a fraction: ``dbps / 100_000`` (250 dbps -> 0.0025 = 0.25 %)."""
    if not 1 <= threshold_decimal_bps <= BASIS_POINTS_SCALE:
        raise InvalidThresholdError(
            f"threshold_decimal_bps must be in 1..={BASIS_POINTS_SCALE}, found {threshold_decimal_bps}"
        )
    return threshold_decimal_bps / BASIS_POINTS_SCALE


@dataclass(frozen=True, slots=True)
class Discontinuity:
    """One broken junction between bar ``bar_index - 1`` and bar ``bar_index``.

    ``bar_index`` 0 is the junction with ``previous_bar`` (the previous partition's last bar).
    """

    bar_index: int
    kind: DiscontinuityKind
    detail: str
    prev_close: float | None = None
    curr_open: float | None = None
    gap_pct: float | None = None
    expected_first_id: int | None = None
    actual_first_id: int | None = None
    timestamp: datetime | None = None

    def to_dict(self) -> dict[str, JSONValue]:
        """Plain-dict form (the reference's keys plus ``kind``, ids and ``detail``)."""
        return {
            "bar_index": self.bar_index,
            "kind": self.kind,
            "prev_close": self.prev_close,
            "curr_open": self.curr_open,
            "gap_pct": self.gap_pct,
            "expected_first_id": self.expected_first_id,
            "actual_first_id": self.actual_first_id,
            "timestamp": None if self.timestamp is None else self.timestamp.isoformat(),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class GapInfo:
    """A classified price gap (every gap above PRECISION)."""

    bar_index: int
    prev_close: float
    curr_open: float
    gap_pct: float
    tier: GapTier
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class TierSummary:
    """Count, maximum and mean gap of one tier."""

    count: int = 0
    max_gap_pct: float = 0.0
    avg_gap_pct: float = 0.0


def _junction_checks(
    bar_count: int, discontinuities: tuple[Discontinuity, ...], *, checked_ids: bool
) -> tuple[CheckOutcome, ...]:
    out = []
    for kind, name, rule in (
        ("id_gap", "ids_contiguous", "first_agg_trade_id == previous last_agg_trade_id + 1"),
        ("time_overlap", "times_ordered", "open_time >= previous close_time"),
        ("price_gap", "price_gaps_within_tolerance", "price gap <= threshold + tolerance"),
    ):
        hits = [d for d in discontinuities if d.kind == kind]
        if kind == "id_gap" and not checked_ids:
            out.append(CheckOutcome(name, "not_applicable", "no trade id columns (or check_ids=False)"))
        elif hits:
            first = hits[0]
            out.append(
                CheckOutcome(
                    name,
                    "failed",
                    f"expected {rule} at every junction; {len(hits)} of {bar_count} broken, "
                    f"first at bar {first.bar_index}: {first.detail}",
                    len(hits),
                    tuple(d.bar_index for d in hits[:3]),
                )
            )
        else:
            out.append(CheckOutcome(name, "passed"))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ContinuityResult(CheckedResult):
    """Outcome of :func:`validate_continuity`; ``result["is_valid"]`` works as with the reference's dict."""

    bar_count: int
    discontinuities: tuple[Discontinuity, ...]
    threshold_decimal_bps: int
    #: The price-gap tolerance on top of the threshold, a fraction.
    tolerance: float

    @property
    def is_valid(self) -> bool:
        """True when no junction is broken."""
        return not self.discontinuities

    @property
    def discontinuity_count(self) -> int:
        """Number of broken junctions."""
        return len(self.discontinuities)

    def to_dict(self) -> dict[str, JSONValue]:
        """The reference's dict (``is_valid, bar_count, discontinuity_count, discontinuities``) plus ours."""
        return {
            "is_valid": self.is_valid,
            "bar_count": self.bar_count,
            "discontinuity_count": self.discontinuity_count,
            "discontinuities": [d.to_dict() for d in self.discontinuities],
            "threshold_decimal_bps": self.threshold_decimal_bps,
            "threshold_fraction": threshold_fraction(self.threshold_decimal_bps),
            "tolerance": self.tolerance,
            "failures": list[JSONValue](self.failures),
        }

    def to_metadata(self) -> dict[str, JSONValue]:
        """JSON-able metadata for a Dagster check."""
        meta = self._checks_metadata()
        meta.update(
            bar_count=self.bar_count,
            discontinuity_count=self.discontinuity_count,
            discontinuities=[d.to_dict() for d in self.discontinuities[:20]],
            threshold_decimal_bps=self.threshold_decimal_bps,
            tolerance=self.tolerance,
        )
        return meta


@dataclass(frozen=True, slots=True)
class TieredValidationResult(CheckedResult):
    """Outcome of :func:`validate_continuity_tiered` (the reference's fields, units fixed).

    Built from 7.1.3's fields alone (``TieredValidationResult(is_valid, bar_count, ...)``), its one
    check is ``is_valid`` itself.
    """

    is_valid: bool
    bar_count: int
    gaps_by_tier: Mapping[GapTier, TierSummary]
    all_gaps: Sequence[GapInfo]
    threshold_used_pct: float
    asset_class_detected: AssetClass
    preset_used: str | None
    id_discontinuities: tuple[Discontinuity, ...] = ()
    checks: tuple[CheckOutcome, ...] = field(default=(), kw_only=True)

    def __post_init__(self) -> None:
        if not self.checks:
            outcome = CheckOutcome("is_valid", "passed" if self.is_valid else "failed", "given")
            object.__setattr__(self, "checks", (outcome,))

    @property
    def has_session_breaks(self) -> bool:
        """True if any gap reached the SESSION_BOUNDARY tier."""
        return self.gaps_by_tier[GapTier.SESSION_BOUNDARY].count > 0

    @property
    def has_microstructure_events(self) -> bool:
        """True if any gap reached the MICROSTRUCTURE tier."""
        return self.gaps_by_tier[GapTier.MICROSTRUCTURE].count > 0

    def summary_dict(self) -> dict[str, int]:
        """``{tier name: gap count}`` for all five tiers."""
        return {tier.name: summary.count for tier, summary in self.gaps_by_tier.items()}

    def to_dict(self) -> dict[str, JSONValue]:
        """All fields as plain values."""
        return {
            "is_valid": self.is_valid,
            "bar_count": self.bar_count,
            "gaps_by_tier": {
                t.name: {"count": s.count, "max_gap_pct": s.max_gap_pct, "avg_gap_pct": s.avg_gap_pct}
                for t, s in self.gaps_by_tier.items()
            },
            "all_gaps": [
                {
                    "bar_index": g.bar_index,
                    "prev_close": g.prev_close,
                    "curr_open": g.curr_open,
                    "gap_pct": g.gap_pct,
                    "tier": g.tier.name,
                    "timestamp": None if g.timestamp is None else g.timestamp.isoformat(),
                }
                for g in self.all_gaps
            ],
            "threshold_used_pct": self.threshold_used_pct,
            "asset_class_detected": self.asset_class_detected.value,
            "preset_used": self.preset_used,
            "id_discontinuities": [d.to_dict() for d in self.id_discontinuities],
            "failures": list[JSONValue](self.failures),
        }

    def to_metadata(self) -> dict[str, JSONValue]:
        """JSON-able metadata for a Dagster check."""
        meta = self._checks_metadata()
        meta.update(
            is_valid=self.is_valid,
            bar_count=self.bar_count,
            gaps_by_tier=json_safe(self.summary_dict()),
            threshold_used_pct=self.threshold_used_pct,
            asset_class_detected=self.asset_class_detected.value,
            preset_used=self.preset_used,
            id_discontinuity_count=len(self.id_discontinuities),
        )
        return meta


# --- junction frame -----------------------------------------------------------------------------

#: The bar columns continuity reads (a caller may read only these from a store).
JUNCTION_COLUMNS: Final[tuple[str, ...]] = (
    "open",
    "close",
    "open_time",
    "close_time",
    "first_agg_trade_id",
    "last_agg_trade_id",
)


def _junctions(frame: pl.DataFrame, previous_bar: Any) -> pl.DataFrame:
    """Per bar: its open/first id/open time beside the previous bar's close/last id/close time."""
    if missing := [c for c in ("open", "close") if c not in frame.columns]:
        raise MissingColumnError(
            f"continuity needs columns 'open' and 'close' (or 'Open'/'Close'); missing {missing}, "
            f"found {frame.columns}"
        )
    cols = [c for c in JUNCTION_COLUMNS if c in frame.columns]
    body = frame.select(cols).with_row_index("bar_index").with_columns(pl.col("bar_index").cast(pl.Int64))
    if previous_bar is not None:
        prev = _previous_row(previous_bar, cols, body.schema)
        body = pl.concat([prev, body], how="vertical_relaxed")
    shifted = [
        pl.col(c).shift(1).alias(f"prev_{c}")
        for c in ("close", "close_time", "last_agg_trade_id")
        if c in cols
    ]
    return (
        body.with_columns(shifted)
        .filter(pl.col("bar_index") >= 0)
        .slice(0 if previous_bar is not None else 1)
    )


def _previous_row(previous_bar: Any, cols: list[str], schema: pl.Schema) -> pl.DataFrame:
    if isinstance(previous_bar, Mapping):
        prev = pl.DataFrame({c: [previous_bar.get(c)] for c in cols})
    else:
        prev = as_bar_frame(previous_bar).tail(1)
        if prev.height == 0:
            raise ValueError("previous_bar is an empty frame; pass None when there is no previous bar")
    absent = [c for c in cols if c not in prev.columns or prev[c][0] is None]
    if absent:
        raise MissingColumnError(f"previous_bar lacks {absent} (needed to check the junction)")
    prev = prev.select(cols).with_columns(pl.lit(-1, pl.Int64).alias("bar_index"))
    return prev.select(pl.col(c).cast(t) for c, t in schema.items())


def _id_and_time_discontinuities(j: pl.DataFrame, *, check_ids: bool) -> list[Discontinuity]:
    out: list[Discontinuity] = []
    if check_ids and {"first_agg_trade_id", "prev_last_agg_trade_id"} <= set(j.columns):
        bad = j.filter(pl.col("first_agg_trade_id") != pl.col("prev_last_agg_trade_id") + 1)
        for row in bad.iter_rows(named=True):
            expected = row["prev_last_agg_trade_id"] + 1
            actual = row["first_agg_trade_id"]
            what = f"{actual - expected} missing trade(s)" if actual > expected else "overlapping trades"
            out.append(
                Discontinuity(
                    row["bar_index"],
                    "id_gap",
                    f"expected first_agg_trade_id {expected}, found {actual} ({what})",
                    expected_first_id=expected,
                    actual_first_id=actual,
                    timestamp=row.get("close_time"),
                )
            )
    if {"open_time", "prev_close_time"} <= set(j.columns):
        bad = j.filter(pl.col("open_time") < pl.col("prev_close_time"))
        for row in bad.iter_rows(named=True):
            out.append(
                Discontinuity(
                    row["bar_index"],
                    "time_overlap",
                    f"expected open_time >= previous close_time {row['prev_close_time']}, "
                    f"found {row['open_time']}",
                    timestamp=row.get("close_time"),
                )
            )
    return out


def _with_gaps(j: pl.DataFrame) -> pl.DataFrame:
    return j.filter(pl.col("prev_close") != 0).with_columns(
        ((pl.col("open") - pl.col("prev_close")).abs() / pl.col("prev_close").abs()).alias("gap")
    )


def validate_continuity(
    df: Any,
    tolerance: float | None = None,
    threshold_decimal_bps: int = 250,
    *,
    previous_bar: Mapping[str, Any] | pl.DataFrame | None = None,
    check_ids: bool = True,
    tolerance_pct: float | None = None,
) -> ContinuityResult:
    """Check every junction between consecutive bars.

    Broken junctions: a trade-id gap or overlap (``first_agg_trade_id != previous last + 1``, when
    ids are present and ``check_ids``), a bar opening before the previous close, or a price gap
    ``|open - prev_close| / |prev_close| > threshold_decimal_bps / 100_000 + tolerance``
    (``tolerance`` is a fraction, default ``DEFAULT_CONTINUITY_TOLERANCE`` = 0.001; 7.1.3's keyword
    ``tolerance_pct`` is accepted for it). ``previous_bar`` (a dict or frame; its last row is used)
    is the last bar of the previous partition: the junction into this frame is then checked too, as
    ``bar_index`` 0.
    """
    tolerance = resolve_tolerance(tolerance, tolerance_pct, "tolerance_pct")
    limit = threshold_fraction(threshold_decimal_bps) + tolerance
    frame = as_bar_frame(df)
    if frame.height == 0 and previous_bar is None:
        return ContinuityResult(
            _junction_checks(0, (), checked_ids=False), 0, (), threshold_decimal_bps, tolerance
        )
    j = _junctions(frame, previous_bar)
    found = _id_and_time_discontinuities(j, check_ids=check_ids)
    for row in _with_gaps(j).filter(pl.col("gap") > limit).iter_rows(named=True):
        found.append(
            Discontinuity(
                row["bar_index"],
                "price_gap",
                f"expected |open - prev_close|/prev_close <= {limit:.6g} "
                f"({threshold_decimal_bps} dbps + tolerance {tolerance:g}), found {row['gap']:.6g} "
                f"(prev_close {row['prev_close']}, open {row['open']})",
                prev_close=row["prev_close"],
                curr_open=row["open"],
                gap_pct=row["gap"],
                timestamp=row.get("close_time"),
            )
        )
    found.sort(key=lambda d: d.bar_index)
    checked_ids = check_ids and "prev_last_agg_trade_id" in j.columns
    discontinuities = tuple(found)
    return ContinuityResult(
        _junction_checks(frame.height, discontinuities, checked_ids=checked_ids),
        frame.height,
        discontinuities,
        threshold_decimal_bps,
        tolerance,
    )


def validate_continuity_tiered(
    df: Any,
    threshold_decimal_bps: int = 250,
    *,
    validation: str | Mapping[str, Any] | ValidationPreset = "standard",
    symbol: str | None = None,
    previous_bar: Mapping[str, Any] | pl.DataFrame | None = None,
    check_ids: bool = True,
) -> TieredValidationResult:
    """Classify every price gap into tiers and apply a preset's policy (REFERENCE §8.3, units fixed).

    ``is_valid`` is False when a gap reaches the SESSION_BOUNDARY tier (``>= threshold x
    session_factor``, threshold = dbps / 100_000) or trade ids are not contiguous. When a gap of
    tier >= MARKET_MOVE exceeds the preset's tolerance, or ids break, mode ``error`` raises
    :class:`ContinuityError` and mode ``warn`` emits :class:`ContinuityWarning`.
    """
    asset_class = detect_asset_class(symbol) if symbol else AssetClass.UNKNOWN
    fraction = threshold_fraction(threshold_decimal_bps)
    preset, preset_used = resolve_preset(validation, asset_class)
    frame = as_bar_frame(df)
    empty_tiers = MappingProxyType({t: TierSummary() for t in GapTier})
    if preset.mode == "skip" or (frame.height < 2 and previous_bar is None):
        return TieredValidationResult(
            True, frame.height, empty_tiers, (), fraction, asset_class, preset_used,
            checks=(CheckOutcome("is_valid", "not_applicable", "mode skip, or fewer than 2 bars"),),
        )  # fmt: skip
    j = _junctions(frame, previous_bar)
    id_breaks = tuple(_id_and_time_discontinuities(j, check_ids=check_ids))
    gaps = _with_gaps(j)
    tiers = preset.tier_thresholds
    all_gaps: list[GapInfo] = []
    by_tier: dict[GapTier, list[float]] = {t: [] for t in GapTier}
    for row in gaps.select(
        "bar_index", "prev_close", "open", "gap", *(["close_time"] if "close_time" in gaps.columns else [])
    ).iter_rows(named=True):
        tier = tiers.classify(row["gap"], fraction)
        by_tier[tier].append(row["gap"])
        if tier is not GapTier.PRECISION:
            all_gaps.append(
                GapInfo(
                    row["bar_index"], row["prev_close"], row["open"], row["gap"], tier, row.get("close_time")
                )
            )
    summaries = MappingProxyType(
        {t: TierSummary(len(v), max(v), sum(v) / len(v)) if v else TierSummary() for t, v in by_tier.items()}
    )
    session_breaks = [g for g in all_gaps if g.tier is GapTier.SESSION_BOUNDARY]
    price_discontinuities = tuple(
        Discontinuity(
            g.bar_index,
            "price_gap",
            f"gap {g.gap_pct:.6g} reaches the session-boundary tier "
            f"(>= {fraction * tiers.session_factor:.6g})",
            g.prev_close,
            g.curr_open,
            g.gap_pct,
            timestamp=g.timestamp,
        )
        for g in session_breaks
    )
    checks = _junction_checks(
        frame.height,
        id_breaks + price_discontinuities,
        checked_ids=check_ids and "prev_last_agg_trade_id" in j.columns,
    )
    result = TieredValidationResult(
        not session_breaks and not id_breaks,
        frame.height,
        summaries,
        tuple(all_gaps),
        fraction,
        asset_class,
        preset_used,
        id_breaks,
        checks=checks,
    )
    _apply_mode(preset, all_gaps, id_breaks, summaries)
    return result


def _apply_mode(
    preset: ValidationPreset,
    all_gaps: list[GapInfo],
    id_breaks: tuple[Discontinuity, ...],
    summaries: Mapping[GapTier, TierSummary],
) -> None:
    over = [g for g in all_gaps if g.tier >= GapTier.MARKET_MOVE and g.gap_pct > preset.tolerance_pct]
    if not over and not id_breaks:
        return
    parts = []
    if over:
        worst = max(over, key=lambda g: g.gap_pct)
        breakdown = {t.name: s.count for t, s in summaries.items() if s.count}
        parts.append(
            f"Continuity tolerance exceeded: {len(over)} gap(s) > {preset.tolerance_pct:.4%}. "
            f"Max gap: {worst.gap_pct:.4%} at bar {worst.bar_index}. Tier breakdown: {breakdown}"
        )
    if id_breaks:
        parts.append(
            f"{len(id_breaks)} broken junction(s), first: bar {id_breaks[0].bar_index}: {id_breaks[0].detail}"
        )
    message = " ".join(parts)
    details = [
        {
            "bar_index": g.bar_index,
            "prev_close": g.prev_close,
            "curr_open": g.curr_open,
            "gap_pct": g.gap_pct,
            "tier": g.tier.name,
        }
        for g in over
    ] + [{"bar_index": d.bar_index, "kind": d.kind, "detail": d.detail} for d in id_breaks]
    if preset.mode == "error":
        raise ContinuityError(message, details)
    if preset.mode == "warn":
        warnings.warn(message, ContinuityWarning, stacklevel=3)


__all__ = [
    "ASSET_CLASS_MULTIPLIERS",
    "CONTINUITY_TOLERANCE_PCT",
    "DEFAULT_CONTINUITY_TOLERANCE",
    "JUNCTION_COLUMNS",
    "VALIDATION_PRESETS",
    "AssetClass",
    "ContinuityResult",
    "Discontinuity",
    "GapInfo",
    "GapTier",
    "TierSummary",
    "TierThresholds",
    "TieredValidationResult",
    "ValidationPreset",
    "detect_asset_class",
    "threshold_fraction",
    "validate_continuity",
    "validate_continuity_tiered",
]
