//! The intra group's Hurst exponent: DFA of the bar's log returns, the definition of
//! `lookback_hurst` (antropy's `detrended_fluctuation`), computed in time linear in the bar.
//!
//! antropy fits a line to every segment of every window size (about 30 sizes for a bar of 10 000
//! records), a pass over the walk per size. Here:
//!
//! - The walk (cumulative sum of the returns less their mean) telescopes: its j-th value is
//!   `ln(p_{j+1} / p_1) - (j + 1) mean`, so each value is computed directly (no running sum, no
//!   error growing along the bar), as `2 atanh(z)` with `z = (p - p_1) / (p + p_1)` (difference and
//!   sum exact) by its series, branch-free so that it vectorises.
//! - Window sizes up to 16, which hold most segments, sum each segment straight from the walk
//!   relative to its first value (`intra/direct.rs`).
//! - Larger sizes put the walk on an integer grid (48-50 significant bits of its largest value)
//!   and take each segment's residual from exact prefix sums in one step (`intra/segments.rs`).
//!
//! The result agrees with antropy's to ~1e-12 (floats), not bit for bit.

use std::sync::OnceLock;

use super::direct;
use super::segments::{integer_fluctuations, Prefix, Window, CHUNK};
use super::simd::kernel;
use crate::lookback::{dfa, finite, linear_regression};

/// Scratch buffers reused across bars (a bar of N records needs ~8 N bytes and ~40 KB).
#[derive(Debug, Default)]
pub(super) struct DfaScratch {
    y: Vec<f64>,
    /// A chunk of prefix sums and of the high words of `S0`.
    records: Vec<Prefix>,
    high: Vec<i64>,
    /// The window sizes taken on the grid.
    windows: Vec<Window>,
    log_sizes: Vec<f64>,
    log_fluctuations: Vec<f64>,
}

/// `2^52` as f64; `f64::from_bits(TWO_52_BITS | v) - TWO_52` is `v` for `0 <= v < 2^52`.
const TWO_52: f64 = 4_503_599_627_370_496.0;

/// `v as f64` for `0 <= v < 2^52` (exact), in a form that vectorises without AVX-512.
#[inline(always)]
pub(super) fn exact_f64(v: i64) -> f64 {
    f64::from_bits(TWO_52.to_bits() | v as u64) - TWO_52
}

/// `1 / (2k + 1)`: the series `atanh(z) / z = sum_k z^(2k) / (2k + 1)`.
const ATANH: [f64; 10] = [
    1.0,
    1.0 / 3.0,
    1.0 / 5.0,
    1.0 / 7.0,
    1.0 / 9.0,
    1.0 / 11.0,
    1.0 / 13.0,
    1.0 / 15.0,
    1.0 / 17.0,
    1.0 / 19.0,
];

/// `ln(p / p1)` for `p, p1` in `1..2^52` (as f64 `f`, `f1`) with `|z| = |p - p1| / (p + p1)`
/// small enough for `TERMS` terms of `2 z (1 + z^2/3 + ...)` (see [`SERIES`]). Within ~1 ulp.
#[inline(always)]
fn ln_ratio<const TERMS: usize>(f: f64, f1: f64) -> f64 {
    let z = (f - f1) / (f + f1);
    let w = z * z;
    let mut acc = ATANH[TERMS - 1];
    for c in ATANH[..TERMS - 1].iter().rev() {
        acc = acc * w + c;
    }
    2.0 * z * acc
}

/// `(TERMS, e)`: [`ln_ratio`] with `TERMS` terms serves `|z| <= 2^e`, where the first term left
/// out, `z^(2 TERMS) / (2 TERMS + 1)`, is below 2^-56 relative.
const SERIES: [(usize, i32); 5] = [(4, -7), (5, -6), (6, -5), (8, -4), (10, -3)];

/// The distinct window sizes `floor(4 * 1.2^i)` of antropy's `_log_n(4, 0.1 n, 1.2)` (as
/// `lookback::log_n` computes them), each with the `i` where it first appears and its log.
struct Sizes {
    ln_factor: f64,
    entries: Vec<(usize, f64, f64)>,
}

fn sizes() -> &'static Sizes {
    static SIZES: OnceLock<Sizes> = OnceLock::new();
    SIZES.get_or_init(|| {
        let (min_n, factor) = (4_usize, 1.2_f64);
        // As `log_n`: the first size is `min_n`; later ones when `floor(min_n * factor^i)` grows.
        let mut entries = vec![(min_n, f64::NEG_INFINITY, (min_n as f64).ln())];
        let mut i = 0.0;
        while entries.last().expect("non-empty").0 < 1 << 53 {
            let n = (min_n as f64 * factor.powf(i)).floor() as usize;
            if n > entries.last().expect("non-empty").0 {
                entries.push((n, i, (n as f64).ln()));
            }
            i += 1.0;
        }
        Sizes {
            ln_factor: factor.ln(),
            entries,
        }
    })
}

