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
                block_path += y[i].abs_diff(z[i]);
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
            path += u128::from(block_path);
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
    let [s2, s3, s4] = central_moments(qty, mean, volume < 1 << 52);
    let (m2, m3, m4) = (s2 / n, s3 / n, s4 / n);
    if m2 == 0.0 {
        return (None, None);
    }
    (finite(m3 / m2.powf(1.5)), finite(m4 / (m2 * m2) - 3.0))
}

kernel! {
    /// Sums of `d^2`, `d^3`, `d^4` with `d = q - mean`, in eight lanes (`small`: every q below
    /// 2^52, converted without a 64-bit conversion instruction).
    fn central_moments(qty: &[i64], mean: f64, small: bool) -> [f64; 3] {
        const L: usize = 8;
        let to_f64 = |q: i64| if small { super::dfa::exact_f64(q) } else { q as f64 };
        let (mut s2, mut s3, mut s4) = ([0.0; L], [0.0; L], [0.0; L]);
        let chunks = qty.chunks_exact(L);
        let rest = chunks.remainder();
        for c in chunks {
            for l in 0..L {
                let d = to_f64(c[l]) - mean;
                let d2 = d * d;
                s2[l] += d2;
                s3[l] += d2 * d;
                s4[l] += d2 * d2;
            }
        }
        for &q in rest {
            let d = to_f64(q) - mean;
            let d2 = d * d;
            s2[0] += d2;
            s3[0] += d2 * d;
            s4[0] += d2 * d2;
        }
        let total = |s: [f64; L]| ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
        [total(s2), total(s3), total(s4)]
    }
}
