//! The Arrow boundary: bars out as an Arrow record batch (validity bitmaps where the kernel has
//! nulls), trades in from any object exporting the Arrow PyCapsule interface.
//!
//! Out: every column is the kernel's vector handed to Arrow without a copy; the group columns
//! (lookback, intra) get a validity bitmap from the kernel's null encoding (NaN in float columns,
//! `NULL_I64` in integer ones), so no sentinel crosses the boundary. In: the record batches of an
//! `__arrow_c_stream__` / `__arrow_c_array__` object, or a dict of such columns cut at their chunk
//! ends, with canonical column names, read in place (zero-copy) and converted to fixed point run
//! by run.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::types::{
    Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, RecordBatchIterator, StructArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyTuple};
use pyo3_arrow::input::AnyRecordBatch;
use pyo3_arrow::{PyArray, PyArrayReader};
use rangebar_core::{fixed, BarColumns, NULL_I64};

/// The two time columns of a bar (UTC microseconds).
const TIME_COLUMNS: [&str; 2] = ["open_time", "close_time"];

/// A column of the output: its field and its array.
struct Column {
    field: Field,
    array: ArrayRef,
}

/// An always-valid column (the core bar columns).
trait Plain {
    fn plain(self, name: &str) -> Column;
}

impl Plain for Vec<i64> {
    fn plain(self, name: &str) -> Column {
        if TIME_COLUMNS.contains(&name) {
            let array =
                TimestampMicrosecondArray::new(ScalarBuffer::from(self), None).with_timezone("UTC");
            return Column {
                field: Field::new(name, array.data_type().clone(), false),
                array: Arc::new(array),
            };
        }
        Column {
            field: Field::new(name, DataType::Int64, false),
            array: Arc::new(Int64Array::new(ScalarBuffer::from(self), None)),
        }
    }
}

impl Plain for Vec<f64> {
    fn plain(self, name: &str) -> Column {
        Column {
            field: Field::new(name, DataType::Float64, false),
            array: Arc::new(Float64Array::new(ScalarBuffer::from(self), None)),
        }
    }
}

/// A group column whose nulls the kernel encodes in the values (NaN / `NULL_I64`).
trait Nullable {
    fn nullable(self, name: &str) -> Column;
}

/// The validity bitmap of `values` (None when every value is valid).
fn validity<T: Copy>(values: &[T], valid: impl Fn(T) -> bool) -> Option<NullBuffer> {
    let bits = BooleanBuffer::collect_bool(values.len(), |i| valid(values[i]));
    Some(NullBuffer::new(bits)).filter(|n| n.null_count() > 0)
}

impl Nullable for Vec<i64> {
    fn nullable(self, name: &str) -> Column {
        let nulls = validity(&self, |v| v != NULL_I64);
        Column {
            field: Field::new(name, DataType::Int64, true),
            array: Arc::new(Int64Array::new(ScalarBuffer::from(self), nulls)),
        }
    }
}

impl Nullable for Vec<f64> {
    fn nullable(self, name: &str) -> Column {
        // The kernel's features are never NaN except as its null marker.
        let nulls = validity(&self, |v: f64| !v.is_nan());
        Column {
            field: Field::new(name, DataType::Float64, true),
            array: Arc::new(Float64Array::new(ScalarBuffer::from(self), nulls)),
        }
    }
}

/// The kernel's bars as one record batch: the bar columns, then the lookback and intra groups
/// when the processor has them on (in the kernel's column order).
pub fn bars_to_batch(c: BarColumns, lookback: bool, intra: bool) -> RecordBatch {
    let mut columns: Vec<Column> = Vec::with_capacity(31 + 16 + 22);
    macro_rules! plain {
        ($($field:ident),*) => { $( columns.push(c.$field.plain(stringify!($field))); )* };
    }
    rangebar_core::for_each_bar_column!(plain);
    if lookback {
        let l = c.lookback;
        macro_rules! lookback {
            ($($field:ident),*) => { $( columns.push(l.$field.nullable(stringify!($field))); )* };
        }
        rangebar_core::for_each_lookback_column!(lookback);
    }
    if intra {
        let g = c.intra;
        macro_rules! intra {
            ($($field:ident),*) => { $( columns.push(g.$field.nullable(stringify!($field))); )* };
        }
        rangebar_core::for_each_intra_column!(intra);
    }
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) =
        columns.into_iter().map(|c| (c.field, c.array)).unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .expect("bar columns have equal lengths and their fields' types")
}

