//! The DFA's segments: exact prefix sums of the grid walk and, per window size, the mean squared
//! residual of the segments' least-squares lines from them, one step per segment.
//!
//! Per segment (`s` rows from `a` to `e = a + s`, `r = j - a`): with `Sy`, `Sry`, `Syy` the sums
//! of `Y`, `r Y`, `Y^2`, the residual is `(T1 - T2^2 / D) / s` with `T1 = s Syy - Sy^2`,
//! `T2 = s Sry - Sx Sy` and `D = s Sxx - Sx^2 = s^2 (s^2 - 1) / 12`. (antropy's `+ 1e-9` in `D`
//! changes that by under 1e-16 relative.) `T1 = s (P2_e - P2_a) - (P0_e - P0_a)^2`, and
//! `Sry = (s - 1) P0_e - sum_{a<k<e} P0_k` gives `T2 = s U / 2` with
//! `U = s (P0_e + P0_a) - Sy - 2 (S0_e - S0_a)`: exact integers.
//!
//! Bounds, with `|Y| <= 2^b`, `n < 2^w`, `b + w <= 62`, `s <= 2^l`: `|P0| < 2^62`,
//! `0 <= T1 <= s Syy <= 2^(2l+2b) < 2^128`, `|U| = 2 |T2| / s <= 2^(2l+b-1)`: within 64 bits (so
//! from the low words alone, wrapping) when `2l + b <= 63` ("narrow", all but the largest
//! sizes). `T1` is converted to float from its top 62 bits (of its bound), `U` likewise when
//! wide: what is dropped is below 2^-61 of the bound, far below the rounding of the sums.
//!
//! The small sizes, which hold most segments, are taken directly from the walk instead
//! (`intra/direct.rs`).

use super::dfa::pow2;
use super::simd::kernel;

/// Exact prefix sums at one index of the grid walk `Y`: `P0 = sum_{k<j} Y_k`, the low word of
/// `S0 = sum_{k<j} P0_k` and `P2 = sum_{k<j} Y_k^2` (one 32-byte record, so that a segment
/// reads one place per end).
#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub(super) struct Prefix {
    p0: i64,
    s0: u64,
    p2_low: u64,
    p2_high: u64,
}

impl Prefix {
    #[inline(always)]
    fn p2(&self) -> u128 {
        (u128::from(self.p2_high) << 64) | u128::from(self.p2_low)
    }
}

kernel! {
    /// Exact prefix sums over `Y_j = round(y_j * scale)` (`|Y_j| < 2^51`; see [`Prefix`]), and
    /// the high words of `S0` (`y.len() + 1` of each).
    pub(super) fn prefix_sums(y: &[f64], scale: f64, prefix: &mut [Prefix], s0_high: &mut [i64]) {
        // Rounds to nearest: the integer sits in the low bits of `v + 1.5 * 2^52`.
        const MAGIC: f64 = 6_755_399_441_055_744.0;
        (prefix[0], s0_high[0]) = (Prefix::default(), 0);
        let (mut a0, mut a1, mut a2) = (0_i64, 0_i128, 0_u128);
        for ((&v, out), high) in y.iter().zip(&mut prefix[1..]).zip(&mut s0_high[1..]) {
            let y = (v * scale + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits()) as i64;
            a1 += i128::from(a0);
            a0 += y;
            a2 += (i128::from(y) * i128::from(y)) as u128;
            *out = Prefix {
                p0: a0,
                s0: a1 as u64,
                p2_low: a2 as u64,
                p2_high: (a2 >> 64) as u64,
            };
            *high = (a1 >> 64) as i64;
        }
    }
}

/// antropy's squared fluctuation for window `size` (on the grid of `bits` bits, see the module
/// documentation): the mean, over the `n / size` whole segments, of the mean squared residual
/// around each segment's line.
pub(super) fn fluctuation(prefix: &[Prefix], s0_high: &[i64], size: usize, bits: u32) -> f64 {
    let log_s = usize::BITS - (size - 1).leading_zeros(); // s <= 2^log_s
    if 2 * log_s + bits > 63 {
        fluctuation_with::<true>(prefix, s0_high, size, log_s, bits)
    } else {
        fluctuation_with::<false>(prefix, s0_high, size, log_s, bits)
    }
}

/// The shifts and the factor of one window size: `T1` in units of `2^k1`, `U` in units of
/// `2^k2` and `T2^2 / D = c U^2` in units of `2^k1`.
#[inline(always)]
fn constants<const WIDE: bool>(size: usize, log_s: u32, bits: u32) -> (u32, u32, f64) {
    // k1 <= 2 (w - 3) + 2 b - 62 <= 56 and k2 <= w - 6 (`s <= 0.1 n`, so l <= w - 3).
    let k1 = (2 * log_s + 2 * bits).saturating_sub(62) & 63;
    let k2 = if WIDE {
        (2 * log_s + bits - 1).saturating_sub(61) & 63
    } else {
        0
    };
    let s = size as f64;
    // T2^2 / D = 3 U^2 / (s^2 - 1).
    (
        k1,
        k2,
        3.0 * pow2(2 * k2 as i32 - k1 as i32) / (s * s - 1.0),
    )
}

