"""The Python face of the kernel: a stateful processor and one-shot/chunked helpers.

rangebar 7.1.3's processor methods (``process_trades``, ``create_checkpoint``, ...) live in the
adapter :mod:`rangebar_pipeline.compat.processor`, whose subclass is the public ``RangeBarProcessor``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, Self

import polars as pl

from rangebar_pipeline import _core
from rangebar_pipeline._lazy import import_ahead, lazy_module
from rangebar_pipeline.constants import resolve_threshold
from rangebar_pipeline.exceptions import RangeBarError
from rangebar_pipeline.frames import OutputFormat, bars_from_batch, convert_bars, empty_bars
from rangebar_pipeline.streaming import (
    DEFAULT_BATCH_ROWS,
    batches,
    is_large_frame,
    is_stream,
    parquet_row_groups,
    prefetch,
)
from rangebar_pipeline.trades import (
    TimestampUnit,
    TradesLike,
    arrow_trades,
    frame_timestamp_unit,
    normalize_trades,
    to_polars,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
else:  # imported on first use
    pd = lazy_module("pandas")

Checkpoint = _core.Checkpoint


class RangeBarProcessor:
    """Stateful range-bar processor (batch rule, SPEC §1), carried across calls.

    Feeding a stream in any split (chunks, days, a checkpoint/restore in between) gives exactly
    the bars of feeding it in one piece. A failing call leaves the state unchanged.

    ``min_duration_us=D`` (opt-in minimum-duration gate): a bar closes only on a trade whose
    timestamp is ``>= open_time + D`` and whose price is at or beyond a threshold of the bar;
    earlier breaches are added to the bar without closing it, so such a bar's range can exceed the
    threshold. ``D=0`` is the plain rule. The setting travels with the checkpoint.

    ``lookback_trades=N`` (opt-in lookback group) appends the ``lookback_*`` columns (see
    docs/features.md), computed for each bar from the N most recent trades with timestamp strictly
    before its open time, across calls and checkpoints; null where undefined. 0 (default) is off.

    ``intra_bar=True`` (opt-in intra group) appends the 22 ``intra_*`` columns (docs/features.md):
    statistics of each bar's own trades, known at its close; a bar split across calls, days or
    checkpoints gets identical values. Off (default), the bars are those of a processor without it.

    >>> p = RangeBarProcessor(250)
    >>> bars = p.process({"timestamp": [1_700_000_000_000, 1_700_000_001_000],
    ...                   "price": [100.0, 100.25], "quantity": [1.0, 2.0]})
    >>> bars.height, bars["close"][0]
    (1, 100.25)
    """

    __slots__ = ("_inner", "symbol")

    def __init__(
        self,
        threshold_decimal_bps: int | str = 250,
        symbol: str | None = None,
        *,
        same_timestamp_gate: bool = False,
        min_duration_us: int = 0,
        lookback_trades: int = 0,
        intra_bar: bool = False,
    ) -> None:
        if not isinstance(intra_bar, bool):
            raise TypeError(f"intra_bar must be a bool, got {intra_bar!r}")
        self._inner = _core.Processor(
            resolve_threshold(threshold_decimal_bps),
            same_timestamp_gate=same_timestamp_gate,
            min_duration_us=min_duration_us,
            lookback_trades=lookback_trades,
            intra_bar=intra_bar,
        )
        self.symbol = symbol

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint | bytes | str, *, symbol: str | None = None) -> Self:
        """Continue from a checkpoint (object, its bytes or its JSON text)."""
        if isinstance(checkpoint, bytes | bytearray | memoryview):
            checkpoint = Checkpoint.from_bytes(bytes(checkpoint))
        elif isinstance(checkpoint, str):
            checkpoint = Checkpoint.from_json(checkpoint)
        self = cls.__new__(cls)
        self._inner = _core.Processor.from_checkpoint(checkpoint)
        self.symbol = symbol
        return self

    @property
    def threshold_decimal_bps(self) -> int:
        return int(self._inner.threshold_decimal_bps)

    @property
    def same_timestamp_gate(self) -> bool:
        return bool(self._inner.same_timestamp_gate)

    @property
    def min_duration_us(self) -> int:
        """Minimum-duration gate in microseconds (0: off)."""
        return int(self._inner.min_duration_us)

    @property
    def lookback_trades(self) -> int:
        """Window length N of the lookback group (0: off)."""
        return int(self._inner.lookback_trades)

    @property
    def intra_bar(self) -> bool:
        """Whether the intra group is on."""
        return bool(self._inner.intra_bar)

    @property
    def has_incomplete_bar(self) -> bool:
        return bool(self._inner.has_incomplete_bar)

    def _empty(self) -> pl.DataFrame:
        return empty_bars(lookback=self.lookback_trades > 0, intra=self.intra_bar)

    @property
    def trades_seen(self) -> int:
        """Trades processed so far (across calls and checkpoints)."""
        return int(self._inner.trades_seen)

    def process(self, trades: TradesLike, *, timestamp_unit: TimestampUnit | None = None) -> pl.DataFrame:
        """Process trades; return the bars they close (schema ``BAR_SCHEMA``).

        A polars ``LazyFrame`` (e.g. ``pl.scan_parquet(...)``) or a pyarrow ``RecordBatchReader`` is
        streamed batch by batch, so inputs larger than memory work. Errors name the row within the
        input (for streams: within the failing batch, whose first row is given too).
        """
        return self._process(trades, timestamp_unit)

    def _process(
        self, trades: TradesLike, timestamp_unit: TimestampUnit | None, *, import_meanwhile: str | None = None
    ) -> pl.DataFrame:
        """:meth:`process`; ``import_meanwhile`` names a module the caller will need, imported in a
        background thread while the kernel works on a plain frame without the GIL (see ``import_ahead``)."""
        if is_stream(trades):
            return self._process_stream(trades, timestamp_unit)
        # Columnar inputs (pyarrow, pandas, Arrow PyCapsule objects) become polars without copies.
        frame = to_polars(trades)
        arrow = arrow_trades(frame, timestamp_unit)
        if arrow is not None:
            with import_ahead(import_meanwhile):
                batch = self._inner.process_arrow(*arrow)
            if batch is not None:
                return bars_from_batch(batch)
        # Anything else, or a refused trade (state unchanged): the general path, which converts
        # every dtype and names the offending row.
        if is_large_frame(frame):
            return self._process_slices(frame, timestamp_unit)
        arrays = normalize_trades(frame, timestamp_unit=timestamp_unit)
        if len(arrays) == 0:
            return self._empty()
        return bars_from_batch(self._inner.process(*arrays.kernel_args()))

    def process_parquet(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        timestamp_unit: TimestampUnit | None = None,
    ) -> pl.DataFrame:
        """Process Parquet files of trades in order, row group by row group (decoding ahead in the
        background), so only a few row groups are ever in memory."""
        files = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        return self._process_batches(prefetch(parquet_row_groups(files)), timestamp_unit)

    def _process_slices(self, frame: pl.DataFrame, timestamp_unit: TimestampUnit | None) -> pl.DataFrame:
        """A large eager frame in slices of ``DEFAULT_BATCH_ROWS`` (faster: each pass over a column
        stays in cache), with one timestamp unit for the whole frame, and all or nothing like one
        call: a failing slice restores the state from before the first."""
        unit = frame_timestamp_unit(frame, timestamp_unit)
        before = self._inner.checkpoint()
        try:
            return self._process_batches(frame.iter_slices(DEFAULT_BATCH_ROWS), unit)
        except BaseException:
            self._inner = _core.Processor.from_checkpoint(before)
            raise

    def _process_stream(self, trades: Any, timestamp_unit: TimestampUnit | None) -> pl.DataFrame:
        return self._process_batches(batches(trades), timestamp_unit)

    def _process_batches(self, stream: Iterable[Any], timestamp_unit: TimestampUnit | None) -> pl.DataFrame:
        parts, offset = [self._empty()], 0
        for batch in stream:
            try:
                parts.append(self.process(batch, timestamp_unit=timestamp_unit))
            except RangeBarError as error:
                error.add_note(f"in the streamed batch starting at input row {offset}")
                raise
            offset += len(batch)
        return pl.concat(parts)

    def incomplete_bar_frame(self) -> pl.DataFrame:
        """The trailing bar (features computed) as a 0- or 1-row frame."""
        batch = self._inner.incomplete_bar()
        return self._empty() if batch is None else bars_from_batch(batch)

    def incomplete_bar(self) -> dict[str, Any] | None:
        """The trailing bar as a dict (features computed), or None right after a breach."""
        frame = self.incomplete_bar_frame()
        return frame.row(0, named=True) if frame.height else None

    def checkpoint(self) -> Checkpoint:
        """A lossless snapshot (``to_bytes()``, ``to_json()``, picklable)."""
        return self._inner.checkpoint()

    def reset(self) -> None:
        """Forget all state (the incomplete bar too); keep threshold and options."""
        self._inner = _core.Processor(
            self.threshold_decimal_bps,
            same_timestamp_gate=self.same_timestamp_gate,
            min_duration_us=self.min_duration_us,
            lookback_trades=self.lookback_trades,
            intra_bar=self.intra_bar,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self.checkpoint().to_bytes(), self.symbol, type(self)))

    def __repr__(self) -> str:
        gate = f"min_duration_us={self.min_duration_us}, " if self.min_duration_us else ""
        gate += f"lookback_trades={self.lookback_trades}, " if self.lookback_trades else ""
        gate += "intra_bar=True, " if self.intra_bar else ""
        return (
            f"RangeBarProcessor(threshold_decimal_bps={self.threshold_decimal_bps}, "
            f"same_timestamp_gate={self.same_timestamp_gate}, {gate}trades_seen={self.trades_seen}, "
            f"has_incomplete_bar={self.has_incomplete_bar})"
        )


def _restore(
    data: bytes, symbol: str | None, cls: type[RangeBarProcessor] | None = None
) -> RangeBarProcessor:
    """Unpickle a processor as the class it was pickled from (the core class for old pickles)."""
    return (cls or RangeBarProcessor).from_checkpoint(data, symbol=symbol)


def process_trades_polars(
    trades: TradesLike,
    threshold_decimal_bps: int | str = 250,
    *,
    include_microstructure: bool = False,
    include_incomplete: bool = False,
    timestamp_unit: TimestampUnit | None = None,
    same_timestamp_gate: bool = False,
    min_duration_us: int = 0,
    lookback_trades: int = 0,
    intra_bar: bool = False,
    output: OutputFormat = "pandas",
) -> pd.DataFrame | pl.DataFrame | pa.Table:
    """Trades (polars eager/lazy, pandas, Arrow, ...) -> bars in one call, no per-row Python objects.

    Returns, by default, a backtesting.py-ready pandas frame indexed by close time; ``output="polars"``
    or ``"arrow"`` returns every bar column with ``open_time``/``close_time`` as timestamps.
    ``min_duration_us``, ``lookback_trades`` and ``intra_bar`` are the options of
    :class:`RangeBarProcessor`.
    """
    processor = RangeBarProcessor(
        threshold_decimal_bps,
        same_timestamp_gate=same_timestamp_gate,
        min_duration_us=min_duration_us,
        lookback_trades=lookback_trades,
        intra_bar=intra_bar,
    )
    # The pandas output needs pandas: imported while the kernel works (plain polars frames).
    bars = processor._process(
        trades, timestamp_unit, import_meanwhile="pandas" if output == "pandas" else None
    )
    if include_incomplete:
        bars = pl.concat([bars, processor.incomplete_bar_frame()])
    return convert_bars(bars, output, include_microstructure=include_microstructure)


def process_trades_to_dataframe(
    trades: TradesLike,
    threshold_decimal_bps: int | str = 250,
    *,
    include_microstructure: bool = False,
    include_incomplete: bool = False,
    timestamp_unit: TimestampUnit | None = None,
    same_timestamp_gate: bool = False,
    min_duration_us: int = 0,
    lookback_trades: int = 0,
    intra_bar: bool = False,
) -> pd.DataFrame:
    """Trades -> backtesting.py-ready pandas frame (index: close time, UTC)."""
    frame = process_trades_polars(
        trades,
        threshold_decimal_bps,
        include_microstructure=include_microstructure,
        include_incomplete=include_incomplete,
        timestamp_unit=timestamp_unit,
        same_timestamp_gate=same_timestamp_gate,
        min_duration_us=min_duration_us,
        lookback_trades=lookback_trades,
        intra_bar=intra_bar,
        output="pandas",
    )
    assert isinstance(frame, pd.DataFrame)
    return frame


def _chunks(trades: Iterable[Any], chunk_size: int) -> Iterator[Any]:
    """Group trade dicts into lists of ``chunk_size``; pass frames/columnar chunks through."""
    iterator = iter(trades)
    for item in iterator:
        if isinstance(item, Mapping) and not any(
            hasattr(v, "__len__") and not isinstance(v, str) for v in item.values()
        ):
            yield [item, *islice(iterator, chunk_size - 1)]
        else:
            yield item


def process_trades_chunked(
    trades_iterator: Iterable[Any],
    threshold_decimal_bps: int | str = 250,
    chunk_size: int = 100_000,
    *,
    include_microstructure: bool = False,
    include_incomplete: bool = False,
    timestamp_unit: TimestampUnit | None = None,
    same_timestamp_gate: bool = False,
    min_duration_us: int = 0,
    lookback_trades: int = 0,
    intra_bar: bool = False,
) -> Iterator[pd.DataFrame]:
    """Process a stream chunk by chunk with one stateful processor; yields non-empty bar frames.

    ``trades_iterator`` is an iterable of trade dicts (grouped into lists of ``chunk_size``) or of frames
    (each processed as one chunk). The concatenated output equals the one-shot result bar for bar;
    ``include_incomplete`` appends the trailing bar after the stream ends.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    processor = RangeBarProcessor(
        threshold_decimal_bps,
        same_timestamp_gate=same_timestamp_gate,
        min_duration_us=min_duration_us,
        lookback_trades=lookback_trades,
        intra_bar=intra_bar,
    )
    for chunk in _chunks(trades_iterator, chunk_size):
        bars = processor._process(chunk, timestamp_unit, import_meanwhile="pandas")
        if bars.height:
            yield convert_bars(bars, "pandas", include_microstructure=include_microstructure)  # type: ignore[misc]
    if include_incomplete and processor.has_incomplete_bar:
        tail = processor.incomplete_bar_frame()
        yield convert_bars(tail, "pandas", include_microstructure=include_microstructure)  # type: ignore[misc]
