"""The Arrow boundary. In: ``Processor.process_arrow`` reads any object exporting the Arrow
PyCapsule interface in place and gives the bars, errors and state of the general path (NumPy
columns converted by ``normalize_trades``). Out: bars as an Arrow record batch whose nulls are
validity bitmaps (no NaN or integer sentinels)."""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from rangebar_pipeline import RangeBarError, RangeBarProcessor
from rangebar_pipeline._core import Processor
from rangebar_pipeline.frames import bars_from_batch
from rangebar_pipeline.trades import TimestampUnit, arrow_trades, normalize_trades

START_MS = 1_723_075_200_000
ROWS = 50_000


def _trades(rows: int = ROWS, *, unit: TimestampUnit = "ms", seed: int = 5) -> pl.DataFrame:
    steps = (pl.int_range(rows, eager=True).shuffle(seed) % 5 - 2).cast(pl.Int64)
    scale = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[unit]
    return pl.DataFrame(
        {
            "timestamp": START_MS * scale // 1000 + pl.int_range(rows, eager=True) * scale // 250,
            "price": (6_000_000 + steps.cum_sum() * 25).cast(pl.Float64) / 100,
            "quantity": (pl.int_range(rows, eager=True) % 97 + 1).cast(pl.Float64) / 8,
            "agg_trade_id": pl.int_range(rows, eager=True) + 1,
            "first_trade_id": pl.int_range(rows, eager=True) * 2,
            "last_trade_id": pl.int_range(rows, eager=True) * 2 + 1,
            "is_buyer_maker": pl.int_range(rows, eager=True) % 3 == 0,
        }
    )


def _general(trades: pl.DataFrame, threshold: int = 25, **options: Any) -> pl.DataFrame:
    """The general path: every column converted by ``normalize_trades``, then the NumPy entry."""
    return _General(threshold, **options).process(trades)


class _General:
    """A processor fed through the general path only (``normalize_trades`` + ``Processor.process``)."""

    def __init__(self, threshold: int = 25, **options: Any) -> None:
        self.unit = options.pop("timestamp_unit", None)
        self.inner = Processor(threshold, **options)

    def process(self, trades: Any, timestamp_unit: TimestampUnit | None = None) -> pl.DataFrame:
        arrays = normalize_trades(trades, timestamp_unit=timestamp_unit or self.unit)
        return bars_from_batch(self.inner.process(*arrays.kernel_args()))


def _fused(trades: pl.DataFrame, threshold: int = 25, **options: Any) -> pl.DataFrame:
    unit = options.pop("timestamp_unit", None)
    arrow = arrow_trades(trades, unit)
    assert arrow is not None
    assert Processor(threshold, **options).process_arrow(*arrow) is not None, "the fast path declined"
    return RangeBarProcessor(threshold, **options).process(trades, timestamp_unit=unit)


def _rechunked_differently(trades: pl.DataFrame) -> pl.DataFrame:
    """Columns whose chunks end at different rows."""
    columns = []
    for i, name in enumerate(trades.columns):
        cut = 1_000 + 7_919 * i
        s = trades[name]
        columns.append(pl.concat([s[:cut], s[cut : cut * 3], s[cut * 3 :]], rechunk=False))
    return pl.DataFrame(columns)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_every_timestamp_unit_gives_the_bars_of_the_general_path(unit: TimestampUnit) -> None:
    trades = _trades(unit=unit)
    given = unit if unit == "s" else None  # seconds cannot be inferred
    bars = _fused(trades, timestamp_unit=given)
    assert bars.height > 20
    assert bars.equals(_general(trades, timestamp_unit=given))


def test_negative_nanoseconds_round_down_like_the_general_path() -> None:
    trades = _trades(unit="ns").with_columns(pl.col("timestamp") - 2 * START_MS * 1_000_000 - 1)
    assert (trades["timestamp"] < 0).all()
    assert _fused(trades).equals(_general(trades))


@pytest.mark.parametrize("tz", [None, "UTC", "Asia/Tokyo"])
@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_datetimes_of_every_unit(tz: str | None, unit: Literal["ms", "us", "ns"]) -> None:
    trades = _trades(unit="us").with_columns(pl.col("timestamp").cast(pl.Datetime(unit, tz)))
    assert _fused(trades).equals(_general(trades))


def test_aliases_and_optional_columns() -> None:
    trades = _trades().rename({"timestamp": "T", "price": "p", "quantity": "q", "agg_trade_id": "a"})
    assert _fused(trades).equals(_general(trades))
    minimal = trades.select("T", "p", "q")
    assert _fused(minimal).equals(_general(minimal))


