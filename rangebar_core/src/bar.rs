//! Bar state (the accumulators of the bar in progress) and finished bars with their features.

use serde::{Deserialize, Serialize};

use crate::error::KernelError;
use crate::fixed;
use crate::BASIS_POINTS_SCALE;

/// One input trade, already in fixed point and microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trade {
    pub timestamp_us: i64,
    pub price: i64,
    pub quantity: i64,
    pub agg_trade_id: i64,
    pub first_trade_id: i64,
    pub last_trade_id: i64,
    pub is_buyer_maker: bool,
}

/// Totals of one side of the tape (buy = `is_buyer_maker == false`, sell = true).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideTotals {
    /// Quantity, fixed point x1e8.
    pub volume: i128,
    /// Price x quantity, scale 1e16.
    pub turnover: i128,
    /// Individual trades: sums of `last_trade_id - first_trade_id + 1`.
    pub trades: i64,
}

/// The bar in progress: every accumulator, plus the thresholds fixed when it opened.
///
/// Prices are fixed point (x1e8). Totals are kept per side (buy/sell) in 128 bits; the bar's
/// volume, turnover and trade count are their sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarState {
    pub open_time: i64,
    pub close_time: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub upper: i64,
    pub lower: i64,
    pub buy: SideTotals,
    pub sell: SideTotals,
    pub agg_record_count: i64,
    pub first_agg_trade_id: i64,
    pub last_agg_trade_id: i64,
    pub first_trade_id: i64,
    pub last_trade_id: i64,
}

#[inline]
fn trade_count(t: &Trade, row: usize) -> Result<i64, KernelError> {
    // first <= last is checked by the caller; only the span can leave the i64 range.
    t.last_trade_id
        .checked_sub(t.first_trade_id)
        .and_then(|d| d.checked_add(1))
        .ok_or(KernelError::Overflow {
            row,
            field: "individual_trade_count",
        })
}

impl BarState {
    /// Open a bar at `t`, fixing `delta = trunc(open * threshold / 100_000)`.
    #[inline]
    pub(crate) fn open(t: &Trade, threshold: u32, row: usize) -> Result<Self, KernelError> {
        // In 64 bits when the product fits (any price below ~9e13 units): the same truncated
        // quotient without a 128-bit division.
        let delta = match t.price.checked_mul(i64::from(threshold)) {
            Some(product) => i128::from(product / BASIS_POINTS_SCALE as i64),
            None => i128::from(t.price) * i128::from(threshold) / BASIS_POINTS_SCALE,
        };
        if delta == 0 {
            return Err(KernelError::ThresholdTooSmall {
                row,
                price: fixed::format(t.price),
                threshold,
            });
        }
        // delta <= price (threshold <= 100 %), so only `upper` can leave the i64 range.
        let delta = delta as i64;
        let upper = t.price.checked_add(delta).ok_or(KernelError::Overflow {
            row,
            field: "upper threshold",
        })?;
        let mut bar = Self {
            open_time: t.timestamp_us,
            close_time: t.timestamp_us,
            open: t.price,
            high: t.price,
            low: t.price,
            close: t.price,
            upper,
            lower: t.price - delta,
            buy: SideTotals::default(),
            sell: SideTotals::default(),
            agg_record_count: 1,
            first_agg_trade_id: t.agg_trade_id,
            last_agg_trade_id: t.agg_trade_id,
            first_trade_id: t.first_trade_id,
            last_trade_id: t.last_trade_id,
        };
        bar.add_to_side(t, row)?;
        Ok(bar)
    }

    /// Add a trade to the bar (before the breach test).
    #[inline]
    pub(crate) fn add(&mut self, t: &Trade, row: usize) -> Result<(), KernelError> {
        self.high = self.high.max(t.price);
        self.low = self.low.min(t.price);
        self.close = t.price;
        self.close_time = t.timestamp_us;
        self.last_agg_trade_id = t.agg_trade_id;
        self.last_trade_id = t.last_trade_id;
        self.agg_record_count += 1;
        self.add_to_side(t, row)
    }

    /// Branch-free side selection: the taker side is unpredictable, so pick the accumulator by address.
    #[inline(always)]
    fn add_to_side(&mut self, t: &Trade, row: usize) -> Result<(), KernelError> {
        let n = trade_count(t, row)?;
        let side = if t.is_buyer_maker {
            &mut self.sell
        } else {
            &mut self.buy
        };
        let volume = i128::from(t.quantity);
        // A sum of i64 quantities cannot overflow i128 before 2^64 trades.
        side.volume += volume;
        side.trades = side.trades.checked_add(n).ok_or(KernelError::Overflow {
            row,
            field: "individual_trade_count",
        })?;
        side.turnover = side
            .turnover
            .checked_add(i128::from(t.price) * volume)
            .ok_or(KernelError::Overflow {
                row,
                field: "turnover",
            })?;
        Ok(())
    }

    /// Total quantity (fixed point x1e8).
    #[inline]
    pub fn volume(&self) -> i128 {
        self.buy.volume + self.sell.volume
    }

    /// Total turnover (scale 1e16); saturates only where no real stream can reach.
    #[inline]
    pub fn turnover(&self) -> i128 {
        self.buy.turnover.saturating_add(self.sell.turnover)
    }

