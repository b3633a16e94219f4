//! The streaming processor: the settings, the state carried across calls and checkpoints, and
//! the bar rule applied one trade at a time ([`RangeBarProcessor::step`]: the input checks,
//! opening a bar, adding to it and closing it on a breach, with the lookback and intra groups
//! and the minimum-duration gate as compile-time switches). Errors are all-or-nothing per call.
//!
//! The common case (every column present, no lookback, no minimum duration; the intra group on
//! or off) is handed to the vectorised slice scan in [`scan`], which adds runs of non-breaching rows to the bar in bulk and sends every
//! other row back through `step`, so both paths apply exactly the same rule.

mod scan;

use crate::bar::{Bar, BarState, Trade};
use crate::checkpoint::{Checkpoint, CHECKPOINT_VERSION};
use crate::columns::{BarColumns, TradeColumns};
use crate::error::KernelError;
use crate::fixed;
use crate::intra::{IntraFeatures, IntraState};
use crate::lookback::{Lookback, LookbackFeatures, WindowTrade, LOOKBACK_TRADES_MAX};
use crate::{THRESHOLD_DECIMAL_MAX, THRESHOLD_DECIMAL_MIN};

/// Processor settings, fixed for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorConfig {
    /// Threshold in decimal basis points (1 dbps = 0.001 %), 1..=100_000.
    pub threshold_decimal_bps: u32,
    /// When on, a trade with the bar's open timestamp cannot close the bar.
    pub same_timestamp_gate: bool,
    /// Minimum-duration gate (microseconds, >= 0): a bar closes only on a breaching trade with
    /// `timestamp >= open_time + min_duration_us`; earlier breaches stay in the bar, so its range
    /// can exceed the threshold. 0 (the default) is the plain rule.
    pub min_duration_us: i64,
    /// Lookback group: N > 0 adds the lookback columns over the N most recent trades before
    /// each bar's open (see `lookback.rs`); 0 (the default) is off and costs nothing.
    pub lookback_trades: u32,
    /// Intra group: adds the intra columns, statistics of each bar's own records (see
    /// `intra.rs`); off (the default) costs nothing.
    pub intra_bar: bool,
}

impl ProcessorConfig {
    /// Validate the threshold.
    pub fn new(threshold_decimal_bps: i64, same_timestamp_gate: bool) -> Result<Self, KernelError> {
        if !(i64::from(THRESHOLD_DECIMAL_MIN)..=i64::from(THRESHOLD_DECIMAL_MAX))
            .contains(&threshold_decimal_bps)
        {
            return Err(KernelError::InvalidThreshold(threshold_decimal_bps));
        }
        Ok(Self {
            threshold_decimal_bps: threshold_decimal_bps as u32,
            same_timestamp_gate,
            min_duration_us: 0,
            lookback_trades: 0,
            intra_bar: false,
        })
    }

    /// These settings with the intra group on or off.
    pub fn with_intra_bar(self, intra_bar: bool) -> Self {
        Self { intra_bar, ..self }
    }

    /// These settings with the lookback group set (validated: `0..=1_000_000`, 0 = off).
    pub fn with_lookback_trades(self, lookback_trades: i64) -> Result<Self, KernelError> {
        if !(0..=i64::from(LOOKBACK_TRADES_MAX)).contains(&lookback_trades) {
            return Err(KernelError::InvalidLookback(lookback_trades));
        }
        Ok(Self {
            lookback_trades: lookback_trades as u32,
            ..self
        })
    }

    /// These settings with the minimum-duration gate set (validated: `>= 0`).
    pub fn with_min_duration_us(self, min_duration_us: i64) -> Result<Self, KernelError> {
        if min_duration_us < 0 {
            return Err(KernelError::InvalidMinDuration(min_duration_us));
        }
        Ok(Self {
            min_duration_us,
            ..self
        })
    }
}

/// Range-bar processor. Feeding a stream in any split (chunks, days, checkpoint/restore in
/// between) yields exactly the bars of feeding it in one piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeBarProcessor {
    config: ProcessorConfig,
    bar: Option<BarState>,
    last: Option<(i64, i64)>,
    trades_seen: u64,
    lookback: Option<Box<Lookback>>,
    intra: Option<Box<IntraState>>,
}

/// State that a call mutates; committed only when the whole call succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    bar: Option<BarState>,
    last: Option<(i64, i64)>,
}

