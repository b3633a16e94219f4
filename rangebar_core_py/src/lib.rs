//! `rangebar_pipeline._core`: the thin PyO3 boundary over `rangebar_core`.
//!
//! Only conversions and error mapping live here: trades in as NumPy columns or any object
//! exporting the Arrow PyCapsule interface (read in place), bars out as an Arrow record batch
//! (the kernel's vectors handed over without copies, nulls as validity bitmaps; see `arrow.rs`).

mod arrow;
mod error;

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use rangebar_core::csv::{AggTradeColumns, AggTradesParser, CsvError};
use rangebar_core::{
    fixed, BarColumns, Checkpoint, ProcessorConfig, RangeBarProcessor, TradeColumns,
};

use crate::arrow::{
    arrow_trades, bars_to_batch, input_batches, unpack_bits, ArrowTrades, PyBarBatch,
};
use crate::error::{invalid_trade, to_py};

/// A lossless snapshot of a processor's state.
#[pyclass(module = "rangebar_pipeline._core", name = "Checkpoint", frozen, eq)]
#[derive(PartialEq)]
struct PyCheckpoint {
    inner: Checkpoint,
}

#[pymethods]
impl PyCheckpoint {
    /// Compact versioned binary encoding.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// Decode :meth:`to_bytes` output.
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(Self {
            inner: Checkpoint::from_bytes(data).map_err(to_py)?,
        })
    }

    /// JSON encoding (integers only; lossless).
    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    /// Decode :meth:`to_json` output.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        Ok(Self {
            inner: Checkpoint::from_json(text).map_err(to_py)?,
        })
    }

    #[getter]
    fn threshold_decimal_bps(&self) -> u32 {
        self.inner.threshold_decimal_bps
    }

    #[getter]
    fn same_timestamp_gate(&self) -> bool {
        self.inner.same_timestamp_gate
    }

    #[getter]
    fn min_duration_us(&self) -> i64 {
        self.inner.min_duration_us
    }

    #[getter]
    fn lookback_trades(&self) -> u32 {
        self.inner.lookback.as_ref().map_or(0, |l| l.capacity)
    }

    #[getter]
    fn intra_bar(&self) -> bool {
        self.inner.intra.is_some()
    }

    #[getter]
    fn version(&self) -> u32 {
        self.inner.version
    }

    #[getter]
    fn has_incomplete_bar(&self) -> bool {
        self.inner.bar.is_some()
    }

    #[getter]
    fn last_timestamp_us(&self) -> Option<i64> {
        self.inner.last_timestamp_us
    }

    #[getter]
    fn last_agg_trade_id(&self) -> Option<i64> {
        self.inner.last_agg_trade_id
    }

    #[getter]
    fn trades_seen(&self) -> u64 {
        self.inner.trades_seen
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let ctor = py.get_type::<Self>().getattr("from_bytes")?;
        let args = PyTuple::new(py, [slf.get().to_bytes(py)])?;
        PyTuple::new(py, [ctor.into_any(), args.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "Checkpoint(threshold_decimal_bps={}, has_incomplete_bar={}, last_timestamp_us={:?}, \
             last_agg_trade_id={:?}, trades_seen={})",
            self.inner.threshold_decimal_bps,
            self.inner.bar.is_some(),
            self.inner.last_timestamp_us,
            self.inner.last_agg_trade_id,
            self.inner.trades_seen
        )
    }
}

/// The range-bar state machine (batch rule), carried across calls.
#[pyclass(module = "rangebar_pipeline._core", name = "Processor")]
struct PyProcessor {
    inner: RangeBarProcessor,
}

impl PyProcessor {
    /// The kernel's bars as an Arrow record batch with this processor's groups.
    fn batch(&self, bars: BarColumns) -> PyBarBatch {
        let config = self.inner.config();
        PyBarBatch::new(bars_to_batch(
            bars,
            config.lookback_trades > 0,
            config.intra_bar,
        ))
    }
}

