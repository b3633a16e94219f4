"""The feature-table gate: the manifest's column rules in polars, the table suite in great-expectations.

The suite has one expectation per rule (:func:`build_expectations` returns it whole, as GX objects,
for export). :func:`validate_expectations` splits it: the per-column rules of the manifest (dtype,
no nulls or NaN, value range) are judged in one vectorised polars pass
(:mod:`~rangebar_pipeline.validation.column_rules`, GX's semantics on the pandas frame), and GX
validates the table-level expectations (column set, row count, ``high >= low``, unique bars) in
memory on an ephemeral context. GX's cost per expectation (building its metric graph) is what the
split saves: a validation costs tens of milliseconds, however many manifest columns the table has.

Great Expectations is imported lazily (the import costs seconds); the context, the pandas data
asset and each suite are built once per process and reused. The result is summarised in one
:class:`ExpectationsResult`, one check per expectation, in the suite's order.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

from rangebar_pipeline._lazy import warm_up as warm_up_in_background
from rangebar_pipeline._lazy import warmed
from rangebar_pipeline.schema import BAR_SCHEMA, FEATURE_COLUMNS
from rangebar_pipeline.validation._frames import as_bar_frame
from rangebar_pipeline.validation.column_rules import VALUE_RANGES, column_rules, evaluate_rules
from rangebar_pipeline.validation.results import CheckedResult, CheckOutcome, JSONValue, json_safe

#: Columns a feature table must have (the golden reference series have exactly these and more).
REQUIRED_COLUMNS: Final[tuple[str, ...]] = (
    "open_time",
    "close_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    *FEATURE_COLUMNS,
)
#: Columns that identify a series in a multi-series feature table (used in the uniqueness key).
SERIES_COLUMNS: Final[tuple[str, ...]] = ("source", "market", "symbol", "threshold_decimal_bps")


@dataclass(frozen=True, slots=True)
class ExpectationsResult(CheckedResult):
    """Outcome of :func:`validate_expectations`: one check per expectation (``type:column``)."""

    suite_name: str
    evaluated: int
    successful: int
    row_count: int

    @property
    def success(self) -> bool:
        """GX's name for :attr:`passed`."""
        return self.passed

    def to_dict(self) -> dict[str, JSONValue]:
        """Plain-dict form: success, counts and every expectation's outcome."""
        return {
            "success": self.passed,
            "suite_name": self.suite_name,
            "evaluated_expectations": self.evaluated,
            "successful_expectations": self.successful,
            "row_count": self.row_count,
            "failures": list[JSONValue](self.failures),
            "expectations": [c.to_dict() for c in self.checks],
        }

    def to_metadata(self) -> dict[str, JSONValue]:
        """JSON-able metadata for a Dagster check."""
        meta = self._checks_metadata()
        meta.pop("checks")
        meta.update(
            suite_name=self.suite_name,
            evaluated_expectations=self.evaluated,
            successful_expectations=self.successful,
            row_count=self.row_count,
        )
        return meta


def build_expectations(
    columns: Sequence[str],
    *,
    required_columns: Sequence[str] = REQUIRED_COLUMNS,
    series_columns: Sequence[str] = (),
    min_rows: int = 0,
    max_rows: int | None = None,
    table_only: bool = False,
) -> list[Any]:
    """The expectations for a feature table with ``columns`` (GX expectation objects), in order.

    Column set (``required_columns`` present) and the row count in ``[min_rows, max_rows]``; for
    every manifest column present (bar, feature, lookback and intra columns): its dtype and no
    nulls (columns the manifest marks nullable: neither, their nulls are legitimate) and its value
    range (:func:`~rangebar_pipeline.validation.column_rules.column_rules`); ``high >= low`` and
    uniqueness of (series, close_time, first id) - or of the whole bar without ids.

    ``table_only`` leaves the per-column rules out: the part :func:`validate_expectations` runs
    through GX (it judges the column rules in polars).
    """
    gxe: Any = importlib.import_module("great_expectations.expectations")
    head, tail = _table_expectations(
        gxe,
        columns,
        required_columns=required_columns,
        series_columns=series_columns,
        min_rows=min_rows,
        max_rows=max_rows,
    )
    rules = [] if table_only else [r.expectation() for r in column_rules(columns)]
    return [*head, *rules, *tail]


def _table_expectations(
    gxe: Any,
    columns: Sequence[str],
    *,
    required_columns: Sequence[str],
    series_columns: Sequence[str],
    min_rows: int,
    max_rows: int | None,
) -> tuple[list[Any], list[Any]]:
    """The table-level expectations that precede the column rules and those that follow them."""
    head = [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(required_columns), exact_match=False),
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=max_rows),
    ]
    tail = []
    if {"high", "low"} <= set(columns):
        tail.append(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="low", or_equal=True)
        )
    # Without trade ids no column pair is a key (zero-duration bars share close and open times), so
    # the whole bar is: a duplicated row is caught either way.
    present = [c for c in BAR_SCHEMA if c in columns]
    ident = (
        ["first_agg_trade_id"]
        if "first_agg_trade_id" in columns
        else [c for c in present if c != "close_time"]
    )
    key = [*series_columns, "close_time", *ident]
    if set(key) <= set(columns):
        tail.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=key))
    return head, tail


_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


def _batch_definition() -> Any:
    if "batch_definition" not in _STATE:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = context.data_sources.add_pandas("rangebar").add_dataframe_asset("feature_table")
        _STATE["context"] = context
        _STATE["batch_definition"] = asset.add_batch_definition_whole_dataframe("whole_frame")
    return _STATE["batch_definition"]


