"""The engine's batches: ``before_write`` sees each batch's days before the bar store holds them, also
the batch flushed when a day fails."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from rangebar_pipeline.engine import BATCH_DAYS, WalkedDay, batched
from rangebar_pipeline.engine.days import DayFailedError, SeriesDay, ThresholdDay
from rangebar_pipeline.frames import empty_bars
from rangebar_pipeline.options import DEFAULT_OPTIONS
from rangebar_pipeline.series import Series
from rangebar_pipeline.storage.bars import BarStore

SERIES = Series("binance", "um", "BTCUSDT")
THRESHOLD = 250
DAYS = [date(2024, 3, 1) + timedelta(days=i) for i in range(BATCH_DAYS + 3)]


def _walked(day: date) -> WalkedDay[None]:
    """A computed day without bars (a quiet day): one coverage row when written."""
    result = ThresholdDay(THRESHOLD, empty_bars(), b"checkpoint", None, None, None, 0.0)
    ticks = pl.DataFrame({"agg_trade_id": [day.toordinal()]})
    return WalkedDay(SERIES, day, SeriesDay.of(SERIES, day, ticks, 0.0, {THRESHOLD: result}), {})


def _stored(store: BarStore, days: Sequence[date]) -> set[date]:
    return set(store.coverage(SERIES, THRESHOLD, min(days), max(days)))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BarStore]:
    with BarStore(f"chdb://{tmp_path / 'clickhouse'}") as store:
        yield store


def test_before_write_sees_each_batch_before_the_store_holds_it(store: BarStore) -> None:
    seen: list[list[date]] = []

    def judge(days: Sequence[WalkedDay[None]]) -> None:
        batch = [d.day for d in days]
        assert not _stored(store, batch), "judged before the write"
        seen.append(batch)

    written = []
    for batch in batched((_walked(d) for d in DAYS), store, DEFAULT_OPTIONS, before_write=judge):
        assert _stored(store, [d.day for d in batch.days]) == {d.day for d in batch.days}
        written.append([d.day for d in batch.days])
    assert seen == written == [DAYS[:BATCH_DAYS], DAYS[BATCH_DAYS:]]


def test_the_batch_flushed_at_a_failing_day_is_judged_too(store: BarStore) -> None:
    def days() -> Iterator[WalkedDay[None]]:
        yield from (_walked(d) for d in DAYS[:2])
        raise DayFailedError(SERIES, DAYS[2], OSError("no ticks"))

    seen: list[list[date]] = []
    batches = batched(days(), store, DEFAULT_OPTIONS, before_write=lambda b: seen.append([d.day for d in b]))
    first = next(batches)
    assert [d.day for d in first.days] == seen[0] == DAYS[:2]
    with pytest.raises(DayFailedError):
        next(batches)
    assert _stored(store, DAYS[:3]) == set(DAYS[:2])
