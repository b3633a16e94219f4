//! The price-path features of the intra group: max drawdown D and run-up U of nav_k = p_k / p_1,
//! and the bull/bear epoch state machines (hurdles D and U).
//!
//! Both follow the float definitions exactly (bit for bit) while touching floats only
//! where a state can change: nav is monotone in the integer price, so a float comparison of navs
//! can only succeed where the integer prices compare the same way, and a float expression
//! monotone in nav takes its extreme at the extreme price. Between such events the state
//! machines repeat their last step, which is added in bulk.

use super::simd::kernel;
use crate::fixed;

/// nav of a fixed-point price: `fl(fl(p / 1e8) / fl(p_1 / 1e8))`, as the definition computes it.
#[derive(Clone, Copy)]
pub(super) struct Nav {
    open: f64,
}

impl Nav {
    pub(super) fn new(first_price: i64) -> Self {
        Self {
            open: fixed::to_f64(first_price),
        }
    }

    #[inline(always)]
    fn of(self, p: i64) -> f64 {
        fixed::to_f64(p) / self.open
    }
}

/// `(D, U)`: `D = max_k (1 - nav_k / max_{j<=k} nav_j)`, `U = max_k (1 - min_{j<=k} nav_j / nav_k)`.
///
/// While the running peak stays the same float, `1 - nav / peak` is largest at the lowest price
/// since the peak was set; likewise `1 - trough / nav` at the highest price since the trough. So
/// a stretch of prices with no new peak or trough only lowers the lowest and raises the highest
/// price: long bars on AVX2 take blocks of [`BLOCK`] prices so (vector minimum and maximum), and
/// step record by record only the blocks with a new peak or trough; the result is the same.
pub(super) fn drawdown_runup(price: &[i64], nav: Nav) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if price.len() >= SCAN_FROM && super::simd::has_avx2() {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { avx2::drawdown_runup(price, nav) };
    }
    drawdown_runup_steps(price, nav)
}

kernel! {
    /// [`drawdown_runup`] record by record.
    fn drawdown_runup_steps(price: &[i64], nav: Nav) -> (f64, f64) {
        let mut path = PathExtremes::new(price[0]);
        price[1..].iter().for_each(|&p| path.step(p, nav));
        path.finish(nav)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Nav, PathExtremes, BLOCK};
    use std::arch::x86_64::*;

    /// Lane-wise minimum of signed 64-bit lanes.
    #[inline(always)]
    unsafe fn min(a: __m256i, b: __m256i) -> __m256i {
        _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(a, b))
    }

    /// Lane-wise maximum of signed 64-bit lanes.
    #[inline(always)]
    unsafe fn max(a: __m256i, b: __m256i) -> __m256i {
        _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(b, a))
    }

    /// `f` over the four lanes.
    #[inline(always)]
    unsafe fn fold(v: __m256i, f: unsafe fn(__m256i, __m256i) -> __m256i) -> i64 {
        let v = f(v, _mm256_permute4x64_epi64::<0b01_00_11_10>(v));
        let v = f(v, _mm256_shuffle_epi32::<0b01_00_11_10>(v));
        _mm256_extract_epi64::<0>(v)
    }

    /// [`super::drawdown_runup`] in blocks (see there).
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn drawdown_runup(price: &[i64], nav: Nav) -> (f64, f64) {
        let mut path = PathExtremes::new(price[0]);
        let blocks = price[1..].chunks_exact(BLOCK);
        let rest = blocks.remainder();
        // Lane-wise minimum and maximum of the blocks taken whole since `path` was last updated.
        let (mut low, mut high) = (
            _mm256_set1_epi64x(path.lowest),
            _mm256_set1_epi64x(path.highest),
        );

        for block in blocks {
            let p = block.as_ptr().cast::<__m256i>();
            let v = [
                _mm256_loadu_si256(p),
                _mm256_loadu_si256(p.add(1)),
                _mm256_loadu_si256(p.add(2)),
                _mm256_loadu_si256(p.add(3)),
            ];
            let block_high = max(max(v[0], v[1]), max(v[2], v[3]));
            let block_low = min(min(v[0], v[1]), min(v[2], v[3]));
            let (peak, trough) = (
                _mm256_set1_epi64x(path.peak_p),
                _mm256_set1_epi64x(path.trough_p),
            );
            let beyond = _mm256_or_si256(
                _mm256_cmpgt_epi64(block_high, peak),
                _mm256_cmpgt_epi64(trough, block_low),
            );
            if _mm256_testz_si256(beyond, beyond) == 1 {
                low = min(low, block_low);
                high = max(high, block_high);
            } else {
                path.lowest = path.lowest.min(fold(low, min));
                path.highest = path.highest.max(fold(high, max));
                block.iter().for_each(|&q| path.step(q, nav));
                (low, high) = (
                    _mm256_set1_epi64x(path.lowest),
                    _mm256_set1_epi64x(path.highest),
                );
            }
        }
        path.lowest = path.lowest.min(fold(low, min));
        path.highest = path.highest.max(fold(high, max));
        rest.iter().for_each(|&q| path.step(q, nav));
        path.finish(nav)
    }
}

