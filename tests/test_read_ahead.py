"""Reading the next day ahead: the same frames in the caller's order, the next expected day read on
the worker thread, errors raised only to the caller that asks for the day; a released day keeps its
counts without its ticks."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import polars as pl
import pytest

from rangebar_pipeline.engine.days import ReadAhead, SeriesDay
from rangebar_pipeline.series import Series

DAYS = [date(2024, 3, 1) + timedelta(days=i) for i in range(6)]


class _Reads:
    """A day's "ticks" are its ordinal; records which thread read which day."""

    def __init__(self, failing: date | None = None) -> None:
        self.failing = failing
        self.threads: dict[date, str] = {}
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, day: date) -> tuple[pl.DataFrame, float]:
        with self.lock:
            self.threads[day] = threading.current_thread().name
            self.calls += 1
        if day == self.failing:
            raise OSError(f"cannot read {day}")
        return pl.DataFrame({"agg_trade_id": [day.toordinal()]}), 0.0


def test_the_days_come_in_order_and_the_next_is_read_on_the_worker() -> None:
    reads = _Reads()
    expected = DAYS[:2] + DAYS[3:]  # DAYS[2] is stored: not expected, read when asked all the same
    with ReadAhead(reads, expected) as reader:
        got = [reader.read(day)[0]["agg_trade_id"][0] for day in DAYS]
    assert got == [d.toordinal() for d in DAYS]
    caller = threading.current_thread().name
    assert reads.threads[DAYS[0]] == caller and reads.threads[DAYS[2]] == caller
    ahead = (DAYS[1], DAYS[3], DAYS[4], DAYS[5])
    assert all(reads.threads[d].startswith("rangebar-read-ahead") for d in ahead)
    assert reads.calls == len(DAYS), "each day read once (DAYS[3], read ahead before DAYS[2], kept)"


def test_an_error_reaches_only_the_caller_that_asks_for_the_day() -> None:
    reads = _Reads(failing=DAYS[1])
    with ReadAhead(reads, DAYS) as reader:
        reader.read(DAYS[0])  # DAYS[1] fails on the worker meanwhile: nothing is raised yet
        with pytest.raises(OSError, match=str(DAYS[1])):
            reader.read(DAYS[1])
    with ReadAhead(_Reads(failing=DAYS[1]), DAYS) as reader:
        reader.read(DAYS[0])  # read ahead, failed, and never asked for: dropped silently
        assert reader.read(DAYS[2])[0]["agg_trade_id"][0] == DAYS[2].toordinal()


def test_a_released_day_keeps_its_counts_and_not_its_ticks() -> None:
    ticks = pl.DataFrame({"agg_trade_id": [7, 8, 9], "price": [1.0, 2.0, 3.0]})
    day = SeriesDay.of(Series("binance", "um", "BTCUSDT"), DAYS[0], ticks, 0.5, {})
    released = day.released()
    assert released.ticks.is_empty() and released.ticks.schema == ticks.schema
    assert (released.tick_count, released.tick_id_range) == (3, (7, 9)) == (day.tick_count, day.tick_id_range)
    empty = SeriesDay.of(day.series, DAYS[0], ticks.clear(), 0.0, {})
    assert (empty.tick_count, empty.tick_id_range) == (0, (None, None))