/// Trades converted and handed to the kernel per run of this many rows (the three converted
/// columns, 3 x 256 KiB, stay in cache between the conversion and the kernel).
const RUN: usize = 1 << 15;

/// The bars of every batch in order, or None when a trade is refused (state then partly
/// advanced: the caller restores it).
fn process_arrow_batches(
    processor: &mut RangeBarProcessor,
    batches: &[ArrowTrades<'_>],
) -> Option<BarColumns> {
    let mut out = BarColumns::default();
    let (mut ts, mut price, mut quantity, mut side) = (
        Vec::with_capacity(RUN),
        Vec::with_capacity(RUN),
        Vec::with_capacity(RUN),
        Vec::<bool>::new(),
    );
    for batch in batches {
        let n = batch.len();
        for start in (0..n).step_by(RUN) {
            let run = start..(start + RUN).min(n);
            let price_ok = batch.price.convert(run.clone(), &mut price);
            let quantity_ok = batch.quantity.convert(run.clone(), &mut quantity);
            let timestamp_us = batch.timestamp.convert(run.clone(), &mut ts)?;
            if !(price_ok && quantity_ok) {
                return None;
            }
            let is_buyer_maker = batch.is_buyer_maker.map(|bits| {
                unpack_bits(bits, run.start, run.len(), &mut side);
                side.as_slice()
            });
            let trades = TradeColumns {
                timestamp_us,
                price: &price,
                quantity: &quantity,
                agg_trade_id: batch.agg_trade_id.map(|c| &c[run.clone()]),
                first_trade_id: batch.first_trade_id.map(|c| &c[run.clone()]),
                last_trade_id: batch.last_trade_id.map(|c| &c[run.clone()]),
                is_buyer_maker,
            };
            processor.process(&trades, &mut out).ok()?;
        }
    }
    Some(out)
}

#[pymethods]
impl PyProcessor {
    #[new]
    #[pyo3(signature = (threshold_decimal_bps, *, same_timestamp_gate = false, min_duration_us = 0,
                        lookback_trades = 0, intra_bar = false))]
    fn new(
        threshold_decimal_bps: i64,
        same_timestamp_gate: bool,
        min_duration_us: i64,
        lookback_trades: i64,
        intra_bar: bool,
    ) -> PyResult<Self> {
        let config = ProcessorConfig::new(threshold_decimal_bps, same_timestamp_gate)
            .and_then(|c| c.with_min_duration_us(min_duration_us))
            .and_then(|c| c.with_lookback_trades(lookback_trades))
            .map_err(to_py)?
            .with_intra_bar(intra_bar);
        Ok(Self {
            inner: RangeBarProcessor::with_config(config),
        })
    }

    /// Process trade columns (fixed point x1e8, microseconds); returns the closed bars as an
    /// Arrow record batch. All or nothing: on error the state is unchanged.
    #[pyo3(signature = (timestamp_us, price, quantity, agg_trade_id = None, first_trade_id = None,
                        last_trade_id = None, is_buyer_maker = None))]
    #[allow(clippy::too_many_arguments)]
    fn process<'py>(
        &mut self,
        py: Python<'py>,
        timestamp_us: PyReadonlyArray1<'py, i64>,
        price: PyReadonlyArray1<'py, i64>,
        quantity: PyReadonlyArray1<'py, i64>,
        agg_trade_id: Option<PyReadonlyArray1<'py, i64>>,
        first_trade_id: Option<PyReadonlyArray1<'py, i64>>,
        last_trade_id: Option<PyReadonlyArray1<'py, i64>>,
        is_buyer_maker: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<PyBarBatch> {
        let trades = TradeColumns {
            timestamp_us: timestamp_us.as_slice()?,
            price: price.as_slice()?,
            quantity: quantity.as_slice()?,
            agg_trade_id: agg_trade_id.as_ref().map(|a| a.as_slice()).transpose()?,
            first_trade_id: first_trade_id.as_ref().map(|a| a.as_slice()).transpose()?,
            last_trade_id: last_trade_id.as_ref().map(|a| a.as_slice()).transpose()?,
            is_buyer_maker: is_buyer_maker.as_ref().map(|a| a.as_slice()).transpose()?,
        };
        let inner = &mut self.inner;
        let bars = py.detach(|| {
            let mut out = BarColumns::default();
            inner.process(&trades, &mut out).map(|_| out)
        });
        Ok(self.batch(bars.map_err(to_py)?))
    }

    /// Trades from any object exporting the Arrow PyCapsule interface (`__arrow_c_stream__` or
    /// `__arrow_c_array__`: polars, pyarrow, pandas >= 2.2, DuckDB, ...), or a dict of such
    /// columns (e.g. polars Series: read chunk by chunk, never concatenated), read in place, with
    /// the canonical column names: `timestamp` (Int64 as `raw * timestamp_mul` or
    /// `raw.div_euclid(timestamp_div)` microseconds, or an Arrow timestamp of any unit), `price`
    /// and `quantity` (Float64, Int64 or Decimal128 of scale <= 8), and the optional Int64
    /// `agg_trade_id`, `first_trade_id`, `last_trade_id` and Boolean `is_buyer_maker`. Converted
    /// and processed run by run (cache-sized) with the GIL released; returns the closed bars.
    ///
    /// Returns None, with the state unchanged, when a column is missing, null or of another type,
    /// or a trade is refused (not finite, out of the fixed-point or timestamp range, or refused by
    /// the kernel): `process` gives the diagnosis.
    #[pyo3(signature = (data, timestamp_mul = 1, timestamp_div = 1))]
    fn process_arrow(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timestamp_mul: i64,
        timestamp_div: i64,
    ) -> PyResult<Option<PyBarBatch>> {
        if timestamp_mul < 1 || timestamp_div < 1 || (timestamp_mul > 1 && timestamp_div > 1) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "timestamp_mul and timestamp_div must be >= 1 and one of them 1, got {timestamp_mul} \
                 and {timestamp_div}"
            )));
        }
        let batches = input_batches(data)?;
        let Some(columns) = batches
            .iter()
            .map(|b| arrow_trades(b, timestamp_mul, timestamp_div))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        let inner = &mut self.inner;
        let bars = py.detach(|| {
            let saved = inner.clone();
            let bars = process_arrow_batches(inner, &columns);
            if bars.is_none() {
                *inner = saved;
            }
            bars
        });
        Ok(bars.map(|b| self.batch(b)))
    }

    /// The trailing bar (features computed) as a 1-row record batch, or None.
    fn incomplete_bar(&self) -> Option<PyBarBatch> {
        let mut out = BarColumns::default();
        self.inner
            .push_incomplete_bar(&mut out)
            .then(|| self.batch(out))
    }

    /// A lossless snapshot of the state.
    fn checkpoint(&self) -> PyCheckpoint {
        PyCheckpoint {
            inner: self.inner.checkpoint(),
        }
    }

    /// A processor continuing from `checkpoint`.
    #[staticmethod]
    fn from_checkpoint(checkpoint: &PyCheckpoint) -> PyResult<Self> {
        Ok(Self {
            inner: RangeBarProcessor::from_checkpoint(&checkpoint.inner).map_err(to_py)?,
        })
    }

    #[getter]
    fn threshold_decimal_bps(&self) -> u32 {
        self.inner.config().threshold_decimal_bps
    }

    #[getter]
    fn same_timestamp_gate(&self) -> bool {
        self.inner.config().same_timestamp_gate
    }

    #[getter]
    fn min_duration_us(&self) -> i64 {
        self.inner.config().min_duration_us
    }

    #[getter]
    fn lookback_trades(&self) -> u32 {
        self.inner.config().lookback_trades
    }

    #[getter]
    fn intra_bar(&self) -> bool {
        self.inner.config().intra_bar
    }

    #[getter]
    fn has_incomplete_bar(&self) -> bool {
        self.inner.bar_state().is_some()
    }

    #[getter]
    fn trades_seen(&self) -> u64 {
        self.inner.trades_seen()
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let restore = py.get_type::<Self>().getattr("from_checkpoint")?;
        let cp = Bound::new(py, slf.borrow().checkpoint())?;
        let args = PyTuple::new(py, [cp])?;
        PyTuple::new(py, [restore.into_any(), args.into_any()])
    }
}