impl RangeBarProcessor {
    /// A new processor (threshold validated).
    pub fn new(threshold_decimal_bps: i64, same_timestamp_gate: bool) -> Result<Self, KernelError> {
        Ok(Self::with_config(ProcessorConfig::new(
            threshold_decimal_bps,
            same_timestamp_gate,
        )?))
    }

    /// A new processor with validated settings (see [`ProcessorConfig`]).
    pub fn with_config(config: ProcessorConfig) -> Self {
        Self {
            config,
            bar: None,
            last: None,
            trades_seen: 0,
            lookback: (config.lookback_trades > 0)
                .then(|| Box::new(Lookback::new(config.lookback_trades))),
            intra: config.intra_bar.then(Box::default),
        }
    }

    /// The processor's settings.
    pub fn config(&self) -> ProcessorConfig {
        self.config
    }

    /// Number of trades processed so far (across calls and checkpoints).
    pub fn trades_seen(&self) -> u64 {
        self.trades_seen
    }

    /// `(timestamp_us, agg_trade_id)` of the last trade processed.
    pub fn last_trade(&self) -> Option<(i64, i64)> {
        self.last
    }

    /// The bar in progress, if any.
    pub fn bar_state(&self) -> Option<&BarState> {
        self.bar.as_ref()
    }

    /// The trailing (incomplete) bar with its features, if a bar is in progress.
    pub fn incomplete_bar(&self) -> Option<Bar> {
        self.bar.as_ref().map(BarState::finish)
    }

    /// The lookback features of the bar in progress (None when the group is off or no bar is).
    pub fn incomplete_lookback(&self) -> Option<LookbackFeatures> {
        self.bar?;
        let lb = self.lookback.as_ref()?;
        Some(LookbackFeatures::compute(&lb.bar_window))
    }

    /// The intra features of the bar in progress (None when the group is off or no bar is).
    pub fn incomplete_intra(&self) -> Option<IntraFeatures> {
        let bar = self.bar.as_ref()?;
        Some(IntraFeatures::compute(bar, self.intra.as_deref()?))
    }

    /// Append the trailing bar (with its lookback and intra columns when on) to `out`; false if
    /// none.
    pub fn push_incomplete_bar(&self, out: &mut BarColumns) -> bool {
        let Some(bar) = self.incomplete_bar() else {
            return false;
        };
        out.push(&bar);
        if let Some(f) = self.incomplete_lookback() {
            out.lookback.push(&f);
        }
        if let Some(f) = self.incomplete_intra() {
            out.intra.push(&f);
        }
        true
    }

    /// Process trades, appending every bar they close to `out`; returns the number appended.
    ///
    /// All or nothing: on error the processor state and `out` are left as they were, and the
    /// error names the offending row (0-based within `trades`).
    pub fn process(
        &mut self,
        trades: &TradeColumns<'_>,
        out: &mut BarColumns,
    ) -> Result<usize, KernelError> {
        trades.check_lengths()?;
        let before = out.len();
        let mut lookback = self.lookback.clone();
        let mut intra = self.intra.clone();
        // Each opt-in feature is a compile-time switch, so with all off the loop is the plain one.
        let gated = self.config.min_duration_us > 0;
        let ib = intra.as_deref_mut();
        let result = match (lookback.as_deref_mut(), gated) {
            (Some(lb), true) => self.dispatch_intra::<true, true>(trades, out, lb, ib),
            (Some(lb), false) => self.dispatch_intra::<true, false>(trades, out, lb, ib),
            (None, true) => {
                self.dispatch_intra::<false, true>(trades, out, &mut Lookback::default(), ib)
            }
            (None, false) => {
                self.dispatch_intra::<false, false>(trades, out, &mut Lookback::default(), ib)
            }
        };
        match result {
            Ok(cursor) => {
                self.bar = cursor.bar;
                self.last = cursor.last;
                self.lookback = lookback;
                self.intra = intra;
                self.trades_seen += trades.len() as u64;
                Ok(out.len() - before)
            }
            Err(e) => {
                out.truncate(before);
                Err(e)
            }
        }
    }

    /// The intra group's switch: [`Self::dispatch`] with it on (`ib`) or off.
    #[inline(always)]
    fn dispatch_intra<const LB: bool, const GATED: bool>(
        &self,
        trades: &TradeColumns<'_>,
        out: &mut BarColumns,
        lb: &mut Lookback,
        ib: Option<&mut IntraState>,
    ) -> Result<Cursor, KernelError> {
        match ib {
            Some(ib) => self.dispatch::<LB, GATED, true>(trades, out, lb, ib),
            None => self.dispatch::<LB, GATED, false>(trades, out, lb, &mut IntraState::default()),
        }
    }

