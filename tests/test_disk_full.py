"""Disk full (ENOSPC) while writing the tick cache, the bar store and a feature table, for real: the
stores live on a small tmpfs the test mounts (as root, which scripts/test.sh is in CI), filled with a
preallocated file until a few KB are left. Each write fails with an error naming the path, leaves
nothing half-visible (no torn file, no partial day), and succeeds once the space is freed; a pipeline
run that hits the full disk fails naming the path and completes when re-run after the space is freed.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import clickhouse_connect
import dagster as dg
import pytest
from polars.testing import assert_frame_equal

from rangebar_pipeline.exceptions import StoreError
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore
from rangebar_pipeline.storage.datasets import DatasetStore, DayTable
from tests.loopback import LoopbackServer
from tests.pipeline_support import (
    DAYS,
    SERIES,
    PipelineEnv,
    assert_bars_equal_golden,
    golden,
    pipeline_env,
)
from tests.test_bar_store import D1, D2, SPOT, make_bars
from tests.test_sources_binance import expected_frame
from tests.test_tick_store import files_under, store_for

#: What the OS (tick cache, feature tables) or ClickHouse (bar store) says when the disk is full.
FULL = r"No space left on device|not enough space"


@dataclass
class Disk:
    """A tmpfs mounted at ``path``; :meth:`fill` leaves ``left`` bytes free, :meth:`free` undoes it."""

    path: Path

    def fill(self, left: int = 4096) -> None:
        stat = os.statvfs(self.path)
        available = stat.f_bavail * stat.f_frsize
        fd = os.open(self.path / f".filler-{available}", os.O_CREAT | os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, available - left)
        finally:
            os.close(fd)

    def free(self) -> None:
        for filler in self.path.glob(".filler-*"):
            filler.unlink()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (scripts/test.sh runs as root in CI)")
    path = tmp_path / "disk"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield Disk(path)
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def test_disk_full_while_writing_the_tick_cache(disk: Disk, loopback: LoopbackServer) -> None:
    store = store_for(loopback, disk.path / "cache")
    series = Series("binance", "spot", "BTCUSDT")
    store.fetch_day(series, date(2024, 8, 9))
    before = files_under(disk.path / "cache")
    disk.fill()
    path = store.day_path(series, D1)
    with pytest.raises(StoreError, match=rf"cannot write {re.escape(str(path))}: .*({FULL})"):
        store.fetch_day(series, D1)
    assert files_under(disk.path / "cache") == before  # no torn day file, no temp file
    assert not store.has_day(series, D1)
    disk.free()
    assert store.fetch_day(series, D1).rows == 5798
    assert store.read_day(series, D1, refetch_corrupt=False).equals(
        expected_frame("spot", "BTCUSDT", "2024-08-08")
    )


def test_disk_full_while_writing_the_bar_store(disk: Disk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANGEBAR_CLICKHOUSE_DSN", raising=False)
    first, second = make_bars(D1, 50, seed=1), make_bars(D2, 20_000, seed=2)
    with BarStore(cache_dir=disk.path / "cache") as store:
        store.write_day(SPOT, 250, D1, first, checkpoint=b"d1", tick_count=50)
        disk.fill()
        where = re.escape(f"chdb://{disk.path / 'cache' / 'clickhouse'}")
        with pytest.raises(StoreError, match=rf"{where}.*({FULL})"):
            store.write_day(SPOT, 250, D2, second, checkpoint=b"d2", tick_count=20_000)
        assert set(store.coverage(SPOT, 250, D1, D2)) == {D1}  # day 2 is not half there
        assert store.count_bars(SPOT, 250) == 50
        assert_frame_equal(store.read_bars(SPOT, 250, D1, D1), first)
        disk.free()
        store.write_day(SPOT, 250, D2, second, checkpoint=b"d2", tick_count=20_000)
        assert set(store.coverage(SPOT, 250, D1, D2)) == {D1, D2}
        assert store.count_bars(SPOT, 250) == 20_050
        assert_frame_equal(store.read_bars(SPOT, 250, D2, D2), second)


def test_the_bar_store_is_not_created_on_a_full_disk_and_a_cut_short_one_is_created_anew(
    disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ClickHouse creating its tables on a full disk leaves empty metadata files and never starts again
    (``Empty query in file metadata/rangebar.sql``). The store refuses to create itself on a full disk;
    a store whose creation a full disk cut short (it holds no bars) is created anew once there is room."""
    monkeypatch.delenv("RANGEBAR_CLICKHOUSE_DSN", raising=False)
    path = disk.path / "cache" / "clickhouse"
    disk.fill()
    refused = rf"cannot create the embedded ClickHouse store {re.escape(str(path))}: No space left on device"
    with pytest.raises(StoreError, match=refused):
        BarStore(cache_dir=disk.path / "cache")
    assert not (path / "metadata").exists()  # nothing half-created
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")  # ClickHouse itself, on the full disk
    with contextlib.suppress(Exception):
        client.command("CREATE DATABASE IF NOT EXISTS rangebar")
        client.command("CREATE TABLE IF NOT EXISTS rangebar.t (x Int64) ENGINE = MergeTree ORDER BY x")
    client.close()
    disk.free()
    assert [p for p in path.rglob("*.sql") if p.stat().st_size == 0], "the fault did not happen"
    with BarStore(cache_dir=disk.path / "cache") as store:
        store.write_day(SPOT, 250, D1, make_bars(D1, 30), checkpoint=b"d1", tick_count=30)
        assert store.count_bars(SPOT, 250) == 30


