"""A batch's feature-table commits (one Delta table per threshold) written together: each commit that
succeeded is handed back, in the groups' order, before the first failure is raised."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import date
from pathlib import Path

import pytest
from deltalake import DeltaTable

from rangebar_pipeline.assets.features import (
    CommitGroup,
    FeatureDay,
    GateVerdict,
    publish_after_gate,
    publish_groups,
)
from rangebar_pipeline.exceptions import StoreError
from rangebar_pipeline.storage.datasets import DatasetStore
from tests.test_datasets import SPOT, day_bars

DAY = date(2024, 8, 8)


def group(threshold: int, rows: int) -> CommitGroup:
    return ([FeatureDay(SPOT, threshold, DAY, day_bars(DAY, rows, seed=threshold))], [], {DAY: None})


def test_every_commit_is_handed_back_in_order(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "pipeline")
    groups = [group(25, 40), group(100, 20), group(250, 10)]
    done = list(publish_groups(store, groups, {}))
    assert [g[0][0].threshold for g, _ in done] == [25, 100, 250]
    assert [c.published for _, c in done] == [(DAY,)] * 3
    for threshold, rows in ((25, 40), (100, 20), (250, 10)):
        assert DeltaTable(store.features_uri(threshold)).to_pyarrow_table().num_rows == rows


def test_a_failed_commit_is_raised_after_the_others_are_handed_back(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "pipeline")
    Path(store.features_uri(100)).parent.mkdir(parents=True, exist_ok=True)
    Path(store.features_uri(100)).write_text("not a table")  # the 100 dbps table cannot be written
    handed: list[int] = []
    with pytest.raises(StoreError, match="cannot write the feature table"):
        for g, commit in publish_groups(store, [group(25, 40), group(100, 20), group(250, 10)], {}):
            handed.append(g[0][0].threshold)
            assert commit.published == (DAY,)
    assert handed == [25, 250]  # the commit after the failed one is recorded too
    assert DeltaTable(store.features_uri(250)).to_pyarrow_table().num_rows == 10


def test_commits_follow_the_gate_and_a_failed_gate_publishes_nothing(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "pipeline")
    groups = [group(25, 40), group(100, 20)]
    gated = [groups[0][0][0]]  # the 25 dbps table is gated, the 100 dbps one is not
    rejected: Future[object] = Future()
    rejected.set_result([GateVerdict(passed=False, evaluated=3, failures=("ofi out of range",))])
    done, error = publish_after_gate(store, groups, gated, rejected)
    assert error is None and [c.published for _, c in done] == [(), (DAY,)]  # rejected: not visible
    broken: Future[object] = Future()
    broken.set_exception(RuntimeError("the gate failed"))
    done, error = publish_after_gate(DatasetStore(tmp_path / "other"), groups, gated, broken)
    assert not done and isinstance(error, RuntimeError), "no commit without the gate's verdict"
    assert not Path(DatasetStore(tmp_path / "other").features_uri(25)).exists()