/// An Arrow error as a Python `ValueError`.
fn arrow_error(err: ArrowError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// Bars as an Arrow record batch: pass it to ``polars.DataFrame``, ``pyarrow.record_batch``,
/// ``pyarrow.table`` or ``pandas.DataFrame.from_arrow`` (the Arrow PyCapsule interface; no copies).
///
/// The capsules are made here with arrow-rs's C data interface; a `requested_schema` is not
/// honoured (the interface lets a producer ignore it): the bars have one layout.
#[pyclass(module = "rangebar_pipeline._core", name = "BarBatch", frozen)]
pub struct PyBarBatch {
    batch: RecordBatch,
}

impl PyBarBatch {
    pub fn new(batch: RecordBatch) -> Self {
        Self { batch }
    }
}

#[pymethods]
impl PyBarBatch {
    /// The Arrow C schema of the batch (a struct of the bar columns).
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let schema =
            FFI_ArrowSchema::try_from(self.batch.schema_ref().as_ref()).map_err(arrow_error)?;
        PyCapsule::new_with_value(py, schema, c"arrow_schema")
    }

    /// The batch as an Arrow C (schema, array) pair: one struct array of the bar columns.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let _ = requested_schema;
        let array = StructArray::from(self.batch.clone());
        let schema = FFI_ArrowSchema::try_from(array.data_type()).map_err(arrow_error)?;
        let schema = PyCapsule::new_with_value(py, schema, c"arrow_schema")?;
        let array =
            PyCapsule::new_with_value(py, FFI_ArrowArray::new(&array.to_data()), c"arrow_array")?;
        PyTuple::new(py, [schema, array])
    }

    /// The batch as an Arrow C stream of one record batch.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader = RecordBatchIterator::new([Ok(self.batch.clone())], self.batch.schema());
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        PyCapsule::new_with_value(py, stream, c"arrow_array_stream")
    }

    /// Number of bars.
    #[getter]
    fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The column names, in order.
    #[getter]
    fn column_names(&self) -> Vec<String> {
        self.batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn __len__(&self) -> usize {
        self.batch.num_rows()
    }

    fn __repr__(&self) -> String {
        format!(
            "BarBatch(num_rows={}, num_columns={})",
            self.batch.num_rows(),
            self.batch.num_columns()
        )
    }
}

/// The chunks of one Arrow column object (`__arrow_c_array__` or `__arrow_c_stream__`).
fn column_chunks(obj: &Bound<'_, PyAny>) -> PyResult<Vec<ArrayRef>> {
    let py = obj.py();
    if obj.hasattr(intern!(py, "__arrow_c_array__"))? {
        return Ok(vec![obj.extract::<PyArray>()?.into_inner().0]);
    }
    if obj.hasattr(intern!(py, "__arrow_c_stream__"))? {
        return obj
            .extract::<PyArrayReader>()?
            .into_reader()?
            .collect::<Result<_, _>>()
            .map_err(arrow_error);
    }
    Err(PyTypeError::new_err(format!(
        "expected an Arrow column (__arrow_c_array__ or __arrow_c_stream__), got {}",
        obj.get_type().name()?
    )))
}

/// Record batches of columns given one by one, each in its own chunks: one batch per run of rows
/// inside one chunk of every column (zero-copy slices), so no column is ever concatenated.
fn batches_of_columns(columns: &Bound<'_, PyDict>) -> PyResult<Vec<RecordBatch>> {
    let mut names = Vec::with_capacity(columns.len());
    let mut chunks = Vec::with_capacity(columns.len());
    for (name, obj) in columns.iter() {
        names.push(name.extract::<String>()?);
        chunks.push(column_chunks(&obj)?);
    }
    let length = |c: &[ArrayRef]| c.iter().map(|a| a.len()).sum::<usize>();
    let rows = chunks.first().map_or(0, |c| length(c));
    if let Some((name, c)) = names.iter().zip(&chunks).find(|(_, c)| length(c) != rows) {
        return Err(PyValueError::new_err(format!(
            "column {name} has {} rows, expected {rows} (the first column's)",
            length(c)
        )));
    }
    let mut ends: Vec<usize> = chunks
        .iter()
        .flat_map(|c| {
            c.iter().scan(0, |end, a| {
                *end += a.len();
                Some(*end)
            })
        })
        .collect();
    ends.sort_unstable();
    ends.dedup();
    let mut cursors = vec![(0_usize, 0_usize); chunks.len()]; // (chunk, its first row)
    let mut start = 0;
    let mut batches = Vec::with_capacity(ends.len());
    for end in ends.into_iter().filter(|&e| e > 0) {
        let mut fields = Vec::with_capacity(chunks.len());
        let mut arrays = Vec::with_capacity(chunks.len());
        for ((name, column), (chunk, first)) in names.iter().zip(&chunks).zip(cursors.iter_mut()) {
            while start >= *first + column[*chunk].len() {
                *first += column[*chunk].len();
                *chunk += 1;
            }
            let array = column[*chunk].slice(start - *first, end - start);
            fields.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array);
        }
        batches.push(
            RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(arrow_error)?,
        );
        start = end;
    }
    Ok(batches)
}

