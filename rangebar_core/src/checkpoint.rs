//! Lossless, versioned checkpoints of the processor state (bytes via postcard, or JSON).

use serde::{Deserialize, Serialize};

use crate::bar::BarState;
use crate::error::KernelError;
use crate::intra::IntraState;
use crate::lookback::Lookback;
use crate::{BASIS_POINTS_SCALE, THRESHOLD_DECIMAL_MAX, THRESHOLD_DECIMAL_MIN};

/// Newest version of the checkpoint encoding (every older version is read too).
///
/// Version 1: threshold, same-timestamp gate, bar in progress, last trade, trades seen.
/// Version 2 appends `min_duration_us` and the lookback state; it is written only when one of them
/// is on, so checkpoints of processors without them keep their version-1 bytes.
/// Version 3 appends the intra state (the records of the bar in progress); it is written only
/// when the intra group is on, so every other checkpoint keeps its version-1 or -2 bytes.
pub const CHECKPOINT_VERSION: u32 = 3;
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
    /// Minimum-duration gate in microseconds (version 2; 0 in version 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_duration_us: i64,
    /// Lookback window state (version 2; None when the group is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<Lookback>,
    /// Intra state: the records of the bar in progress (version 3; None when the group is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intra: Option<IntraState>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The version-1 fields, which open every binary checkpoint (postcard encodes fields in order).
#[derive(Serialize, Deserialize)]
struct V1 {
    version: u32,
    threshold_decimal_bps: u32,
    same_timestamp_gate: bool,
    bar: Option<BarState>,
    last_timestamp_us: Option<i64>,
    last_agg_trade_id: Option<i64>,
    trades_seen: u64,
}

fn invalid(msg: impl Into<String>) -> KernelError {
    KernelError::Checkpoint(msg.into())
}

impl Checkpoint {
    /// Compact binary encoding: magic `RBCP`, then postcard.
    pub fn to_bytes(&self) -> Vec<u8> {
        let v1 = V1 {
            version: self.version,
            threshold_decimal_bps: self.threshold_decimal_bps,
            same_timestamp_gate: self.same_timestamp_gate,
            bar: self.bar,
            last_timestamp_us: self.last_timestamp_us,
            last_agg_trade_id: self.last_agg_trade_id,
            trades_seen: self.trades_seen,
        };
        let mut out = MAGIC.to_vec();
        out.extend(postcard::to_allocvec(&v1).expect("checkpoint serialisation cannot fail"));
        if self.version >= 2 {
            out.extend(
                postcard::to_allocvec(&(self.min_duration_us, &self.lookback))
                    .expect("checkpoint serialisation cannot fail"),
            );
        }
        if self.version >= 3 {
            out.extend(
                postcard::to_allocvec(&self.intra).expect("checkpoint serialisation cannot fail"),
            );
        }
        out
    }

    /// Decode [`Checkpoint::to_bytes`] output (validated).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KernelError> {
        let payload = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| invalid("not a rangebar checkpoint (bad magic bytes)"))?;
        let decode = |e: postcard::Error| invalid(format!("cannot decode: {e}"));
        let (v1, rest): (V1, &[u8]) = postcard::take_from_bytes(payload).map_err(decode)?;
        let ((min_duration_us, lookback), rest) = if v1.version >= 2 {
            postcard::take_from_bytes::<(i64, Option<Lookback>)>(rest).map_err(decode)?
        } else {
            ((0, None), rest)
        };
        let (intra, rest) = if v1.version >= 3 {
            postcard::take_from_bytes::<Option<IntraState>>(rest).map_err(decode)?
        } else {
            (None, rest)
        };
        if !rest.is_empty() {
            return Err(invalid(format!("{} trailing bytes", rest.len())));
        }
        let cp = Self {
            version: v1.version,
            threshold_decimal_bps: v1.threshold_decimal_bps,
            same_timestamp_gate: v1.same_timestamp_gate,
            bar: v1.bar,
            last_timestamp_us: v1.last_timestamp_us,
            last_agg_trade_id: v1.last_agg_trade_id,
            trades_seen: v1.trades_seen,
            min_duration_us,
            lookback,
            intra,
        };
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
        if !(1..=CHECKPOINT_VERSION).contains(&self.version) {
            return Err(invalid(format!(
                "unsupported version {} (this build reads versions 1 to {CHECKPOINT_VERSION})",
                self.version
            )));
        }
        if self.min_duration_us < 0 || (self.version < 2 && self.min_duration_us != 0) {
            return Err(invalid(format!(
                "min_duration_us {} is invalid in a version {} checkpoint",
                self.min_duration_us, self.version
            )));
        }
        if let Some(lb) = &self.lookback {
            if self.version < 2 || !lb.is_consistent() {
                return Err(invalid("the lookback window state is inconsistent"));
            }
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
        if let Some(intra) = &self.intra {
            if self.version < 3 || !intra.is_consistent(self.bar.as_ref()) {
                return Err(invalid(
                    "the intra state is inconsistent with the bar in progress",
                ));
            }
        }
        Ok(())
    }
}
