"""The manifest's per-column rules of the feature table, evaluated in one vectorised polars pass.

Each rule is one great-expectations expectation (:meth:`ColumnRule.expectation` builds it, for the
exported suite), but :func:`evaluate_rules` judges them all with one polars ``select`` instead of
GX's per-expectation metric graph, with GX's semantics on the pandas copy of the frame it used to
validate:

- ``expect_column_type_to_be``: the pandas dtype the column converts to (an integer column with
  nulls becomes ``float64``, a boolean one ``object``) equals the expected one;
- ``expect_column_values_to_not_be_null``: no null and, in a float column, no NaN;
- ``expect_column_values_to_be_between``: every value that is neither null nor NaN lies in the
  range (``strict_min``: above the minimum); a non-numeric column with values fails.

A failure's outcome carries GX's unexpected count, the first rows and values, and a detail in the
form the GX outcomes use (``expected <type> {kwargs}; found {...}``).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import polars as pl

from rangebar_pipeline.manifest import COLUMNS
from rangebar_pipeline.schema import BAR_SCHEMA, GROUP_SCHEMAS
from rangebar_pipeline.validation._frames import SHOWN_ROWS
from rangebar_pipeline.validation.results import CheckOutcome, JSONValue, json_safe, passed_check

RuleType: TypeAlias = Literal[
    "expect_column_type_to_be", "expect_column_values_to_not_be_null", "expect_column_values_to_be_between"
]

#: Inclusive value ranges per column: (min, max, strict_min), from ``features.toml``.
VALUE_RANGES: Final[Mapping[str, tuple[float | None, float | None, bool]]] = {
    c.name: c.value_range for c in COLUMNS if c.value_range is not None
}
#: The pandas dtype (GX validates a pandas frame) of each manifest dtype.
PANDAS_TYPES: Final[Mapping[str, str]] = {
    "Float64": "float64",
    "Int64": "int64",
    "Datetime(time_unit='us', time_zone='UTC')": "datetime64[us, UTC]",
}
_GX_CLASSES: Final[Mapping[RuleType, str]] = {
    "expect_column_type_to_be": "ExpectColumnTypeToBe",
    "expect_column_values_to_not_be_null": "ExpectColumnValuesToNotBeNull",
    "expect_column_values_to_be_between": "ExpectColumnValuesToBeBetween",
}
#: GX's message when a range meets strings (its map path compares value by value).
_STRING_RANGE_ERROR: Final = (
    "Column values, min_value, and max_value must either be None or of the same type."
)


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """One per-column rule: a GX expectation type and its arguments (as GX reports them)."""

    type: RuleType
    kwargs: Mapping[str, Any]

    @property
    def column(self) -> str:
        """The column the rule is about."""
        return str(self.kwargs["column"])

    @property
    def name(self) -> str:
        """The check name, ``type:column`` (as for the GX outcomes)."""
        return f"{self.type}:{self.column}"

    def expectation(self) -> Any:
        """The rule as a GX expectation object (imports great-expectations)."""
        import importlib

        gxe: Any = importlib.import_module("great_expectations.expectations")
        return getattr(gxe, _GX_CLASSES[self.type])(**self.kwargs)


def column_rules(columns: Collection[str]) -> list[ColumnRule]:
    """The rules of the manifest columns present in ``columns``, in manifest order: dtype and no
    nulls (unless the manifest marks the column nullable: its nulls are legitimate), value range."""
    dtypes = BAR_SCHEMA | GROUP_SCHEMAS
    out: list[ColumnRule] = []
    for entry in COLUMNS:
        column = entry.name
        if column not in columns:
            continue
        if not entry.nullable:
            out.append(
                ColumnRule(
                    "expect_column_type_to_be",
                    {"column": column, "type_": PANDAS_TYPES[repr(dtypes[column])]},
                )
            )
            out.append(ColumnRule("expect_column_values_to_not_be_null", {"column": column}))
        if column in VALUE_RANGES:
            low, high, strict = VALUE_RANGES[column]
            # GX drops unset and default arguments and reports the bounds as floats.
            kwargs: dict[str, Any] = {"column": column}
            if low is not None:
                kwargs["min_value"] = float(low)
            if high is not None:
                kwargs["max_value"] = float(high)
            if strict:
                kwargs["strict_min"] = True
            out.append(ColumnRule("expect_column_values_to_be_between", kwargs))
    return out


@functools.lru_cache(maxsize=64)
def pandas_dtype(dtype: pl.DataType, has_nulls: bool) -> str:
    """The name of the pandas dtype a polars column of ``dtype`` converts to (with or without nulls:
    integers with nulls become float64, booleans object)."""
    sample = pl.Series("x", [None] if has_nulls else [], dtype=dtype)
    return str(sample.to_pandas().dtype)


def evaluate_rules(frame: pl.DataFrame, rules: Sequence[ColumnRule]) -> list[CheckOutcome]:
    """The outcome of each rule on ``frame``: one ``select`` counts the violations of every rule;
    only failed rules are looked at again (a second ``select`` for their first rows and values)."""
    schema = frame.schema
    null_counts = {c: frame[c].null_count() for c in {r.column for r in rules}}
    masks: dict[int, pl.Expr] = {}
    errors: dict[int, str] = {}
    for i, rule in enumerate(rules):
        column = rule.column
        dtype = schema[column]
        if rule.type == "expect_column_values_to_not_be_null":
            masks[i] = _missing(column, dtype)
        elif rule.type == "expect_column_values_to_be_between":
            if dtype.is_numeric() or dtype == pl.Boolean:
                masks[i] = _out_of_range(column, dtype, rule.kwargs)
            elif null_counts[column] < frame.height:  # GX compares the values that are not null
                errors[i] = _range_error(dtype)
    counts = frame.select(m.sum().alias(str(i)) for i, m in masks.items()).row(0) if masks else ()
    violations = dict(zip(masks, (int(c or 0) for c in counts), strict=True))

    failed = [i for i, n in violations.items() if n]
    shown = (
        frame.select(
            e
            for i in failed
            for e in (
                masks[i].arg_true().head(SHOWN_ROWS).implode().alias(f"rows{i}"),
                pl.col(rules[i].column).filter(masks[i]).head(SHOWN_ROWS).implode().alias(f"values{i}"),
            )
        ).row(0, named=True)
        if failed
        else {}
    )

    out: list[CheckOutcome] = []
    for i, rule in enumerate(rules):
        column = rule.column
        dtype = schema[column]
        if rule.type == "expect_column_type_to_be":
            observed = pandas_dtype(dtype, null_counts[column] > 0)
            ok = observed == rule.kwargs["type_"]
            out.append(passed_check(rule.name) if ok else _failed(rule, {"observed_value": observed}))
        elif i in errors:
            out.append(CheckOutcome(rule.name, "failed", f"expectation raised: {errors[i]}", 1))
        elif not violations.get(i):
            out.append(passed_check(rule.name))
        else:
            rows = [int(r) for r in shown[f"rows{i}"]]
            values = _pandas_values(shown[f"values{i}"], dtype, has_nulls=null_counts[column] > 0)
            found: dict[str, JSONValue] = {
                "unexpected_count": violations[i],
                "partial_unexpected_list": json_safe(values),
                "partial_unexpected_index_list": list[JSONValue](rows),
            }
            out.append(_failed(rule, found, violations[i], rows))
    return out


def _missing(column: str, dtype: pl.DataType) -> pl.Expr:
    # pandas (GX's frame) counts NaN as missing.
    col = pl.col(column)
    return col.is_null() | col.is_nan() if dtype.is_float() else col.is_null()


def _out_of_range(column: str, dtype: pl.DataType, kwargs: Mapping[str, Any]) -> pl.Expr:
    col = pl.col(column).cast(pl.Int8) if dtype == pl.Boolean else pl.col(column)
    inside = pl.lit(value=True)
    if (low := kwargs.get("min_value")) is not None:
        inside &= col > low if kwargs.get("strict_min") else col >= low
    if (high := kwargs.get("max_value")) is not None:
        inside &= col <= high
    # Null and NaN values are missing, not out of range (GX leaves them to the not-null rule).
    present = col.is_not_null() & ~col.is_nan() if dtype.is_float() else col.is_not_null()
    return present & ~inside


def _range_error(dtype: pl.DataType) -> str:
    # GX's own message for strings; for other types GX relays the Python comparison that failed
    # (same verdict and count, other wording).
    if dtype in (pl.String, pl.Categorical, pl.Enum):
        return _STRING_RANGE_ERROR
    return f"{pandas_dtype(dtype, has_nulls=False)} values cannot be compared with a numeric range"


def _pandas_values(values: list[Any], dtype: pl.DataType, *, has_nulls: bool) -> list[Any]:
    """``values`` as GX shows them from the pandas frame: NaN/null as None, temporal nulls as
    ``NaT``, and an integer column with nulls as floats."""
    if dtype.is_temporal():
        return ["NaT" if v is None else v for v in values]
    if dtype.is_integer() and has_nulls:
        return [None if v is None else float(v) for v in values]
    return values


def _failed(
    rule: ColumnRule, found: Mapping[str, JSONValue], count: int = 1, rows: Sequence[int] = ()
) -> CheckOutcome:
    detail = f"expected {rule.type} {json_safe(dict(rule.kwargs))}; found {dict(found)}"
    return CheckOutcome(rule.name, "failed", detail, count, tuple(rows))


__all__ = [
    "PANDAS_TYPES",
    "VALUE_RANGES",
    "ColumnRule",
    "column_rules",
    "evaluate_rules",
    "pandas_dtype",
]
