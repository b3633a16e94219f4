//! Columnar input (borrowed slices) and output (owned vectors) of the kernel.

use crate::bar::Bar;
use crate::error::KernelError;
use crate::fixed;
use crate::intra::IntraFeatures;
use crate::lookback::LookbackFeatures;

/// Trades as columns. Prices and quantities are fixed point (x1e8), timestamps microseconds.
///
/// Optional columns: without `agg_trade_id` the processor numbers trades by their position in the
/// stream (continuing across calls); without first/last trade ids each record counts as one trade
/// (`first = last = agg_trade_id`); without `is_buyer_maker` every trade is a buy.
#[derive(Debug, Clone, Copy)]
pub struct TradeColumns<'a> {
    pub timestamp_us: &'a [i64],
    pub price: &'a [i64],
    pub quantity: &'a [i64],
    pub agg_trade_id: Option<&'a [i64]>,
    pub first_trade_id: Option<&'a [i64]>,
    pub last_trade_id: Option<&'a [i64]>,
    pub is_buyer_maker: Option<&'a [bool]>,
}

impl<'a> TradeColumns<'a> {
    /// Required columns only.
    pub fn new(timestamp_us: &'a [i64], price: &'a [i64], quantity: &'a [i64]) -> Self {
        Self {
            timestamp_us,
            price,
            quantity,
            agg_trade_id: None,
            first_trade_id: None,
            last_trade_id: None,
            is_buyer_maker: None,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.timestamp_us.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.timestamp_us.is_empty()
    }

    /// Every column has the same length.
    pub fn check_lengths(&self) -> Result<(), KernelError> {
        let expected = self.len();
        let check = |column: &'static str, len: usize| {
            if len == expected {
                Ok(())
            } else {
                Err(KernelError::LengthMismatch {
                    column,
                    len,
                    expected,
                })
            }
        };
        check("price", self.price.len())?;
        check("quantity", self.quantity.len())?;
        if let Some(c) = self.agg_trade_id {
            check("agg_trade_id", c.len())?;
        }
        if let Some(c) = self.first_trade_id {
            check("first_trade_id", c.len())?;
        }
        if let Some(c) = self.last_trade_id {
            check("last_trade_id", c.len())?;
        }
        if let Some(c) = self.is_buyer_maker {
            check("is_buyer_maker", c.len())?;
        }
        Ok(())
    }

    /// Rows `start..end` of every column.
    pub fn slice(&self, start: usize, end: usize) -> Self {
        Self {
            timestamp_us: &self.timestamp_us[start..end],
            price: &self.price[start..end],
            quantity: &self.quantity[start..end],
            agg_trade_id: self.agg_trade_id.map(|c| &c[start..end]),
            first_trade_id: self.first_trade_id.map(|c| &c[start..end]),
            last_trade_id: self.last_trade_id.map(|c| &c[start..end]),
            is_buyer_maker: self.is_buyer_maker.map(|c| &c[start..end]),
        }
    }
}

/// Finished bars as columns (SPEC §2 order), ready to hand to Arrow/NumPy without copies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BarColumns {
    pub open_time: Vec<i64>,
    pub close_time: Vec<i64>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
    pub vwap: Vec<f64>,
    pub buy_volume: Vec<f64>,
    pub sell_volume: Vec<f64>,
    pub turnover: Vec<f64>,
    pub buy_turnover: Vec<f64>,
    pub sell_turnover: Vec<f64>,
    pub individual_trade_count: Vec<i64>,
    pub agg_record_count: Vec<i64>,
    pub buy_trade_count: Vec<i64>,
    pub sell_trade_count: Vec<i64>,
    pub first_agg_trade_id: Vec<i64>,
    pub last_agg_trade_id: Vec<i64>,
    pub first_trade_id: Vec<i64>,
    pub last_trade_id: Vec<i64>,
    pub duration_us: Vec<i64>,
    pub ofi: Vec<f64>,
    pub vwap_close_deviation: Vec<f64>,
    pub price_impact: Vec<f64>,
    pub kyle_lambda_proxy: Vec<f64>,
    pub trade_intensity: Vec<f64>,
    pub volume_per_trade: Vec<f64>,
    pub aggression_ratio: Vec<f64>,
    pub aggregation_efficiency: Vec<f64>,
    pub turnover_imbalance: Vec<f64>,
    /// The lookback group, one row per bar when the processor has it on (else empty).
    pub lookback: LookbackColumns,
    /// The intra group, one row per bar when the processor has it on (else empty).
    pub intra: IntraColumns,
}