kernel! {
    /// [`fluctuation`] with `U` in 64 bits (narrow) or 128 (`WIDE`).
    fn fluctuation_with<const WIDE: bool>(
        prefix: &[Prefix],
        s0_high: &[i64],
        size: usize,
        log_s: u32,
        bits: u32,
    ) -> f64 {
        let segments = (prefix.len() - 1) / size;
        let (k1, k2, c) = constants::<WIDE>(size, log_s, bits);
        let end = segments * size + 1;
        let (prefix, s0_high) = (&prefix[..end], &s0_high[..end]);
        let mut a = prefix[0];
        let mut a_high = 0;
        let mut total = 0.0;
        for e in (size..end).step_by(size) {
            let b = prefix[e];
            let u = if WIDE {
                let b_high = s0_high[e];
                let ds0 = ((i128::from(b_high) << 64) | i128::from(b.s0))
                    - ((i128::from(a_high) << 64) | i128::from(a.s0));
                a_high = b_high;
                let sy = i128::from(b.p0 - a.p0);
                let u = i128::from(size as i64) * i128::from(b.p0 + a.p0) - sy - 2 * ds0;
                (u >> k2) as i64
            } else {
                narrow_u(&a, &b, size)
            };
            let (t1, u) = (t1_shifted(&a, &b, size, k1) as f64, u as f64);
            total += (t1 - u * u * c).max(0.0);
            a = b;
        }
        // mean over segments of (residual / s) = total * 2^k1 / s^2 / segments
        let s = size as f64;
        total * pow2(k1 as i32) / (s * s) / segments as f64
    }
}

/// `T1 >> k1` of the segment from `a` to `b` (below 2^62).
#[inline(always)]
fn t1_shifted(a: &Prefix, b: &Prefix, size: usize, k1: u32) -> i64 {
    let sy = b.p0 - a.p0;
    let t1 = (b.p2() - a.p2())
        .wrapping_mul(size as u128)
        .wrapping_sub((i128::from(sy) * i128::from(sy)) as u128);
    (t1 >> k1) as i64
}

/// `U` of the segment from `a` to `b` from the low words (narrow sizes).
#[inline(always)]
fn narrow_u(a: &Prefix, b: &Prefix, size: usize) -> i64 {
    (size as i64)
        .wrapping_mul(b.p0 + a.p0)
        .wrapping_sub(b.p0 - a.p0)
        .wrapping_sub(b.s0.wrapping_sub(a.s0).wrapping_mul(2) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The segments' squared fluctuation straight from the grid values (i128 sums per segment).
    fn direct(y: &[i64], size: usize) -> f64 {
        let segments = y.len() / size;
        let s = size as i128;
        let total: f64 = y[..segments * size]
            .chunks_exact(size)
            .map(|seg| {
                let sy: i128 = seg.iter().map(|&v| i128::from(v)).sum();
                let syy: i128 = seg.iter().map(|&v| i128::from(v) * i128::from(v)).sum();
                let sry: i128 = seg
                    .iter()
                    .enumerate()
                    .map(|(r, &v)| r as i128 * i128::from(v))
                    .sum();
                let t1 = (s * syy - sy * sy) as f64;
                let t2 = (s * sry - s * (s - 1) / 2 * sy) as f64;
                let d = (s * s * (s * s - 1) / 12) as f64;
                (t1 - t2 * t2 / d) / (size * size) as f64
            })
            .sum();
        total / segments as f64
    }

    fn grid(steps: &[i64], bits: u32) -> (Vec<i64>, Vec<Prefix>, Vec<i64>) {
        // A walk scaled so that its largest |value| is just below 2^bits.
        let mut acc = 0_i64;
        let walk: Vec<i64> = steps
            .iter()
            .map(|d| {
                acc += d;
                acc
            })
            .collect();
        let largest = walk.iter().map(|v| v.unsigned_abs()).max().unwrap().max(1);
        let scale = ((1_u64 << bits) - 1) as f64 / largest as f64;
        let y: Vec<f64> = walk.iter().map(|&v| v as f64 * scale).collect();
        let (mut prefix, mut high) = (vec![Prefix::default(); y.len() + 1], vec![0; y.len() + 1]);
        prefix_sums(&y, 1.0, &mut prefix, &mut high);
        let values = prefix.windows(2).map(|w| w[1].p0 - w[0].p0).collect();
        (values, prefix, high)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Every size, narrow or wide: the segments' own sums.
        #[test]
        fn fluctuations_match_the_segments_sums(
            steps in prop::collection::vec(prop_oneof![3 => -3_i64..=3, 1 => -1000_i64..=1000], 40..3_000),
            wide_grid in any::<bool>(),
        ) {
            let n = steps.len();
            let width = usize::BITS - n.leading_zeros();
            let bits = if wide_grid { 50.min(62 - width) } else { 30 };
            let (y, prefix, high) = grid(&steps, bits);
            for size in [4, 5, 6, 7, 8, 9, 11, 14, 17, 33, 64, 65, 129, 300].into_iter().filter(|&s| s <= n / 4) {
                let want = direct(&y, size);
                let got = fluctuation(&prefix, &high, size, bits);
                prop_assert!((got - want).abs() <= 1e-12 * want.abs() + 1e-300, "size {}: {} vs {}", size, got, want);
            }
        }
    }
}