pyo3::import_exception!(rangebar_pipeline.exceptions, CorruptArchiveError);

/// Fixed-point values as Arrow decimal128 words (low, high) per value.
fn decimal128_words(raw: &[i64]) -> Vec<i64> {
    raw.iter().flat_map(|&v| [v, v >> 63]).collect()
}

/// Parsed columns, with prices and quantities widened to decimal128 words when asked.
struct ParsedPiece {
    columns: AggTradeColumns,
    words: Option<(Vec<i64>, Vec<i64>)>,
}

/// Parsed aggTrades columns as a dict name -> 1-D NumPy array (no copies).
fn agg_trades_to_dict(py: Python<'_>, piece: ParsedPiece) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    let c = piece.columns;
    d.set_item("agg_trade_id", c.agg_trade_id.into_pyarray(py))?;
    match piece.words {
        Some((price, quantity)) => {
            d.set_item("price", price.into_pyarray(py))?;
            d.set_item("quantity", quantity.into_pyarray(py))?;
        }
        None => {
            d.set_item("price", c.price.into_pyarray(py))?;
            d.set_item("quantity", c.quantity.into_pyarray(py))?;
        }
    }
    d.set_item("first_trade_id", c.first_trade_id.into_pyarray(py))?;
    d.set_item("last_trade_id", c.last_trade_id.into_pyarray(py))?;
    d.set_item("timestamp", c.timestamp.into_pyarray(py))?;
    d.set_item("is_buyer_maker", c.is_buyer_maker.into_pyarray(py))?;
    Ok(d)
}

