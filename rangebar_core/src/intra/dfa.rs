//! The intra group's Hurst exponent: DFA of the bar's log returns, the definition of
//! `lookback_hurst` (antropy's `detrended_fluctuation`), computed in time linear in the bar.
//!
//! antropy fits a line to every segment of every window size (about 30 sizes for a bar of 10 000
//! records), a pass over the walk per size. Here the walk is put on an integer grid once (50
//! significant bits of its largest value, finer than the returns' own rounding matters), with
//! exact prefix sums of `Y`, `j Y` and `Y^2`; each segment's least-squares residual then follows
//! from three differences in exact integer arithmetic (no cancellation), so the work per size is
//! one step per segment. The result agrees with antropy's to ~1e-12 (floats), not bit for bit.

use crate::lookback::{dfa, finite, linear_regression, log_n};

/// Scratch buffers reused across bars (a bar of N records needs ~48 N bytes).
#[derive(Debug, Default)]
pub(super) struct DfaScratch {
    x: Vec<f64>,
    p0: Vec<i64>,
    p1: Vec<i128>,
    p2: Vec<i128>,
    log_sizes: Vec<f64>,
    log_fluctuations: Vec<f64>,
}

/// Largest |z| for the series of [`log_returns`]: |ln(p1 / p0)| <= 2^-7, so every record of
/// bars up to ~390 dbps and most records of larger ones.
const SERIES_MAX: f64 = 1.0 / 256.0;

/// `2^52` as f64; `f64::from_bits(TWO_52_BITS | v) - TWO_52` is `v` for `0 <= v < 2^52`.
const TWO_52: f64 = 4_503_599_627_370_496.0;

/// `x_k = ln(p_{k+1} / p_k)` for prices in `1..2^52`: `2 atanh(z)` with
/// `z = (p_{k+1} - p_k) / (p_{k+1} + p_k)` (difference and sum exact) as the series
/// `2 z (1 + z^2/3 + z^4/5 + z^6/7)` when `|z| <= 2^-8` (next term below 2^-67 relative), `ln` of
/// the quotient otherwise (rare). Both within ~1 ulp; branch-free, so it vectorises.
fn log_returns(price: &[i64], x: &mut Vec<f64>) {
    let to_f64 = |p: i64| f64::from_bits(TWO_52.to_bits() | p as u64) - TWO_52;
    let n = price.len() - 1;
    let (before, after) = (&price[..n], &price[1..]);
    x.clear();
    x.extend(before.iter().zip(after).map(|(&p0, &p1)| {
        let (f0, f1) = (to_f64(p0), to_f64(p1));
        let z = (f1 - f0) / (f1 + f0);
        let w = z * z;
        2.0 * z * (1.0 + w * (1.0 / 3.0 + w * (1.0 / 5.0 + w * (1.0 / 7.0))))
    }));
    let far = |(&p0, &p1): (&i64, &i64)| p0.abs_diff(p1) as f64 > SERIES_MAX * (p0 + p1) as f64;
    if before.iter().zip(after).any(far) {
        for (v, (&p0, &p1)) in x.iter_mut().zip(before.iter().zip(after)) {
            if far((&p0, &p1)) {
                *v = (p1 as f64 / p0 as f64).ln();
            }
        }
    }
}

