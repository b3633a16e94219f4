//! The kernel's error type. Every input error names the row (index within the call) and the value.

use thiserror::Error;

/// Errors raised by the kernel. Row indices are 0-based positions within the call's input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KernelError {
    #[error("invalid threshold: {0} decimal bps (valid range: 1..=100000, i.e. 0.001% to 100%)")]
    InvalidThreshold(i64),

    #[error("invalid min_duration_us: {0} (must be >= 0 microseconds)")]
    InvalidMinDuration(i64),

    #[error("invalid lookback_trades: {0} (valid range: 0 (off) ..= 1000000)")]
    InvalidLookback(i64),

    #[error(
        "trades not sorted at row {row}: (timestamp_us, agg_trade_id) = ({ts}, {id}) does not come \
         after the previous trade ({prev_ts}, {prev_id}); input must be strictly increasing"
    )]
    Unsorted {
        row: usize,
        prev_ts: i64,
        prev_id: i64,
        ts: i64,
        id: i64,
    },

    #[error("invalid price at row {row}: {value}; prices must be finite and > 0")]
    InvalidPrice { row: usize, value: String },

    #[error("invalid quantity at row {row}: {value}; quantities must be finite and >= 0")]
    InvalidQuantity { row: usize, value: String },

    #[error("invalid trade ids at row {row}: first_trade_id {first} > last_trade_id {last}")]
    InvalidTradeIds { row: usize, first: i64, last: i64 },

    #[error(
        "threshold too small for the price at row {row}: price {price} at {threshold} dbps gives \
         delta == 0 at 1e-8 precision; use a larger threshold"
    )]
    ThresholdTooSmall {
        row: usize,
        price: String,
        threshold: u32,
    },

    #[error("accumulator overflow at row {row} while adding to {field}")]
    Overflow { row: usize, field: &'static str },

    #[error("column length mismatch: {column} has {len} rows, expected {expected}")]
    LengthMismatch {
        column: &'static str,
        len: usize,
        expected: usize,
    },

    #[error("invalid checkpoint: {0}")]
    Checkpoint(String),
}

impl KernelError {
    /// The row the error refers to, when it refers to one.
    pub fn row(&self) -> Option<usize> {
        match self {
            Self::Unsorted { row, .. }
            | Self::InvalidPrice { row, .. }
            | Self::InvalidQuantity { row, .. }
            | Self::InvalidTradeIds { row, .. }
            | Self::ThresholdTooSmall { row, .. }
            | Self::Overflow { row, .. } => Some(*row),
            _ => None,
        }
    }

    /// Shift the row index by `offset` (used when a caller processes its input in slices).
    pub fn offset_row(self, offset: usize) -> Self {
        match self {
            Self::Unsorted {
                row,
                prev_ts,
                prev_id,
                ts,
                id,
            } => Self::Unsorted {
                row: row + offset,
                prev_ts,
                prev_id,
                ts,
                id,
            },
            Self::InvalidPrice { row, value } => Self::InvalidPrice {
                row: row + offset,
                value,
            },
            Self::InvalidQuantity { row, value } => Self::InvalidQuantity {
                row: row + offset,
                value,
            },
            Self::InvalidTradeIds { row, first, last } => Self::InvalidTradeIds {
                row: row + offset,
                first,
                last,
            },
            Self::ThresholdTooSmall {
                row,
                price,
                threshold,
            } => Self::ThresholdTooSmall {
                row: row + offset,
                price,
                threshold,
            },
            Self::Overflow { row, field } => Self::Overflow {
                row: row + offset,
                field,
            },
            other => other,
        }
    }
}
