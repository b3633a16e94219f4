//! The vectorised slice scan for the common case (all seven columns, no lookback, no minimum
//! duration; the intra group on or off, as a compile-time switch): while a bar is open, up to [`SLICE_ROWS`] rows at a time are scanned for the first
//! that breaches the bar or is out of order ([`first_stop`], AVX2 lanes when the CPU has them,
//! a portable branch-free reduction otherwise), the rows before it are added to the bar with bulk
//! sums ([`add_slice`]), and the stopping row goes through [`RangeBarProcessor::step`], the one
//! definition of the rule. AVX2/BMI2 are detected at run time ([`RangeBarProcessor::run_plain`]);
//! the AVX2 build also prefetches the columns it sums after the scan. With the intra group on,
//! a run added in bulk is also copied to the intra state in bulk.

use super::{Cursor, Prev, RangeBarProcessor};
use crate::bar::{BarState, Trade};
use crate::columns::{BarColumns, TradeColumns};
use crate::error::KernelError;
use crate::intra::IntraState;
use crate::lookback::Lookback;

impl RangeBarProcessor {
    /// The common case: every column present, no lookback, no minimum duration; `INTRA` says
    /// whether the intra group (state `ib`) is on.
    ///
    /// While a bar is open, [`first_stop`] scans up to [`SLICE_ROWS`] rows for the first one that
    /// breaches the bar's thresholds or is out of order (a branch-light OR-reduction); the rows
    /// before it are added to the bar in bulk by [`add_slice`], and the stopping row goes through
    /// [`Self::step`], which closes the bar or diagnoses the error exactly as row-by-row
    /// processing would. `add_slice` declines (changing nothing) when a row of the slice has a
    /// negative quantity or `first > last`, or an accumulator could overflow within it; those rows
    /// then go through `step` one by one, which raises the same error at the same row.
    pub(super) fn run_plain<const INTRA: bool>(
        &self,
        trades: &TradeColumns<'_>,
        out: &mut BarColumns,
        ids: [&[i64]; 3],
        ibm: &[bool],
        ib: &mut IntraState,
    ) -> Result<Cursor, KernelError> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("bmi2") {
            // SAFETY: the CPU has AVX2 and BMI2 (checked just above).
            return unsafe { self.run_plain_avx2::<INTRA>(trades, out, ids, ibm, ib) };
        }
        self.run_plain_body::<false, INTRA>(trades, out, ids, ibm, ib)
    }

    /// [`Self::run_plain`] compiled for AVX2 (4 x 64-bit lanes for the scan and the sums) and
    /// BMI2 (`mulx` for 128-bit turnovers).
    ///
    /// # Safety
    /// The CPU must support AVX2 and BMI2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi2")]
    unsafe fn run_plain_avx2<const INTRA: bool>(
        &self,
        trades: &TradeColumns<'_>,
        out: &mut BarColumns,
        ids: [&[i64]; 3],
        ibm: &[bool],
        ib: &mut IntraState,
    ) -> Result<Cursor, KernelError> {
        self.run_plain_body::<true, INTRA>(trades, out, ids, ibm, ib)
    }

    /// The loop of [`Self::run_plain`]; `AVX2` only from [`Self::run_plain_avx2`].
    #[inline(always)]
    fn run_plain_body<const AVX2: bool, const INTRA: bool>(
        &self,
        trades: &TradeColumns<'_>,
        out: &mut BarColumns,
        [agg, first, last]: [&[i64]; 3],
        ibm: &[bool],
        ib: &mut IntraState,
    ) -> Result<Cursor, KernelError> {
        let n = trades.len();
        let c = Rows {
            ts: &trades.timestamp_us[..n],
            price: &trades.price[..n],
            qty: &trades.quantity[..n],
            agg: &agg[..n],
            first: &first[..n],
            last: &last[..n],
            ibm: &ibm[..n],
        };
        let mut cursor = Cursor {
            bar: self.bar,
            last: self.last,
        };
        let mut prev = Prev::of(cursor.last);
        let mut lb = Lookback::default();
        let (before, mut reserved) = (out.len(), false);
        let mut row = 0;
        while row < n {
            // Once the first bars show the rate, make room for the rest at once (uncommitted
            // memory until written) instead of regrowing 31 columns, copies and page faults each.
            if !reserved && out.len() - before >= RESERVE_AFTER_BARS {
                reserved = true;
                let (bars, left) = ((out.len() - before) as u128, (n - row) as u128);
                // `row > 0` here, and a bar takes at least one row.
                let estimate = (left * bars / row as u128 * 5 / 4).min(left) as usize;
                out.reserve(estimate + RESERVE_AFTER_BARS);
                if INTRA {
                    out.intra.reserve(estimate + RESERVE_AFTER_BARS);
                }
            }
            if let (Some(bar), true) = (cursor.bar.as_mut(), prev.set) {
                let end = n.min(row + SLICE_ROWS);
                let stop = first_stop::<AVX2>(&c, row, end, prev.ts, prev.id, bar.upper, bar.lower);
                if stop > row {
                    if add_slice(bar, &c, row, stop) {
                        if INTRA {
                            ib.extend(&c.ts[row..stop], &c.price[row..stop], &c.qty[row..stop]);
                        }
                        prev = Prev {
                            ts: c.ts[stop - 1],
                            id: c.agg[stop - 1],
                            set: true,
                        };
                    } else {
                        for r in row..stop {
                            self.step::<false, false, INTRA>(
                                &c.trade(r),
                                r,
                                &mut cursor,
                                &mut prev,
                                out,
                                &mut lb,
                                ib,
                            )?;
                        }
                    }
                    row = stop;
                    if stop == end {
                        continue;
                    }
                }
            }
            self.step::<false, false, INTRA>(
                &c.trade(row),
                row,
                &mut cursor,
                &mut prev,
                out,
                &mut lb,
                ib,
            )?;
            row += 1;
        }
        cursor.last = prev.get();
        Ok(cursor)
    }
}

