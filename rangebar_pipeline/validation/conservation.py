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
        repeated = (ids == ids.shift(1)) | (ids == ids.shift(-1))
        return cls(ordered, prefix, repeated.fill_null(False))

    @property
    def height(self) -> int:
        return self.ordered.height


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
    ordered = prepared.ordered
    checks = _coverage_checks(segments, prepared, carried, frame.height)
    tick_volume = Decimal(int(ordered["q"].sum() or 0)) / SCALE
    carried_raw = _raw(carried["volume"]) if carried is not None else 0
    bar_volume = Decimal(int(segments["volume_raw"].sum() or 0) - carried_raw) / SCALE
    return ConservationResult(
        tuple(checks), frame.height, ordered.height, has_incomplete, tick_volume, bar_volume
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
    ticks = prepared.ordered
    ids = ticks["agg_trade_id"]
    n_ticks = ticks.height
    out: list[CheckOutcome] = []
    dup = prepared.duplicated
    out.append(
        failed_check(
            "tick_ids_unique",
            f"expected unique tick agg_trade_id; {int(dup.sum())} duplicated, "
            f"e.g. {ids.filter(dup).head(3).to_list()}",
            violations=int(dup.sum()),
        )
        if dup.any()
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
        return [*out, rest[0], coverage, *rest[1:], _totals(segments, ticks, carried)]

    clip = max(n_ticks - 1, 0)
    pos_first = ids.search_sorted(segments["first"], side="left")
    pos_last = ids.search_sorted(segments["last"], side="left")
    first_found = (
        (pos_first < n_ticks) & (ids.gather(pos_first.clip(0, clip)) == segments["first"])
        if n_ticks
        else pl.Series([False] * segments.height)
    )
    last_found = (
        (pos_last < n_ticks) & (ids.gather(pos_last.clip(0, clip)) == segments["last"])
        if n_ticks
        else pl.Series([False] * segments.height)
    )
    start = pos_first.cast(pl.Int64)
    end = pos_last.cast(pl.Int64)
    if carried is not None:
        first_found[0] = True  # the carried bar's first id lies in the previous partition
        start[0] = 0
        if segments["last"][0] == int(carried["last_agg_trade_id"]):
            # No tick of this partition joined it (e.g. a weekend day without quotes): it ends there too.
            last_found[0] = True
            end[0] = -1
    work = segments.with_columns(
        start=start, end=end, first_found=first_found, last_found=last_found
    ).with_row_index("i")

    missing_ids = work.filter(~pl.col("first_found") | ~pl.col("last_found"))
    out.append(
        _rows_check(
            "ids_in_ticks",
            missing_ids,
            bar_count,
            "every bar's first and last agg id among the ticks",
            lambda r: (
                f"first {r['first']}{'' if r['first_found'] else ' (absent)'}, "
                f"last {r['last']}{'' if r['last_found'] else ' (absent)'}"
            ),
        )
    )

    problems = []
    if carried is not None and int(carried["first_agg_trade_id"]) != segments["first"][0]:
        problems.append(
            f"bar 0 should continue the carried-in bar starting at id {carried['first_agg_trade_id']}, "
            f"found first id {segments['first'][0]}"
        )
    if carried is None and n_ticks and work["start"][0] != 0:
        problems.append(
            f"{work['start'][0]} tick(s) before bar 0 (first tick id {ids[0]}, bar 0 starts at "
            f"{segments['first'][0]})"
        )
    last_end = work["end"][-1]
    if n_ticks and last_end != n_ticks - 1:
        trailing = n_ticks - 1 - int(last_end)
        hint = "" if segments.height > bar_count else "; pass incomplete_bar (the trailing bar)"
        problems.append(
            f"{trailing} tick(s) after {_label(segments.height - 1, bar_count)} "
            f"(last tick id {ids[-1]}, covered up to {segments['last'][-1]}){hint}"
        )
    out.append(
        failed_check(
            "ticks_covered", "expected every tick covered; " + "; ".join(problems), violations=len(problems)
        )
        if problems
        else passed_check("ticks_covered")
    )

    gaps = work.with_columns(prev_end=pl.col("end").shift(1), prev_last=pl.col("last").shift(1)).filter(
        pl.col("start") != pl.col("prev_end") + 1
    )
    out.append(
        _rows_check(
            "ids_contiguous",
            gaps,
            bar_count,
            "each bar to start at the tick right after the previous bar's last tick",
            lambda r: (
                f"previous bar ends at id {r['prev_last']}, this one starts at id {r['first']} "
                f"({int(r['start']) - int(r['prev_end']) - 1:+d} tick(s) between)"
            ),
        )
    )

    carried_records = int(carried["agg_record_count"]) if carried is not None else 0
    carried_raw = _raw(carried["volume"]) if carried is not None else 0
    prefix = prepared.prefix
    s_idx = work["start"].clip(0, n_ticks)
    e_idx = (work["end"] + 1).clip(0, n_ticks)
    work = work.with_columns(
        tick_records=(e_idx - s_idx).clip(0, None),
        tick_raw=(prefix.gather(e_idx) - prefix.gather(s_idx)),
    ).with_columns(
        tick_records=pl.col("tick_records") + pl.when(pl.col("i") == 0).then(carried_records).otherwise(0),
        tick_raw=pl.col("tick_raw")
        + pl.when(pl.col("i") == 0).then(pl.lit(carried_raw, pl.Int128)).otherwise(0),
    )
    out.append(
        _rows_check(
            "record_counts_match",
            work.filter(pl.col("records") != pl.col("tick_records")),
            bar_count,
            "agg_record_count == number of ticks in the bar's id range",
            lambda r: f"agg_record_count {r['records']}, ticks {r['tick_records']}",
        )
    )
    vol_bad = work.filter(
        (pl.col("volume_raw") - pl.col("tick_raw")).abs() > raw_tolerance(pl.col("volume_raw"))
    )
    out.append(
        _rows_check(
            "volume_conserved",
            vol_bad,
            bar_count,
            "bar volume == sum of its ticks' quantities (fixed point, 1e-8 units)",
            lambda r: (
                f"volume {Decimal(int(r['volume_raw'])) / SCALE}, "
                f"ticks {Decimal(int(r['tick_raw'])) / SCALE} "
                f"(diff {int(r['volume_raw']) - int(r['tick_raw']):+d} units)"
            ),
        )
    )
    out.append(_totals(segments, ticks, carried))
    return out


def _raw(value: Any) -> int:
    return round(Decimal(repr(float(value))) * SCALE)


def _totals(segments: pl.DataFrame, ticks: pl.DataFrame, carried: Mapping[str, Any] | None) -> CheckOutcome:
    records = int(segments["records"].sum() or 0) - (int(carried["agg_record_count"]) if carried else 0)
    bar_raw = int(segments["volume_raw"].sum() or 0) - (_raw(carried["volume"]) if carried else 0)
    tick_raw = int(ticks["q"].sum() or 0) if ticks.height else 0
    tolerance = max(1, segments.height) * (abs(bar_raw) >> 49)
    problems = []
    if records != ticks.height:
        problems.append(f"summed agg_record_count {records} != tick count {ticks.height}")
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
    name: str, bad: pl.DataFrame, bar_count: int, rule: str, describe: Callable[[dict[str, Any]], str]
) -> CheckOutcome:
    if bad.height == 0:
        return passed_check(name)
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
