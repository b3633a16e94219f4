//! Intra-bar features (opt-in): 22 statistics of each bar's own agg records r_1..r_n, the open
//! trade through the closing trade (prices p_k, quantities v_k, times t_k; individual trade
//! counts and side totals from the bar's accumulators). They describe the bar itself and are
//! known at its close, so they cannot look ahead of a model acting after the close.
//!
//! The records of the bar in progress are kept in [`IntraState`], which the checkpoint carries,
//! so a bar split across calls, days or checkpoints gets identical values. Moments are population
//! moments; `None` is a null (the features are never NaN or infinite). A bar of one record has
//! count 1, duration 0, intensity 0, ofi 0 and every other feature null.
//!
//! The per-record work is a handful of passes (`stats`, `path`, `dfa` with `direct` and
//! `segments`), each a kernel also compiled for AVX2 and chosen at run time (`simd`); both
//! builds give the same bits.

mod dfa;
mod direct;
mod path;
mod segments;
mod simd;
mod stats;

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use crate::bar::BarState;
use crate::fixed;
use crate::lookback::{finite, ratio};
use dfa::DfaScratch;
use path::{drawdown_runup, epochs, Nav};
use stats::{burstiness, permutation_entropy, price_pass, volume_moments};

/// Fewest records for burstiness, skewness and kurtosis.
const MIN_MOMENTS: usize = 3;
/// Fewest records for the permutation entropy.
const MIN_ENTROPY: usize = 60;
/// Fewest records for the Hurst exponent (DFA of the n - 1 log returns, as `lookback_hurst`).
const MIN_HURST: usize = 64;

thread_local! {
    /// Buffers for the Hurst exponent, reused from bar to bar.
    static SCRATCH: RefCell<DfaScratch> = RefCell::default();
}

/// The agg records of the bar in progress (columns of equal length, oldest first; empty while no
/// bar is open).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntraState {
    pub timestamp_us: Vec<i64>,
    /// Fixed point (x1e8).
    pub price: Vec<i64>,
    /// Fixed point (x1e8).
    pub quantity: Vec<i64>,
}

impl IntraState {
    /// Record one agg record of the bar in progress.
    #[inline(always)]
    pub(crate) fn push(&mut self, timestamp_us: i64, price: i64, quantity: i64) {
        self.timestamp_us.push(timestamp_us);
        self.price.push(price);
        self.quantity.push(quantity);
    }

    /// Record a run of agg records of the bar in progress (columns of equal length).
    #[inline(always)]
    pub(crate) fn extend(&mut self, timestamp_us: &[i64], price: &[i64], quantity: &[i64]) {
        self.timestamp_us.extend_from_slice(timestamp_us);
        self.price.extend_from_slice(price);
        self.quantity.extend_from_slice(quantity);
    }

    /// Forget the records (the bar closed); keeps the allocation.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.timestamp_us.clear();
        self.price.clear();
        self.quantity.clear();
    }

    /// Number of records kept.
    pub fn len(&self) -> usize {
        self.price.len()
    }

    /// True when no record is kept.
    pub fn is_empty(&self) -> bool {
        self.price.is_empty()
    }

    /// Are these exactly the records of `bar` (for checkpoints)? Empty when no bar is open; else
    /// one record per agg record, from the open to the close, inside the bar's range, in time
    /// order, with the bar's total quantity.
    pub(crate) fn is_consistent(&self, bar: Option<&BarState>) -> bool {
        let n = self.len();
        if self.timestamp_us.len() != n || self.quantity.len() != n {
            return false;
        }
        let Some(b) = bar else {
            return n == 0;
        };
        let volume: i128 = self.quantity.iter().map(|&q| i128::from(q)).sum();
        i64::try_from(n).is_ok_and(|n| n == b.agg_record_count)
            && self.timestamp_us.first() == Some(&b.open_time)
            && self.timestamp_us.last() == Some(&b.close_time)
            && self.price.first() == Some(&b.open)
            && self.price.last() == Some(&b.close)
            && self.timestamp_us.windows(2).all(|w| w[0] <= w[1])
            && self.price.iter().all(|&p| (b.low..=b.high).contains(&p))
            && self.quantity.iter().all(|&q| q >= 0)
            && volume == b.volume()
    }
}