/// Rows handled in bulk at a time: few enough that the scan's lines are still in L1 for the sums
/// (measured on 10 M trades at 250 dbps: 64 rows ~450 M trades/s, 128 ~410 M, 512 ~365 M), and
/// a bound on the sums (`add_slice` relies on `SLICE_ROWS <= 2^9`).
const SLICE_ROWS: usize = 64;
const _: () = assert!(SLICE_ROWS <= 1 << 9);

/// How far ahead of its scan the AVX2 build prefetches the columns it sums afterwards.
#[cfg(target_arch = "x86_64")]
const PREFETCH_ROWS: usize = 32;

/// Bars after which [`RangeBarProcessor::run_plain`] reserves output for the rest of its input.
const RESERVE_AFTER_BARS: usize = 64;

/// All seven input columns, each of the same length.
struct Rows<'a> {
    ts: &'a [i64],
    price: &'a [i64],
    qty: &'a [i64],
    agg: &'a [i64],
    first: &'a [i64],
    last: &'a [i64],
    ibm: &'a [bool],
}

impl Rows<'_> {
    #[inline(always)]
    fn trade(&self, row: usize) -> Trade {
        Trade {
            timestamp_us: self.ts[row],
            price: self.price[row],
            quantity: self.qty[row],
            agg_trade_id: self.agg[row],
            first_trade_id: self.first[row],
            last_trade_id: self.last[row],
            is_buyer_maker: self.ibm[row],
        }
    }
}

/// Must a row go through [`RangeBarProcessor::step`] rather than [`add_slice`]? True when it
/// breaches `(lower, upper)` (price <= 0 included, as `lower >= 0`) or is out of order. Branch-free.
///
/// The other input checks need no stop: a negative quantity or `first > last` is 2^63 or more
/// as the u64 that `add_slice` sums, so it declines the slice and `step` diagnoses the row.
#[inline(always)]
fn stops(ts: i64, id: i64, prev_ts: i64, prev_id: i64, price: i64, lower: i64, upper: i64) -> bool {
    let outside = (price <= lower) | (price >= upper);
    let unsorted = (ts < prev_ts) | ((ts == prev_ts) & (id <= prev_id));
    outside | unsorted
}