def test_disk_full_while_publishing_a_feature_table(disk: Disk) -> None:
    store = DatasetStore(disk.path / "pipeline")
    table = make_bars(D1, 20_000, seed=3)
    store.publish_days(250, SPOT, [DayTable(D1, table.head(10))])
    version = store.features_version(250)
    disk.fill()
    uri = re.escape(store.features_uri(250))
    with pytest.raises(StoreError, match=rf"cannot write the feature table {uri}: .*({FULL})"):
        store.publish_days(250, SPOT, [DayTable(D2, table)])
    # nothing of the failed commit is visible: same version, same days
    assert store.features_version(250) == version
    assert store.feature_days(250, SPOT) == [D1]
    disk.free()
    commit = store.publish_days(250, SPOT, [DayTable(D2, table)])
    assert commit.version > (version or 0) and store.feature_days(250, SPOT) == [D1, D2]
    assert store.read_features(250, SPOT, D2).height == table.height


@pytest.fixture
def env_on_disk(disk: Disk, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PipelineEnv, Disk]]:
    for env in pipeline_env(disk.path, monkeypatch):  # cache, bar store and feature tables on the tmpfs
        yield env, disk


def test_a_run_on_a_full_disk_fails_naming_the_path_then_completes(
    env_on_disk: tuple[PipelineEnv, Disk],
) -> None:
    env, disk = env_on_disk
    instance = dg.DagsterInstance.ephemeral()
    first, last = (f"{day}|{SERIES}" for day in DAYS)
    assert env.run_range(dg.AssetSelection.assets("ticks"), first, last, instance=instance).success
    selection = dg.AssetSelection.assets("range_bars_10", "range_bars_25", "features_10", "features_25")
    BarStore().close()  # the store exists: the run fails where it writes bars
    disk.fill()
    failed = env.run_range(selection, first, last, instance=instance, raise_on_error=False)
    assert not failed.success
    errors = [str(e.step_failure_data.error) for e in failed.all_events if e.is_step_failure]
    assert errors and any(str(disk.path) in e and re.search(FULL, e) for e in errors), errors
    span = (date.fromisoformat(DAYS[0]), date.fromisoformat(DAYS[1]))
    spot = Series("binance", "spot", "BTCUSDT")
    disk.free()

    def stored(threshold: int) -> set[str]:
        with BarStore() as store:
            return {f"{d}|{SERIES}" for d in store.coverage(spot, threshold, *span)}

    def recorded(asset: str) -> set[str]:
        return set(instance.get_materialized_partitions(dg.AssetKey(asset)))

    for threshold in (10, 25):  # what Dagster recorded is what is stored; feature days only of those
        assert recorded(f"range_bars_{threshold}") == stored(threshold)
        assert {f"{d}|{SERIES}" for d in DatasetStore().feature_days(threshold, spot)} <= stored(threshold)
    assert env.run_range(selection, first, last, instance=instance).success
    for threshold in (10, 25):
        with BarStore() as store:
            bars = store.read_bars(spot, threshold, *span)
        assert_bars_equal_golden(bars, golden("spot", "BTCUSDT", threshold))
        assert recorded(f"range_bars_{threshold}") == stored(threshold) == {first, last}
        assert recorded(f"features_{threshold}") == {first, last}
        assert [str(d) for d in DatasetStore().feature_days(threshold, spot)] == list(DAYS)