/// The intra columns of one bar ([`crate::for_each_intra_column!`] order, without the prefix).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IntraFeatures {
    /// n, the bar's agg records.
    pub trade_count: i64,
    /// t_n - t_1 (microseconds).
    pub duration_us: i64,
    /// n / duration in seconds (n when the duration is 0; 0 for a one-record bar).
    pub intensity: f64,
    /// (buy volume - sell volume) / total volume (0 when the total is 0 or n = 1).
    pub ofi: f64,
    /// (buy trades - sell trades) / individual trades.
    pub count_imbalance: Option<f64>,
    /// (vwap - low) / (high - low) clamped to [0, 1]; 0.5 when high = low, null when the volume is 0.
    pub vwap_position: Option<f64>,
    /// ((p_n - p_1) / p_1) / ofi; null when ofi = 0.
    pub kyle_lambda: Option<f64>,
    /// (s - m) / (s + m) of the inter-arrival times; null when n < 3 or s = 0.
    pub burstiness: Option<f64>,
    /// Skewness of the quantities; null when n < 3 or their std is 0.
    pub volume_skew: Option<f64>,
    /// Excess kurtosis of the quantities; null when n < 3 or their std is 0.
    pub volume_kurt: Option<f64>,
    /// |p_n - p_1| / path length; null when the path length is 0.
    pub kaufman_er: Option<f64>,
    /// Garman-Klass volatility with O = p_1, C = p_n and the bar's high and low.
    pub garman_klass_vol: Option<f64>,
    /// DFA exponent of the log returns (as `lookback_hurst`); null when n < 64.
    pub hurst: Option<f64>,
    /// Normalised permutation entropy, order 3, delay 1; null when n < 60.
    pub permutation_entropy: Option<f64>,
    /// D = max_k (1 - nav_k / max_{j<=k} nav_j), nav_k = p_k / p_1.
    pub max_drawdown: Option<f64>,
    /// U = max_k (1 - min_{j<=k} nav_j / nav_k).
    pub max_runup: Option<f64>,
    /// sigmoid(10 (E / n - 0.5)) over the bull epochs (hurdle D).
    pub bull_epoch_density: Option<f64>,
    /// tanh(5 sum_k G_k) over the bull side.
    pub bull_excess_gain: Option<f64>,
    /// sigmoid(4 (cv - 0.5)) of the bull epochs' intervals (cv = 0 without epochs).
    pub bull_cv: Option<f64>,
    /// The bear side (hurdle U) of `bull_epoch_density`.
    pub bear_epoch_density: Option<f64>,
    /// The bear side of `bull_excess_gain`.
    pub bear_excess_gain: Option<f64>,
    /// The bear side of `bull_cv`.
    pub bear_cv: Option<f64>,
}

impl IntraFeatures {
    /// The features of `bar` from its records `s` (which must be the bar's, see
    /// [`IntraState::is_consistent`]).
    pub fn compute(bar: &BarState, s: &IntraState) -> Self {
        let n = s.len();
        let (ts, price, qty) = (&s.timestamp_us[..n], &s.price[..n], &s.quantity[..n]);
        if n < 2 {
            return Self {
                trade_count: n as i64,
                ..Self::default()
            };
        }
        let nf = n as f64;
        let duration_us = ts[n - 1] - ts[0];
        let intensity = if duration_us == 0 {
            nf
        } else {
            nf / (duration_us as f64 / 1e6)
        };
        let (buy, sell) = (bar.buy.volume, bar.sell.volume);
        let ofi = ratio(
            fixed::wide_to_f64(buy - sell),
            fixed::wide_to_f64(buy + sell),
        )
        .unwrap_or(0.0);
        let (buys, sells) = (i128::from(bar.buy.trades), i128::from(bar.sell.trades));
        let count_imbalance = ratio(
            fixed::i128_to_f64(buys - sells),
            fixed::i128_to_f64(buys + sells),
        )
        .or(Some(0.0));
        let (o, c) = (fixed::to_f64(price[0]), fixed::to_f64(price[n - 1]));
        let (h, l) = (fixed::to_f64(bar.high), fixed::to_f64(bar.low));
        let pass = price_pass(price, bar.high, bar.low);
        let kaufman_er = ratio(
            price[n - 1].abs_diff(price[0]) as f64,
            fixed::i128_to_f64(pass.path as i128),
        );
        let garman_klass_vol = finite(
            (0.5 * (h / l).ln().powi(2) - (2.0 * 2f64.ln() - 1.0) * (c / o).ln().powi(2))
                .max(0.0)
                .sqrt(),
        );
        let (volume_skew, volume_kurt) = if n >= MIN_MOMENTS {
            volume_moments(qty, bar.volume())
        } else {
            (None, None)
        };
        let nav = Nav::new(price[0]);
        let (drawdown, runup) = drawdown_runup(price, nav);
        let (bull, bear) = epochs(price, nav, drawdown, runup);
        Self {
            trade_count: n as i64,
            duration_us,
            intensity,
            ofi,
            count_imbalance,
            vwap_position: vwap_position(bar),
            kyle_lambda: ratio((c - o) / o, ofi),
            burstiness: (n >= MIN_MOMENTS).then(|| burstiness(ts)).flatten(),
            volume_skew,
            volume_kurt,
            kaufman_er,
            garman_klass_vol,
            hurst: (n >= MIN_HURST)
                .then(|| SCRATCH.with(|sc| sc.borrow_mut().hurst(price, bar.high, bar.low)))
                .flatten(),
            permutation_entropy: (n >= MIN_ENTROPY)
                .then(|| permutation_entropy(&pass.by_key, n - 2))
                .flatten(),
            max_drawdown: finite(drawdown),
            max_runup: finite(runup),
            bull_epoch_density: finite(bull.density(n)),
            bull_excess_gain: finite(bull.excess_gain()),
            bull_cv: finite(bull.cv()),
            bear_epoch_density: finite(bear.density(n)),
            bear_excess_gain: finite(bear.excess_gain()),
            bear_cv: finite(bear.cv()),
        }
    }
}

