//! The intra group's one-pass statistics: the price path length and the ordinal patterns (one
//! pass over the prices), the inter-arrival times' squares and the quantities' central moments,
//! each a kernel that vectorises.

use super::simd::kernel;
use crate::lookback::finite;

/// Ordinal patterns of order 3 by key `(a <= b) << 2 | (a <= c) << 1 | (b <= c)` of the windows
/// `(a, b, c) = (p_{j-2}, p_{j-1}, p_j)`, and `sum |p_{j+1} - p_j|`.
pub(super) struct PricePass {
    pub by_key: [u64; 8],
    pub path: u128,
}

/// [`PricePass`] of `price` (at least 2 prices, each in `low..=high`).
pub(super) fn price_pass(price: &[i64], high: i64, low: i64) -> PricePass {
    // Block sums of 64 differences stay within 64 bits when the range is below 2^57.
    if high.abs_diff(low) < 1 << 57 {
        price_blocks(price)
    } else {
        PricePass {
            by_key: price_blocks(price).by_key,
            path: price
                .windows(2)
                .map(|w| u128::from(w[1].abs_diff(w[0])))
                .sum(),
        }
    }
}

kernel! {
    /// [`PricePass`] in blocks of 64 windows: three comparison bit masks per block, the pattern
    /// counts by popcount, the path length in 64 bits per block (the range must be below 2^57).
    fn price_blocks(price: &[i64]) -> PricePass {
        const B: usize = 64;
        let n = price.len();
        let mut by_key = [0_u64; 8];
        let mut path = u128::from(price[1].abs_diff(price[0]));
        let mut j = 2;
        while j < n {
            let len = B.min(n - j);
            let (x, y, z) = (
                &price[j - 2..j - 2 + len],
                &price[j - 1..j - 1 + len],
                &price[j..j + len],
            );
            let (mut ab, mut ac, mut bc, mut block_path) = (0_u64, 0_u64, 0_u64, 0_u64);
            for i in 0..len {
                ab |= u64::from(x[i] <= y[i]) << i;
                ac |= u64::from(x[i] <= z[i]) << i;
                bc |= u64::from(y[i] <= z[i]) << i;
                // Wrapping: exact below a range of 2^57 (else the caller sums in 128 bits).
                block_path = block_path.wrapping_add(y[i].abs_diff(z[i]));
            }
            let valid = u64::MAX >> (B - len);
            let (nab, nac, nbc) = (!ab & valid, !ac & valid, !bc & valid);
            // Keys 0b010 and 0b101 cannot occur (a > b > c >= a, a <= b <= c < a).
            by_key[0] += u64::from((nab & nac & nbc).count_ones());
            by_key[1] += u64::from((nab & nac & bc).count_ones());
            by_key[3] += u64::from((nab & ac & bc).count_ones());
            by_key[4] += u64::from((ab & nac & nbc).count_ones());
            by_key[6] += u64::from((ab & ac & nbc).count_ones());
            by_key[7] += u64::from((ab & ac & bc).count_ones());
            path = path.wrapping_add(u128::from(block_path));
            j += len;
        }
        PricePass { by_key, path }
    }
}

/// Normalised permutation entropy (order 3) from the counts by key of `windows` windows, as
/// `lookback_permutation_entropy` computes it from its counts.
pub(super) fn permutation_entropy(by_key: &[u64; 8], windows: usize) -> Option<f64> {
    // The pattern of each key, in the order of antropy's pattern hashes (5, 7, 11, 15, 19, 21).
    const ORDINAL: [usize; 8] = [0, 1, 0, 4, 2, 0, 3, 5];
    let mut counts = [0_u64; 6];
    for (key, &count) in by_key.iter().enumerate() {
        counts[ORDINAL[key]] += count;
    }
    let total = windows as f64;
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total;
            -p * p.log2()
        })
        .sum();
    finite((h / 6f64.log2()).clamp(0.0, 1.0))
}