/// Lookback columns ([`crate::for_each_lookback_column!`] order). Nulls are encoded for NumPy:
/// `NULL_I64` in integer columns, NaN in float columns (the features are never NaN otherwise).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LookbackColumns {
    pub lookback_trade_count: Vec<i64>,
    pub lookback_duration_us: Vec<i64>,
    pub lookback_ofi: Vec<f64>,
    pub lookback_count_imbalance: Vec<f64>,
    pub lookback_intensity: Vec<f64>,
    pub lookback_vwap: Vec<f64>,
    pub lookback_vwap_position: Vec<f64>,
    pub lookback_price_range: Vec<f64>,
    pub lookback_kyle_lambda: Vec<f64>,
    pub lookback_kaufman_er: Vec<f64>,
    pub lookback_garman_klass_vol: Vec<f64>,
    pub lookback_burstiness: Vec<f64>,
    pub lookback_volume_skew: Vec<f64>,
    pub lookback_volume_kurt: Vec<f64>,
    pub lookback_hurst: Vec<f64>,
    pub lookback_permutation_entropy: Vec<f64>,
}

/// The null marker of integer lookback columns.
pub const NULL_I64: i64 = i64::MIN;

impl LookbackColumns {
    /// Append one bar's lookback features.
    pub fn push(&mut self, f: &LookbackFeatures) {
        let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        self.lookback_trade_count.push(f.trade_count);
        self.lookback_duration_us
            .push(f.duration_us.unwrap_or(NULL_I64));
        self.lookback_ofi.push(nan(f.ofi));
        self.lookback_count_imbalance.push(nan(f.count_imbalance));
        self.lookback_intensity.push(nan(f.intensity));
        self.lookback_vwap.push(nan(f.vwap));
        self.lookback_vwap_position.push(nan(f.vwap_position));
        self.lookback_price_range.push(nan(f.price_range));
        self.lookback_kyle_lambda.push(nan(f.kyle_lambda));
        self.lookback_kaufman_er.push(nan(f.kaufman_er));
        self.lookback_garman_klass_vol.push(nan(f.garman_klass_vol));
        self.lookback_burstiness.push(nan(f.burstiness));
        self.lookback_volume_skew.push(nan(f.volume_skew));
        self.lookback_volume_kurt.push(nan(f.volume_kurt));
        self.lookback_hurst.push(nan(f.hurst));
        self.lookback_permutation_entropy
            .push(nan(f.permutation_entropy));
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.lookback_trade_count.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.lookback_trade_count.is_empty()
    }

    /// Drop every row after the first `len`.
    pub fn truncate(&mut self, len: usize) {
        macro_rules! truncate_all {
            ($($field:ident),*) => { $( self.$field.truncate(len); )* };
        }
        crate::for_each_lookback_column!(truncate_all);
    }
}

/// Intra columns ([`crate::for_each_intra_column!`] order). Nulls are encoded for NumPy as in
/// [`LookbackColumns`]: NaN in float columns (the features are never NaN otherwise); the integer
/// columns, the intensity and the ofi are never null.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntraColumns {
    pub intra_trade_count: Vec<i64>,
    pub intra_duration_us: Vec<i64>,
    pub intra_intensity: Vec<f64>,
    pub intra_ofi: Vec<f64>,
    pub intra_count_imbalance: Vec<f64>,
    pub intra_vwap_position: Vec<f64>,
    pub intra_kyle_lambda: Vec<f64>,
    pub intra_burstiness: Vec<f64>,
    pub intra_volume_skew: Vec<f64>,
    pub intra_volume_kurt: Vec<f64>,
    pub intra_kaufman_er: Vec<f64>,
    pub intra_garman_klass_vol: Vec<f64>,
    pub intra_hurst: Vec<f64>,
    pub intra_permutation_entropy: Vec<f64>,
    pub intra_max_drawdown: Vec<f64>,
    pub intra_max_runup: Vec<f64>,
    pub intra_bull_epoch_density: Vec<f64>,
    pub intra_bull_excess_gain: Vec<f64>,
    pub intra_bull_cv: Vec<f64>,
    pub intra_bear_epoch_density: Vec<f64>,
    pub intra_bear_excess_gain: Vec<f64>,
    pub intra_bear_cv: Vec<f64>,
}

