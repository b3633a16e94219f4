"""A bar store written by the previous release (0.1.0, schema 1) opens after the upgrade: migrated in
place, no bar lost, its days listed as stale and recomputed once their ticks are back; so does a store
of schema 2 from before the intra group (its bars not stale); bar options are part of the key (gated,
ungated, lookback and intra bars never mix).

The old store is ``tests/fixtures/bar_store_v1/clickhouse``: written by release 0.1.0's own code and
kernel (commit ea29cfe, ``get_range_bars`` over the shared fixtures; ``make.sh`` beside it re-creates it
from a git worktree of that commit), not by today's row helpers.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import clickhouse_connect
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rangebar_pipeline.api import get_range_bars
from rangebar_pipeline.exceptions import MissingColumnError, StaleBarsWarning
from rangebar_pipeline.options import BarOptions
from rangebar_pipeline.schema import INTRA_SCHEMA, LOOKBACK_SCHEMA, SCHEMA_VERSION
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import KERNEL_VERSION, BarStore, DayWrite
from rangebar_pipeline.storage.bars import records as bar_records
from rangebar_pipeline.storage.bars import writes as bar_writes
from rangebar_pipeline.storage.bars.schema import migrate, pending_steps
from rangebar_pipeline.storage.ticks import TickStore
from tests.api_support import Mirror, loopback_env
from tests.pipeline_support import assert_bars_equal_golden, golden
from tests.test_bar_store import D1, D2, SPOT, make_bars

RELEASED = Path(__file__).with_name("fixtures") / "bar_store_v1" / "clickhouse"
#: Schema 2 as released before the intra group's columns.
V2_SCHEMA = Path(__file__).with_name("fixtures") / "bar_store_schema_v2.sql"
#: What release 0.1.0 stored: (series, threshold).
STORED = [(SPOT, 25), (SPOT, 250), (Series("binance", "cm", "ETHUSD_PERP"), 25)]


def _shape(client: Any, database: str) -> dict[str, Any]:
    columns = client.query(
        "SELECT table, position, name, type, default_kind, default_expression FROM system.columns "
        "WHERE database = {db:String} ORDER BY table, position",
        parameters={"db": database},
    ).result_rows
    tables = client.query(
        "SELECT name, sorting_key, primary_key, partition_key, engine, engine_full FROM system.tables "
        "WHERE database = {db:String} ORDER BY name",
        parameters={"db": database},
    ).result_rows
    return {"columns": columns, "tables": tables}


@pytest.fixture
def released(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Mirror]]:
    """A cache root holding 0.1.0's bar store (a copy) and no ticks; the loopback mirror."""
    for root, mirror in loopback_env(tmp_path, monkeypatch):
        shutil.copytree(RELEASED, root / "clickhouse", symlinks=True)
        yield root, mirror


def test_the_released_store_is_migrated_in_place_without_losing_a_bar(released: tuple[Path, Mirror]) -> None:
    root, _ = released
    with BarStore(cache_dir=root) as store:
        assert len(store.migrated) == 5  # four of columns, one of settings
        for series, threshold in STORED:
            expected = golden(series.market, series.symbol, threshold)
            assert store.count_bars(series, threshold) == expected.height
            assert_bars_equal_golden(store.read_bars(series, threshold, D1, D2), expected)
            assert store.covered_days(series, threshold, D1, D2) == {D1, D2}, "the checkpoint chain survives"
            records = store.coverage(series, threshold, D1, D2)
            assert {(r.schema_version, r.kernel_version, r.stale) for r in records.values()} == {
                (1, "", True)
            }
            assert store.stale_days(series, threshold, D1, D2) == [D1, D2]
        status = {(s.series, s.threshold): (s.days, s.stale_days, s.options) for s in store.status().series}
        assert status == {key: (2, 2, BarOptions()) for key in STORED}
    with BarStore(cache_dir=root) as again:
        assert again.migrated == [], "the migration runs once"


def test_stale_released_days_are_served_then_recomputed_when_their_ticks_return(
    released: tuple[Path, Mirror],
) -> None:
    root, mirror = released
    expected = golden("spot", "BTCUSDT", 25)
    with pytest.warns(StaleBarsWarning, match="older bar schema or kernel"):  # no ticks cached: as stored
        served = get_range_bars("BTCUSDT", D1, D2, 25, fetch_if_missing=False, output="polars")
    assert isinstance(served, pl.DataFrame) and not mirror.requests
    assert_bars_equal_golden(served, expected)
    TickStore(root).get_ticks(SPOT, D1, D2)  # the ticks are back: the stale days are recomputed, replaced
    fresh = get_range_bars("BTCUSDT", D1, D2, 25, output="polars")
    assert isinstance(fresh, pl.DataFrame)
    assert_bars_equal_golden(fresh, expected)
    with BarStore(cache_dir=root) as store:
        assert store.stale_days(SPOT, 25, D1, D2) == []
        assert store.count_bars(SPOT, 25) == expected.height, "replaced, not added"
        versions = {(r.schema_version, r.kernel_version) for r in store.coverage(SPOT, 25, D1, D2).values()}
        assert versions == {(SCHEMA_VERSION, KERNEL_VERSION)}
        assert store.stale_days(SPOT, 250, D1, D2) == [D1, D2], "other series untouched"