/// `(s - m) / (s + m)` of the m = n - 1 inter-arrival times (population std; `ts` in time
/// order, at least 3); None when s = 0. With S their sum (the duration) and Q the sum of their
/// squares, s / m = sqrt(m Q - S^2) / S, whose radicand is an exact integer.
pub(super) fn burstiness(ts: &[i64]) -> Option<f64> {
    let m = (ts.len() - 1) as u128;
    let sum = ts[ts.len() - 1].abs_diff(ts[0]);
    // Below 2^32 every gap is, and the squares sum to at most sum^2 < 2^64.
    let squares = if sum < 1 << 32 {
        Some(u128::from(gap_squares(ts)))
    } else {
        ts.windows(2).try_fold(0_u128, |acc, w| {
            let g = u128::from(w[1].abs_diff(w[0]));
            acc.checked_add(g * g)
        })
    };
    let sum = u128::from(sum);
    let spread = squares
        .and_then(|q| m.checked_mul(q))
        .and_then(|mq| mq.checked_sub(sum * sum))
        .map(|r| r as f64)?
        .sqrt();
    if spread == 0.0 {
        return None;
    }
    let sum = sum as f64;
    super::ratio(spread - sum, spread + sum)
}

kernel! {
    /// The sum of the squared gaps of `ts` (time order, duration below 2^32).
    fn gap_squares(ts: &[i64]) -> u64 {
        ts.iter()
            .zip(&ts[1..])
            .map(|(&a, &b)| {
                let g = u64::from((b - a) as u32);
                g * g
            })
            .sum()
    }
}

/// Skewness `m3 / m2^1.5` and excess kurtosis `m4 / m2^2 - 3` of the quantities (at least 3,
/// none negative, summing to `volume`); None when `m2 = 0`. Both are scale-free, so the raw
/// fixed-point values serve; the mean is the exact total over n.
pub(super) fn volume_moments(qty: &[i64], volume: i128) -> (Option<f64>, Option<f64>) {
    let n = qty.len() as f64;
    let mean = crate::fixed::i128_to_f64(volume) / n;
    // Every quantity is at most the total: exact as f64 below 2^52.
    let [s2, s3, s4] = if volume >= 1 << 52 {
        central_moments::<false>(qty, mean)
    } else {
        #[cfg(target_arch = "x86_64")]
        if super::simd::has_avx2() {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { avx2::central_moments(qty, mean) }
        } else {
            central_moments::<true>(qty, mean)
        }
        #[cfg(not(target_arch = "x86_64"))]
        central_moments::<true>(qty, mean)
    };
    let (m2, m3, m4) = (s2 / n, s3 / n, s4 / n);
    if m2 == 0.0 {
        return (None, None);
    }
    (finite(m3 / m2.powf(1.5)), finite(m4 / (m2 * m2) - 3.0))
}

