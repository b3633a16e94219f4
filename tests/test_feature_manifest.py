"""The feature manifest is the single source of truth: schema, expectations, docs, SQL and stub follow it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from rangebar_pipeline import _core, manifest
from rangebar_pipeline.schema import BAR_SCHEMA, FEATURE_COLUMNS, INTRA_SCHEMA, LOOKBACK_SCHEMA, UTC_US
from rangebar_pipeline.validation.expectations import VALUE_RANGES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rangebar_pipeline"
_DEFAULT = manifest.columns_of("core", "microstructure")
_SQL_TYPES = {"int64": "Int64", "float64": "Float64", "timestamp_us": "Int64"}
_NOT_BAR_COLUMNS = {"source", "market", "symbol", "threshold_decimal_bps", "options", "day", "write_id"}


def test_schema_and_expectations_come_from_the_manifest() -> None:
    dtypes = {"int64": pl.Int64(), "float64": pl.Float64(), "timestamp_us": UTC_US}
    assert {c.name: dtypes[c.dtype] for c in _DEFAULT} == BAR_SCHEMA
    assert list(BAR_SCHEMA) == [c.name for c in _DEFAULT]
    assert tuple(c.name for c in manifest.columns_of("microstructure")) == FEATURE_COLUMNS
    assert len(FEATURE_COLUMNS) == 10
    assert dict(VALUE_RANGES) == {c.name: c.value_range for c in manifest.COLUMNS if c.value_range}
    assert VALUE_RANGES["ofi"] == (-1, 1, False) and VALUE_RANGES["open"] == (0, None, True)


def test_every_column_is_fully_described() -> None:
    for c in manifest.COLUMNS:
        assert c.unit and c.formula and re.fullmatch(r"\d+\.\d+\.\d+", c.since), c.name
        if c.min is not None and c.max is not None:
            assert c.min <= c.max, c.name


def test_manifest_rejects_unknown_keys_and_bad_groups() -> None:
    entry = (
        'name = "x"\ngroup = "core"\ndtype = "int64"\nunit = "u"\nformula = "f"\n'
        'nullable = false\nsince = "0.1.0"\n'
    )
    assert manifest.load("[[column]]\n" + entry)[0].name == "x"
    with pytest.raises(ValueError, match="unknown keys"):
        manifest.load("[[column]]\n" + entry + "colour = 1\n")
    with pytest.raises(ValueError, match="bad group"):
        manifest.load("[[column]]\n" + entry.replace('"core"', '"other"'))


def test_docs_features_md_is_generated_from_the_manifest() -> None:
    committed = (ROOT / "docs" / "features.md").read_text("utf-8")
    assert committed == manifest.render_markdown(), "run: python scripts/gen_features_doc.py"
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_features_doc.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def _sql_bar_columns() -> list[tuple[str, str]]:
    sql = (PACKAGE / "storage" / "bars" / "schema.sql").read_text("utf-8")
    body = sql.split("CREATE TABLE IF NOT EXISTS {db}.range_bars", 1)[1].split("ENGINE", 1)[0]
    columns = []
    for line in body.splitlines():
        match = re.match(r"\s+(\w+)\s+([\w()]+)", line)
        if match and "ALIAS" not in line and match[1] not in _NOT_BAR_COLUMNS:
            columns.append((match[1], match[2]))
    return columns


def test_storage_schema_sql_follows_the_manifest() -> None:
    """range_bars: every default-on manifest column in order (times as ``*_us`` Int64), the nullable
    spread statistics of quote sources, then the opt-in lookback and intra groups (nullable: null
    for bars computed without them)."""
    stored = _sql_bar_columns()
    expected = [
        (f"{c.name}_us" if c.dtype == "timestamp_us" else c.name, _SQL_TYPES[c.dtype]) for c in _DEFAULT
    ]
    expected += [(name, t) for name, t in stored if name.startswith("spread_")]
    expected += [
        (c.name, f"Nullable({_SQL_TYPES[c.dtype]})") for c in manifest.columns_of("lookback", "intra")
    ]
    assert stored == expected


def _stub_literal(tree: ast.Module, alias: str) -> list[str]:
    values = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == alias
    ]
    assert len(values) == 1, f"_core.pyi must define {alias} = Literal[...]"
    literal = values[0]
    assert isinstance(literal, ast.Subscript) and isinstance(literal.slice, ast.Tuple)
    return [ast.literal_eval(e) for e in literal.slice.elts]


def test_core_stub_and_binding_list_the_manifest_columns() -> None:
    tree = ast.parse((PACKAGE / "_core.pyi").read_text("utf-8"))
    lookback = [c.name for c in manifest.columns_of("lookback")]
    assert _stub_literal(tree, "_BarColumn") == [c.name for c in _DEFAULT]
    assert _stub_literal(tree, "_LookbackColumn") == lookback
    assert list(_core.BAR_COLUMNS) == [c.name for c in _DEFAULT]
    assert list(_core.LOOKBACK_COLUMNS) == lookback == list(LOOKBACK_SCHEMA)
    assert all(c.nullable for c in manifest.columns_of("lookback")[1:])
    intra = [c.name for c in manifest.columns_of("intra")]
    assert _stub_literal(tree, "_IntraColumn") == intra
    assert list(_core.INTRA_COLUMNS) == intra == list(INTRA_SCHEMA)
    assert len(intra) == 22


def test_the_kernels_nulls_are_the_manifests_nullable_columns() -> None:
    """The bar batch's Arrow fields: the lookback and intra columns are nullable (validity bitmaps),
    the core and microstructure ones are not; a column the manifest marks not nullable has no null."""
    processor = _core.Processor(25, lookback_trades=5, intra_bar=True)
    timestamp_us = np.arange(1, 6, dtype=np.int64) * 1_000
    price = np.array([100, 101, 90, 95, 200], dtype=np.int64) * 10**8
    table = pa.table(processor.process(timestamp_us, price, np.full(5, 10**8, dtype=np.int64)))
    for column in manifest.COLUMNS:
        if column.name in table.column_names:
            field = table.schema.field(column.name)
            assert field.nullable == (column.group in ("lookback", "intra")), column.name
            if not column.nullable:
                assert table.column(column.name).null_count == 0, column.name