fn csv_error(err: CsvError) -> PyErr {
    CorruptArchiveError::new_err(err.to_string())
}

/// Exact streaming parser of Binance aggTrades CSV (no header) into fixed-point columns.
#[pyclass(module = "rangebar_pipeline._core", name = "AggTradesCsvParser")]
struct PyAggTradesParser {
    inner: AggTradesParser,
    decimal128: bool,
}

impl PyAggTradesParser {
    fn finish_piece(&self, columns: AggTradeColumns) -> ParsedPiece {
        let words = self.decimal128.then(|| {
            (
                decimal128_words(&columns.price),
                decimal128_words(&columns.quantity),
            )
        });
        ParsedPiece { columns, words }
    }
}

#[pymethods]
impl PyAggTradesParser {
    #[new]
    #[pyo3(signature = (fields, *, first_line = 1, decimal128 = false))]
    fn new(fields: usize, first_line: u64, decimal128: bool) -> PyResult<Self> {
        Ok(Self {
            inner: AggTradesParser::new(fields, first_line)
                .map_err(pyo3::exceptions::PyValueError::new_err)?,
            decimal128,
        })
    }

    /// Parse the complete lines of `data[start:]` (a trailing partial line waits for the next
    /// call); returns their columns. Raises CorruptArchiveError naming the line and field.
    #[pyo3(signature = (data, start = 0))]
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
        start: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let piece = data.get(start..).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "start {start} is past the end of the data ({} bytes)",
                data.len()
            ))
        })?;
        let parsed = py.detach(|| {
            let mut out = AggTradeColumns::default();
            self.inner.feed(piece, &mut out)?;
            Ok(self.finish_piece(out))
        });
        agg_trades_to_dict(py, parsed.map_err(csv_error)?)
    }

    /// Parse the last line if it had no line break; returns its columns (0 or 1 row).
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut out = AggTradeColumns::default();
        self.inner.finish(&mut out).map_err(csv_error)?;
        agg_trades_to_dict(py, self.finish_piece(out))
    }

    /// The number the next complete line will have.
    #[getter]
    fn next_line(&self) -> u64 {
        self.inner.next_line()
    }

    /// Rows parsed so far.
    #[getter]
    fn rows(&self) -> u64 {
        self.inner.stats().rows
    }

    /// Whether `(timestamp, agg_trade_id)` strictly increased over all rows so far.
    #[getter]
    fn is_sorted(&self) -> bool {
        self.inner.stats().sorted
    }

    /// `(smallest, largest)` raw timestamp so far, or None before the first row.
    #[getter]
    fn timestamp_range(&self) -> Option<(i64, i64)> {
        let stats = self.inner.stats();
        (stats.rows > 0).then_some((stats.timestamp_min, stats.timestamp_max))
    }
}