impl IntraColumns {
    /// Append one bar's intra features.
    pub fn push(&mut self, f: &IntraFeatures) {
        let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        self.intra_trade_count.push(f.trade_count);
        self.intra_duration_us.push(f.duration_us);
        self.intra_intensity.push(f.intensity);
        self.intra_ofi.push(f.ofi);
        self.intra_count_imbalance.push(nan(f.count_imbalance));
        self.intra_vwap_position.push(nan(f.vwap_position));
        self.intra_kyle_lambda.push(nan(f.kyle_lambda));
        self.intra_burstiness.push(nan(f.burstiness));
        self.intra_volume_skew.push(nan(f.volume_skew));
        self.intra_volume_kurt.push(nan(f.volume_kurt));
        self.intra_kaufman_er.push(nan(f.kaufman_er));
        self.intra_garman_klass_vol.push(nan(f.garman_klass_vol));
        self.intra_hurst.push(nan(f.hurst));
        self.intra_permutation_entropy
            .push(nan(f.permutation_entropy));
        self.intra_max_drawdown.push(nan(f.max_drawdown));
        self.intra_max_runup.push(nan(f.max_runup));
        self.intra_bull_epoch_density
            .push(nan(f.bull_epoch_density));
        self.intra_bull_excess_gain.push(nan(f.bull_excess_gain));
        self.intra_bull_cv.push(nan(f.bull_cv));
        self.intra_bear_epoch_density
            .push(nan(f.bear_epoch_density));
        self.intra_bear_excess_gain.push(nan(f.bear_excess_gain));
        self.intra_bear_cv.push(nan(f.bear_cv));
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.intra_trade_count.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.intra_trade_count.is_empty()
    }

    /// Make room for `additional` more rows in every column.
    pub fn reserve(&mut self, additional: usize) {
        macro_rules! reserve_all {
            ($($field:ident),*) => { $( self.$field.reserve(additional); )* };
        }
        crate::for_each_intra_column!(reserve_all);
    }

    /// Drop every row after the first `len`.
    pub fn truncate(&mut self, len: usize) {
        macro_rules! truncate_all {
            ($($field:ident),*) => { $( self.$field.truncate(len); )* };
        }
        crate::for_each_intra_column!(truncate_all);
    }
}

/// Turnover (scale 1e16) to a float in price x quantity units.
#[inline]
fn turnover_to_f64(raw: i128) -> f64 {
    fixed::i128_to_f64(raw) / 1e16
}

impl BarColumns {
    /// Number of bars.
    pub fn len(&self) -> usize {
        self.open_time.len()
    }

    /// True when there are no bars.
    pub fn is_empty(&self) -> bool {
        self.open_time.is_empty()
    }

    /// Append one finished bar.
    pub fn push(&mut self, bar: &Bar) {
        let s = &bar.state;
        let f = &bar.features;
        self.open_time.push(s.open_time);
        self.close_time.push(s.close_time);
        self.open.push(fixed::to_f64(s.open));
        self.high.push(fixed::to_f64(s.high));
        self.low.push(fixed::to_f64(s.low));
        self.close.push(fixed::to_f64(s.close));
        self.volume.push(fixed::wide_to_f64(s.volume()));
        self.vwap.push(fixed::to_f64(bar.vwap));
        self.buy_volume.push(fixed::wide_to_f64(s.buy.volume));
        self.sell_volume.push(fixed::wide_to_f64(s.sell.volume));
        self.turnover.push(turnover_to_f64(s.turnover()));
        self.buy_turnover.push(turnover_to_f64(s.buy.turnover));
        self.sell_turnover.push(turnover_to_f64(s.sell.turnover));
        self.individual_trade_count.push(s.individual_trade_count());
        self.agg_record_count.push(s.agg_record_count);
        self.buy_trade_count.push(s.buy.trades);
        self.sell_trade_count.push(s.sell.trades);
        self.first_agg_trade_id.push(s.first_agg_trade_id);
        self.last_agg_trade_id.push(s.last_agg_trade_id);
        self.first_trade_id.push(s.first_trade_id);
        self.last_trade_id.push(s.last_trade_id);
        self.duration_us.push(f.duration_us);
        self.ofi.push(f.ofi);
        self.vwap_close_deviation.push(f.vwap_close_deviation);
        self.price_impact.push(f.price_impact);
        self.kyle_lambda_proxy.push(f.kyle_lambda_proxy);
        self.trade_intensity.push(f.trade_intensity);
        self.volume_per_trade.push(f.volume_per_trade);
        self.aggression_ratio.push(f.aggression_ratio);
        self.aggregation_efficiency.push(f.aggregation_efficiency);
        self.turnover_imbalance.push(f.turnover_imbalance);
    }