def test_columns_chunked_at_different_rows() -> None:
    trades = _rechunked_differently(_trades())
    chunks = {c: trades[c].chunk_lengths() for c in trades.columns}
    assert len({tuple(lengths) for lengths in chunks.values()}) > 1
    assert _fused(trades).equals(_general(trades))
    assert {c: trades[c].chunk_lengths() for c in trades.columns} == chunks, "nothing concatenated"


def test_columns_given_one_by_one() -> None:
    """A dict of Arrow columns (here polars Series and pyarrow arrays) is read chunk by chunk."""
    trades = _trades()
    expected = _general(trades)
    table = trades.to_arrow()
    for columns in (
        {name: trades[name] for name in trades.columns},
        {name: table.column(name) for name in table.column_names},
        {name: table.column(name).combine_chunks() for name in table.column_names},
    ):
        batch = Processor(25).process_arrow(columns, timestamp_mul=1_000)
        assert batch is not None and bars_from_batch(batch).equals(expected)
    short = {
        "timestamp": trades["timestamp"],
        "price": trades["price"].head(5),
        "quantity": trades["quantity"],
    }
    with pytest.raises(ValueError, match="column price has 5 rows, expected 50000"):
        Processor(25).process_arrow(short)
    with pytest.raises(TypeError, match="expected an Arrow column"):
        Processor(25).process_arrow({"timestamp": [1, 2]})  # type: ignore[dict-item]


def test_decimal_and_integer_prices_are_read_exactly() -> None:
    trades = _trades().with_columns(
        pl.col("price").cast(pl.Decimal(18, 2)), pl.col("quantity").cast(pl.Decimal(20, 8))
    )
    assert _fused(trades).equals(_general(trades))
    whole = _trades().with_columns(pl.col("price").round(0).cast(pl.Int64))
    assert _fused(whole).equals(_general(whole))


def _arrow_exports(trades: pl.DataFrame) -> dict[str, Any]:
    import arro3.core
    import duckdb

    table = trades.to_arrow()
    connection = duckdb.connect()
    connection.register("trades", table)
    return {
        "pyarrow.Table": table,
        "pyarrow.RecordBatch": table.combine_chunks().to_batches()[0],
        "pyarrow.RecordBatchReader": pa.RecordBatchReader.from_batches(table.schema, table.to_batches()),
        "pandas": trades.to_pandas(),
        "duckdb": connection.sql("SELECT * FROM trades ORDER BY agg_trade_id"),
        "arro3": arro3.core.Table.from_arrow(table),
        "polars": trades,
    }


def test_the_kernel_reads_every_arrow_exporter_in_place() -> None:
    """pyarrow, pandas >= 2.2, DuckDB, arro3 and polars objects go straight to the kernel (their
    Arrow PyCapsule export), and through ``RangeBarProcessor.process`` too."""
    trades = _trades(unit="us").with_columns(pl.col("timestamp").cast(pl.Datetime("us", "UTC")))
    expected = _general(trades)
    assert expected.height > 20
    for name, data in _arrow_exports(trades).items():
        batch = Processor(25).process_arrow(data)
        assert batch is not None, name
        assert bars_from_batch(batch).equals(expected), name
    for name, data in _arrow_exports(trades).items():
        assert RangeBarProcessor(25).process(data).equals(expected), name


def test_bars_leave_as_arrow_with_validity_bitmaps() -> None:
    """The group columns' nulls are Arrow nulls (no NaN, no integer sentinel); the core columns
    have no validity bitmap; polars, pyarrow and pandas all take the batch."""
    trades = _trades()
    arrow = arrow_trades(trades, None)
    assert arrow is not None
    batch = Processor(25, lookback_trades=2, intra_bar=True).process_arrow(*arrow)
    assert batch is not None and batch.num_rows == len(batch) > 20
    table = pa.table(batch)
    assert table.column_names == batch.column_names
    assert pa.record_batch(batch).num_rows == batch.num_rows
    assert table.schema.field("open_time").type == pa.timestamp("us", "UTC")
    for field in table.schema:
        column = table.column(field.name)
        if field.name.startswith(("lookback_", "intra_")):
            assert field.nullable
            if pa.types.is_floating(field.type):
                assert not pa.compute.any(pa.compute.is_nan(column)).as_py(), field.name
            else:
                assert pa.compute.min(column).as_py() >= 0, field.name
        else:
            assert not field.nullable and column.null_count == 0, field.name
    # Two trades of lookback: the first bar has none before it, so its window columns are null.
    assert table.column("lookback_duration_us").null_count >= 1
    assert table.column("lookback_hurst").null_count == batch.num_rows
    frame = pl.DataFrame(batch)
    assert frame.null_count()["lookback_hurst"][0] == batch.num_rows
    assert frame.equals(pl.from_arrow(table))  # type: ignore[arg-type]
    pandas = __import__("pandas").DataFrame.from_arrow(batch)
    assert len(pandas) == batch.num_rows and pandas["lookback_hurst"].isna().all()