impl DfaScratch {
    /// The DFA exponent of the log returns of `price` (at least 2 prices, each in `low..=high`,
    /// `low >= 1`).
    pub(super) fn hurst(&mut self, price: &[i64], high: i64, low: i64) -> Option<f64> {
        let n = price.len() - 1;
        let p1 = price[0];
        // Largest |z| = |p - p1| / (p + p1) over the bar, at its high or its low (in floats:
        // the sums could leave the i64 range).
        let (h, l, f1) = (high as f64, low as f64, p1 as f64);
        let z = ((h - f1) / (h + f1)).max((f1 - l) / (f1 + l));
        let exact = high < 1 << 52 && n < 1 << 31;
        grow(&mut self.y, n);
        let y = &mut self.y[..n];
        let largest = match SERIES.iter().find(|&&(_, e)| z <= pow2(e)) {
            Some(&(4, _)) if exact => walk::<4>(price, y),
            Some(&(5, _)) if exact => walk::<5>(price, y),
            Some(&(6, _)) if exact => walk::<6>(price, y),
            Some(&(8, _)) if exact => walk::<8>(price, y),
            Some(&(10, _)) if exact => walk::<10>(price, y),
            _ if n < 1 << 31 => walk_ln(price, y),
            _ => return dfa(&returns(price)),
        };
        if largest == 0.0 {
            return None; // every fluctuation is 0
        }
        // Grid: |Y| <= 2^bits, with bits such that every sum below fits (see `intra/segments.rs`).
        let width = usize::BITS - n.leading_zeros(); // n < 2^width
        let bits = 50.min(62 - width as i32);
        let exponent = ((largest.to_bits() >> 52) & 0x7ff) as i32 - 1023; // 2^e <= largest
        let shift = bits - 1 - exponent;
        if !(-1000..=1000).contains(&shift) {
            // A walk beyond the f64 exponent range.
            return dfa(&returns(price));
        }
        let sizes = sizes();
        let max_i = ((0.1 * n as f64 / 4.0).ln() / sizes.ln_factor).floor();
        let count = sizes.entries.iter().take_while(|e| e.1 <= max_i).count();
        let sizes = &sizes.entries[..count];
        self.windows.clear();
        self.windows.extend(
            sizes
                .iter()
                .filter(|e| e.0 > direct::LARGEST)
                .map(|e| Window::new(e.0, n, bits as u32)),
        );
        if !self.windows.is_empty() {
            grow(&mut self.records, CHUNK);
            grow(&mut self.high, CHUNK);
            integer_fluctuations(
                &self.y[..n],
                pow2(shift),
                &mut self.windows,
                &mut self.records,
                &mut self.high,
            );
        }
        self.log_sizes.clear();
        self.log_fluctuations.clear();
        // The sizes ascend: the direct ones, then the windows on the grid.
        let direct = sizes.len() - self.windows.len();
        let ln_scale = f64::from(shift) * std::f64::consts::LN_2;
        let fluctuations = sizes[..direct]
            .iter()
            .map(|e| (e.2, direct::fluctuation(&self.y[..n], e.0), 0.0))
            .chain(
                sizes[direct..]
                    .iter()
                    .zip(&self.windows)
                    .map(|(e, w)| (e.2, w.fluctuation(), ln_scale)),
            );
        for (ln_size, f2, ln_scale) in fluctuations {
            // F^2 in the walk's units, or on the grid (scale^2 times larger).
            if f2 != 0.0 {
                self.log_sizes.push(ln_size);
                self.log_fluctuations.push(0.5 * f2.ln() - ln_scale);
            }
        }
        if self.log_fluctuations.is_empty() {
            return None;
        }
        finite(linear_regression(&self.log_sizes, &self.log_fluctuations).0)
    }
}

kernel! {
    /// The walk `y_j = ln(p_{j+1} / p_1) - (j + 1) mean` (mean of the returns `ln(p_n / p_1) / n`)
    /// by the series of [`ln_ratio`]; returns the largest |y_j|.
    fn walk<const TERMS: usize>(price: &[i64], y: &mut [f64]) -> f64 {
        let n = price.len() - 1;
        let f1 = exact_f64(price[0]);
        let mean = ln_ratio::<TERMS>(exact_f64(price[n]), f1) / n as f64;
        // Eight lanes (j as f64 kept in a lane vector, exact), so that the loop vectorises.
        const L: usize = 8;
        let mut lanes = [0.0_f64; L];
        let mut index = [0.0_f64; L];
        for (l, v) in index.iter_mut().enumerate() {
            *v = (l + 1) as f64;
        }
        let (chunks, rest) = price[1..].split_at(n / L * L);
        let (out, out_rest) = y.split_at_mut(n / L * L);
        for (c, o) in chunks.chunks_exact(L).zip(out.chunks_exact_mut(L)) {
            for l in 0..L {
                let v = ln_ratio::<TERMS>(exact_f64(c[l]), f1) - index[l] * mean;
                o[l] = v;
                lanes[l] = lanes[l].max(v.abs());
                index[l] += L as f64;
            }
        }
        for ((&p, o), &j) in rest.iter().zip(out_rest).zip(&index) {
            let v = ln_ratio::<TERMS>(exact_f64(p), f1) - j * mean;
            *o = v;
            lanes[0] = lanes[0].max(v.abs());
        }
        lanes.iter().fold(0.0, |a, &b| a.max(b))
    }
}