/// The running state of [`drawdown_runup`]: the peak (price and nav), the lowest price since it,
/// the trough and the highest price since it, and D and U so far.
struct PathExtremes {
    peak_p: i64,
    peak: f64,
    lowest: i64,
    trough_p: i64,
    trough: f64,
    highest: i64,
    drawdown: f64,
    runup: f64,
}

impl PathExtremes {
    #[inline(always)]
    fn new(first: i64) -> Self {
        Self {
            peak_p: first,
            peak: 1.0,
            lowest: first,
            trough_p: first,
            trough: 1.0,
            highest: first,
            drawdown: 0.0,
            runup: 0.0,
        }
    }

    #[inline(always)]
    fn step(&mut self, p: i64, nav: Nav) {
        if p > self.peak_p {
            self.drawdown = self.drawdown.max(1.0 - nav.of(self.lowest) / self.peak);
            (self.peak_p, self.peak, self.lowest) = (p, nav.of(p), p);
        } else {
            self.lowest = self.lowest.min(p);
        }
        if p < self.trough_p {
            self.runup = self.runup.max(1.0 - self.trough / nav.of(self.highest));
            (self.trough_p, self.trough, self.highest) = (p, nav.of(p), p);
        } else {
            self.highest = self.highest.max(p);
        }
    }

    #[inline(always)]
    fn finish(self, nav: Nav) -> (f64, f64) {
        (
            self.drawdown.max(1.0 - nav.of(self.lowest) / self.peak),
            self.runup.max(1.0 - self.trough / nav.of(self.highest)),
        )
    }
}

/// Prices per block of the vectorised scans.
const BLOCK: usize = 16;

/// Bars of fewer records step drawdown and run-up record by record (new extremes are dense).
const SCAN_FROM: usize = 1024;

/// The index of the first price outside `lo..=hi`, or `price.len()`: [`BLOCK`] at a time by a
/// vectorised test, then one by one within the block that has it.
#[inline(always)]
fn first_outside(price: &[i64], lo: i64, hi: i64) -> usize {
    let mut start = 0;
    for block in price.chunks_exact(BLOCK) {
        if block
            .iter()
            .fold(false, |any, &p| any | (p > hi) | (p < lo))
        {
            break;
        }
        start += BLOCK;
    }
    price[start..]
        .iter()
        .position(|&p| p > hi || p < lo)
        .map_or(price.len(), |q| start + q)
}

/// One side's epochs: their count E, the sum of the gains G_k, and the intervals between epoch
/// positions (0-based, preceded by 0) as their sum (the last position) and sum of squares.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Epochs {
    count: u64,
    gain_sum: f64,
    last: u64,
    squares: u128,
}

impl Epochs {
    /// sigmoid(10 (E / n - 0.5)).
    pub(super) fn density(&self, n: usize) -> f64 {
        sigmoid(10.0 * (self.count as f64 / n as f64 - 0.5))
    }

    /// tanh(5 sum_k G_k).
    pub(super) fn excess_gain(&self) -> f64 {
        (5.0 * self.gain_sum).tanh()
    }