/// The first row in `start..end` that [`stops`] (`end` when none does); the trade before `start`
/// is `(prev_ts, prev_id)`, which is row `start - 1` unless `start == 0`. Blocks of `LANES` rows
/// are OR-reduced without branches, then the block that stops is searched row by row.
#[inline(always)]
fn first_stop<const AVX2: bool>(
    c: &Rows<'_>,
    start: usize,
    end: usize,
    prev_ts: i64,
    prev_id: i64,
    upper: i64,
    lower: i64,
) -> usize {
    const LANES: usize = 8;
    // lower >= 0 always (delta <= open); the max makes `price <= 0` stop even if it were not.
    let lower = lower.max(0);
    // A macro, not a closure: closures are not inlined reliably into the AVX2 build.
    macro_rules! at {
        ($i:expr, $pts:expr, $pid:expr) => {{
            let i = $i;
            stops(c.ts[i], c.agg[i], $pts, $pid, c.price[i], lower, upper)
        }};
    }
    // Past the call's first row, the previous trade is the row before (blocks compare with it).
    let mut i = start;
    if start == 0 {
        if at!(0, prev_ts, prev_id) {
            return 0;
        }
        i = 1;
    }
    while i + LANES <= end {
        #[cfg(target_arch = "x86_64")]
        if AVX2 {
            // SAFETY: `AVX2` is only set in the AVX2 build, on a CPU that has it.
            if unsafe { block_stops_avx2(c, i, lower, upper) } {
                break;
            }
            i += LANES;
            continue;
        }
        let ts: &[i64; LANES + 1] = c.ts[i - 1..i + LANES].try_into().unwrap();
        let id: &[i64; LANES + 1] = c.agg[i - 1..i + LANES].try_into().unwrap();
        let price: &[i64; LANES] = c.price[i..i + LANES].try_into().unwrap();
        let mut any = false;
        for k in 0..LANES {
            any |= stops(ts[k + 1], id[k + 1], ts[k], id[k], price[k], lower, upper);
        }
        if any {
            break;
        }
        i += LANES;
    }
    while i < end && !at!(i, c.ts[i - 1], c.agg[i - 1]) {
        i += 1;
    }
    i
}

/// Does any of the 8 rows `i..i + 8` stop ([`stops`] with `lower >= 0`)? Two AVX2 vectors of 4
/// rows, every check a lane mask, OR-reduced; the sign bits say whether any lane is set.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn block_stops_avx2(c: &Rows<'_>, i: usize, lower: i64, upper: i64) -> bool {
    use std::arch::x86_64::*;
    let (ts, id, price) = (
        &c.ts[i - 1..i + 8],
        &c.agg[i - 1..i + 8],
        &c.price[i..i + 8],
    );
    let load = |s: &[i64], k: usize| _mm256_loadu_si256(s.as_ptr().add(k).cast());
    // lower < upper <= i64::MAX, so neither bound moves out of range.
    let (below, above) = (_mm256_set1_epi64x(lower + 1), _mm256_set1_epi64x(upper - 1));
    // The columns the scan does not read are summed right after it: start fetching them, a few
    // blocks ahead (the hardware prefetcher restarts at every bar otherwise). Past the end the
    // address is never dereferenced; a prefetch does not fault.
    for column in [c.qty, c.first, c.last] {
        _mm_prefetch::<_MM_HINT_T0>(column.as_ptr().wrapping_add(i + PREFETCH_ROWS).cast());
    }
    let mut any = _mm256_setzero_si256();
    for k in [0, 4] {
        let p = load(price, k);
        let outside = _mm256_or_si256(_mm256_cmpgt_epi64(p, above), _mm256_cmpgt_epi64(below, p));
        let (t, t_prev) = (load(ts, k + 1), load(ts, k));
        let (g, g_prev) = (load(id, k + 1), load(id, k));
        // ts < prev_ts, or ts == prev_ts and not id > prev_id
        let unsorted = _mm256_or_si256(
            _mm256_cmpgt_epi64(t_prev, t),
            _mm256_andnot_si256(_mm256_cmpgt_epi64(g, g_prev), _mm256_cmpeq_epi64(t, t_prev)),
        );
        any = _mm256_or_si256(any, _mm256_or_si256(outside, unsorted));
    }
    _mm256_movemask_pd(_mm256_castsi256_pd(any)) != 0
}

