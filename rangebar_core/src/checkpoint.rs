//! Lossless, versioned checkpoints of the processor state (bytes via postcard, or JSON).

use serde::{Deserialize, Serialize};

use crate::bar::BarState;
use crate::error::KernelError;
use crate::{BASIS_POINTS_SCALE, THRESHOLD_DECIMAL_MAX, THRESHOLD_DECIMAL_MIN};

/// Version of the checkpoint encoding.
pub const CHECKPOINT_VERSION: u32 = 1;
const MAGIC: &[u8; 4] = b"RBCP";

/// Everything needed to continue a stream exactly: the bar in progress with every accumulator
/// and its thresholds, the last `(timestamp, agg_trade_id)` and the settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub threshold_decimal_bps: u32,
    pub same_timestamp_gate: bool,
    pub bar: Option<BarState>,
    pub last_timestamp_us: Option<i64>,
    pub last_agg_trade_id: Option<i64>,
    pub trades_seen: u64,
}

fn invalid(msg: impl Into<String>) -> KernelError {
    KernelError::Checkpoint(msg.into())
}

impl Checkpoint {
    /// Compact binary encoding: magic `RBCP`, then postcard.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(postcard::to_allocvec(self).expect("checkpoint serialisation cannot fail"));
        out
    }

    /// Decode [`Checkpoint::to_bytes`] output (validated).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KernelError> {
        let payload = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| invalid("not a rangebar checkpoint (bad magic bytes)"))?;
        let cp: Self =
            postcard::from_bytes(payload).map_err(|e| invalid(format!("cannot decode: {e}")))?;
        cp.validate()?;
        Ok(cp)
    }

    /// JSON encoding (128-bit accumulators as JSON integers).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("checkpoint serialisation cannot fail")
    }

    /// Decode [`Checkpoint::to_json`] output (validated).
    pub fn from_json(text: &str) -> Result<Self, KernelError> {
        let cp: Self =
            serde_json::from_str(text).map_err(|e| invalid(format!("cannot decode JSON: {e}")))?;
        cp.validate()?;
        Ok(cp)
    }

    /// Check that the checkpoint is internally consistent.
    pub fn validate(&self) -> Result<(), KernelError> {
        if self.version != CHECKPOINT_VERSION {
            return Err(invalid(format!(
                "unsupported version {} (this build reads version {CHECKPOINT_VERSION})",
                self.version
            )));
        }
        if !(THRESHOLD_DECIMAL_MIN..=THRESHOLD_DECIMAL_MAX).contains(&self.threshold_decimal_bps) {
            return Err(KernelError::InvalidThreshold(i64::from(
                self.threshold_decimal_bps,
            )));
        }
        if self.last_timestamp_us.is_some() != self.last_agg_trade_id.is_some() {
            return Err(invalid(
                "last_timestamp_us and last_agg_trade_id must be both set or both null",
            ));
        }
        if let Some(b) = &self.bar {
            let delta =
                i128::from(b.open) * i128::from(self.threshold_decimal_bps) / BASIS_POINTS_SCALE;
            let consistent = b.open > 0
                && i128::from(b.upper) == i128::from(b.open) + delta
                && i128::from(b.lower) == i128::from(b.open) - delta
                && b.low <= b.open.min(b.close)
                && b.high >= b.open.max(b.close)
                && b.open_time <= b.close_time
                && b.agg_record_count >= 1
                && [b.buy, b.sell]
                    .iter()
                    .all(|side| side.volume >= 0 && side.turnover >= 0 && side.trades >= 0)
                && self.last_timestamp_us == Some(b.close_time)
                && self.last_agg_trade_id == Some(b.last_agg_trade_id);
            if !consistent {
                return Err(invalid(
                    "the bar in progress is inconsistent with its thresholds or totals",
                ));
            }
        }
        Ok(())
    }
}