    /// sigmoid(4 (cv - 0.5)) with cv = std / mean of the intervals (population std; 0 without
    /// epochs). With E intervals summing to S with squares Q, cv = sqrt(E Q - S^2) / S, whose
    /// radicand is an exact integer.
    pub(super) fn cv(&self) -> f64 {
        let cv = if self.count == 0 {
            0.0
        } else {
            let (e, s) = (u128::from(self.count), u128::from(self.last));
            // E Q >= S^2 (Cauchy-Schwarz); E Q <= n^3, far below 2^128.
            ((e * self.squares - s * s) as f64).sqrt() / s as f64
        };
        sigmoid(4.0 * (cv - 0.5))
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One side's state machine. Bull (`UP`): `far` is the candidate crest (new highs give gains
/// from the crest `anchor`), `near` the candidate nadir (new lows give losses). Bear: mirrored,
/// `far` the candidate trough, `near` the candidate peak. Each candidate keeps its price too.
struct Side<const UP: bool> {
    h: f64,
    gain: f64,
    loss: f64,
    anchor: f64,
    far: (f64, i64),
    near: (f64, i64),
    epochs: Epochs,
}

impl<const UP: bool> Side<UP> {
    fn new(h: f64, first_price: i64) -> Self {
        Self {
            h,
            gain: 0.0,
            loss: 0.0,
            anchor: 1.0,
            far: (1.0, first_price),
            near: (1.0, first_price),
            epochs: Epochs::default(),
        }
    }

    /// `(hi, lo)`: a step at a price within `lo..=hi` changes nothing.
    #[inline(always)]
    fn quiet_range(&self) -> (i64, i64) {
        if UP {
            (self.far.1, self.near.1)
        } else {
            (self.near.1, self.far.1)
        }
    }

    /// Steps `k..k + count` that change nothing: each records the current gain and loss.
    #[inline(always)]
    fn repeat(&mut self, k: usize, count: usize) {
        if count == 0 {
            return;
        }
        let e = &mut self.epochs;
        e.gain_sum += self.gain * count as f64;
        if self.gain > self.loss && self.gain > self.h {
            let first = k as u64 - e.last;
            e.count += count as u64;
            e.squares += u128::from(first) * u128::from(first) + (count as u128 - 1);
            e.last = (k + count - 1) as u64;
        }
    }

    /// Step `k` at price `p` (nav `x`), the previous price being `before`: the definition.
    #[inline(always)]
    fn step(&mut self, k: usize, p: i64, x: f64, before: i64, nav: Nav) {
        let (far_beyond, near_beyond) = if UP {
            (
                p > self.far.1 && x > self.far.0,
                p < self.near.1 && x < self.near.0,
            )
        } else {
            (
                p < self.far.1 && x < self.far.0,
                p > self.near.1 && x > self.near.0,
            )
        };
        if far_beyond {
            self.gain = if UP {
                x / self.anchor - 1.0
            } else {
                self.anchor / x - 1.0
            };
            self.far = (x, p);
        }
        if near_beyond {
            self.loss = if UP {
                1.0 - x / self.anchor
            } else {
                1.0 - self.anchor / x
            };
            self.near = (x, p);
        }
        self.repeat(k, 1);
        let moved = if UP {
            self.far.0 >= self.anchor
        } else {
            self.far.0 <= self.anchor
        };
        if self.gain > self.loss.abs() && self.gain > self.h && moved {
            self.anchor = self.far.0;
            self.near = (nav.of(before), before);
            self.gain = 0.0;
            self.loss = 0.0;
        }
    }
}

kernel! {
    /// The bull side (hurdle `d`) and the bear side (hurdle `u`) over the prices.
    pub(super) fn epochs(price: &[i64], nav: Nav, d: f64, u: f64) -> (Epochs, Epochs) {
        let n = price.len();
        let mut bull = Side::<true>::new(d, price[0]);
        let mut bear = Side::<false>::new(u, price[0]);
        let mut k = 1;
        while k < n {
            let ((bull_hi, bull_lo), (bear_hi, bear_lo)) = (bull.quiet_range(), bear.quiet_range());
            let (hi, lo) = (bull_hi.min(bear_hi), bull_lo.max(bear_lo));
            let event = k + first_outside(&price[k..], lo, hi);
            bull.repeat(k, event - k);
            bear.repeat(k, event - k);
            if event == n {
                break;
            }
            let p = price[event];
            let x = nav.of(p);
            bull.step(event, p, x, price[event - 1], nav);
            bear.step(event, p, x, price[event - 1], nav);
            k = event + 1;
        }
        (bull.epochs, bear.epochs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The drawdown and run-up, literally.
    fn literal_extremes(nav: &[f64]) -> (f64, f64) {
        let (mut peak, mut trough, mut dd, mut ru) = (nav[0], nav[0], 0.0_f64, 0.0_f64);
        for &x in nav {
            peak = peak.max(x);
            trough = trough.min(x);
            dd = dd.max(1.0 - x / peak);
            ru = ru.max(1.0 - trough / x);
        }
        (dd, ru)
    }

    /// The epoch machine, literally: `(E, sum G, epoch positions)`.
    fn literal_epochs(nav: &[f64], h: f64, bull: bool) -> (u64, f64, Vec<u64>) {
        let (mut gain, mut loss) = (0.0_f64, 0.0_f64);
        let (mut anchor, mut far, mut near) = (nav[0], nav[0], nav[0]);
        let (mut positions, mut sum_g) = (vec![], 0.0);
        for k in 1..nav.len() {
            let x = nav[k];
            if bull {
                if x > far {
                    gain = x / anchor - 1.0;
                    far = x;
                }
                if x < near {
                    loss = 1.0 - x / anchor;
                    near = x;
                }
            } else {
                if x < far {
                    gain = anchor / x - 1.0;
                    far = x;
                }
                if x > near {
                    loss = 1.0 - anchor / x;
                    near = x;
                }
            }
            sum_g += gain;
            if gain > loss && gain > h {
                positions.push(k as u64);
            }
            let moved = if bull { far >= anchor } else { far <= anchor };
            if gain > loss.abs() && gain > h && moved {
                anchor = far;
                near = nav[k - 1];
                gain = 0.0;
                loss = 0.0;
            }
        }
        (positions.len() as u64, sum_g, positions)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Drawdown, run-up and both epoch machines against the literal definitions, for small
        /// and large prices and ticks.
        #[test]
        fn path_features_follow_the_definitions(
            steps in prop::collection::vec(prop_oneof![6 => -3_i64..=3, 1 => -60_i64..=60], 1..2_000),
            start in prop_oneof![Just(6_000_000_000_000_i64), Just(1_i64 << 54), 1_000_i64..1_000_000],
            tick in prop_oneof![Just(100_000_000_i64), Just(1_i64), Just(7_i64)],
        ) {
            let mut p = start;
            let price: Vec<i64> = std::iter::once(start)
                .chain(steps.iter().map(|d| { p = (p + d * tick).max(1); p }))
                .collect();
            let nav = Nav::new(price[0]);
            let navs: Vec<f64> = price.iter().map(|&p| nav.of(p)).collect();
            let (d, u) = drawdown_runup(&price, nav);
            let (want_d, want_u) = literal_extremes(&navs);
            prop_assert_eq!((d.to_bits(), u.to_bits()), (want_d.to_bits(), want_u.to_bits()));
            #[cfg(target_arch = "x86_64")]
            if crate::intra::simd::has_avx2() {
                // SAFETY: checked just above. (Bars of any length, not only the long ones.)
                let (d, u) = unsafe { avx2::drawdown_runup(&price, nav) };
                prop_assert_eq!((d.to_bits(), u.to_bits()), (want_d.to_bits(), want_u.to_bits()));
            }
            let (bull, bear) = epochs(&price, nav, d, u);
            for (side, h, up) in [(bull, d, true), (bear, u, false)] {
                let (count, sum_g, positions) = literal_epochs(&navs, h, up);
                prop_assert_eq!(side.count, count);
                prop_assert!((side.gain_sum - sum_g).abs() <= 1e-12 * sum_g.abs().max(1e-300));
                prop_assert_eq!(side.last, positions.last().copied().unwrap_or(0));
                let mut prev = 0;
                let squares: u128 = positions.iter().map(|&k| { let d = k - prev; prev = k; u128::from(d * d) }).sum();
                prop_assert_eq!(side.squares, squares);
            }
        }
    }
}