/// Floats to fixed point (x1e8, round half away from zero); an error names the first bad row.
#[pyfunction]
fn to_fixed_point<'py>(
    py: Python<'py>,
    values: PyReadonlyArray1<'py, f64>,
    column: &str,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let src = values.as_slice()?;
    let converted: Result<Vec<i64>, usize> = py.detach(|| {
        // One exact-size pass with no early exit (it vectorises); the bad row is found after.
        let mut bad = false;
        let raw: Vec<i64> = src
            .iter()
            .map(|&v| {
                let fixed = fixed::from_f64(v);
                bad |= fixed.is_none();
                fixed.unwrap_or(0)
            })
            .collect();
        if bad {
            Err(src
                .iter()
                .position(|&v| fixed::from_f64(v).is_none())
                .unwrap_or(0))
        } else {
            Ok(raw)
        }
    });
    match converted {
        Ok(raw) => Ok(raw.into_pyarray(py)),
        Err(row) => Err(invalid_trade(format!(
            "invalid {column} at row {row}: {} is not finite or exceeds the fixed-point range \
             (|value| < 92233720368.54775807)",
            src[row]
        ))),
    }
}

/// Arrow decimal128 words (2 per value, scale <= 8) to fixed point; an error names the bad row.
#[pyfunction]
fn decimal128_to_fixed_point<'py>(
    py: Python<'py>,
    words: PyReadonlyArray1<'py, i64>,
    scale: u32,
    column: &str,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    if scale > 8 {
        return Err(invalid_trade(format!(
            "{column}: decimal scale {scale} > 8 needs an exactness check first"
        )));
    }
    let src = words.as_slice()?;
    match py.detach(|| fixed::decimal128_words_to_fixed(src, scale)) {
        Ok(raw) => Ok(raw.into_pyarray(py)),
        Err(row) => Err(invalid_trade(format!(
            "invalid {column} at row {row}: exceeds the fixed-point range (|value| < 92233720368.54775807)"
        ))),
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyProcessor>()?;
    m.add_class::<PyCheckpoint>()?;
    m.add_class::<PyBarBatch>()?;
    m.add_class::<PyAggTradesParser>()?;
    m.add_function(wrap_pyfunction!(to_fixed_point, m)?)?;
    m.add_function(wrap_pyfunction!(decimal128_to_fixed_point, m)?)?;
    m.add(
        "THRESHOLD_DECIMAL_MIN",
        rangebar_core::THRESHOLD_DECIMAL_MIN,
    )?;
    m.add(
        "THRESHOLD_DECIMAL_MAX",
        rangebar_core::THRESHOLD_DECIMAL_MAX,
    )?;
    m.add("CHECKPOINT_VERSION", rangebar_core::CHECKPOINT_VERSION)?;
    macro_rules! names {
        ($($field:ident),*) => { [$(stringify!($field)),*] };
    }
    m.add(
        "BAR_COLUMNS",
        PyTuple::new(m.py(), rangebar_core::for_each_bar_column!(names))?,
    )?;
    m.add(
        "LOOKBACK_COLUMNS",
        PyTuple::new(m.py(), rangebar_core::for_each_lookback_column!(names))?,
    )?;
    m.add(
        "INTRA_COLUMNS",
        PyTuple::new(m.py(), rangebar_core::for_each_intra_column!(names))?,
    )?;
    m.add("LOOKBACK_TRADES_MAX", rangebar_core::LOOKBACK_TRADES_MAX)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
