"""Row rules evaluated together (``resolve``) give each rule's own outcome (``violation_check``)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rangebar_pipeline.validation._frames import Violation, resolve, violation_check
from rangebar_pipeline.validation.results import CheckOutcome, failed_check, passed_check

a, b = pl.col("a"), pl.col("b")
#: per-row rules, with nulls, windows (shift, duplicates) and horizontal expressions
RULES: list[pl.Expr] = [
    a > b,
    a < a.shift(1),
    pl.struct(["a", "b"]).is_duplicated(),
    pl.min_horizontal(a, b) <= 0,
    (a - b).abs() > 3,
    a.is_null(),
]

values = st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=0, max_size=30)


@st.composite
def frames(draw: st.DrawFn) -> pl.DataFrame:
    column = draw(values)
    other = draw(
        st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=len(column), max_size=len(column))
    )
    return pl.DataFrame({"a": column, "b": other}, schema={"a": pl.Int64, "b": pl.Int64})


@settings(max_examples=150, deadline=None)
@given(
    first=frames(),
    second=frames(),
    picks=st.lists(st.tuples(st.booleans(), st.integers(0, len(RULES) - 1), st.booleans()), max_size=12),
)
def test_resolved_outcomes_are_each_rules_own(
    first: pl.DataFrame, second: pl.DataFrame, picks: list[tuple[bool, int, bool]]
) -> None:
    items: list[CheckOutcome | Violation] = [passed_check("before")]
    for i, (on_first, rule, blocking) in enumerate(picks):
        frame = first if on_first else second
        items.append(
            Violation(frame, f"rule_{i}", RULES[rule], f"rule {rule}", ["a", "b"], blocking=blocking)
        )
        if i % 4 == 3:
            items.append(failed_check(f"plain_{i}", "kept as given"))
    expected = [
        violation_check(x.frame, x.name, x.violated, x.rule, x.show, blocking=x.blocking)
        if isinstance(x, Violation)
        else x
        for x in items
    ]
    assert resolve(items) == expected


def test_a_frame_without_rows_passes_every_rule() -> None:
    empty = pl.DataFrame({"a": [], "b": []}, schema={"a": pl.Int64, "b": pl.Int64})
    outcomes = resolve([Violation(empty, f"r{i}", rule, "r", ["a"]) for i, rule in enumerate(RULES)])
    assert [o.status for o in outcomes] == ["passed"] * len(RULES)