kernel! {
    /// Sums of `d^2`, `d^3`, `d^4` with `d = q - mean`, in two sets of four lanes (`SMALL`:
    /// every q below 2^52, converted without a 64-bit conversion instruction).
    fn central_moments<const SMALL: bool>(qty: &[i64], mean: f64) -> [f64; 3] {
        const L: usize = 4;
        let to_f64 = |q: i64| if SMALL { super::dfa::exact_f64(q) } else { q as f64 };
        // Lane l of set k takes the quantities at i with i % 8 = 4 k + l.
        #[inline(always)]
        fn add(d: [f64; L], s2: &mut [f64; L], s3: &mut [f64; L], s4: &mut [f64; L]) {
            let d2: [f64; L] = std::array::from_fn(|l| d[l] * d[l]);
            *s2 = std::array::from_fn(|l| s2[l] + d2[l]);
            *s3 = std::array::from_fn(|l| s3[l] + d2[l] * d[l]);
            *s4 = std::array::from_fn(|l| s4[l] + d2[l] * d2[l]);
        }
        let (mut a2, mut a3, mut a4) = ([0.0; L], [0.0; L], [0.0; L]);
        let (mut b2, mut b3, mut b4) = ([0.0; L], [0.0; L], [0.0; L]);
        let chunks = qty.chunks_exact(2 * L);
        let rest = chunks.remainder();
        for c in chunks {
            add(std::array::from_fn(|l| to_f64(c[l]) - mean), &mut a2, &mut a3, &mut a4);
            add(std::array::from_fn(|l| to_f64(c[L + l]) - mean), &mut b2, &mut b3, &mut b4);
        }
        for (i, &q) in rest.iter().enumerate() {
            let (l, d) = (i % L, to_f64(q) - mean);
            let (s2, s3, s4) = if i < L {
                (&mut a2, &mut a3, &mut a4)
            } else {
                (&mut b2, &mut b3, &mut b4)
            };
            s2[l] += d * d;
            s3[l] += d * d * d;
            s4[l] += d * d * (d * d);
        }
        let total = |a: [f64; L], b: [f64; L]| {
            ((a[0] + b[0]) + (a[1] + b[1])) + ((a[2] + b[2]) + (a[3] + b[3]))
        };
        [total(a2, b2), total(a3, b3), total(a4, b4)]
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::central_moments`] for quantities below 2^52: the same lanes and operations,
    /// written out (the compiler pairs the sums otherwise), so the same bits.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn central_moments(qty: &[i64], mean: f64) -> [f64; 3] {
        let magic = _mm256_set1_epi64x(0x4330_0000_0000_0000); // 2^52
        let (two_52, mean_v) = (_mm256_castsi256_pd(magic), _mm256_set1_pd(mean));
        let d = |p: *const i64| {
            let q = _mm256_loadu_si256(p.cast());
            let f = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(q, magic)), two_52);
            _mm256_sub_pd(f, mean_v)
        };
        let zero = _mm256_setzero_pd();
        let (mut a2, mut a3, mut a4, mut b2, mut b3, mut b4) = (zero, zero, zero, zero, zero, zero);
        let chunks = qty.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            let (da, db) = (d(c.as_ptr()), d(c.as_ptr().add(4)));
            let (da2, db2) = (_mm256_mul_pd(da, da), _mm256_mul_pd(db, db));
            a2 = _mm256_add_pd(a2, da2);
            b2 = _mm256_add_pd(b2, db2);
            a3 = _mm256_add_pd(a3, _mm256_mul_pd(da2, da));
            b3 = _mm256_add_pd(b3, _mm256_mul_pd(db2, db));
            a4 = _mm256_add_pd(a4, _mm256_mul_pd(da2, da2));
            b4 = _mm256_add_pd(b4, _mm256_mul_pd(db2, db2));
        }
        let lanes = |v: __m256d| {
            let mut out = [0.0; 4];
            _mm256_storeu_pd(out.as_mut_ptr(), v);
            out
        };
        let (mut a2, mut a3, mut a4) = (lanes(a2), lanes(a3), lanes(a4));
        let (mut b2, mut b3, mut b4) = (lanes(b2), lanes(b3), lanes(b4));
        for (i, &q) in rest.iter().enumerate() {
            let (l, d) = (i % 4, super::super::dfa::exact_f64(q) - mean);
            let (s2, s3, s4) = if i < 4 {
                (&mut a2, &mut a3, &mut a4)
            } else {
                (&mut b2, &mut b3, &mut b4)
            };
            s2[l] += d * d;
            s3[l] += d * d * d;
            s4[l] += d * d * (d * d);
        }
        let total = |a: [f64; 4], b: [f64; 4]| {
            ((a[0] + b[0]) + (a[1] + b[1])) + ((a[2] + b[2]) + (a[3] + b[3]))
        };
        [total(a2, b2), total(a3, b3), total(a4, b4)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The AVX2 moments bit for bit as the portable ones, and both near a plain two-pass
        /// computation.
        #[test]
        fn moments_agree(qty in prop::collection::vec(0_i64..(1 << 40), 3..200)) {
            let volume: i128 = qty.iter().map(|&q| i128::from(q)).sum();
            let mean = crate::fixed::i128_to_f64(volume) / qty.len() as f64;
            let portable = central_moments::<true>(&qty, mean);
            #[cfg(target_arch = "x86_64")]
            if crate::intra::simd::has_avx2() {
                // SAFETY: checked just above.
                let lanes = unsafe { avx2::central_moments(&qty, mean) };
                prop_assert_eq!(portable.map(f64::to_bits), lanes.map(f64::to_bits));
            }
            let n = qty.len() as f64;
            let m = qty.iter().map(|&q| q as f64).sum::<f64>() / n;
            let central = |k: i32| qty.iter().map(|&q| (q as f64 - m).powi(k)).sum::<f64>();
            let (got_m2, want_m2) = (portable[0], central(2));
            prop_assert!((got_m2 - want_m2).abs() <= 1e-9 * want_m2.abs() + 1e-6);
        }
    }
}