impl DfaScratch {
    /// The DFA exponent of the log returns of `price` (at least 2 prices, each in `1..=high`).
    pub(super) fn hurst(&mut self, price: &[i64], high: i64) -> Option<f64> {
        let n = price.len() - 1;
        if high < 1 << 52 {
            log_returns(price, &mut self.x);
        } else {
            self.x.clear();
            self.x
                .extend(price.windows(2).map(|w| (w[1] as f64 / w[0] as f64).ln()));
        }
        // antropy: the walk is the cumulative sum of the returns less their mean.
        let mut lanes = [0.0; 4];
        let chunks = self.x.chunks_exact(4);
        let tail: f64 = chunks.remainder().iter().sum();
        for c in chunks {
            for (l, v) in lanes.iter_mut().zip(c) {
                *l += v;
            }
        }
        let mean = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail) / n as f64;
        let mut walk = 0.0;
        let mut largest = 0.0_f64;
        for v in &mut self.x {
            walk += *v - mean;
            *v = walk;
            largest = largest.max(walk.abs());
        }
        if largest == 0.0 {
            return None; // every fluctuation is 0
        }
        // Grid: |Y| < 2^bits, with bits such that every sum below fits (see `fluctuation`).
        let width = usize::BITS - n.leading_zeros(); // n < 2^width
        let bits = 50.min(62 - width as i32);
        let exponent = ((largest.to_bits() >> 52) & 0x7ff) as i32 - 1023; // 2^e <= largest
        let shift = bits - 1 - exponent;
        if !(-1000..=1000).contains(&shift) || bits < 30 {
            // A walk beyond the f64 exponent range or a bar beyond ~2^32 records.
            let x: Vec<f64> = price
                .windows(2)
                .map(|w| (w[1] as f64 / w[0] as f64).ln())
                .collect();
            return dfa(&x);
        }
        let scale = pow2(shift);
        self.prefix_sums(scale);
        self.log_sizes.clear();
        self.log_fluctuations.clear();
        for size in log_n(4, 0.1 * n as f64, 1.2) {
            let f = self.fluctuation(size, bits as u32) / scale;
            if f != 0.0 {
                self.log_sizes.push((size as f64).ln());
                self.log_fluctuations.push(f.ln());
            }
        }
        if self.log_fluctuations.is_empty() {
            return None;
        }
        finite(linear_regression(&self.log_sizes, &self.log_fluctuations).0)
    }

    /// Exact prefix sums of `Y_j = round(walk_j * scale)`, `j Y_j` and `Y_j^2`.
    fn prefix_sums(&mut self, scale: f64) {
        // Rounds to nearest (|v| < 2^51) without a libm call.
        const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
        let n = self.x.len();
        self.p0.resize(n + 1, 0);
        self.p1.resize(n + 1, 0);
        self.p2.resize(n + 1, 0);
        let (p0, p1, p2) = (&mut self.p0[1..], &mut self.p1[1..], &mut self.p2[1..]);
        let (mut s0, mut s1, mut s2) = (0_i64, 0_i128, 0_i128);
        for (j, &v) in self.x.iter().enumerate() {
            let y = ((v * scale + MAGIC) - MAGIC) as i64;
            s0 += y;
            s1 += wide(j as i64, y);
            s2 += wide(y, y);
            p0[j] = s0;
            p1[j] = s1;
            p2[j] = s2;
        }
    }

    /// antropy's fluctuation for window `size` (on the grid): the root of the mean, over the
    /// `n / size` whole segments, of the mean squared residual around each segment's line.
    ///
    /// Per segment (`s` rows from `a`, `r = j - a`): with `Sy`, `Sry`, `Syy` the sums of `Y`,
    /// `r Y`, `Y^2`, `T1 = s Syy - Sy^2` and `T2 = s Sry - Sx Sy` are exact integers and the
    /// residual is `(T1 - T2^2 / D) / s` with `D = s Sxx - Sx^2`. (antropy's `+ 1e-9` in `D`
    /// changes that by under 1e-16 relative.) Bounds, with `|Y| < 2^b`, `n < 2^w`, `b + w <= 62`:
    /// `|Sy| < 2^62`, `0 <= T1 <= s^2 2^(2b) <= 2^124`, `|T2| <= s^3 2^b <= 2^(2w+62)`. Each is
    /// converted to float from its top 62 bits (of its bound): what is dropped is below 2^-62 of
    /// the bound, far below the rounding of the sums themselves.
    fn fluctuation(&self, size: usize, bits: u32) -> f64 {
        let segments = self.x.len() / size;
        let s = size as i64;
        let log_s = usize::BITS - (size - 1).leading_zeros(); // s <= 2^log_s
        let shift1 = (2 * log_s + 2 * bits).saturating_sub(62);
        let shift2 = (3 * log_s + bits + 1).saturating_sub(62);
        let sx = s * (s - 1) / 2;
        let sxx = i128::from((s - 1) * s * (2 * s - 1) / 6);
        let d = i128::from(s) * sxx - i128::from(sx) * i128::from(sx);
        let (scale1, scale2) = (pow2(shift1 as i32), pow2(shift2 as i32));
        // T1 - T2^2 / D, with the shifts folded in.
        let inv_d = scale2 * scale2 / d as f64 / scale1;
        let (p0, p1, p2) = (&self.p0[..], &self.p1[..], &self.p2[..]);
        let (mut a0, mut a1, mut a2) = (p0[0], p1[0], p2[0]);
        // Two sums (even and odd segments), so that the additions overlap.
        let mut totals = [0.0; 2];
        for i in 0..segments {
            let (a, e) = (i * size, (i + 1) * size);
            let (e0, e1, e2) = (p0[e], p1[e], p2[e]);
            let sy = e0 - a0;
            let sry = (e1 - a1) - wide(a as i64, sy);
            let t1 = (e2 - a2) * i128::from(s) - wide(sy, sy);
            let t2 = sry * i128::from(s) - wide(sx, sy);
            let (t1, t2) = ((t1 >> shift1) as i64 as f64, (t2 >> shift2) as i64 as f64);
            totals[i & 1] += (t1 - t2 * t2 * inv_d).max(0.0);
            (a0, a1, a2) = (e0, e1, e2);
        }
        // mean over segments of (residual / s) = total * 2^shift1 / s^2 / segments
        let size = size as f64;
        ((totals[0] + totals[1]) * scale1 / (size * size) / segments as f64).sqrt()
    }
}