/// `(vwap - low) / (high - low)` from the bar's exact totals, clamped to [0, 1].
fn vwap_position(bar: &BarState) -> Option<f64> {
    if bar.high == bar.low {
        return Some(0.5);
    }
    let volume = bar.volume();
    if volume == 0 {
        return None;
    }
    // vwap - low = (turnover - low * volume) / volume: exact in 128 bits when it fits.
    let exact = bar
        .buy
        .turnover
        .checked_add(bar.sell.turnover)
        .zip(i128::from(bar.low).checked_mul(volume))
        .and_then(|(turnover, floor)| turnover.checked_sub(floor))
        .zip(i128::from(bar.high - bar.low).checked_mul(volume));
    let position = match exact {
        Some((num, den)) => fixed::i128_to_f64(num) / fixed::i128_to_f64(den),
        None => {
            let vwap = fixed::i128_to_f64(bar.turnover()) / fixed::i128_to_f64(volume) / 1e8;
            (vwap - fixed::to_f64(bar.low)) / (fixed::to_f64(bar.high) - fixed::to_f64(bar.low))
        }
    };
    finite(position.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bar::Trade;
    use proptest::prelude::*;

    /// The bars of a random walk at `threshold` with their records (the last one open).
    fn bars(steps: &[(i64, i64, i64)], threshold: u32, tick: i64) -> Vec<(BarState, IntraState)> {
        let (mut price, mut ts) = (6_000_000_000_000_i64, 1_700_000_000_000_000_i64);
        let mut out: Vec<(BarState, IntraState)> = Vec::new();
        let mut open: Option<(BarState, IntraState)> = None;
        for (row, &(dp, dt, qty)) in steps.iter().enumerate() {
            price = (price + dp * tick).max(1);
            ts += dt;
            let t = Trade {
                timestamp_us: ts,
                price,
                quantity: qty,
                agg_trade_id: row as i64,
                first_trade_id: row as i64,
                last_trade_id: row as i64,
                is_buyer_maker: dp % 2 == 0,
            };
            match open.as_mut() {
                None => {
                    let mut s = IntraState::default();
                    s.push(ts, price, qty);
                    open = Some((BarState::open(&t, threshold, row).unwrap(), s));
                }
                Some((b, s)) => {
                    b.add(&t, row).unwrap();
                    s.push(ts, price, qty);
                    if b.breaches(price) {
                        out.extend(open.take());
                    }
                }
            }
        }
        out.extend(open);
        out
    }

    fn bits(f: &IntraFeatures) -> Vec<u64> {
        let o = |v: Option<f64>| v.map_or(u64::MAX, f64::to_bits);
        vec![
            f.trade_count as u64,
            f.duration_us as u64,
            f.intensity.to_bits(),
            f.ofi.to_bits(),
            o(f.count_imbalance),
            o(f.vwap_position),
            o(f.kyle_lambda),
            o(f.burstiness),
            o(f.volume_skew),
            o(f.volume_kurt),
            o(f.kaufman_er),
            o(f.garman_klass_vol),
            o(f.hurst),
            o(f.permutation_entropy),
            o(f.max_drawdown),
            o(f.max_runup),
            o(f.bull_epoch_density),
            o(f.bull_excess_gain),
            o(f.bull_cv),
            o(f.bear_epoch_density),
            o(f.bear_excess_gain),
            o(f.bear_cv),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The portable builds of every kernel give the AVX2 builds' bits (bars of a few records
        /// to a few thousand, so every path: direct and grid DFA sizes, blocks and steps).
        #[test]
        fn portable_and_avx2_builds_agree(
            steps in prop::collection::vec(
                (prop_oneof![4 => -2_i64..=2, 1 => -30_i64..=30], 0_i64..5_000, 0_i64..300_000_000),
                1..6_000,
            ),
            threshold in prop_oneof![Just(25_u32), Just(250), Just(2_500)],
            tick in prop_oneof![Just(100_000_000_i64), Just(1_000_000)],
        ) {
            for (bar, records) in bars(&steps, threshold, tick) {
                let fast = IntraFeatures::compute(&bar, &records);
                simd::PORTABLE.with(|p| p.set(true));
                let portable = IntraFeatures::compute(&bar, &records);
                simd::PORTABLE.with(|p| p.set(false));
                prop_assert_eq!(bits(&fast), bits(&portable), "{} records", records.len());
            }
        }
    }
}