@pytest.mark.parametrize(
    "options",
    [{"lookback_trades": 500}, {"min_duration_us": 2_000_000}, {"same_timestamp_gate": True}],
)
def test_options(options: dict[str, Any]) -> None:
    trades = _trades()
    assert _fused(trades, **options).equals(_general(trades, **options))


def test_state_carries_across_calls() -> None:
    trades = _trades()
    fused, general = (
        RangeBarProcessor(25, lookback_trades=100, intra_bar=True),
        _General(25, lookback_trades=100, intra_bar=True),
    )
    for start in range(0, ROWS, 17_000):
        part = trades.slice(start, 17_000)
        assert fused.process(part).equals(general.process(part))
        assert fused.checkpoint() == general.inner.checkpoint()
    tail = general.inner.incomplete_bar()
    assert tail is not None and fused.incomplete_bar_frame().equals(bars_from_batch(tail))


@pytest.mark.parametrize(
    "change",
    [
        pl.col("price").cast(pl.Float32),
        pl.col("quantity").cast(pl.Decimal(30, 10)),
        pl.col("price").cast(pl.String),
        pl.col("agg_trade_id").cast(pl.Int32),
        pl.col("is_buyer_maker").cast(pl.Int8),
        pl.col("timestamp").cast(pl.UInt64),
        pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise(pl.col("quantity")).alias("quantity"),
    ],
)
def test_other_dtypes_and_nulls_take_the_general_path(change: pl.Expr) -> None:
    trades = _trades().with_columns(change)
    arrow = arrow_trades(trades, None)
    assert arrow is None or Processor(25).process_arrow(*arrow) is None
    if trades["quantity"].null_count() == 0:
        assert RangeBarProcessor(25).process(trades).equals(_general(trades))


def _refused(trades: pl.DataFrame, row: int, **values: Any) -> pl.DataFrame:
    return trades.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
        for c, v in values.items()
    )


@pytest.mark.parametrize(
    ("row", "values", "unit"),
    [
        (40_000, {"price": float("nan")}, None),
        (40_000, {"quantity": float("inf")}, None),
        (40_000, {"price": 1e12}, None),  # beyond the fixed-point range
        (40_000, {"price": -5.0}, None),
        (40_000, {"timestamp": START_MS - 1}, None),  # out of order
        (40_000, {"timestamp": 2**62}, "s"),  # overflows in microseconds
        (40_000, {"first_trade_id": 10**12}, None),  # first > last
    ],
)
def test_refused_trades_raise_the_general_error_and_change_nothing(
    row: int, values: dict[str, Any], unit: TimestampUnit | None
) -> None:
    trades = _trades()
    if unit == "s":
        trades = trades.with_columns(pl.col("timestamp") // 1000)
    bad = _refused(trades, row, **values)
    fused, general = RangeBarProcessor(25), _General(25)
    head = trades.head(10_000)
    fused.process(head, timestamp_unit=unit)
    general.process(head, timestamp_unit=unit)
    before = fused.checkpoint()
    rest = bad.slice(10_000)
    with pytest.raises(RangeBarError) as expected:
        general.process(rest, timestamp_unit=unit)
    with pytest.raises(type(expected.value), match=f"^{re.escape(str(expected.value))}$"):
        fused.process(rest, timestamp_unit=unit)
    assert fused.checkpoint() == before


def test_the_kernel_call_returns_none_and_keeps_the_state_when_a_trade_is_refused() -> None:
    trades = _trades()
    processor = Processor(25, lookback_trades=50, intra_bar=True)
    ok = arrow_trades(trades.head(20_000), None)
    assert ok is not None
    assert processor.process_arrow(*ok) is not None
    before = processor.checkpoint()
    bad = arrow_trades(_refused(trades.slice(20_000), 25_000, price=float("nan")), None)
    assert bad is not None
    assert processor.process_arrow(*bad) is None
    assert processor.checkpoint() == before
    missing = trades.select("timestamp", "price")
    assert processor.process_arrow(missing) is None  # no quantity: declined
    with pytest.raises(ValueError, match=">= 1"):
        processor.process_arrow(trades, timestamp_mul=0)
    with pytest.raises(ValueError, match="one of them 1"):
        processor.process_arrow(trades, timestamp_mul=1000, timestamp_div=1000)
    with pytest.raises(ValueError, match="__arrow_c"):
        processor.process_arrow(np.zeros(3))  # type: ignore[arg-type]