    /// Pick the monomorphised loop for the columns present.
    #[inline(always)]
    fn dispatch<const LB: bool, const GATED: bool, const INTRA: bool>(
        &self,
        trades: &TradeColumns<'_>,
        out: &mut BarColumns,
        lb: &mut Lookback,
        ib: &mut IntraState,
    ) -> Result<Cursor, KernelError> {
        match (
            trades.agg_trade_id,
            trades.first_trade_id,
            trades.last_trade_id,
            trades.is_buyer_maker,
        ) {
            // The common case (full input, no lookback or gate) scans and sums a slice at a time.
            (Some(agg), Some(first), Some(last), Some(ibm)) if !LB && !GATED => {
                self.run_plain::<INTRA>(trades, out, [agg, first, last], ibm, ib)
            }
            // The other full-input cases get their own monomorphised loop.
            (Some(agg), Some(first), Some(last), Some(ibm)) => self.run::<LB, GATED, INTRA>(
                trades,
                out,
                lb,
                ib,
                |i| agg[i],
                |i| first[i],
                |i| last[i],
                |i| ibm[i],
            ),
            (agg, first, last, ibm) => {
                let base = self.trades_seen as i64;
                let agg_id = move |i: usize| agg.map_or(base + i as i64, |c| c[i]);
                self.run::<LB, GATED, INTRA>(
                    trades,
                    out,
                    lb,
                    ib,
                    agg_id,
                    move |i| first.map_or_else(|| agg_id(i), |c| c[i]),
                    move |i| last.map_or_else(|| agg_id(i), |c| c[i]),
                    move |i| ibm.is_some_and(|c| c[i]),
                )
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run<const LB: bool, const GATED: bool, const INTRA: bool>(
        &self,
        trades: &TradeColumns<'_>,
        out: &mut BarColumns,
        lb: &mut Lookback,
        ib: &mut IntraState,
        agg_id: impl Fn(usize) -> i64,
        first_id: impl Fn(usize) -> i64,
        last_id: impl Fn(usize) -> i64,
        is_buyer_maker: impl Fn(usize) -> bool,
    ) -> Result<Cursor, KernelError> {
        let mut cursor = Cursor {
            bar: self.bar,
            last: self.last,
        };
        let mut prev = Prev::of(cursor.last);
        let n = trades.len();
        // Equal-length reslices let the compiler drop per-column bounds checks.
        let (ts, price, qty) = (
            &trades.timestamp_us[..n],
            &trades.price[..n],
            &trades.quantity[..n],
        );
        for row in 0..n {
            let t = Trade {
                timestamp_us: ts[row],
                price: price[row],
                quantity: qty[row],
                agg_trade_id: agg_id(row),
                first_trade_id: first_id(row),
                last_trade_id: last_id(row),
                is_buyer_maker: is_buyer_maker(row),
            };
            self.step::<LB, GATED, INTRA>(&t, row, &mut cursor, &mut prev, out, lb, ib)?;
        }
        cursor.last = prev.get();
        Ok(cursor)
    }

    /// One trade through the rule: the input checks, then open a bar or add to it (closing it on a
    /// breach). Every path goes through here for the rows it does not handle in bulk.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn step<const LB: bool, const GATED: bool, const INTRA: bool>(
        &self,
        t: &Trade,
        row: usize,
        cursor: &mut Cursor,
        prev: &mut Prev,
        out: &mut BarColumns,
        lb: &mut Lookback,
        ib: &mut IntraState,
    ) -> Result<(), KernelError> {
        // One rarely-taken branch for every input check; the diagnosis happens off the hot path.
        let out_of_order = prev.set
            & ((t.timestamp_us < prev.ts)
                | ((t.timestamp_us == prev.ts) & (t.agg_trade_id <= prev.id)));
        if out_of_order | (t.price <= 0) | (t.quantity < 0) | (t.first_trade_id > t.last_trade_id) {
            return Err(invalid_row(t, row, out_of_order, prev.ts, prev.id));
        }
        *prev = Prev {
            ts: t.timestamp_us,
            id: t.agg_trade_id,
            set: true,
        };
        match cursor.bar.as_mut() {
            None => {
                if LB {
                    lb.open_bar(t.timestamp_us);
                }
                cursor.bar = Some(BarState::open(t, self.config.threshold_decimal_bps, row)?);
                if INTRA {
                    ib.push(t.timestamp_us, t.price, t.quantity);
                }
            }
            Some(bar) => {
                bar.add(t, row)?;
                if INTRA {
                    ib.push(t.timestamp_us, t.price, t.quantity);
                }
                if bar.breaches(t.price)
                    && !(self.config.same_timestamp_gate && t.timestamp_us == bar.open_time)
                    && (!GATED
                        || t.timestamp_us.saturating_sub(bar.open_time)
                            >= self.config.min_duration_us)
                {
                    out.push(&bar.finish());
                    if LB {
                        out.lookback
                            .push(&LookbackFeatures::compute(&lb.bar_window));
                    }
                    if INTRA {
                        out.intra.push(&IntraFeatures::compute(bar, ib));
                        ib.clear();
                    }
                    cursor.bar = None;
                }
            }
        }
        if LB {
            lb.push(WindowTrade {
                timestamp_us: t.timestamp_us,
                price: t.price,
                quantity: t.quantity,
                is_buyer_maker: t.is_buyer_maker,
            });
        }
        Ok(())
    }

    /// A lossless snapshot of the state.
    pub fn checkpoint(&self) -> Checkpoint {
        let min_duration_us = self.config.min_duration_us;
        Checkpoint {
            // The lowest version that carries the settings in force, so checkpoints without the
            // newer settings keep their bytes.
            version: if self.intra.is_some() {
                CHECKPOINT_VERSION
            } else if min_duration_us != 0 || self.lookback.is_some() {
                2
            } else {
                1
            },
            threshold_decimal_bps: self.config.threshold_decimal_bps,
            same_timestamp_gate: self.config.same_timestamp_gate,
            min_duration_us,
            lookback: self.lookback.as_deref().cloned(),
            intra: self.intra.as_deref().cloned(),
            bar: self.bar,
            last_timestamp_us: self.last.map(|l| l.0),
            last_agg_trade_id: self.last.map(|l| l.1),
            trades_seen: self.trades_seen,
        }
    }

    /// Restore a processor from a checkpoint (validated).
    pub fn from_checkpoint(cp: &Checkpoint) -> Result<Self, KernelError> {
        cp.validate()?;
        Ok(Self {
            config: ProcessorConfig::new(
                i64::from(cp.threshold_decimal_bps),
                cp.same_timestamp_gate,
            )?
            .with_min_duration_us(cp.min_duration_us)?
            .with_lookback_trades(cp.lookback.as_ref().map_or(0, |l| i64::from(l.capacity)))?
            .with_intra_bar(cp.intra.is_some()),
            lookback: cp.lookback.clone().map(Box::new),
            intra: cp.intra.clone().map(Box::new),
            bar: cp.bar,
            last: cp.last_timestamp_us.zip(cp.last_agg_trade_id),
            trades_seen: cp.trades_seen,
        })
    }
}

/// `(timestamp_us, agg_trade_id)` of the previous trade, when there is one.
#[derive(Clone, Copy)]
struct Prev {
    ts: i64,
    id: i64,
    set: bool,
}

impl Prev {
    fn of(last: Option<(i64, i64)>) -> Self {
        let (ts, id) = last.unwrap_or((i64::MIN, i64::MIN));
        Self {
            ts,
            id,
            set: last.is_some(),
        }
    }

    fn get(self) -> Option<(i64, i64)> {
        self.set.then_some((self.ts, self.id))
    }
}

/// The error for a row that failed one of the input checks.
#[cold]
#[inline(never)]
fn invalid_row(
    t: &Trade,
    row: usize,
    out_of_order: bool,
    prev_ts: i64,
    prev_id: i64,
) -> KernelError {
    if out_of_order {
        KernelError::Unsorted {
            row,
            prev_ts,
            prev_id,
            ts: t.timestamp_us,
            id: t.agg_trade_id,
        }
    } else if t.price <= 0 {
        KernelError::InvalidPrice {
            row,
            value: fixed::format(t.price),
        }
    } else if t.quantity < 0 {
        KernelError::InvalidQuantity {
            row,
            value: fixed::format(t.quantity),
        }
    } else {
        KernelError::InvalidTradeIds {
            row,
            first: t.first_trade_id,
            last: t.last_trade_id,
        }
    }
}