/// `a * b` in 128 bits (one widening multiply).
#[inline(always)]
fn wide(a: i64, b: i64) -> i128 {
    i128::from(a) * i128::from(b)
}

/// `2^e` for `-1022 <= e <= 1023`, exact.
#[inline]
fn pow2(e: i32) -> f64 {
    f64::from_bits(((1023 + e) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The lookback DFA of the log returns, taken as `ln(fl(p1 / p0))` (antropy's inputs when
    /// fed `np.log(p[1:] / p[:-1])`) or from the exact difference (`precise`).
    fn reference(price: &[i64], precise: bool) -> Option<f64> {
        let x: Vec<f64> = price
            .windows(2)
            .map(|w| {
                let u = (w[1] - w[0]) as f64 / w[0] as f64;
                if precise && u.abs() < 0.5 {
                    u.ln_1p()
                } else {
                    (w[1] as f64 / w[0] as f64).ln()
                }
            })
            .collect();
        dfa(&x)
    }

    fn walk(start: i64, tick: i64, steps: &[i64]) -> Vec<i64> {
        let mut p = start;
        std::iter::once(start)
            .chain(steps.iter().map(|d| {
                p = (p + d * tick).max(1);
                p
            }))
            .collect()
    }

    fn near(got: Option<f64>, want: Option<f64>, tolerance: f64) -> Result<(), TestCaseError> {
        match (got, want) {
            (Some(g), Some(w)) => prop_assert!(
                (g - w).abs() <= tolerance * w.abs().max(1e-3),
                "{} vs {}",
                g,
                w
            ),
            (g, w) => prop_assert_eq!(g, w),
        }
        Ok(())
    }

    fn steps() -> impl Strategy<Value = Vec<i64>> {
        prop::collection::vec(
            prop_oneof![3 => Just(0_i64), 4 => -3_i64..=3, 1 => -300_i64..=300],
            63..3_000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any tick: the same DFA as the lookback one, on precise returns.
        #[test]
        fn agrees_with_the_lookback_dfa(
            steps in steps(),
            tick in prop_oneof![Just(1_i64), Just(1_000_000), Just(100_000_000)],
            start in 1_000_000_000_i64..10_000_000_000_000,
        ) {
            let price = walk(start, tick, &steps);
            near(DfaScratch::default().hurst(&price, *price.iter().max().unwrap()), reference(&price, true), 1e-10)?;
        }

        /// Returns of 1e-7 and more (a cent on 100 000): also antropy's value on the quotients.
        #[test]
        fn agrees_with_antropy_on_quotients(
            steps in steps(),
            start in 100_000_000_i64..10_000_000_000_000,
        ) {
            let tick = (start / 10_000_000).max(1);
            let price = walk(start, tick, &steps);
            near(DfaScratch::default().hurst(&price, *price.iter().max().unwrap()), reference(&price, false), 1e-9)?;
        }
    }

    fn log_return(p0: i64, p1: i64) -> f64 {
        let mut x = Vec::new();
        log_returns(&[p0, p1], &mut x);
        x[0]
    }

    #[test]
    fn log_returns_are_within_an_ulp_or_two() {
        for (p0, p1) in [
            (100, 101),
            (5_000_000_000_000, 5_000_000_000_001),
            (10, 9),
            (1_000, 1_007),
            (1_000, 1_008),
        ] {
            let want = ((p1 - p0) as f64 / p0 as f64).ln_1p();
            let got = log_return(p0, p1);
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
                "{p0} {p1}: {got} {want}"
            );
        }
        assert_eq!(log_return(7, 7), 0.0);
    }
}