    /// Make room for `additional` more bars in every bar column (not the lookback or intra group).
    pub fn reserve(&mut self, additional: usize) {
        macro_rules! reserve_all {
            ($($field:ident),*) => { $( self.$field.reserve(additional); )* };
        }
        crate::for_each_bar_column!(reserve_all);
    }

    /// Drop every bar after the first `len` (used to roll back a failed call).
    pub fn truncate(&mut self, len: usize) {
        macro_rules! truncate_all {
            ($($field:ident),*) => { $( self.$field.truncate(len); )* };
        }
        crate::for_each_bar_column!(truncate_all);
        self.lookback.truncate(len);
        self.intra.truncate(len);
    }
}

/// Invoke `$callback!(lookback_trade_count, ...)` with every column of [`LookbackColumns`] in
/// output order.
#[macro_export]
macro_rules! for_each_lookback_column {
    ($callback:ident) => {
        $callback!(
            lookback_trade_count,
            lookback_duration_us,
            lookback_ofi,
            lookback_count_imbalance,
            lookback_intensity,
            lookback_vwap,
            lookback_vwap_position,
            lookback_price_range,
            lookback_kyle_lambda,
            lookback_kaufman_er,
            lookback_garman_klass_vol,
            lookback_burstiness,
            lookback_volume_skew,
            lookback_volume_kurt,
            lookback_hurst,
            lookback_permutation_entropy
        )
    };
}

/// Invoke `$callback!(intra_trade_count, ...)` with every column of [`IntraColumns`] in output
/// order.
#[macro_export]
macro_rules! for_each_intra_column {
    ($callback:ident) => {
        $callback!(
            intra_trade_count,
            intra_duration_us,
            intra_intensity,
            intra_ofi,
            intra_count_imbalance,
            intra_vwap_position,
            intra_kyle_lambda,
            intra_burstiness,
            intra_volume_skew,
            intra_volume_kurt,
            intra_kaufman_er,
            intra_garman_klass_vol,
            intra_hurst,
            intra_permutation_entropy,
            intra_max_drawdown,
            intra_max_runup,
            intra_bull_epoch_density,
            intra_bull_excess_gain,
            intra_bull_cv,
            intra_bear_epoch_density,
            intra_bear_excess_gain,
            intra_bear_cv
        )
    };
}

/// Invoke `$callback!(open_time, close_time, ...)` with every column of [`BarColumns`] in output
/// order (SPEC §2), so code that walks all columns (here and in the binding) has one list to follow.
#[macro_export]
macro_rules! for_each_bar_column {
    ($callback:ident) => {
        $callback!(
            open_time,
            close_time,
            open,
            high,
            low,
            close,
            volume,
            vwap,
            buy_volume,
            sell_volume,
            turnover,
            buy_turnover,
            sell_turnover,
            individual_trade_count,
            agg_record_count,
            buy_trade_count,
            sell_trade_count,
            first_agg_trade_id,
            last_agg_trade_id,
            first_trade_id,
            last_trade_id,
            duration_us,
            ofi,
            vwap_close_deviation,
            price_impact,
            kyle_lambda_proxy,
            trade_intensity,
            volume_per_trade,
            aggression_ratio,
            aggregation_efficiency,
            turnover_imbalance
        )
    };
}
