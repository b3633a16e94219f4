"""Volume and trade-id conservation: the bars of a partition cover each of its ticks exactly once.

With the batch rule every tick belongs to exactly one bar: the closed bars, then the trailing
(incomplete) bar. A bar carried in from the previous partition (its trailing bar, continued by
this partition's first bar) is passed as ``carried_in`` so that its part is subtracted.
Volumes are compared in fixed point (1e-8 units) against the ticks' exact decimal quantities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl

from rangebar_pipeline.exceptions import MissingColumnError
from rangebar_pipeline.schema import SCALE
from rangebar_pipeline.validation._frames import SHOWN_ROWS, as_bar_frame, missing, raw_tolerance, to_raw
from rangebar_pipeline.validation.results import (
    CheckedResult,
    CheckOutcome,
    JSONValue,
    failed_check,
    not_applicable,
    passed_check,
)

_BAR_NEEDS = ("first_agg_trade_id", "last_agg_trade_id", "agg_record_count", "volume")
_CHECK_NAMES = (
    "tick_ids_unique",
    "ids_in_ticks",
    "ticks_covered",
    "ids_contiguous",
    "record_counts_match",
    "volume_conserved",
    "totals_match",
)


@dataclass(frozen=True, slots=True)
class ConservationResult(CheckedResult):
    """Outcome of :func:`validate_conservation`."""

    bar_count: int
    tick_count: int
    has_incomplete_bar: bool
    tick_volume: Decimal | None
    bar_volume: Decimal | None

    def to_dict(self) -> dict[str, JSONValue]:
        """Plain-dict form: counts, volumes (as decimal strings) and every check."""
        return {
            "passed": self.passed,
            "bar_count": self.bar_count,
            "tick_count": self.tick_count,
            "has_incomplete_bar": self.has_incomplete_bar,
            "tick_volume": None if self.tick_volume is None else str(self.tick_volume),
            "bar_volume": None if self.bar_volume is None else str(self.bar_volume),
            "failures": list[JSONValue](self.failures),
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_metadata(self) -> dict[str, JSONValue]:
        """JSON-able metadata for a Dagster check."""
        meta = self._checks_metadata()
        meta.update(
            bar_count=self.bar_count,
            tick_count=self.tick_count,
            has_incomplete_bar=self.has_incomplete_bar,
            tick_volume=None if self.tick_volume is None else str(self.tick_volume),
            bar_volume=None if self.bar_volume is None else str(self.bar_volume),
        )
        return meta


def _one_row(bar: Mapping[str, Any] | pl.DataFrame, what: str) -> dict[str, Any]:
    row = dict(bar) if isinstance(bar, Mapping) else as_bar_frame(bar).row(0, named=True)
    if absent := [c for c in _BAR_NEEDS if row.get(c) is None]:
        raise MissingColumnError(f"{what} lacks {absent}; expected the keys {list(_BAR_NEEDS)}")
    return row


def _tick_quantities(ticks: pl.DataFrame) -> pl.Expr:
    dtype = ticks.schema["quantity"]
    if isinstance(dtype, pl.Decimal):
        return pl.col("quantity").cast(pl.Decimal(38, 8)).to_physical()
    return to_raw("quantity")


@dataclass(frozen=True, slots=True)
class ConservationTicks:
    """The per-tick half of :func:`validate_conservation`, prepared once for a partition's ticks.

    Ids ascending with their exact quantities (1e-8 units). Every threshold of a day checks against
    the same ticks, so a pipeline prepares this once per day and passes it for each threshold.
    """

    ordered: pl.DataFrame
    #: Exclusive prefix sums of ``q`` (length ``height + 1``), exact in Int128.
    prefix: pl.Series
    #: Ids that occur more than once (ascending ids: equal neighbours).
    duplicated: pl.Series
    #: ``ordered``'s ids as a NumPy array (for the per-bar index arithmetic).
    ids: np.ndarray

    @classmethod
    def of(cls, ticks: pl.DataFrame | pl.LazyFrame) -> ConservationTicks:
        """Prepare ``ticks`` (``schema.TICK_SCHEMA``: ``agg_trade_id``, ``quantity``)."""
        frame = ticks.collect() if isinstance(ticks, pl.LazyFrame) else ticks
        if absent := missing(frame, ["agg_trade_id", "quantity"]):
            raise MissingColumnError(f"ticks lack {absent}; expected schema.TICK_SCHEMA columns")
        ordered = frame.select(pl.col("agg_trade_id").cast(pl.Int64), _tick_quantities(frame).alias("q"))
        if not ordered["agg_trade_id"].is_sorted():
            ordered = ordered.sort("agg_trade_id")
        ids = ordered["agg_trade_id"]
        prefix = pl.concat([pl.Series([0], dtype=pl.Int128), ordered["q"].cast(pl.Int128).cum_sum()])
        repeated = ((ids == ids.shift(1)) | (ids == ids.shift(-1))).fill_null(False)
        return cls(ordered, prefix, repeated, ids.to_numpy())

    @property
    def height(self) -> int:
        return self.ordered.height

    @property
    def duplicates(self) -> int:
        """How many ticks have a repeated id."""
        return int(self.duplicated.sum())

    @property
    def total(self) -> int:
        """The sum of all quantities (1e-8 units)."""
        return int(self.prefix[-1])


def validate_conservation(
    bars: Any,
    ticks: pl.DataFrame | pl.LazyFrame | ConservationTicks,
    *,
    incomplete_bar: Mapping[str, Any] | pl.DataFrame | None = None,
    carried_in: Mapping[str, Any] | pl.DataFrame | None = None,
) -> ConservationResult:
    """Check that ``bars`` (+ ``incomplete_bar``) cover every tick of ``ticks`` exactly once.

    ``ticks``: the partition's ticks in ``schema.TICK_SCHEMA`` (``agg_trade_id``, ``quantity``), or
    the same prepared once with :meth:`ConservationTicks.of` (several thresholds of one day).
    Per bar: its first and last agg ids are ticks, the next bar starts at the tick right after its
    last one (tick ids may have gaps only where the ticks do), ``agg_record_count`` equals its
    number of ticks and its volume the sum of their quantities (fixed point). ``carried_in`` is the
    previous partition's trailing bar when the first bar continues it. Without ids in the bars
    every check is ``not_applicable``.
    """
    frame = as_bar_frame(bars)
    prepared = ticks if isinstance(ticks, ConservationTicks) else ConservationTicks.of(ticks)
    has_incomplete = incomplete_bar is not None
    if absent := missing(frame, _BAR_NEEDS):
        reason = f"bars lack {absent} (no trade ids to match against the ticks)"
        return ConservationResult(
            tuple(not_applicable(n, reason) for n in _CHECK_NAMES),
            frame.height,
            prepared.height,
            has_incomplete,
            None,
            None,
        )
    segments = frame.select(
        pl.col("first_agg_trade_id").cast(pl.Int64).alias("first"),
        pl.col("last_agg_trade_id").cast(pl.Int64).alias("last"),
        pl.col("agg_record_count").cast(pl.Int64).alias("records"),
        to_raw("volume").alias("volume_raw"),
    )
    if incomplete_bar is not None:
        inc = _one_row(incomplete_bar, "incomplete_bar")
        segments = pl.concat([segments, _segment_row(inc)], how="vertical_relaxed")
    carried = _one_row(carried_in, "carried_in") if carried_in is not None else None
    checks = _coverage_checks(segments, prepared, carried, frame.height)
    tick_volume = Decimal(prepared.total) / SCALE
    carried_raw = _raw(carried["volume"]) if carried is not None else 0
    bar_volume = Decimal(int(segments["volume_raw"].sum() or 0) - carried_raw) / SCALE
    return ConservationResult(
        tuple(checks), frame.height, prepared.height, has_incomplete, tick_volume, bar_volume
    )


def _segment_row(bar: Mapping[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "first": [int(bar["first_agg_trade_id"])],
            "last": [int(bar["last_agg_trade_id"])],
            "records": [int(bar["agg_record_count"])],
            "volume": [float(bar["volume"])],
        }
    ).select("first", "last", "records", to_raw("volume").alias("volume_raw"))


def _label(i: int, bar_count: int) -> str:
    return "incomplete bar" if i == bar_count else f"bar {i}"


def _coverage_checks(
    segments: pl.DataFrame, prepared: ConservationTicks, carried: Mapping[str, Any] | None, bar_count: int
) -> list[CheckOutcome]:
    """The per-bar checks. Positions and counts are NumPy index arithmetic on the ticks' sorted ids
    (a day's six thresholds made ~25 polars calls each, ~0.2 ms apiece whatever the size); volumes
    stay exact Int128 in polars. Rows are gathered into frames only for a failing check."""
    ids = prepared.ids
    n_ticks = len(ids)
    out: list[CheckOutcome] = []
    out.append(
        failed_check(
            "tick_ids_unique",
            f"expected unique tick agg_trade_id; {prepared.duplicates} duplicated, "
            f"e.g. {prepared.ordered['agg_trade_id'].filter(prepared.duplicated).head(3).to_list()}",
            violations=prepared.duplicates,
        )
        if prepared.duplicates
        else passed_check("tick_ids_unique")
    )
    if segments.height == 0:
        ok = n_ticks == 0
        coverage = (
            passed_check("ticks_covered")
            if ok
            else failed_check("ticks_covered", f"expected bars covering {n_ticks} tick(s), found no bars")
        )
        rest = [
            passed_check(n)
            for n in ("ids_in_ticks", "ids_contiguous", "record_counts_match", "volume_conserved")
        ]
        return [*out, rest[0], coverage, *rest[1:], _totals(segments, prepared, carried)]

    first = segments["first"].to_numpy()
    last = segments["last"].to_numpy()
    clip = max(n_ticks - 1, 0)
    start = np.searchsorted(ids, first, side="left").astype(np.int64)
    end = np.searchsorted(ids, last, side="left").astype(np.int64)
    if n_ticks:
        first_found = (start < n_ticks) & (ids[np.minimum(start, clip)] == first)
        last_found = (end < n_ticks) & (ids[np.minimum(end, clip)] == last)
    else:
        first_found = np.zeros(segments.height, dtype=bool)
        last_found = np.zeros(segments.height, dtype=bool)
    if carried is not None:
        first_found[0] = True  # the carried bar's first id lies in the previous partition
        start[0] = 0
        if last[0] == int(carried["last_agg_trade_id"]):
            # No tick of this partition joined it (e.g. a weekend day without quotes): it ends there too.
            last_found[0] = True
            end[0] = -1
    work = segments.with_columns(
        start=pl.Series(start), end=pl.Series(end), first_found=pl.Series(first_found),
        last_found=pl.Series(last_found),
    ).with_row_index("i")  # fmt: skip

    out.append(
        _rows_check(
            "ids_in_ticks",
            work,
            ~first_found | ~last_found,
            bar_count,
            rule="every bar's first and last agg id among the ticks",
            describe=lambda r: (
                f"first {r['first']}{'' if r['first_found'] else ' (absent)'}, "
                f"last {r['last']}{'' if r['last_found'] else ' (absent)'}"
            ),
        )
    )

    problems = []
    if carried is not None and int(carried["first_agg_trade_id"]) != first[0]:
        problems.append(
            f"bar 0 should continue the carried-in bar starting at id {carried['first_agg_trade_id']}, "
            f"found first id {first[0]}"
        )
    if carried is None and n_ticks and start[0] != 0:
        problems.append(
            f"{start[0]} tick(s) before bar 0 (first tick id {ids[0]}, bar 0 starts at {first[0]})"
        )
    last_end = end[-1]
    if n_ticks and last_end != n_ticks - 1:
        trailing = n_ticks - 1 - int(last_end)
        hint = "" if segments.height > bar_count else "; pass incomplete_bar (the trailing bar)"
        problems.append(
            f"{trailing} tick(s) after {_label(segments.height - 1, bar_count)} "
            f"(last tick id {ids[-1]}, covered up to {last[-1]}){hint}"
        )
    out.append(
        failed_check(
            "ticks_covered", "expected every tick covered; " + "; ".join(problems), violations=len(problems)
        )
        if problems
        else passed_check("ticks_covered")
    )

    gaps = np.zeros(segments.height, dtype=bool)
    gaps[1:] = start[1:] != end[:-1] + 1
    neighbours = [pl.col("end").shift(1).alias("prev_end"), pl.col("last").shift(1).alias("prev_last")]
    out.append(
        _rows_check(
            "ids_contiguous",
            work.with_columns(neighbours) if gaps.any() else work,
            gaps,
            bar_count,
            rule="each bar to start at the tick right after the previous bar's last tick",
            describe=lambda r: (
                f"previous bar ends at id {r['prev_last']}, this one starts at id {r['first']} "
                f"({int(r['start']) - int(r['prev_end']) - 1:+d} tick(s) between)"
            ),
        )
    )

    s_idx = np.clip(start, 0, n_ticks)
    e_idx = np.clip(end + 1, 0, n_ticks)
    tick_records = np.clip(e_idx - s_idx, 0, None)
    tick_raw = prepared.prefix.gather(e_idx) - prepared.prefix.gather(s_idx)
    if carried is not None:  # bar 0 holds the carried bar's records and volume too
        tick_records[0] += int(carried["agg_record_count"])
        tick_raw = tick_raw.scatter(0, int(tick_raw[0]) + _raw(carried["volume"]))
    work = work.with_columns(tick_records=pl.Series(tick_records), tick_raw=tick_raw)
    out.append(
        _rows_check(
            "record_counts_match",
            work,
            segments["records"].to_numpy() != tick_records,
            bar_count,
            rule="agg_record_count == number of ticks in the bar's id range",
            describe=lambda r: f"agg_record_count {r['records']}, ticks {r['tick_records']}",
        )
    )
    off = (pl.col("volume_raw") - pl.col("tick_raw")).abs() > raw_tolerance(pl.col("volume_raw"))
    out.append(
        _rows_check(
            "volume_conserved",
            work,
            work.select(off).to_series().to_numpy(),
            bar_count,
            rule="bar volume == sum of its ticks' quantities (fixed point, 1e-8 units)",
            describe=lambda r: (
                f"volume {Decimal(int(r['volume_raw'])) / SCALE}, "
                f"ticks {Decimal(int(r['tick_raw'])) / SCALE} "
                f"(diff {int(r['volume_raw']) - int(r['tick_raw']):+d} units)"
            ),
        )
    )
    out.append(_totals(segments, prepared, carried))
    return out


def _raw(value: Any) -> int:
    return round(Decimal(repr(float(value))) * SCALE)


def _totals(
    segments: pl.DataFrame, prepared: ConservationTicks, carried: Mapping[str, Any] | None
) -> CheckOutcome:
    records = int(segments["records"].sum() or 0) - (int(carried["agg_record_count"]) if carried else 0)
    bar_raw = int(segments["volume_raw"].sum() or 0) - (_raw(carried["volume"]) if carried else 0)
    tick_raw = prepared.total
    tolerance = max(1, segments.height) * (abs(bar_raw) >> 49)
    problems = []
    if records != prepared.height:
        problems.append(f"summed agg_record_count {records} != tick count {prepared.height}")
    if abs(bar_raw - tick_raw) > tolerance:
        problems.append(
            f"summed volume {Decimal(bar_raw) / SCALE} != tick volume {Decimal(tick_raw) / SCALE} "
            f"(diff {bar_raw - tick_raw:+d} units of 1e-8)"
        )
    if problems:
        return failed_check(
            "totals_match",
            "expected bars to sum to the ticks; " + "; ".join(problems),
            violations=len(problems),
        )
    return passed_check("totals_match")


def _rows_check(
    name: str,
    work: pl.DataFrame,
    mask: np.ndarray,
    bar_count: int,
    *,
    rule: str,
    describe: Callable[[dict[str, Any]], str],
) -> CheckOutcome:
    """``name`` passed, or failed with the rows of ``work`` where ``mask`` holds."""
    if not mask.any():
        return passed_check(name)
    bad = work.filter(pl.Series(mask))
    rows = [int(i) for i in bad["i"].head(SHOWN_ROWS)]
    shown = "; ".join(
        f"{_label(int(r['i']), bar_count)}: {describe(r)}" for r in bad.head(SHOWN_ROWS).iter_rows(named=True)
    )
    return failed_check(
        name,
        f"expected {rule}; {bad.height} violation(s), first at {shown}",
        violations=bad.height,
        rows=rows,
    )


__all__ = ["ConservationResult", "ConservationTicks", "validate_conservation"]