/// The record batches of a trade input: a dict of Arrow columns (read chunk by chunk), or any
/// record batch or stream object (read with the GIL held: a stream may call back into Python;
/// the buffers are shared, not copied).
pub fn input_batches(data: &Bound<'_, PyAny>) -> PyResult<Vec<RecordBatch>> {
    if let Ok(columns) = data.cast::<PyDict>() {
        return batches_of_columns(columns);
    }
    match data.extract::<AnyRecordBatch>()? {
        AnyRecordBatch::RecordBatch(batch) => Ok(vec![batch.into_inner()]),
        AnyRecordBatch::Stream(stream) => stream
            .into_reader()?
            .collect::<Result<Vec<_>, _>>()
            .map_err(arrow_error),
    }
}

/// A trade column as the kernel needs it, read from an Arrow array (None: a type or null the fast
/// path does not take; the caller's general path converts and diagnoses it).
pub enum Fixed<'a> {
    /// Float64 values, converted to fixed point (x1e8, round half away from zero).
    Float(&'a [f64]),
    /// Decimal128 values of scale <= 8, multiplied by `factor` to fixed point.
    Decimal(&'a [i128], i64),
    /// Int64 values, multiplied by 1e8.
    Integer(&'a [i64]),
}

/// Timestamps as the kernel needs them: `raw * mul` or `raw.div_euclid(div)`.
pub struct Timestamps<'a> {
    pub raw: &'a [i64],
    pub mul: i64,
    pub div: i64,
}

/// The columns of one input record batch, borrowed from its Arrow buffers.
pub struct ArrowTrades<'a> {
    pub timestamp: Timestamps<'a>,
    pub price: Fixed<'a>,
    pub quantity: Fixed<'a>,
    pub agg_trade_id: Option<&'a [i64]>,
    pub first_trade_id: Option<&'a [i64]>,
    pub last_trade_id: Option<&'a [i64]>,
    pub is_buyer_maker: Option<&'a BooleanBuffer>,
}

impl ArrowTrades<'_> {
    pub fn len(&self) -> usize {
        self.timestamp.raw.len()
    }
}

/// Bits `start..start + len` of `bits` as booleans in `out` (eight at a time when byte-aligned).
pub fn unpack_bits(bits: &BooleanBuffer, start: usize, len: usize, out: &mut Vec<bool>) {
    out.clear();
    out.reserve(len);
    let offset = bits.offset() + start;
    if offset % 8 != 0 {
        out.extend(bits.slice(start, len).iter());
        return;
    }
    let bytes = &bits.values()[offset / 8..];
    let whole = len / 8;
    for &byte in &bytes[..whole] {
        out.extend((0..8).map(|k| byte >> k & 1 == 1));
    }
    out.extend((whole * 8..len).map(|i| bytes[i / 8] >> (i % 8) & 1 == 1));
}

/// The column `name` of `batch`, if present and without nulls; `Err(())` when present but
/// unusable (nulls), `Ok(None)` when absent.
fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<Option<&'a ArrayRef>, ()> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(a) if a.null_count() > 0 => Err(()),
        Some(a) => Ok(Some(a)),
    }
}

fn fixed_column<'a>(array: &'a ArrayRef) -> Option<Fixed<'a>> {
    match array.data_type() {
        DataType::Float64 => Some(Fixed::Float(array.as_primitive::<Float64Type>().values())),
        DataType::Int64 => Some(Fixed::Integer(array.as_primitive::<Int64Type>().values())),
        DataType::Decimal128(_, scale) if (0..=8).contains(scale) => Some(Fixed::Decimal(
            array.as_primitive::<Decimal128Type>().values(),
            10_i64.pow(8 - *scale as u32),
        )),
        _ => None,
    }
}