def test_the_migrated_store_has_the_shape_of_a_new_one(released: tuple[Path, Mirror], tmp_path: Path) -> None:
    root, _ = released
    with BarStore(cache_dir=root) as store, store._client() as client:
        assert pending_steps(client, "rangebar") == []
        migrated = _shape(client, "rangebar")
    with BarStore(cache_dir=tmp_path / "new") as store, store._client() as client:
        assert pending_steps(client, "rangebar") == []
        new = _shape(client, "rangebar")
    assert migrated == new


def test_a_day_written_after_the_upgrade_records_the_running_versions(released: tuple[Path, Mirror]) -> None:
    root, _ = released
    with BarStore(cache_dir=root) as store:
        store.write_day(SPOT, 25, D2, make_bars(D2, 5, seed=3), checkpoint=b"new", tick_count=1)
        assert store.stale_days(SPOT, 25, D1, D2) == [D1]
        fresh = store.coverage(SPOT, 25, D2, D2)[D2]
        assert (fresh.schema_version, fresh.kernel_version) == (SCHEMA_VERSION, KERNEL_VERSION)
        assert store.count_bars(SPOT, 25, D2, D2) == 5


def _v2_statements(database: str) -> list[str]:
    text = re.sub(r"--[^\n]*", "", V2_SCHEMA.read_text())
    return [s.replace("{db}", database) for s in text.split(";") if s.strip()]


def _write_v2_store(client: Any, database: str, day: date, bars: pl.DataFrame, options: BarOptions) -> None:
    """Create the schema-2 tables of the release before the intra group and store one day."""
    for statement in _v2_statements(database):
        client.command(statement)
    write_id = bar_writes.next_write_id()
    rows = bar_writes.prepare_rows(DayWrite(SPOT, 250, day, bars, b"v2", 10, options=options), 250, write_id)
    rows = rows.drop(list(INTRA_SCHEMA), strict=False)  # present only for bars of the intra group
    client.insert_arrow(f"{database}.range_bars", rows.to_arrow(compat_level=pl.CompatLevel.oldest()))
    row = bar_records.coverage_row(
        SPOT, 250, options.key, day, write_id, bar_count=bars.height, tick_count=10, checkpoint=b"v2",
        checkpoint_sha=bar_records.checkpoint_sha256(b"v2"), parent_sha=bar_records.checkpoint_sha256(None),
    )  # fmt: skip
    client.insert(f"{database}.bar_coverage", [row], column_names=list(bar_records.COVERAGE_COLUMNS))