/// Add rows `start..end` (in order, none breaching) to `bar`, exactly as one `add` per row would.
/// Returns false and leaves `bar` unchanged when a row has a negative quantity or `first > last`,
/// or a trade count or turnover could overflow within the slice (the caller then adds the rows
/// one by one, which raises the error at its row).
#[inline(always)]
fn add_slice(bar: &mut BarState, c: &Rows<'_>, start: usize, end: usize) -> bool {
    let (price, qty) = (&c.price[start..end], &c.qty[start..end]);
    let (first, last) = (&c.first[start..end], &c.last[start..end]);
    let ibm = &c.ibm[start..end];
    let rows = end - start;
    let (mut high, mut low) = (bar.high, bar.low);
    // Sums over the whole slice and over its sell side (buy = whole - sell). Volumes and id spans
    // are summed in u64: exact while every value is below 2^54 (at most 2^9 rows), which `bits`
    // checks afterwards. This loop has no 128-bit arithmetic, so it vectorises.
    let (mut volume, mut sell_volume) = (0_u64, 0_u64);
    let (mut spans, mut sell_spans, mut sell_rows) = (0_u64, 0_u64, 0_u64);
    let (mut qty_bits, mut span_bits) = (0_u64, 0_u64);
    for r in 0..rows {
        let p = price[r];
        let q = qty[r] as u64; // 2^63 or more when negative: caught by `qty_bits`
        let sell = u64::from(ibm[r]);
        let mask = sell.wrapping_neg();
        high = high.max(p);
        low = low.min(p);
        volume = volume.wrapping_add(q);
        sell_volume = sell_volume.wrapping_add(q & mask);
        // last - first, exact when first <= last; 2^63 or more otherwise: caught by `span_bits`.
        let span = last[r].wrapping_sub(first[r]) as u64;
        spans = spans.wrapping_add(span);
        sell_spans = sell_spans.wrapping_add(span & mask);
        sell_rows += sell;
        qty_bits |= q;
        span_bits |= span;
    }
    if (qty_bits | span_bits) >= 1 << 54 {
        return false;
    }
    // Turnovers: products below 2^117 (p < 2^63, q < 2^54), so the u128 sums can wrap; checked
    // against a bound below.
    let (turnover, sell_turnover) = if qty_bits < 1 << 32 {
        turnovers_narrow(price, qty, ibm)
    } else {
        turnovers_wide(price, qty, ibm)
    };
    let (volume, sell_volume) = (u128::from(volume), u128::from(sell_volume));
    let (spans, sell_spans) = (u128::from(spans), u128::from(sell_spans));
    let buy_rows = rows as u64 - sell_rows;
    let (buy_volume, buy_spans) = (volume - sell_volume, spans - sell_spans);
    let buy_turnover = turnover.wrapping_sub(sell_turnover);
    // Each side's trade count grows by its spans + rows; per-row counts and partial sums are
    // smaller, so the final totals fitting in i64 means no row overflowed.
    let buy_trades = i128::from(bar.buy.trades) + (buy_spans + u128::from(buy_rows)) as i128;
    let sell_trades = i128::from(bar.sell.trades) + (sell_spans + u128::from(sell_rows)) as i128;
    // Each side's turnover grows by at most high * its volume; if that keeps it in i128, the
    // wrapped sums above are exact and no partial sum overflowed.
    let fits = |old: i128, side_volume: u128| {
        (high as u128)
            .checked_mul(side_volume)
            .and_then(|bound| (old as u128).checked_add(bound))
            .is_some_and(|total| total <= i128::MAX as u128)
    };
    if buy_trades > i128::from(i64::MAX)
        || sell_trades > i128::from(i64::MAX)
        || !fits(bar.buy.turnover, buy_volume)
        || !fits(bar.sell.turnover, sell_volume)
    {
        return false;
    }
    let last_row = end - 1;
    bar.high = high;
    bar.low = low;
    bar.close = c.price[last_row];
    bar.close_time = c.ts[last_row];
    bar.last_agg_trade_id = c.agg[last_row];
    bar.last_trade_id = c.last[last_row];
    bar.agg_record_count += rows as i64;
    bar.buy.volume += buy_volume as i128;
    bar.sell.volume += sell_volume as i128;
    bar.buy.trades = buy_trades as i64;
    bar.sell.trades = sell_trades as i64;
    bar.buy.turnover += buy_turnover as i128;
    bar.sell.turnover += sell_turnover as i128;
    true
}

