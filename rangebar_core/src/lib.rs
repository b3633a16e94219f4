//! Range-bar kernel: fixed-point arithmetic, the batch bar rule, microstructure features and
//! lossless checkpoints. Pure Rust: no Python types; the PyO3 binding lives in `rangebar_core_py`.
//!
//! The rule (SPEC §1): a bar opens at a trade and fixes `delta = trunc(open * thr / 100_000)`;
//! a trade with `price >= open + delta` or `price <= open - delta` is added to the bar and closes
//! it; the *next* trade opens the next bar. Processing a stream in any split gives the same bars.

mod bar;
mod checkpoint;
mod columns;
pub mod csv;
mod error;
pub mod fixed;
mod intra;
mod lookback;
mod processor;

pub use bar::{Bar, BarState, Features, SideTotals};
pub use checkpoint::{Checkpoint, CHECKPOINT_VERSION};
pub use columns::{BarColumns, IntraColumns, LookbackColumns, TradeColumns, NULL_I64};
pub use error::KernelError;
pub use intra::{IntraFeatures, IntraState};
pub use lookback::{Lookback, LookbackFeatures, WindowTrade, LOOKBACK_TRADES_MAX};
pub use processor::{ProcessorConfig, RangeBarProcessor};

/// Smallest valid threshold in decimal basis points (0.001 %).
pub const THRESHOLD_DECIMAL_MIN: u32 = 1;
/// Largest valid threshold in decimal basis points (100 %).
pub const THRESHOLD_DECIMAL_MAX: u32 = 100_000;
/// Divisor of thresholds: 1 decimal basis point = 1e-5.
pub const BASIS_POINTS_SCALE: i128 = 100_000;
