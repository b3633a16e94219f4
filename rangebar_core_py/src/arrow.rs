//! The Arrow boundary: bars out as an Arrow record batch (validity bitmaps where the kernel has
//! nulls), trades in from any object exporting the Arrow PyCapsule interface.
//!
//! Out: every column is the kernel's vector handed to Arrow without a copy; the group columns
//! (lookback, intra) get a validity bitmap from the kernel's null encoding (NaN in float columns,
//! `NULL_I64` in integer ones), so no sentinel crosses the boundary. In: the record batches of an
//! `__arrow_c_stream__` / `__arrow_c_array__` object with canonical column names, read in place
//! (zero-copy) and converted to fixed point run by run.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StructArray, TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};
use pyo3_arrow::error::PyArrowResult;
use pyo3_arrow::ffi::{
    to_array_pycapsules, to_schema_pycapsule, to_stream_pycapsule, ArrayIterator,
};
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

/// Bars as an Arrow record batch: pass it to ``polars.DataFrame``, ``pyarrow.record_batch``,
/// ``pyarrow.table`` or ``pandas.DataFrame.from_arrow`` (the Arrow PyCapsule interface; no copies).
#[pyclass(module = "rangebar_pipeline._core", name = "BarBatch", frozen)]
pub struct PyBarBatch {
    batch: RecordBatch,
}

impl PyBarBatch {
    pub fn new(batch: RecordBatch) -> Self {
        Self { batch }
    }

    fn struct_field(schema: &SchemaRef) -> Field {
        Field::new_struct("", schema.fields().clone(), false)
    }
}

#[pymethods]
impl PyBarBatch {
    /// The Arrow C schema of the batch (a struct of the bar columns).
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyArrowResult<Bound<'py, PyCapsule>> {
        to_schema_pycapsule(py, self.batch.schema_ref().as_ref())
    }

    /// The batch as an Arrow C (schema, array) pair: one struct array of the bar columns.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyCapsule>>,
    ) -> PyArrowResult<Bound<'py, PyTuple>> {
        let field = Self::struct_field(self.batch.schema_ref());
        let array = StructArray::from(self.batch.clone());
        to_array_pycapsules(py, field.into(), &array, requested_schema)
    }

    /// The batch as an Arrow C stream of one record batch.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyCapsule>>,
    ) -> PyArrowResult<Bound<'py, PyCapsule>> {
        let field = Self::struct_field(self.batch.schema_ref());
        let array: ArrayRef = Arc::new(StructArray::from(self.batch.clone()));
        let reader = ArrayIterator::new([Ok(array)], field.into());
        to_stream_pycapsule(py, Box::new(reader), requested_schema)
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