/// `(sum of price x quantity, the same over sell rows)`, wrapping, for any quantities >= 0.
#[inline(always)]
fn turnovers_wide(price: &[i64], qty: &[i64], ibm: &[bool]) -> (u128, u128) {
    let (mut turnover, mut sell_turnover) = (0_u128, 0_u128);
    for ((&p, &q), &sell) in price.iter().zip(qty).zip(ibm) {
        let mask = u64::from(sell).wrapping_neg();
        let product = u128::from(p as u64) * u128::from(q as u64); // p > 0, q >= 0
        turnover = turnover.wrapping_add(product);
        sell_turnover =
            sell_turnover.wrapping_add(product & (u128::from(mask) * 0x1_0000_0000_0000_0001));
    }
    (turnover, sell_turnover)
}

/// [`turnovers_wide`] for quantities below 2^32 and at most 2^9 rows, in 64-bit lanes: with
/// `p = p1 * 2^32 + p0`, `p * q = p0 q + p1 q 2^32`; each 32-bit half of those two products is
/// summed apart (below 2^32 x 2^9 rows each), so nothing wraps, and it vectorises.
#[inline(always)]
fn turnovers_narrow(price: &[i64], qty: &[i64], ibm: &[bool]) -> (u128, u128) {
    const LOW: u64 = 0xffff_ffff;
    let (mut lo, mut mid, mut hi) = (0_u64, 0_u64, 0_u64);
    let (mut sell_lo, mut sell_mid, mut sell_hi) = (0_u64, 0_u64, 0_u64);
    for ((&p, &q), &sell) in price.iter().zip(qty).zip(ibm) {
        let (p0, p1) = ((p as u64) & LOW, (p as u64) >> 32);
        let q = (q as u64) & LOW; // < 2^32 by the caller's check
        let sell_q = q & u64::from(sell).wrapping_neg();
        let (x, y) = (p0 * q, p1 * q);
        lo += x & LOW;
        mid += (x >> 32) + (y & LOW);
        hi += y >> 32;
        let (x, y) = (p0 * sell_q, p1 * sell_q);
        sell_lo += x & LOW;
        sell_mid += (x >> 32) + (y & LOW);
        sell_hi += y >> 32;
    }
    let join = |lo: u64, mid: u64, hi: u64| {
        u128::from(lo)
            .wrapping_add(u128::from(mid) << 32)
            .wrapping_add(u128::from(hi) << 64)
    };
    (join(lo, mid, hi), join(sell_lo, sell_mid, sell_hi))
}

#[cfg(test)]
mod fast_path_tests {
    //! The bulk loop (`run_plain`, both builds) against the row-by-row loop (`run`), on streams
    //! long enough to cross slice edges, with invalid rows and overflowing values mixed in.
    use super::*;
    use crate::ProcessorConfig;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Stream {
        ts: Vec<i64>,
        price: Vec<i64>,
        qty: Vec<i64>,
        agg: Vec<i64>,
        first: Vec<i64>,
        last: Vec<i64>,
        ibm: Vec<bool>,
    }

