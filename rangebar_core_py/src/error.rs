//! Kernel errors -> the Python exceptions of `rangebar_pipeline.exceptions`.

use pyo3::PyErr;
use rangebar_core::KernelError;

pyo3::import_exception!(rangebar_pipeline.exceptions, InvalidThresholdError);
pyo3::import_exception!(rangebar_pipeline.exceptions, InvalidTradeError);
pyo3::import_exception!(rangebar_pipeline.exceptions, UnsortedTradesError);
pyo3::import_exception!(rangebar_pipeline.exceptions, ThresholdTooSmallError);
pyo3::import_exception!(rangebar_pipeline.exceptions, AccumulatorOverflowError);
pyo3::import_exception!(rangebar_pipeline.exceptions, CheckpointError);

/// Map a kernel error to its Python exception type, keeping the message.
pub fn to_py(err: KernelError) -> PyErr {
    let msg = err.to_string();
    match err {
        KernelError::InvalidThreshold(_) => InvalidThresholdError::new_err(msg),
        KernelError::InvalidMinDuration(_) | KernelError::InvalidLookback(_) => {
            pyo3::exceptions::PyValueError::new_err(msg)
        }
        KernelError::Unsorted { .. } => UnsortedTradesError::new_err(msg),
        KernelError::ThresholdTooSmall { .. } => ThresholdTooSmallError::new_err(msg),
        KernelError::Overflow { .. } => AccumulatorOverflowError::new_err(msg),
        KernelError::Checkpoint(_) => CheckpointError::new_err(msg),
        KernelError::InvalidPrice { .. }
        | KernelError::InvalidQuantity { .. }
        | KernelError::InvalidTradeIds { .. }
        | KernelError::LengthMismatch { .. } => InvalidTradeError::new_err(msg),
    }
}

/// An `InvalidTradeError` with the given message.
pub fn invalid_trade(msg: String) -> PyErr {
    InvalidTradeError::new_err(msg)
}