    /// Total individual trades.
    #[inline]
    pub fn individual_trade_count(&self) -> i64 {
        self.buy.trades.saturating_add(self.sell.trades)
    }

    /// Does `price` breach the thresholds fixed at open (inclusive on both sides)?
    #[inline]
    pub fn breaches(&self, price: i64) -> bool {
        price >= self.upper || price <= self.lower
    }

    /// VWAP in fixed point: `turnover / volume` (truncating), the open price while volume is 0.
    pub fn vwap(&self) -> i64 {
        let volume = self.volume();
        if volume > 0 {
            // low <= turnover / volume <= high, so the quotient fits in i64.
            (self.turnover() / volume) as i64
        } else {
            self.open
        }
    }

    /// The finished bar with its 10 microstructure features (SPEC §3).
    pub fn finish(&self) -> Bar {
        Bar {
            state: *self,
            vwap: self.vwap(),
            features: Features::compute(self),
        }
    }
}

/// The 10 microstructure features of a bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    pub duration_us: i64,
    pub ofi: f64,
    pub vwap_close_deviation: f64,
    pub price_impact: f64,
    pub kyle_lambda_proxy: f64,
    pub trade_intensity: f64,
    pub volume_per_trade: f64,
    pub aggression_ratio: f64,
    pub aggregation_efficiency: f64,
    pub turnover_imbalance: f64,
}

impl Features {
    /// Compute the features from the accumulated state, as the reference does (f64 arithmetic).
    pub fn compute(s: &BarState) -> Self {
        const EPS: f64 = f64::EPSILON;
        let buy = fixed::wide_to_f64(s.buy.volume);
        let sell = fixed::wide_to_f64(s.sell.volume);
        let volume = fixed::wide_to_f64(s.volume());
        let open = fixed::to_f64(s.open);
        let high = fixed::to_f64(s.high);
        let low = fixed::to_f64(s.low);
        let close = fixed::to_f64(s.close);
        let vwap = fixed::to_f64(s.vwap());
        let duration_us = s.close_time - s.open_time;
        let n = s.individual_trade_count() as f64;
        let agg = s.agg_record_count as f64;
        // Turnovers share the scale 1e16, which cancels in the ratio.
        let buy_turnover = fixed::i128_to_f64(s.buy.turnover);
        let sell_turnover = fixed::i128_to_f64(s.sell.turnover);
        let turnover_total = fixed::i128_to_f64(s.turnover());

        let total = buy + sell;
        let ofi = if total <= EPS {
            0.0
        } else {
            (buy - sell) / total
        };
        let range = high - low;
        let vwap_close_deviation = if range <= EPS {
            0.0
        } else {
            (close - vwap) / range
        };
        let price_impact = if volume <= EPS {
            0.0
        } else {
            (close - open).abs() / volume
        };
        let imbalance = buy - sell;
        let kyle_lambda_proxy = if imbalance.abs() <= EPS {
            0.0
        } else {
            (close - open) / imbalance
        };
        let trade_intensity = if duration_us == 0 {
            n
        } else {
            n / (duration_us as f64 / 1e6)
        };
        let volume_per_trade = if s.individual_trade_count() == 0 {
            0.0
        } else {
            volume / n
        };
        let aggression_ratio = if s.sell.trades == 0 {
            if s.buy.trades > 0 {
                100.0
            } else {
                1.0
            }
        } else {
            (s.buy.trades as f64 / s.sell.trades as f64).min(100.0)
        };
        let aggregation_efficiency = if s.agg_record_count == 0 {
            1.0
        } else {
            n / agg
        };
        let turnover_imbalance = if turnover_total.abs() <= EPS {
            0.0
        } else {
            (buy_turnover - sell_turnover) / turnover_total
        };
        Self {
            duration_us,
            ofi,
            vwap_close_deviation,
            price_impact,
            kyle_lambda_proxy,
            trade_intensity,
            volume_per_trade,
            aggression_ratio,
            aggregation_efficiency,
            turnover_imbalance,
        }
    }
}

/// A finished bar: its accumulators, VWAP and features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub state: BarState,
    pub vwap: i64,
    pub features: Features,
}

#[cfg(test)]
mod open_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn delta_is_the_128_bit_truncated_quotient(
            price in prop_oneof![1_i64..1_000_000_000_000_000, 1_i64..=i64::MAX],
            threshold in 1_u32..=100_000,
        ) {
            let t = Trade {
                timestamp_us: 0,
                price,
                quantity: 1,
                agg_trade_id: 1,
                first_trade_id: 1,
                last_trade_id: 1,
                is_buyer_maker: false,
            };
            let delta = i128::from(price) * i128::from(threshold) / BASIS_POINTS_SCALE;
            match BarState::open(&t, threshold, 0) {
                Ok(bar) => {
                    prop_assert_eq!(i128::from(bar.upper) - i128::from(price), delta);
                    prop_assert_eq!(i128::from(price) - i128::from(bar.lower), delta);
                }
                Err(KernelError::ThresholdTooSmall { .. }) => prop_assert_eq!(delta, 0),
                Err(e) => {
                    prop_assert!(matches!(e, KernelError::Overflow { .. }), "{:?}", e);
                    prop_assert!(i128::from(price) + delta > i128::from(i64::MAX));
                }
            }
        }
    }
}