    impl Stream {
        fn columns(&self) -> TradeColumns<'_> {
            TradeColumns {
                timestamp_us: &self.ts,
                price: &self.price,
                quantity: &self.qty,
                agg_trade_id: Some(&self.agg),
                first_trade_id: Some(&self.first),
                last_trade_id: Some(&self.last),
                is_buyer_maker: Some(&self.ibm),
            }
        }
    }

    /// A random walk with equal timestamps; per stream, how often rows are bad (unsorted, price
    /// <= 0, quantity < 0, first > last: never, rarely, often) and how often values are huge
    /// (quantities, prices and id spans that overflow the sums: never, rarely, often).
    fn streams() -> impl Strategy<Value = Stream> {
        (0_u32..3, 0_u32..3, 1_usize..1_600).prop_flat_map(|(bad, huge, len)| {
            let bad = [0_u32, 1, 40][bad as usize]; // per 20 000 rows and kind
            let huge = [0_u32, 2, 500][huge as usize]; // per 1 000 rows and kind
            let row = (
                prop_oneof![20 => -30_i64..=30, 1 => -3_000_i64..3_000], // price step (x 1e6)
                prop_oneof![3 => Just(0_i64), 5 => 1_i64..1_000],        // time step
                0_i64..200_000_000,                                      // quantity
                0_i64..3,                                                // id span
                any::<bool>(),
                0_u32..20_000, // which bad row, if any
                0_u32..1_000,  // which huge value, if any
                (30_u32..63, any::<i64>())
                    .prop_map(|(bits, r)| (1 << bits) | (r & ((1 << bits) - 1))),
            );
            prop::collection::vec(row, len).prop_map(move |rows| {
                let mut s = Stream {
                    ts: vec![],
                    price: vec![],
                    qty: vec![],
                    agg: vec![],
                    first: vec![],
                    last: vec![],
                    ibm: vec![],
                };
                let (mut price, mut ts, mut id) =
                    (5_000_000_000_000_i64, 1_700_000_000_000_000, 10);
                for (dp, dt, mut qty, mut span, ibm, b, h, big) in rows {
                    price = (price + dp * 1_000_000).max(1_000_000);
                    let kind =
                        |k: u32, rate: u32| rate > 0 && (k * rate..(k + 1) * rate).contains(&b);
                    let large = |k: u32| (k * huge..(k + 1) * huge).contains(&h);
                    ts += if kind(0, bad) { -1 } else { dt };
                    id += if kind(1, bad) { -1 } else { 1 };
                    let mut p = price;
                    if kind(2, bad) {
                        p = 0;
                    } else if kind(3, bad) {
                        p = -price;
                    } else if large(0) {
                        p = big / 2 + price;
                    }
                    if kind(4, bad) {
                        qty = -1;
                    } else if large(1) {
                        qty = big;
                    }
                    if kind(5, bad) {
                        span = -1;
                    } else if huge > 0 && h == 999 {
                        span = big;
                    }
                    s.ts.push(ts);
                    s.price.push(p);
                    s.qty.push(qty);
                    s.agg.push(id);
                    s.first.push(id);
                    s.last.push(id.wrapping_add(span));
                    s.ibm.push(ibm);
                }
                s
            })
        })
    }

    /// Bars equal, the intra columns bit for bit (NaN marks their nulls).
    fn same_bars(a: &BarColumns, b: &BarColumns) -> bool {
        let bits = |c: &BarColumns| {
            let i = &c.intra;
            let mut out: Vec<Vec<u64>> = vec![
                i.intra_trade_count.iter().map(|&v| v as u64).collect(),
                i.intra_duration_us.iter().map(|&v| v as u64).collect(),
            ];
            macro_rules! floats {
                ($($field:ident),*) => { $( out.push(i.$field.iter().map(|v| v.to_bits()).collect()); )* };
            }
            floats!(
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
            );
            out
        };
        let plain = |c: &BarColumns| BarColumns {
            intra: Default::default(),
            ..c.clone()
        };
        plain(a) == plain(b) && bits(a) == bits(b)
    }

    /// The bulk loop (both builds) and the row loop of `p` on `cols` (every id column present),
    /// with the intra group (starting from `p`'s intra state) when `INTRA`.
    fn compare<const INTRA: bool>(
        p: &RangeBarProcessor,
        cols: &TradeColumns<'_>,
    ) -> Result<(), TestCaseError> {
        let ids = (
            cols.agg_trade_id,
            cols.first_trade_id,
            cols.last_trade_id,
            cols.is_buyer_maker,
        );
        let (Some(agg), Some(first), Some(last), Some(ibm)) = ids else {
            panic!("compare needs every id column");
        };
        let start = p.intra.as_deref().cloned().unwrap_or_default();
        let mut expected_out = BarColumns::default();
        let mut expected_ib = start.clone();
        let expected = p.run::<false, false, INTRA>(
            cols,
            &mut expected_out,
            &mut Lookback::default(),
            &mut expected_ib,
            |i| agg[i],
            |i| first[i],
            |i| last[i],
            |i| ibm[i],
        );
        let mut out = BarColumns::default();
        let mut ib = start.clone();
        let got =
            p.run_plain_body::<false, INTRA>(cols, &mut out, [agg, first, last], ibm, &mut ib);
        prop_assert_eq!(&got, &expected);
        if expected.is_ok() {
            prop_assert!(same_bars(&out, &expected_out));
            prop_assert_eq!(&ib, &expected_ib);
            prop_assert_eq!(out.intra.len(), if INTRA { out.len() } else { 0 });
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("bmi2") {
            let mut out = BarColumns::default();
            let mut ib = start.clone();
            // SAFETY: checked just above.
            let got = unsafe {
                p.run_plain_avx2::<INTRA>(cols, &mut out, [agg, first, last], ibm, &mut ib)
            };
            prop_assert_eq!(&got, &expected);
            if expected.is_ok() {
                prop_assert!(same_bars(&out, &expected_out));
                prop_assert_eq!(&ib, &expected_ib);
            }
        }
        Ok(())
    }

    /// [`compare`] with the intra group off and on.
    fn compare_both(p: &RangeBarProcessor, cols: &TradeColumns<'_>) -> Result<(), TestCaseError> {
        compare::<false>(p, cols)?;
        compare::<true>(p, cols)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn bulk_loop_equals_row_by_row(
            s in streams(),
            threshold in prop_oneof![Just(1_i64), Just(25), Just(250), 1_i64..3_000, Just(100_000)],
            gate in any::<bool>(),
            intra in any::<bool>(),
            prefix in 0_usize..40,
            room in (60_u32..127, 60_u32..127, 0_i64..1_000, 0_i64..1_000),
        ) {
            // From a fresh processor, and from one with a bar (and a last trade) in progress.
            let fresh = RangeBarProcessor::with_config(
                ProcessorConfig::new(threshold, gate).unwrap().with_intra_bar(intra),
            );
            let cols = s.columns();
            compare_both(&fresh, &cols)?;
            let cut = prefix.min(cols.len());
            let mut p = fresh.clone();
            if p.process(&cols.slice(0, cut), &mut BarColumns::default()).is_ok() {
                let tail = cols.slice(cut, cols.len());
                compare_both(&p, &tail)?;
                // And with the bar's totals near their limits, so the sums overflow mid-stream.
                let mut cp = p.checkpoint();
                if let Some(bar) = cp.bar.as_mut() {
                    for (side, room, trades) in [(&mut bar.buy, room.0, room.2), (&mut bar.sell, room.1, room.3)] {
                        side.turnover = i128::MAX - (1_i128 << room);
                        side.trades = i64::MAX - trades;
                    }
                    compare_both(&RangeBarProcessor::from_checkpoint(&cp).unwrap(), &tail)?;
                }
            }
        }
    }

    #[test]
    fn trade_counts_overflow_at_the_same_row() {
        // A bar whose side counts are `room` short of i64::MAX, then `rows` trades adding 1 or 2.
        for room in 0..12_i64 {
            for rows in 1..16_usize {
                for span in 0..2_i64 {
                    let n = rows + 1;
                    let s = Stream {
                        ts: (0..n as i64).collect(),
                        price: vec![5_000_000_000_000; n],
                        qty: vec![100; n],
                        agg: (10..10 + n as i64).collect(),
                        first: (10..10 + n as i64).collect(),
                        last: (10..10 + n as i64).map(|i| i + span).collect(),
                        ibm: (0..n).map(|i| i % 3 == 0).collect(),
                    };
                    let cols = s.columns();
                    let mut p = RangeBarProcessor::new(250, false).unwrap();
                    p.process(&cols.slice(0, 1), &mut BarColumns::default())
                        .unwrap();
                    let mut cp = p.checkpoint();
                    let bar = cp.bar.as_mut().unwrap();
                    bar.buy.trades = i64::MAX - room;
                    bar.sell.trades = i64::MAX - room - 1;
                    let p = RangeBarProcessor::from_checkpoint(&cp).unwrap();
                    compare_both(&p, &cols.slice(1, n)).unwrap();
                }
            }
        }
    }
}