def test_a_v2_store_gains_the_intra_columns_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the intra columns are added: the stored (lookback) bars read back unchanged and are not
    stale, the migrated tables have the shape of new ones, and intra bars can be written at once."""
    monkeypatch.delenv("RANGEBAR_CLICKHOUSE_DSN", raising=False)
    lookback = BarOptions(lookback_trades=50)
    lb_bars = make_bars(D1, 4, seed=3).with_columns(
        pl.Series(name, [None, 1.5, None, 2.5] if dtype == pl.Float64 else [0, 3, 4, 5], dtype=dtype)
        for name, dtype in LOOKBACK_SCHEMA.items()
    )
    path = (tmp_path / "clickhouse").resolve()
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    try:
        _write_v2_store(client, "rangebar", D1, lb_bars, lookback)
        step, settings = pending_steps(client, "rangebar")
        assert "ADD COLUMN IF NOT EXISTS intra_trade_count" in step and "lookback_ofi" not in step
        assert "MODIFY SETTING min_bytes_for_wide_part" in settings
    finally:
        client.close()
    intra = BarOptions(intra_bar=True)
    intra_bars = make_bars(D2, 3, seed=4).with_columns(
        pl.Series(name, [None, 0.5, 0.25] if dtype == pl.Float64 else [2, 3, 4], dtype=dtype)
        for name, dtype in INTRA_SCHEMA.items()
    )
    with BarStore(cache_dir=tmp_path) as store:
        assert len(store.migrated) == 2
        assert_frame_equal(store.read_bars(SPOT, 250, D1, D1, options=lookback), lb_bars)
        assert store.stale_days(SPOT, 250, D1, D1, options=lookback) == []
        store.write_day(SPOT, 250, D2, intra_bars, checkpoint=b"intra", tick_count=3, options=intra)
        assert_frame_equal(store.read_bars(SPOT, 250, D2, D2, options=intra), intra_bars)
        assert store.read_bars(SPOT, 250, D2, D2, options=lookback).height == 0
    with BarStore(cache_dir=tmp_path) as again, again._client() as client:
        assert again.migrated == []
        _write_v2_store(client, "legacy", D1, lb_bars, lookback)
        migrate(client, "legacy")
        legacy, current = _shape(client, "legacy"), _shape(client, "rangebar")
        client.command("DROP DATABASE legacy")
    assert legacy == current


def test_bar_options_are_part_of_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANGEBAR_CLICKHOUSE_DSN", raising=False)
    gated = BarOptions(min_duration_us=1_000)
    lookback = BarOptions(lookback_trades=50)
    intra = BarOptions(intra_bar=True)
    plain_bars, gated_bars = make_bars(D1, 10, seed=1), make_bars(D1, 7, seed=2)
    intra_bars = make_bars(D1, 2, seed=5).with_columns(
        pl.Series(name, [None, 0.75] if dtype == pl.Float64 else [1, 9], dtype=dtype)
        for name, dtype in INTRA_SCHEMA.items()
    )
    lb_bars = make_bars(D1, 4, seed=3).with_columns(
        pl.Series(name, [None, 1.5, None, 2.5] if dtype == pl.Float64 else [0, 3, 4, 5], dtype=dtype)
        for name, dtype in LOOKBACK_SCHEMA.items()
    )
    with BarStore(cache_dir=tmp_path) as store:
        store.write_days(
            [
                DayWrite(SPOT, 250, D1, plain_bars, b"plain", 10),
                DayWrite(SPOT, 250, D1, gated_bars, b"gated", 10, options=gated),
                DayWrite(SPOT, 250, D1, lb_bars, b"lookback", 10, options=lookback),
                DayWrite(SPOT, 250, D1, intra_bars, b"intra", 10, options=intra),
            ]
        )
        # rewriting one variant leaves the others alone
        store.write_day(SPOT, 250, D1, gated_bars.head(3), checkpoint=b"gated2", tick_count=3, options=gated)
        assert_frame_equal(store.read_bars(SPOT, 250, D1, D1), plain_bars)
        assert_frame_equal(store.read_bars(SPOT, 250, D1, D1, options=gated), gated_bars.head(3))
        assert_frame_equal(store.read_bars(SPOT, 250, D1, D1, options=lookback), lb_bars)
        assert_frame_equal(store.read_bars(SPOT, 250, D1, D1, options=intra), intra_bars)
        assert store.checkpoint_for(SPOT, 250, D1, options=gated) == b"gated2"
        assert store.checkpoint_for(SPOT, 250, D1) == b"plain"
        assert store.checkpoints_at(SPOT, [250], D1, options=lookback) == {250: b"lookback"}
        assert store.covered_days(SPOT, 250, D1, D1, options=BarOptions(same_timestamp_gate=True)) == set()
        keys = {(s.options.key, s.bars) for s in store.status().series}
        assert keys == {("", 10), ("min_duration_us=1000", 3), ("lookback_trades=50", 4), ("intra_bar", 2)}
        with pytest.raises(MissingColumnError, match="lookback_ofi"):
            store.write_day(SPOT, 250, D2, make_bars(D2, 2), checkpoint=b"x", tick_count=1, options=lookback)
        with pytest.raises(MissingColumnError, match="intra_ofi"):
            store.write_day(SPOT, 250, D2, make_bars(D2, 2), checkpoint=b"x", tick_count=1, options=intra)
        assert store.invalidate(SPOT, 250, options=gated) == 1
        assert store.count_bars(SPOT, 250) == 10 and store.count_bars(SPOT, 250, options=lookback) == 4
        assert store.invalidate(SPOT) == 3
        assert store.status().series == ()


def test_bar_options_keys_round_trip_and_reject_garbage() -> None:
    for options in (
        BarOptions(),
        BarOptions(same_timestamp_gate=True),
        BarOptions(True, 5, 7),
        BarOptions(lookback_trades=1_000_000),
        BarOptions(intra_bar=True),
        BarOptions(True, 5, 7, True),
    ):
        assert BarOptions.from_key(options.key) == options
    assert (
        BarOptions(True, 5, 7, True).key
        == "same_timestamp_gate,min_duration_us=5,lookback_trades=7,intra_bar"
    )
    for bad in (
        "lookback_trades=0",
        "x=1",
        "lookback_trades=5,min_duration_us=1",
        "min_duration_us=-1",
        "intra_bar=1",
        "intra_bar,lookback_trades=5",
        "lookback_trades=x",
    ):
        with pytest.raises(ValueError):
            BarOptions.from_key(bad)
    with pytest.raises(ValueError, match=r"lookback_trades must be 0\.\.=1000000"):
        BarOptions(lookback_trades=1_000_001)
    with pytest.raises(TypeError, match="min_duration_us must be an integer"):
        BarOptions(min_duration_us=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="intra_bar must be a bool"):
        BarOptions(intra_bar=1)  # type: ignore[arg-type]
