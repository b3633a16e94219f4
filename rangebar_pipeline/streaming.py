"""Streaming inputs: lazy frames and record-batch readers are processed batch by batch.

Decoding the next batch (polars/pyarrow, outside the GIL) overlaps with the kernel working on the
current one (also outside the GIL), and only a couple of batches are ever in memory.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

import polars as pl

from rangebar_pipeline._lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:  # imported on first use
    pq = lazy_module("pyarrow.parquet")

T = TypeVar("T")

#: Rows per batch when a lazy frame is streamed into the kernel.
DEFAULT_BATCH_ROWS: Final[int] = 1_000_000

_DONE: Final = object()


def prefetch(items: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """Produce ``items`` in a background thread, at most ``depth`` ahead of the consumer.

    Errors of the producer are raised in the consumer; a consumer that stops early stops the producer.
    """
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer
            put(error)

    worker = threading.Thread(target=produce, name="rangebar-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def is_stream(trades: Any) -> bool:
    """True for inputs processed batch by batch: polars LazyFrames and pyarrow RecordBatchReaders."""
    if isinstance(trades, pl.LazyFrame):
        return True
    return type(trades).__name__ == "RecordBatchReader" and type(trades).__module__.startswith("pyarrow")


def is_large_frame(trades: Any) -> bool:
    """True for eager polars frames worth processing in slices of ``DEFAULT_BATCH_ROWS`` rows.

    Normalising and processing a slice at a time keeps each pass over the columns in cache and
    reuses memory, which is 2-3x faster on 10 M rows than converting every column at once.
    """
    return isinstance(trades, pl.DataFrame) and trades.height > DEFAULT_BATCH_ROWS


def parquet_row_groups(paths: Iterable[str | os.PathLike[str]]) -> Iterator[pa.Table]:
    """The row groups of Parquet files in order, one table each (pyarrow decodes them in parallel)."""
    for path in paths:
        with pq.ParquetFile(path) as file:
            for index in range(file.num_row_groups):
                yield file.read_row_group(index)


def batches(trades: Any, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Any]:
    """The batches of a streaming input, decoded ahead in a background thread."""
    if isinstance(trades, pl.LazyFrame):
        return prefetch(trades.collect_batches(chunk_size=batch_rows))
    return prefetch(iter(trades))
