//! The DFA's segments: exact prefix sums of the grid walk and, per window size, the mean squared
//! residual of the segments' least-squares lines from them, one step per segment (the prefix
//! sums a chunk at a time, every size taking its segments from the chunk).
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

/// Records per chunk: the prefix sums are made a chunk at a time and every window size takes the
/// segment ends that fall in it, so they are read from L1 (a whole bar's records would not fit
/// even in L2).
pub(super) const CHUNK: usize = 1024;

/// One window size's progress through the walk: the record at the start of its next segment
/// (with the high word of `S0`), the next end, the last end (`n / s` whole segments) and the
/// sum of the residuals so far (in units of `2^k1`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    size: usize,
    wide: bool,
    k1: u32,
    k2: u32,
    c: f64,
    next: usize,
    last: usize,
    start: Prefix,
    start_high: i64,
    total: f64,
}

impl Window {
    /// Window `size` over a walk of `n` values on a grid of `bits` bits (see the module
    /// documentation).
    pub(super) fn new(size: usize, n: usize, bits: u32) -> Self {
        let log_s = usize::BITS - (size - 1).leading_zeros(); // s <= 2^log_s
        let wide = 2 * log_s + bits > 63;
        // k1 <= 2 (w - 3) + 2 b - 62 <= 56 and k2 <= w - 6 (`s <= 0.1 n`, so l <= w - 3).
        let k1 = (2 * log_s + 2 * bits).saturating_sub(62) & 63;
        let k2 = if wide {
            (2 * log_s + bits - 1).saturating_sub(61) & 63
        } else {
            0
        };
        let s = size as f64;
        Self {
            size,
            wide,
            k1,
            k2,
            // T2^2 / D = 3 U^2 / (s^2 - 1), in units of 2^k1 with U in units of 2^k2.
            c: 3.0 * pow2(2 * k2 as i32 - k1 as i32) / (s * s - 1.0),
            next: size,
            last: n / size * size,
            start: Prefix::default(),
            start_high: 0,
            total: 0.0,
        }
    }

    /// antropy's squared fluctuation (on the grid): the mean, over the `n / size` whole
    /// segments, of the mean squared residual around each segment's line.
    pub(super) fn fluctuation(&self) -> f64 {
        let s = self.size as f64;
        self.total * pow2(self.k1 as i32) / (s * s) / (self.last / self.size) as f64
    }

    /// Takes the segments ending at prefix indices `first..first + records.len()`.
    #[inline(always)]
    fn advance<const WIDE: bool>(&mut self, records: &[Prefix], high: &[i64], first: usize) {
        let end = self.last.min(first + records.len() - 1);
        let (size, k1, k2, c) = (self.size, self.k1, self.k2, self.c);
        let (mut a, mut a_high, mut total) = (self.start, self.start_high, self.total);
        let mut e = self.next;
        while e <= end {
            let b = records[e - first];
            let u = if WIDE {
                let b_high = high[e - first];
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
            e += size;
        }
        (self.start, self.start_high, self.total, self.next) = (a, a_high, total, e);
    }
}

kernel! {
    /// Every window of `windows` over the walk `y` on the grid `Y_j = round(y_j * scale)`
    /// (`|Y_j| < 2^51`): the exact prefix sums (see [`Prefix`]) a chunk at a time into
    /// `records` and `high` (the high words of `S0`; at least [`CHUNK`] long each), each window
    /// taking its segments from the chunk.
    pub(super) fn integer_fluctuations(
        y: &[f64],
        scale: f64,
        windows: &mut [Window],
        records: &mut [Prefix],
        high: &mut [i64],
    ) {
        // Rounds to nearest: the integer sits in the low bits of `v + 1.5 * 2^52`.
        const MAGIC: f64 = 6_755_399_441_055_744.0;
        let (records, high) = (&mut records[..CHUNK], &mut high[..CHUNK]);
        let wide = windows.iter().any(|w| w.wide);
        let (mut a0, mut a1, mut a2) = (0_i64, 0_i128, 0_u128);
        for (k, chunk) in y.chunks(CHUNK).enumerate() {
            for ((&v, out), out_high) in chunk.iter().zip(records.iter_mut()).zip(high.iter_mut()) {
                let q = (v * scale + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits()) as i64;
                a1 += i128::from(a0);
                a0 += q;
                a2 += (i128::from(q) * i128::from(q)) as u128;
                *out = Prefix {
                    p0: a0,
                    s0: a1 as u64,
                    p2_low: a2 as u64,
                    p2_high: (a2 >> 64) as u64,
                };
                if wide {
                    *out_high = (a1 >> 64) as i64;
                }
            }
            // Record i of the chunk is prefix index k CHUNK + 1 + i.
            let (records, high) = (&records[..chunk.len()], &high[..chunk.len()]);
            for w in windows.iter_mut() {
                if w.wide {
                    w.advance::<true>(records, high, k * CHUNK + 1);
                } else {
                    w.advance::<false>(records, high, k * CHUNK + 1);
                }
            }
        }
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Every size, narrow or wide, across chunks: the segments' own sums.
        #[test]
        fn fluctuations_match_the_segments_sums(
            steps in prop::collection::vec(prop_oneof![3 => -3_i64..=3, 1 => -1000_i64..=1000], 40..3_000),
            wide_grid in any::<bool>(),
        ) {
            let n = steps.len();
            let width = usize::BITS - n.leading_zeros();
            let bits = if wide_grid { 50.min(62 - width) } else { 30 };
            // A walk scaled so that its largest |value| is just below 2^bits.
            let mut acc = 0_i64;
            let walk: Vec<i64> = steps.iter().map(|d| { acc += d; acc }).collect();
            let largest = walk.iter().map(|v| v.unsigned_abs()).max().unwrap().max(1);
            let scale = ((1_u64 << bits) - 1) as f64 / largest as f64;
            let grid: Vec<i64> = walk.iter().map(|&v| (v as f64 * scale).round() as i64).collect();
            let y: Vec<f64> = grid.iter().map(|&v| v as f64).collect();
            let sizes: Vec<usize> = [4, 5, 17, 33, 64, 65, 129, 300, 700]
                .into_iter()
                .filter(|&s| s <= n / 4)
                .collect();
            let mut windows: Vec<Window> = sizes.iter().map(|&s| Window::new(s, n, bits)).collect();
            let (mut records, mut high) = (vec![Prefix::default(); CHUNK], vec![0; CHUNK]);
            integer_fluctuations(&y, 1.0, &mut windows, &mut records, &mut high);
            for (w, &size) in windows.iter().zip(&sizes) {
                let (got, want) = (w.fluctuation(), direct(&grid, size));
                prop_assert!((got - want).abs() <= 1e-12 * want.abs() + 1e-300, "size {}: {} vs {}", size, got, want);
            }
        }
    }
}