fn id_column(array: Option<&ArrayRef>) -> Option<Option<&[i64]>> {
    match array {
        None => Some(None),
        Some(a) if a.data_type() == &DataType::Int64 => {
            Some(Some(a.as_primitive::<Int64Type>().values()))
        }
        Some(_) => None,
    }
}

/// Borrow the trade columns of `batch` (canonical names); integer timestamps are scaled by
/// `mul`/`div`, Arrow timestamps by their own unit. None when a column is missing, null or of a
/// type the fast path does not take.
pub fn arrow_trades(batch: &RecordBatch, mul: i64, div: i64) -> Option<ArrowTrades<'_>> {
    let ts = column(batch, "timestamp").ok()??;
    let timestamp = match ts.data_type() {
        DataType::Int64 => Timestamps {
            raw: ts.as_primitive::<Int64Type>().values(),
            mul,
            div,
        },
        DataType::Timestamp(unit, _) => {
            let (raw, mul, div) = match unit {
                TimeUnit::Second => (
                    ts.as_primitive::<TimestampSecondType>().values(),
                    1_000_000,
                    1,
                ),
                TimeUnit::Millisecond => (
                    ts.as_primitive::<TimestampMillisecondType>().values(),
                    1_000,
                    1,
                ),
                TimeUnit::Microsecond => {
                    (ts.as_primitive::<TimestampMicrosecondType>().values(), 1, 1)
                }
                TimeUnit::Nanosecond => (
                    ts.as_primitive::<TimestampNanosecondType>().values(),
                    1,
                    1_000,
                ),
            };
            Timestamps { raw, mul, div }
        }
        _ => return None,
    };
    let price = fixed_column(column(batch, "price").ok()??)?;
    let quantity = fixed_column(column(batch, "quantity").ok()??)?;
    let agg_trade_id = id_column(column(batch, "agg_trade_id").ok()?)?;
    let first_trade_id = id_column(column(batch, "first_trade_id").ok()?)?;
    let last_trade_id = id_column(column(batch, "last_trade_id").ok()?)?;
    let is_buyer_maker = match column(batch, "is_buyer_maker").ok()? {
        None => None,
        Some(a) if a.data_type() == &DataType::Boolean => Some(a.as_boolean().values()),
        Some(_) => return None,
    };
    Some(ArrowTrades {
        timestamp,
        price,
        quantity,
        agg_trade_id,
        first_trade_id,
        last_trade_id,
        is_buyer_maker,
    })
}

/// Fill `out` with `src` converted by `f`; false when any value has no conversion.
#[inline]
pub fn convert_into<T: Copy>(out: &mut Vec<i64>, src: &[T], f: impl Fn(T) -> Option<i64>) -> bool {
    out.clear();
    let mut ok = true;
    // One pass with no early exit (it vectorises); a refused value poisons the whole call.
    out.extend(src.iter().map(|&v| {
        let converted = f(v);
        ok &= converted.is_some();
        converted.unwrap_or(0)
    }));
    ok
}

impl Fixed<'_> {
    /// Rows `run` in fixed point into `out`; false when a value is out of range or not finite.
    pub fn convert(&self, run: std::ops::Range<usize>, out: &mut Vec<i64>) -> bool {
        match *self {
            Fixed::Float(v) => convert_into(out, &v[run], fixed::from_f64),
            Fixed::Integer(v) => convert_into(out, &v[run], |x| x.checked_mul(100_000_000)),
            Fixed::Decimal(v, factor) => convert_into(out, &v[run], |x| {
                i64::try_from(x).ok().and_then(|x| x.checked_mul(factor))
            }),
        }
    }
}

impl<'a> Timestamps<'a> {
    /// Rows `run` in microseconds: the input itself when it is in microseconds, else converted
    /// into `out`; None on overflow.
    pub fn convert<'b>(
        &self,
        run: std::ops::Range<usize>,
        out: &'b mut Vec<i64>,
    ) -> Option<&'b [i64]>
    where
        'a: 'b,
    {
        let raw: &'a [i64] = &self.raw[run];
        let ok = match (self.mul, self.div) {
            (1, 1) => return Some(raw),
            (1, div) => convert_into(out, raw, |v| Some(v.div_euclid(div))),
            (mul, _) => convert_into(out, raw, |v| v.checked_mul(mul)),
        };
        ok.then_some(out.as_slice())
    }
}
