//! The DFA's small window sizes, straight from the walk: most segments belong to them (a
//! quarter of the walk's length for size 4 alone), and a segment of a few values is cheaper to
//! sum than to take from 128-bit prefix sums.
//!
//! Per segment `v_0..v_{s-1}`: with `u_r = v_r - v_0` (no cancellation: the segment's own
//! scale), `Su`, `Sq`, `Sw` the sums of `u_r`, `u_r^2` and `w_r u_r` (`w_r = r - (s - 1) / 2`),
//! antropy's residual sum is `(s Sq - Su^2 - 12 Sw^2 / (s^2 - 1)) / s` (the line through the
//! segment is invariant to the shift by `v_0`; `T2 = s Sw`, see `intra/segments.rs`).
//!
//! Four segments at a time in AVX2 lanes when the CPU has it, with the same operations in the
//! same order as the scalar code (fused multiply-adds in both), so both give the same bits.

/// Sizes up to this one are taken directly.
pub(super) const LARGEST: usize = 16;

/// antropy's squared fluctuation for window `size` (`2..=LARGEST`) over the walk `y` (at least
/// one segment), in the walk's units.
pub(super) fn fluctuation(y: &[f64], size: usize) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { avx2::fluctuation(y, size) };
    }
    let segments = y.len() / size;
    let mut sums = [0.0; 4];
    add_segments(y, size, 0, segments, &mut sums);
    mean(sums, size, segments)
}

/// Adds the residuals of segments `from..to` to `sums` (segment `i` to `sums[i % 4]`).
#[inline(always)]
fn add_segments(y: &[f64], size: usize, from: usize, to: usize, sums: &mut [f64; 4]) {
    let (w0, s, c) = constants(size);
    for i in from..to {
        let v = &y[i * size..(i + 1) * size];
        let (mut su, mut sq, mut sw) = (0.0_f64, 0.0_f64, 0.0_f64);
        for (r, &x) in v.iter().enumerate().skip(1) {
            let u = x - v[0];
            su += u;
            sq = u.mul_add(u, sq);
            sw = (w0 + r as f64).mul_add(u, sw);
        }
        let t1 = s.mul_add(sq, -(su * su));
        sums[i & 3] += (-c).mul_add(sw * sw, t1).max(0.0);
    }
}

/// `(w_0, s, 12 / (s^2 - 1))`.
#[inline(always)]
fn constants(size: usize) -> (f64, f64, f64) {
    let s = size as f64;
    (-(s - 1.0) / 2.0, s, 12.0 / (s * s - 1.0))
}

/// The mean over the segments of their mean squared residual (residual sum / s).
#[inline(always)]
fn mean(sums: [f64; 4], size: usize, segments: usize) -> f64 {
    let s = size as f64;
    ((sums[0] + sums[1]) + (sums[2] + sums[3])) / (s * s) / segments as f64
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{add_segments, constants, mean};
    use std::arch::x86_64::*;

    /// [`super::fluctuation`] with segments `4g..4g + 4` in the lanes of group `g`, in the order
    /// 4g, 4g + 2, 4g + 1, 4g + 3 (that of the loads' unpacking), then the rest as the scalar.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fluctuation(y: &[f64], size: usize) -> f64 {
        let segments = y.len() / size;
        let groups = segments / 4;
        let (w0, s, c) = constants(size);
        let (s, c) = (_mm256_set1_pd(s), _mm256_set1_pd(c));
        let zero = _mm256_setzero_pd();
        let mut weights = [zero; super::LARGEST];
        for (r, w) in weights.iter_mut().enumerate().take(size) {
            *w = _mm256_set1_pd(w0 + r as f64);
        }
        let mut lanes = zero;
        for g in 0..groups {
            // SAFETY (all loads): rows 0..size of segments 4g..4g + 4, below segments * size.
            let first = y.as_ptr().add(4 * g * size);
            let segment = |l: usize| first.add(l * size);
            // Rows r and r + 1 of the four segments, as two vectors in the lane order above.
            let rows = |r: usize| {
                let a = _mm256_loadu2_m128d(segment(1).add(r), segment(0).add(r));
                let b = _mm256_loadu2_m128d(segment(3).add(r), segment(2).add(r));
                (_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b))
            };
            let (v0, v1) = rows(0);
            let (mut su, mut sq, mut sw) = (zero, zero, zero);
            let mut add = |v: __m256d, r: usize| {
                let u = _mm256_sub_pd(v, v0);
                su = _mm256_add_pd(su, u);
                sq = _mm256_fmadd_pd(u, u, sq);
                sw = _mm256_fmadd_pd(weights[r], u, sw);
            };
            add(v1, 1);
            let mut r = 2;
            while r + 1 < size {
                let (even, odd) = rows(r);
                add(even, r);
                add(odd, r + 1);
                r += 2;
            }
            if r < size {
                // The last row of an odd size: the odd half of rows size - 2 and size - 1.
                add(rows(size - 2).1, r);
            }
            let t1 = _mm256_fmsub_pd(s, sq, _mm256_mul_pd(su, su));
            let residual = _mm256_fnmadd_pd(c, _mm256_mul_pd(sw, sw), t1);
            lanes = _mm256_add_pd(lanes, _mm256_max_pd(residual, zero));
        }
        let mut out = [0.0; 4];
        _mm256_storeu_pd(out.as_mut_ptr(), lanes);
        let mut sums = [out[0], out[2], out[1], out[3]];
        add_segments(y, size, 4 * groups, segments, &mut sums);
        mean(sums, size, segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Against the segments' exact sums (the walk on an integer grid, 128-bit sums), and
        /// the AVX2 lanes bit for bit against the scalar code.
        #[test]
        fn matches_the_exact_sums_and_the_lanes_the_scalar(
            steps in prop::collection::vec(prop_oneof![3 => -3_i64..=3, 1 => -1000_i64..=1000], 8..600),
            offset in -(1_i64 << 45)..(1 << 45),
            size in 2..=LARGEST,
        ) {
            prop_assume!(steps.len() >= size);
            let mut acc = offset;
            let walk: Vec<i64> = steps.iter().map(|d| { acc += d; acc }).collect();
            let y: Vec<f64> = walk.iter().map(|&v| v as f64).collect();
            let segments = walk.len() / size;
            let s = size as i128;
            let want = walk[..segments * size]
                .chunks_exact(size)
                .map(|seg| {
                    let sy: i128 = seg.iter().map(|&v| i128::from(v)).sum();
                    let syy: i128 = seg.iter().map(|&v| i128::from(v) * i128::from(v)).sum();
                    let sry: i128 = seg.iter().enumerate().map(|(r, &v)| r as i128 * i128::from(v)).sum();
                    let t2 = (s * sry - s * (s - 1) / 2 * sy) as f64;
                    ((s * syy - sy * sy) as f64 - t2 * t2 / (s * s * (s * s - 1) / 12) as f64)
                        / (s * s) as f64
                })
                .sum::<f64>()
                / segments as f64;
            let got = fluctuation(&y, size);
            prop_assert!((got - want).abs() <= 1e-12 * want.abs() + 1e-12, "{}: {} vs {}", size, got, want);
            let mut sums = [0.0; 4];
            add_segments(&y, size, 0, segments, &mut sums);
            prop_assert_eq!(got.to_bits(), mean(sums, size, segments).to_bits());
        }
    }
}