def prepare() -> None:
    """Import great-expectations and build its context (seconds, once per process)."""
    with _LOCK:
        _batch_definition()


def warm_up() -> Future[object]:
    """Import great-expectations and build its context on the background thread, so that the
    seconds the first validation of a process would pay overlap other work."""
    return warm_up_in_background("great_expectations", prepare)


@dataclass(frozen=True, slots=True)
class _TableSuite:
    """The GX suite of the table-level expectations, with their check names in suite order and how
    many of them precede the column rules."""

    suite: Any
    names: tuple[str, ...]
    head: int


def _suite(columns: Sequence[str], options: Mapping[str, Any]) -> _TableSuite:
    key = repr((tuple(columns), sorted(options.items())))
    suites: dict[str, _TableSuite] = _STATE.setdefault("suites", {})
    if key not in suites:
        import great_expectations as gx

        gxe: Any = importlib.import_module("great_expectations.expectations")
        head, tail = _table_expectations(gxe, columns, **options)
        suite = gx.ExpectationSuite(name=f"rangebar_feature_table_{len(suites)}")
        for expectation in (*head, *tail):
            suite.add_expectation(expectation)
        names = tuple(_check_name(e.configuration) for e in (*head, *tail))
        suites[key] = _TableSuite(_STATE["context"].suites.add(suite), names, len(head))
    return suites[key]


def validate_expectations(
    bars: Any,
    *,
    required_columns: Sequence[str] = REQUIRED_COLUMNS,
    series_columns: Sequence[str] = (),
    min_rows: int = 0,
    max_rows: int | None = None,
) -> ExpectationsResult:
    """Run the feature-table suite on ``bars`` (polars or pandas) in memory.

    The manifest's column rules are judged in one polars pass, the table-level expectations by GX
    (see the module docstring); the checks come in :func:`build_expectations`' order.
    ``series_columns`` (e.g. ``("symbol", "threshold_decimal_bps")``) join the uniqueness key of a
    multi-series table. Thread-safe; the first call in a process pays the GX import (seconds).
    """
    frame = as_bar_frame(bars)
    options: dict[str, Any] = {
        "required_columns": tuple(required_columns),
        "series_columns": tuple(series_columns),
        "min_rows": min_rows,
        "max_rows": max_rows,
    }
    column_checks = evaluate_rules(frame, column_rules(frame.columns))
    pandas_frame = frame.to_pandas()
    warmed("great_expectations")  # the warm-up importing it right now: after it
    with _LOCK:
        batch_definition = _batch_definition()
        table = _suite(frame.columns, options)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": pandas_frame})
        # A boolean pass is ~2x cheaper than a summary; only failed expectations are re-run for details.
        validation = batch.validate(table.suite, result_format="BOOLEAN_ONLY")
        results = [
            r if r.success else batch.validate(r.expectation_config.to_domain_obj(), result_format="SUMMARY")
            for r in validation.results
        ]
    by_name = {o.name: o for o in map(_outcome, results)}
    table_checks = [by_name[name] for name in table.names]
    stats = validation.statistics
    return ExpectationsResult(
        (*table_checks[: table.head], *column_checks, *table_checks[table.head :]),
        table.suite.name,
        int(stats["evaluated_expectations"]) + len(column_checks),
        int(stats["successful_expectations"]) + sum(c.passed for c in column_checks),
        frame.height,
    )


def _check_name(config: Any) -> str:
    """``type:target`` of a GX expectation configuration (the column, columns or ``table``)."""
    kwargs = config.kwargs
    target = (
        kwargs.get("column")
        or _short_list(kwargs.get("column_list"))
        or (f"{kwargs['column_A']}>{kwargs['column_B']}" if "column_A" in kwargs else "table")
    )
    return f"{config.type}:{target}"


def _outcome(result: Any) -> CheckOutcome:
    config = result.expectation_config
    kwargs = config.kwargs
    name = _check_name(config)
    if result.success:
        return CheckOutcome(name, "passed")
    info = result.exception_info or {}
    messages = [v.get("exception_message") for v in info.values() if isinstance(v, Mapping)]
    if info.get("raised_exception"):
        messages.append(info.get("exception_message"))
    errors = [m for m in messages if m]
    res = result.result or {}
    if errors:
        detail = f"expectation raised: {errors[0]}"
    else:
        found = {k: json_safe(res[k]) for k in ("observed_value", "unexpected_count", "details") if k in res}
        found |= {
            k: json_safe(res[k][:3])
            for k in ("partial_unexpected_list", "partial_unexpected_index_list")
            if res.get(k)
        }
        detail = f"expected {config.type} {json_safe(_public_kwargs(kwargs))}; found {found}"
    rows = tuple(int(i) for i in (res.get("partial_unexpected_index_list") or [])[:3] if isinstance(i, int))
    return CheckOutcome(name, "failed", detail, int(res.get("unexpected_count") or 1), rows)


def _short_list(columns: list[str] | None) -> str | None:
    if not columns:
        return None
    return ",".join(columns) if len(columns) <= 3 else ",".join(columns[:2]) + f",...({len(columns)} columns)"


def _public_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in ("batch_id", "result_format")}


__all__ = [
    "REQUIRED_COLUMNS",
    "SERIES_COLUMNS",
    "VALUE_RANGES",
    "ExpectationsResult",
    "build_expectations",
    "prepare",
    "validate_expectations",
    "warm_up",
]
