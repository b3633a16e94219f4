"""A bar store written by the previous release (0.1.0, schema 1) opens after the upgrade: migrated in
place, no bar lost, its days listed as stale and recomputed once their ticks are back; bar options are
part of the key (gated and ungated never mix).

The old store is ``tests/fixtures/bar_store_v1/clickhouse``: written by release 0.1.0's own code and
kernel (commit ea29cfe, ``get_range_bars`` over the shared fixtures; ``make.sh`` beside it re-creates it
from a git worktree of that commit), not by today's row helpers.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rangebar_pipeline.api import get_range_bars
from rangebar_pipeline.exceptions import MissingColumnError, StaleBarsWarning
from rangebar_pipeline.options import BarOptions
from rangebar_pipeline.schema import LOOKBACK_SCHEMA, SCHEMA_VERSION
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import KERNEL_VERSION, BarStore, DayWrite
from rangebar_pipeline.storage.bars.schema import pending_steps
from rangebar_pipeline.storage.ticks import TickStore
from tests.api_support import Mirror, loopback_env
from tests.pipeline_support import assert_bars_equal_golden, golden
from tests.test_bar_store import D1, D2, SPOT, make_bars

RELEASED = Path(__file__).with_name("fixtures") / "bar_store_v1" / "clickhouse"
#: What release 0.1.0 stored: (series, threshold).
STORED = [(SPOT, 25), (SPOT, 250), (Series("binance", "cm", "ETHUSD_PERP"), 25)]


def _shape(client: Any, database: str) -> dict[str, Any]:
    columns = client.query(
        "SELECT table, position, name, type, default_kind, default_expression FROM system.columns "
        "WHERE database = {db:String} ORDER BY table, position",
        parameters={"db": database},
    ).result_rows
    tables = client.query(
        "SELECT name, sorting_key, primary_key, partition_key, engine FROM system.tables "
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
        assert len(store.migrated) == 3
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


def test_bar_options_are_part_of_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANGEBAR_CLICKHOUSE_DSN", raising=False)
    gated = BarOptions(min_duration_us=1_000)
    lookback = BarOptions(lookback_trades=50)
    plain_bars, gated_bars = make_bars(D1, 10, seed=1), make_bars(D1, 7, seed=2)
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
            ]
        )
        # rewriting one variant leaves the others alone
        store.write_day(SPOT, 250, D1, gated_bars.head(3), checkpoint=b"gated2", tick_count=3, options=gated)
        assert_frame_equal(store.read_bars(SPOT, 250, D1, D1), plain_bars)
        assert_frame_equal(store.read_bars(SPOT, 250, D1, D1, options=gated), gated_bars.head(3))
        assert_frame_equal(store.read_bars(SPOT, 250, D1, D1, options=lookback), lb_bars)
        assert store.checkpoint_for(SPOT, 250, D1, options=gated) == b"gated2"
        assert store.checkpoint_for(SPOT, 250, D1) == b"plain"
        assert store.checkpoints_at(SPOT, [250], D1, options=lookback) == {250: b"lookback"}
        assert store.covered_days(SPOT, 250, D1, D1, options=BarOptions(same_timestamp_gate=True)) == set()
        keys = {(s.options.key, s.bars) for s in store.status().series}
        assert keys == {("", 10), ("min_duration_us=1000", 3), ("lookback_trades=50", 4)}
        with pytest.raises(MissingColumnError, match="lookback_ofi"):
            store.write_day(SPOT, 250, D2, make_bars(D2, 2), checkpoint=b"x", tick_count=1, options=lookback)
        assert store.invalidate(SPOT, 250, options=gated) == 1
        assert store.count_bars(SPOT, 250) == 10 and store.count_bars(SPOT, 250, options=lookback) == 4
        assert store.invalidate(SPOT) == 2
        assert store.status().series == ()


def test_bar_options_keys_round_trip_and_reject_garbage() -> None:
    for options in (
        BarOptions(),
        BarOptions(same_timestamp_gate=True),
        BarOptions(True, 5, 7),
        BarOptions(lookback_trades=1_000_000),
    ):
        assert BarOptions.from_key(options.key) == options
    for bad in ("lookback_trades=0", "x=1", "lookback_trades=5,min_duration_us=1", "min_duration_us=-1"):
        with pytest.raises(ValueError):
            BarOptions.from_key(bad)
    with pytest.raises(ValueError, match=r"lookback_trades must be 0\.\.=1000000"):
        BarOptions(lookback_trades=1_000_001)
    with pytest.raises(TypeError, match="min_duration_us must be an integer"):
        BarOptions(min_duration_us=1.5)  # type: ignore[arg-type]
