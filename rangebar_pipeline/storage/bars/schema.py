"""The bar store's tables: created from ``schema.sql``, migrated in place from earlier versions.

:func:`ensure_schema` runs ``schema.sql`` (the current tables) and then :func:`migrate`. A store
created by an earlier release keeps its tables
(``CREATE TABLE IF NOT EXISTS`` leaves them alone), so :func:`migrate` brings them to the current
shape with ``ALTER TABLE ... ADD COLUMN`` only: no row is rewritten or lost, and the migrated
tables have the columns, order and sorting key of freshly created ones. Rows written before the
migration read as the plain options (``options = ''``), schema version 1 and an unknown kernel
(``kernel_version = ''``), so they are listed as stale until recomputed.

Version history: 1 (release 0.1: bars, coverage); 2 (bar options in the key, the lookback group's
columns, per-day schema and kernel versions; later the intra group's columns, added in place
without a version change: they are null in rows written before them, whose bars keep their meaning,
and intra bars have their own options key, ``intra_bar``). Table settings are migrated the same way
(``ALTER TABLE ... MODIFY SETTING``, :data:`_SETTING_STEPS`): ``range_bars`` writes its parts in
ClickHouse's compact format up to 256 MiB, one file a part instead of two a column, which halves the
cost of inserting a batch of ~80 columns; merged parts beyond that size are wide, as before.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Final

from rangebar_pipeline.manifest import Group, columns_of

log = logging.getLogger(__name__)

__all__ = ["SCHEMA_FILE", "TABLES", "ensure_schema", "migrate", "pending_steps"]

SCHEMA_FILE: Final = Path(__file__).with_name("schema.sql")
#: The tables of a complete store.
TABLES: Final = ("range_bars", "bar_coverage")

_SQL_TYPES: Final = {"float64": "Float64", "int64": "Int64"}


def _group_columns(group: Group, previous: str) -> str:
    """The ALTER body adding ``group``'s columns (nullable) after the column ``previous``."""
    parts = []
    for column in columns_of(group):
        parts.append(
            f"ADD COLUMN IF NOT EXISTS {column.name} Nullable({_SQL_TYPES[column.dtype]}) AFTER {previous}"
        )
        previous = column.name
    return ", ".join(parts)


#: (table, a column the step adds, the ALTER body) in order; a step runs when its column is absent.
_STEPS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "range_bars",
        "options",
        "ADD COLUMN IF NOT EXISTS options LowCardinality(String) AFTER threshold_decimal_bps",
    ),
    ("range_bars", columns_of("lookback")[-1].name, _group_columns("lookback", "spread_tick_count")),
    (
        "bar_coverage",
        "options",
        # The new key column has no DEFAULT clause: ClickHouse only lets a column without one join
        # the sorting key in the ALTER that adds it (its implicit default is '').
        "ADD COLUMN options LowCardinality(String) AFTER threshold_decimal_bps, "
        "ADD COLUMN IF NOT EXISTS schema_version UInt16 DEFAULT 1, "
        "ADD COLUMN IF NOT EXISTS kernel_version LowCardinality(String) DEFAULT '', "
        "MODIFY ORDER BY (source, market, symbol, threshold_decimal_bps, day, options)",
    ),
    (
        "range_bars",
        columns_of("intra")[-1].name,
        _group_columns("intra", columns_of("lookback")[-1].name),
    ),
)


#: (table, a setting the step sets, the ALTER body); a step runs when its table does not name the
#: setting. Parts already written keep their format; new parts and merges follow the setting.
_SETTING_STEPS: Final[tuple[tuple[str, str, str], ...]] = (
    (
        "range_bars",
        "min_bytes_for_wide_part",
        "MODIFY SETTING min_bytes_for_wide_part = 268435456, min_rows_for_wide_part = 4194304",
    ),
)


def _columns(client: Any, database: str) -> dict[str, set[str]]:
    result = client.query(
        "SELECT table, name FROM system.columns WHERE database = {db:String}", parameters={"db": database}
    )
    found: dict[str, set[str]] = {}
    for table, name in result.result_rows:
        found.setdefault(str(table), set()).add(str(name))
    return found


def pending_steps(client: Any, database: str) -> list[str]:
    """The ALTER statements :func:`migrate` would run (empty for a current store)."""
    present = _columns(client, database)
    created = dict(
        client.query(
            "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}",
            parameters={"db": database},
        ).result_rows
    )
    return [
        f"ALTER TABLE {database}.{table} {body}"
        for table, column, body in _STEPS
        if table in present and column not in present[table]
    ] + [
        f"ALTER TABLE {database}.{table} {body}"
        for table, setting, body in _SETTING_STEPS
        if table in created and f"{setting} = " not in str(created[table])
    ]


def migrate(client: Any, database: str) -> list[str]:
    """Bring the tables of ``database`` to the current schema; return the statements run."""
    steps = pending_steps(client, database)
    for statement in steps:
        log.warning("migrating the bar store: %s", re.split(" ADD | MODIFY ", statement, maxsplit=1)[0])
        client.command(statement)
    return steps


def ensure_schema(client: Any, database: str) -> list[str]:
    """Create the database and tables where missing, then :func:`migrate`; return the migration run."""
    text = re.sub(r"--[^\n]*", "", SCHEMA_FILE.read_text())
    for statement in text.split(";"):
        if statement.strip():
            client.command(statement.replace("{db}", database))
    return migrate(client, database)
