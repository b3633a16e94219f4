"""The Delta feature store and the dataset reader: atomic days, gates, compaction, time travel, labels."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from rangebar_pipeline import feature_table_version, read_dataset
from rangebar_pipeline.api.datasets import last_bars_recipe
from rangebar_pipeline.labels import LabelSpec, TripleBarrier, add_labels
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.datasets import (
    COMPACT_AFTER_FILES,
    DICTIONARY_PAGE_BYTES,
    TABLE_PROPERTIES,
    DatasetStore,
    DayTable,
)

SPOT = Series("binance", "spot", "BTCUSDT")
UM = Series("binance", "um", "ETHUSDT")
SPEC = LabelSpec((1, 3), TripleBarrier(6, 1.0, 1.0))
D1, D2, D3 = date(2024, 8, 8), date(2024, 8, 9), date(2024, 8, 10)


def day_bars(day: date, n: int, *, seed: int = 0, extra: bool = False) -> pl.DataFrame:
    """``n`` bars closing on ``day`` (a random walk; two bars share a close time)."""
    rng = np.random.default_rng(seed + day.toordinal())
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    offsets = np.sort(rng.integers(0, 86_399_000_000, size=n))
    offsets[1] = offsets[0]
    close = 100 * np.exp(np.cumsum(rng.choice([-1.0, 1.0], size=n) * 0.01))
    frame = pl.DataFrame(
        {
            "open_time": [start + timedelta(microseconds=int(o)) for o in offsets],
            "close_time": [start + timedelta(microseconds=int(o)) for o in offsets],
            "close": close,
            "ofi": rng.uniform(-1, 1, size=n),
        }
    ).with_columns(pl.col("open_time", "close_time").cast(pl.Datetime("us", "UTC")))
    return frame.with_columns(pl.lit(0.5).alias("lookback_ofi")) if extra else frame


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(tmp_path / "pipeline")


def test_a_day_is_replaced_in_one_commit_and_older_versions_stay_readable(store: DatasetStore) -> None:
    first = store.publish_days(25, SPOT, [DayTable(D1, day_bars(D1, 40)), DayTable(D2, day_bars(D2, 30))])
    assert first.published == (D1, D2) and first.version == 0
    assert store.feature_days(25, SPOT) == [D1, D2]
    replaced = day_bars(D1, 25, seed=9)
    second = store.publish_days(25, SPOT, [DayTable(D1, replaced, bars_data_version="v2")])
    assert second.version == 1
    now = store.read_features(25, SPOT, D1)
    assert_frame_equal(now.select(replaced.columns), replaced)
    assert now["bar_index"].to_list() == list(range(25)) and set(now["bars_data_version"]) == {"v2"}
    assert store.read_features(25, SPOT, D1, version=0).height == 40  # time travel
    assert DeltaTable(first.uri).metadata().configuration == TABLE_PROPERTIES  # the log is kept
    assert store.read_features(25, SPOT, D2).height == 30  # the other day untouched
    commit = store.commits(25)[-1]
    assert commit["series"] == SPOT.key and commit["published"] == ["2024-08-08"]
    assert "day = '2024-08-08'" in commit["operationParameters"]["predicate"]


def test_a_failed_gate_keeps_the_previous_rows_and_the_commit_records_why(store: DatasetStore) -> None:
    good = day_bars(D1, 40)
    store.publish_days(25, SPOT, [DayTable(D1, good)])
    rejected = store.publish_days(
        25,
        SPOT,
        [
            DayTable(D1, day_bars(D1, 10, seed=3), ("ofi out of range",)),
            DayTable(D2, day_bars(D2, 5), ("x",)),
        ],
    )
    assert rejected.published == () and rejected.version == 1  # a commit that only records
    assert_frame_equal(store.read_features(25, SPOT, D1).select(good.columns), good)
    assert store.feature_days(25, SPOT) == [D1]  # the never-published day is absent
    assert store.rejected_days(25, SPOT) == {
        D1: {"failures": ["ofi out of range"], "version": 1, "withdrawn": False},
        D2: {"failures": ["x"], "version": 1, "withdrawn": False},
    }
    # bars that failed tier1 withdraw the day; a later pass clears the rejection
    withdrawn = store.publish_days(25, SPOT, [DayTable(D1, good, ("tier1 failed",), withdraw=True)])
    assert withdrawn.withdrawn == (D1,) and store.feature_days(25, SPOT) == []
    store.publish_days(25, SPOT, [DayTable(D2, day_bars(D2, 5))])
    assert list(store.rejected_days(25, SPOT)) == [D1] and store.rejected_days(25, UM) == {}
    assert store.feature_days(25, SPOT, version=0) == [D1]


def test_partitions_past_the_file_count_are_compacted_without_changing_any_version(
    store: DatasetStore,
) -> None:
    days = [date(2024, 8, 1) + timedelta(days=i) for i in range(COMPACT_AFTER_FILES + 1)]
    compacted = []
    for day in days:
        compacted.append(store.publish_days(25, SPOT, [DayTable(day, day_bars(day, 20))]).compacted)
    store.publish_days(25, UM, [DayTable(days[0], day_bars(days[0], 20))])
    assert compacted[-1] == (f"{SPOT.key}/2024-08",) and not any(compacted[:-1])
    table = DeltaTable(store.features_uri(25))
    assert len(table.file_uris()) == 2  # one compacted file of the spot month, the um day
    history = store.commits(25)
    assert any(c.get("compacted") == f"{SPOT.key}/2024-08" for c in history)
    before = len(days) - 1  # the version just before compaction reads the same rows
    current = store.scan_features(25).filter(pl.col("series") == SPOT.key).sort("day", "bar_index").collect()
    old = store.scan_features(25, before).sort("day", "bar_index").collect()
    assert_frame_equal(current, old)


def test_written_and_compacted_files_are_zstd_with_small_dictionary_pages(store: DatasetStore) -> None:
    days = [date(2024, 8, 1) + timedelta(days=i) for i in range(COMPACT_AFTER_FILES + 1)]
    unique = 3 * DICTIONARY_PAGE_BYTES // 8  # more distinct doubles than a dictionary page holds
    first = store.publish_days(25, SPOT, [DayTable(days[0], day_bars(days[0], unique))])
    written = pq.ParquetFile(DeltaTable(first.uri).file_uris()[0]).metadata
    for day in days[1:]:
        commit = store.publish_days(25, SPOT, [DayTable(day, day_bars(day, 20))])
    assert commit.compacted == (f"{SPOT.key}/2024-08",)
    compacted = pq.ParquetFile(DeltaTable(first.uri).file_uris()[0]).metadata
    for meta in (written, compacted):
        columns = {meta.schema.column(i).name: i for i in range(meta.num_columns)}
        chunks = [meta.row_group(0).column(i) for i in range(meta.num_columns)]
        assert {c.compression for c in chunks} == {"ZSTD"}
        ofi = chunks[columns["ofi"]]  # unique per bar: the dictionary gave up at its page's limit
        if ofi.dictionary_page_offset is not None:
            assert ofi.data_page_offset - ofi.dictionary_page_offset <= DICTIONARY_PAGE_BYTES + 1024
        assert "RLE_DICTIONARY" in chunks[columns["kernel_version"]].encodings  # one value: a dictionary
    assert store.read_features(25, SPOT, days[0]).height == unique


def test_a_new_feature_group_evolves_the_schema_without_rewriting_days(store: DatasetStore) -> None:
    store.publish_days(25, SPOT, [DayTable(D1, day_bars(D1, 10))])
    files = set(DeltaTable(store.features_uri(25)).file_uris())
    store.publish_days(25, SPOT, [DayTable(D2, day_bars(D2, 10, extra=True))])
    assert files <= set(DeltaTable(store.features_uri(25)).file_uris())  # day 1's file is kept
    frame = read_dataset(25, SPOT, store=store, labels=SPEC).collect()
    assert frame.filter(pl.col("day") == D1)["lookback_ofi"].null_count() == 10
    assert frame.filter(pl.col("day") == D2)["lookback_ofi"].to_list() == [0.5] * 10


def test_labels_across_a_day_boundary_equal_a_recomputation_over_the_concatenated_days(
    store: DatasetStore,
) -> None:
    bars = {d: day_bars(d, 30) for d in (D1, D2, D3)}
    store.publish_days(250, SPOT, [DayTable(d, b) for d, b in bars.items()])
    store.publish_days(250, UM, [DayTable(D1, day_bars(D1, 7, seed=5))])
    expected = add_labels(pl.concat(bars.values()), 250, SPEC)
    day1 = read_dataset(250, SPOT, D1, D1, labels=SPEC, store=store).collect()
    assert day1.height == 30 and day1["fwd_return_3"].null_count() == 0  # day 2 completes them
    assert_frame_equal(day1.select(expected.columns), expected.head(30))
    whole = read_dataset(250, [SPOT, UM], labels=SPEC, store=store).collect()
    assert_frame_equal(whole.filter(pl.col("series") == SPOT.key).select(expected.columns), expected)
    assert whole.filter(pl.col("series") == UM.key)["fwd_return_1"].null_count() == 1  # no spill-over
    assert "month" not in whole.columns and whole.columns[-len(SPEC.columns) :] == list(SPEC.columns)
    # datetime bounds cut at close times; the labels still look past them
    cut = bars[D2]["close_time"][10]
    part = read_dataset(250, SPOT, start=cut, end=cut, labels=SPEC, store=store).collect()
    assert part["close_time"].to_list() == [cut] and part["fwd_return_3"][0] == expected["fwd_return_3"][40]


def test_the_recipe_rebuilds_the_same_rows_from_its_version(store: DatasetStore) -> None:
    store.publish_days(250, SPOT, [DayTable(D1, day_bars(D1, 30)), DayTable(D2, day_bars(D2, 30))])
    version = feature_table_version(250, store=store)
    recipe = last_bars_recipe(250, SPOT, 45, version=version, labels=SPEC, store=store)
    assert (recipe.start, recipe.end, recipe.last_n) == (D1, D2, 45)
    original = recipe.read(store).collect()
    store.publish_days(250, SPOT, [DayTable(D2, day_bars(D2, 12, seed=4)), DayTable(D3, day_bars(D3, 9))])
    assert_frame_equal(recipe.read(store).collect(), original)
    namespace: dict[str, object] = {}
    exec(
        recipe.code().replace("read_dataset(", "read_dataset(store=STORE, threshold="),
        {"STORE": store},
        namespace,
    )
    assert_frame_equal(namespace["dataset"], original)  # type: ignore[arg-type]
    changed = last_bars_recipe(250, SPOT, 45, version=version + 1, labels=SPEC, store=store)
    assert not changed.read(store).collect().equals(original)


def test_the_dataset_reads_from_pandas_pyarrow_and_duckdb(store: DatasetStore) -> None:
    store.publish_days(250, SPOT, [DayTable(D1, day_bars(D1, 30)), DayTable(D2, day_bars(D2, 30))])
    lazy = read_dataset(250, SPOT, labels=SPEC, store=store)
    frame = lazy.collect()
    assert isinstance(frame.to_pandas(), pd.DataFrame) and len(frame.to_pandas()) == 60
    dataset = ds.dataset(frame.to_arrow())
    assert dataset.count_rows() == 60
    positive = duckdb.sql("SELECT count(*) FROM dataset WHERE tb_label = 1").fetchone()
    assert positive is not None and positive[0] == frame.filter(pl.col("tb_label") == 1).height


def test_reader_errors_name_the_table_and_the_version(store: DatasetStore) -> None:
    with pytest.raises(LookupError, match="no feature table"):
        read_dataset(250, SPOT, store=store)
    store.publish_days(250, SPOT, [DayTable(D1, day_bars(D1, 3))])
    with pytest.raises(LookupError, match=r"versions 0\.\.0, not 4"):
        read_dataset(250, SPOT, version=4, store=store)
    with pytest.raises(ValueError, match="start must be a date"):
        read_dataset(250, SPOT, start="yesterday", store=store)
    with pytest.raises(LookupError, match="has no rows"):
        store.read_features(250, SPOT, D2)
