"""The feature manifest (``features.toml``): name, group, dtype, unit, formula and valid range of
every bar column, in output order. ``schema`` and the expectation suite derive from it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Literal, TypeAlias, cast

Group: TypeAlias = Literal["core", "microstructure", "lookback", "intra"]
Dtype: TypeAlias = Literal["int64", "float64", "timestamp_us"]

GROUPS: Final[tuple[Group, ...]] = ("core", "microstructure", "lookback", "intra")
DTYPES: Final[tuple[Dtype, ...]] = ("int64", "float64", "timestamp_us")
_KEYS: Final = frozenset(
    {"name", "group", "dtype", "unit", "formula", "min", "max", "strict_min", "nullable", "since"}
)


@dataclass(frozen=True, slots=True)
class Column:
    """One bar column as the manifest describes it."""

    name: str
    group: Group
    dtype: Dtype
    unit: str
    formula: str
    nullable: bool
    since: str
    min: float | None = None
    max: float | None = None
    strict_min: bool = False

    @property
    def value_range(self) -> tuple[float | None, float | None, bool] | None:
        """``(min, max, strict_min)``, or None when the column is unbounded."""
        if self.min is None and self.max is None:
            return None
        return self.min, self.max, self.strict_min


def _column(entry: dict[str, Any]) -> Column:
    unknown = set(entry) - _KEYS
    if unknown:
        raise ValueError(f"features.toml: column {entry.get('name')!r} has unknown keys {sorted(unknown)}")
    if entry["group"] not in GROUPS or entry["dtype"] not in DTYPES:
        raise ValueError(f"features.toml: column {entry['name']!r} has a bad group or dtype")
    return Column(
        name=str(entry["name"]),
        group=cast(Group, entry["group"]),
        dtype=cast(Dtype, entry["dtype"]),
        unit=str(entry["unit"]),
        formula=str(entry["formula"]),
        nullable=bool(entry["nullable"]),
        since=str(entry["since"]),
        min=entry.get("min"),
        max=entry.get("max"),
        strict_min=bool(entry.get("strict_min", False)),
    )


def load(text: str | None = None) -> tuple[Column, ...]:
    """Parse the manifest (the packaged ``features.toml`` unless ``text`` is given)."""
    if text is None:
        text = resources.files("rangebar_pipeline").joinpath("features.toml").read_text("utf-8")
    columns = tuple(_column(e) for e in tomllib.loads(text)["column"])
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise ValueError("features.toml: duplicate column names")
    return columns


#: Every bar column, in output order.
COLUMNS: Final[tuple[Column, ...]] = load()


def columns_of(*groups: Group) -> tuple[Column, ...]:
    """The columns of the given groups, in output order."""
    return tuple(c for c in COLUMNS if c.group in groups)


_GROUP_TITLES: Final[dict[Group, str]] = {
    "core": "Core bar columns (always on)",
    "microstructure": (
        "Microstructure features (on by default, SPEC §3; `include_microstructure`, `features.groups`)"
    ),
    "lookback": "Lookback features (opt-in: `lookback_trades=N`, `--lookback-trades N`, `features.groups`)",
    "intra": "Intra-bar features (opt-in: `intra_bar=True`, `--intra-bar`, `features.groups: [intra]`)",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def range_text(c: Column) -> str:
    """The valid range as interval text, e.g. ``[0, 1]`` or ``(0, +inf)``."""
    if c.value_range is None:
        return "any"
    low = "-inf" if c.min is None else f"{c.min:g}"
    high = "+inf" if c.max is None else f"{c.max:g}"
    return f"{'(' if c.strict_min or c.min is None else '['}{low}, {high}{']' if c.max is not None else ')'}"


def render_markdown(columns: tuple[Column, ...] = COLUMNS) -> str:
    """``docs/features.md`` as generated from the manifest (``scripts/gen_features_doc.py``)."""
    lines = [
        "# Bar columns",
        "",
        "<!-- Generated from rangebar_pipeline/features.toml by scripts/gen_features_doc.py. -->",
        "",
        "Every column of a bar, in output order. Notation: B/S buy/sell volume, V volume, O/H/L/C prices,",
        "W vwap, D duration (us), N individual trades, A agg records, nb/ns buy/sell individual trades,",
        "TB/TS buy/sell turnover, EPS the f64 epsilon.",
    ]
    for group in GROUPS:
        members = [c for c in columns if c.group == group]
        if not members:
            continue
        lines += [
            "",
            f"## {_GROUP_TITLES[group]}",
            "",
            "| column | dtype | unit | formula | valid range | nullable | since |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| `{c.name}` | {c.dtype} | {c.unit} | {_cell(c.formula)} | {range_text(c)} "
            f"| {'yes' if c.nullable else 'no'} | {c.since} |"
            for c in members
        ]
    return "\n".join(lines) + "\n"


__all__ = [
    "COLUMNS",
    "DTYPES",
    "GROUPS",
    "Column",
    "Dtype",
    "Group",
    "columns_of",
    "load",
    "range_text",
    "render_markdown",
]