/// [`walk`] for any prices (libm: `ln_1p` of the relative change within a factor 2, `ln` of the
/// quotient beyond); rare.
fn walk_ln(price: &[i64], y: &mut [f64]) -> f64 {
    let n = price.len() - 1;
    let p1 = price[0];
    let ln_ratio = |p: i64| {
        if p1 / 2 <= p && p / 2 <= p1 {
            ((p - p1) as f64 / p1 as f64).ln_1p()
        } else {
            (p as f64 / p1 as f64).ln()
        }
    };
    let mean = ln_ratio(price[n]) / n as f64;
    for (j, (out, &p)) in y.iter_mut().zip(&price[1..]).enumerate() {
        *out = ln_ratio(p) - (j + 1) as f64 * mean;
    }
    y.iter().fold(0.0, |a: f64, &b| a.max(b.abs()))
}

/// Make `v` at least `n` long (never shorter, so that no bar refills what an earlier one wrote).
fn grow<T: Default + Clone>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// The log returns `ln(p_{k+1} / p_k)` (antropy's input), for the general fallback.
fn returns(price: &[i64]) -> Vec<f64> {
    price
        .windows(2)
        .map(|w| (w[1] as f64 / w[0] as f64).ln())
        .collect()
}

/// `2^e` for `-1022 <= e <= 1023`, exact.
#[inline(always)]
pub(super) fn pow2(e: i32) -> f64 {
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
            near(hurst_of(&price), reference(&price, true), 1e-10)?;
        }

        /// Returns of 1e-7 and more (a cent on 100 000): also antropy's value on the quotients.
        #[test]
        fn agrees_with_antropy_on_quotients(
            steps in steps(),
            start in 100_000_000_i64..10_000_000_000_000,
        ) {
            let tick = (start / 10_000_000).max(1);
            let price = walk(start, tick, &steps);
            near(hurst_of(&price), reference(&price, false), 1e-9)?;
        }
    }

    fn hurst_of(price: &[i64]) -> Option<f64> {
        let (high, low) = (*price.iter().max().unwrap(), *price.iter().min().unwrap());
        DfaScratch::default().hurst(price, high, low)
    }

    /// Each series length against `ln_1p` of the exact relative change, at the largest |z| it
    /// is used for and below.
    #[test]
    fn ln_ratios_are_within_an_ulp_or_two() {
        fn check<const TERMS: usize>(limit: i32) {
            let p1 = 1_u64 << 40;
            for k in 0..=40 {
                // |z| = 2^limit / 2^(k/4) (about), both signs.
                let z = pow2(limit) / 2f64.powf(f64::from(k) / 4.0);
                let d = ((2.0 * z / (1.0 - z)) * p1 as f64).floor() as i64;
                for p in [p1 as i64 + d, p1 as i64 - d] {
                    let got = ln_ratio::<TERMS>(exact_f64(p), exact_f64(p1 as i64));
                    let want = ((p - p1 as i64) as f64 / p1 as f64).ln_1p();
                    assert!(
                        (got - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
                        "{TERMS} terms, {p} / {p1}: {got} {want}"
                    );
                }
            }
        }
        for (terms, limit) in SERIES {
            match terms {
                4 => check::<4>(limit),
                5 => check::<5>(limit),
                6 => check::<6>(limit),
                8 => check::<8>(limit),
                10 => check::<10>(limit),
                _ => unreachable!(),
            }
        }
        assert_eq!(ln_ratio::<4>(7.0, 7.0), 0.0);
    }

    /// Bars beyond the series (a price ratio over ~1.29) or beyond 2^52 take the other paths.
    #[test]
    fn wide_bars_and_large_prices_agree_too() {
        let steps: Vec<i64> = (0..400).map(|k| ((k * 7919) % 13) - 6).collect();
        // The last: a fall to 1 (clamped), then moves of many times the price.
        let crash: Vec<i64> = [-300, -300]
            .into_iter()
            .chain(steps.iter().copied())
            .collect();
        for (start, tick, steps) in [
            (1_000_000_i64, 4_000, &steps),
            (1_i64 << 53, 1 << 30, &steps),
            (1 << 40, 1, &steps),
            (37_701_035_560, 100_000_000, &crash),
            (i64::MAX / 2 + (1 << 60), 1 << 50, &steps),
        ] {
            let price = walk(start, tick, steps);
            let got = hurst_of(&price);
            let want = reference(&price, true);
            assert!(
                (got.unwrap() - want.unwrap()).abs() <= 1e-10,
                "{start}: {got:?} {want:?}"
            );
        }
    }
}
