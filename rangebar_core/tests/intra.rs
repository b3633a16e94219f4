//! The intra group in the kernel: every column against a plain recomputation from the bar's
//! trades (the definitions, written out literally), split and checkpoint invariance,
//! the edge cases (one trade, equal prices, zero durations, no epochs), off = nothing added.

mod common;

use common::{run, Trades};
use proptest::prelude::*;
use rangebar_core::{
    fixed, BarColumns, Checkpoint, IntraColumns, ProcessorConfig, RangeBarProcessor,
    CHECKPOINT_VERSION,
};

fn with_intra(threshold: i64) -> RangeBarProcessor {
    RangeBarProcessor::with_config(
        ProcessorConfig::new(threshold, false)
            .unwrap()
            .with_intra_bar(true),
    )
}

/// The 22 columns of bar `i` in output order, NaN as None.
fn row(c: &IntraColumns, i: usize) -> [Option<f64>; 22] {
    let f = |v: f64| (!v.is_nan()).then_some(v);
    [
        Some(c.intra_trade_count[i] as f64),
        Some(c.intra_duration_us[i] as f64),
        f(c.intra_intensity[i]),
        f(c.intra_ofi[i]),
        f(c.intra_count_imbalance[i]),
        f(c.intra_vwap_position[i]),
        f(c.intra_kyle_lambda[i]),
        f(c.intra_burstiness[i]),
        f(c.intra_volume_skew[i]),
        f(c.intra_volume_kurt[i]),
        f(c.intra_kaufman_er[i]),
        f(c.intra_garman_klass_vol[i]),
        f(c.intra_hurst[i]),
        f(c.intra_permutation_entropy[i]),
        f(c.intra_max_drawdown[i]),
        f(c.intra_max_runup[i]),
        f(c.intra_bull_epoch_density[i]),
        f(c.intra_bull_excess_gain[i]),
        f(c.intra_bull_cv[i]),
        f(c.intra_bear_epoch_density[i]),
        f(c.intra_bear_excess_gain[i]),
        f(c.intra_bear_cv[i]),
    ]
}

/// Every intra column as bits (exact comparison, NaN included).
fn bits(c: &IntraColumns) -> Vec<Vec<u64>> {
    (0..c.len())
        .map(|i| {
            row(c, i)
                .iter()
                .map(|v| v.map_or(u64::MAX, f64::to_bits))
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The oracle: the definitions over one bar's records, in plain f64.

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn pstd(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / x.len() as f64).sqrt()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// antropy's `detrended_fluctuation`, written out (fit per segment, then residuals).
fn dfa(x: &[f64]) -> Option<f64> {
    let n_total = x.len();
    let m = mean(x);
    let mut walk = Vec::with_capacity(n_total);
    let mut acc = 0.0;
    for v in x {
        acc += v - m;
        walk.push(acc);
    }
    let fit = |xs: &[f64], ys: &[f64]| {
        let n = xs.len() as f64;
        let (sx, sy) = (xs.iter().sum::<f64>(), ys.iter().sum::<f64>());
        let sx2 = xs.iter().map(|a| a * a).sum::<f64>();
        let sxy = xs.iter().zip(ys).map(|(a, b)| a * b).sum::<f64>();
        let slope = (n * sxy - sx * sy) / (n * sx2 - sx * sx + 1e-9);
        (slope, sy / n - slope * (sx / n))
    };
    let mut sizes = vec![4_usize];
    let max_i = ((0.1 * n_total as f64 / 4.0).ln() / 1.2_f64.ln()).floor();
    let mut i = 0.0;
    while i <= max_i {
        let s = (4.0 * 1.2_f64.powf(i)).floor() as usize;
        if s > *sizes.last().unwrap() {
            sizes.push(s);
        }
        i += 1.0;
    }
    let (mut ln_n, mut ln_f) = (vec![], vec![]);
    for &n in &sizes {
        let r: Vec<f64> = (0..n).map(|j| j as f64).collect();
        let segs: Vec<f64> = walk
            .chunks_exact(n)
            .map(|d| {
                let (slope, icpt) = fit(&r, d);
                d.iter()
                    .zip(&r)
                    .map(|(y, x)| (y - (icpt + slope * x)).powi(2))
                    .sum::<f64>()
                    / n as f64
            })
            .collect();
        let f = mean(&segs).sqrt();
        if f != 0.0 {
            ln_n.push((n as f64).ln());
            ln_f.push(f.ln());
        }
    }
    if ln_f.is_empty() {
        return None;
    }
    let h = fit(&ln_n, &ln_f).0;
    h.is_finite().then_some(h)
}

/// Order-3 permutation entropy (argsort patterns, ties by position), normalised by ln 6.
fn perm_entropy(p: &[f64]) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for w in p.windows(3) {
        let mut idx = [0_usize, 1, 2];
        idx.sort_by(|&a, &b| w[a].partial_cmp(&w[b]).unwrap());
        *counts.entry(idx).or_insert(0_u64) += 1;
    }
    let total = (p.len() - 2) as f64;
    let h: f64 = counts
        .values()
        .map(|&c| {
            let q = c as f64 / total;
            -q * q.ln()
        })
        .sum();
    h / 6f64.ln()
}

/// `(E, sum G, cv)` of one side's epochs: `bull` compares upwards from the crest, else the bear
/// side from the trough.
fn epochs(nav: &[f64], h: f64, bull: bool) -> (usize, f64, Option<f64>) {
    let (mut gain, mut loss) = (0.0_f64, 0.0_f64);
    let (mut anchor, mut cand_far, mut cand_near) = (nav[0], nav[0], nav[0]);
    let (mut positions, mut sum_g) = (vec![], 0.0);
    for k in 1..nav.len() {
        let x = nav[k];
        if bull {
            if x > cand_far {
                gain = x / anchor - 1.0;
                cand_far = x;
            }
            if x < cand_near {
                loss = 1.0 - x / anchor;
                cand_near = x;
            }
        } else {
            if x < cand_far {
                gain = anchor / x - 1.0;
                cand_far = x;
            }
            if x > cand_near {
                loss = 1.0 - anchor / x;
                cand_near = x;
            }
        }
        sum_g += gain;
        if gain > loss && gain > h {
            positions.push(k);
        }
        let moved = if bull {
            cand_far >= anchor
        } else {
            cand_far <= anchor
        };
        if gain > loss.abs() && gain > h && moved {
            anchor = cand_far;
            cand_near = nav[k - 1];
            gain = 0.0;
            loss = 0.0;
        }
    }
    let mut prev = 0;
    let intervals: Vec<f64> = positions
        .iter()
        .map(|&p| {
            let d = (p - prev) as f64;
            prev = p;
            d
        })
        .collect();
    let cv = (!intervals.is_empty()).then(|| pstd(&intervals) / mean(&intervals));
    (positions.len(), sum_g, cv)
}

/// The 22 columns of the bar made of rows `a..=b` of `t`.
fn oracle(t: &Trades, a: usize, b: usize) -> [Option<f64>; 22] {
    let r = a..b + 1;
    let n = r.len();
    let nf = n as f64;
    let ts = &t.ts[r.clone()];
    let p: Vec<f64> = t.price[r.clone()]
        .iter()
        .map(|&v| fixed::to_f64(v))
        .collect();
    let v: Vec<f64> = t.qty[r.clone()].iter().map(|&v| fixed::to_f64(v)).collect();
    let sell = &t.ibm[r.clone()];
    let m: Vec<f64> = r
        .clone()
        .map(|i| (t.last[i] - t.first[i] + 1) as f64)
        .collect();
    let duration = (ts[n - 1] - ts[0]) as f64;
    let mut out = [None; 22];
    out[0] = Some(nf);
    out[1] = Some(duration);
    if n == 1 {
        out[2] = Some(0.0);
        out[3] = Some(0.0);
        return out;
    }
    out[2] = Some(if duration == 0.0 {
        nf
    } else {
        nf / (duration / 1e6)
    });
    let side = |x: &[f64], want_sell: bool| -> f64 {
        x.iter()
            .zip(sell)
            .filter(|(_, s)| **s == want_sell)
            .map(|(x, _)| x)
            .sum()
    };
    // Volumes summed exactly (fixed point), so that a small imbalance keeps its digits.
    let side_volume = |want_sell: bool| -> i128 {
        r.clone()
            .filter(|&i| t.ibm[i] == want_sell)
            .map(|i| i128::from(t.qty[i]))
            .sum()
    };
    let (bv, sv) = (side_volume(false), side_volume(true));
    let ofi = if bv + sv == 0 {
        0.0
    } else {
        (bv - sv) as f64 / (bv + sv) as f64
    };
    out[3] = Some(ofi);
    let (bm, sm) = (side(&m, false), side(&m, true));
    out[4] = Some((bm - sm) / (bm + sm));
    let (hi, lo) = p
        .iter()
        .fold((f64::MIN, f64::MAX), |(h, l), &x| (h.max(x), l.min(x)));
    let volume: f64 = v.iter().sum();
    out[5] = if hi == lo {
        Some(0.5)
    } else if volume == 0.0 {
        None
    } else {
        // vwap - low as the volume-weighted mean of p - low (no cancellation).
        let above = p.iter().zip(&v).map(|(p, v)| (p - lo) * v).sum::<f64>() / volume;
        Some((above / (hi - lo)).clamp(0.0, 1.0))
    };
    let (o, c) = (p[0], p[n - 1]);
    out[6] = (ofi != 0.0).then(|| ((c - o) / o) / ofi);
    if n >= 3 {
        let gaps: Vec<f64> = ts.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        let (gm, gs) = (mean(&gaps), pstd(&gaps));
        out[7] = (gs != 0.0).then(|| (gs - gm) / (gs + gm));
        let vm = mean(&v);
        let cm = |k: i32| mean(&v.iter().map(|x| (x - vm).powi(k)).collect::<Vec<_>>());
        if pstd(&v) != 0.0 {
            out[8] = Some(cm(3) / cm(2).powf(1.5));
            out[9] = Some(cm(4) / cm(2).powi(2) - 3.0);
        }
    }
    let path: f64 = p.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
    out[10] = (path != 0.0).then(|| (c - o).abs() / path);
    out[11] = Some(
        (0.5 * (hi / lo).ln().powi(2) - (2.0 * 2f64.ln() - 1.0) * (c / o).ln().powi(2))
            .max(0.0)
            .sqrt(),
    );
    if n >= 64 {
        // ln(p_{k+1} / p_k) from the exact relative change: the quotient of the rounded floats
        // carries ~3 ulp of noise, over 1e-11 on a Hurst exponent near 0 (beyond `close`).
        let x: Vec<f64> = t.price[r.clone()]
            .windows(2)
            .map(|w| ((w[1] - w[0]) as f64 / w[0] as f64).ln_1p())
            .collect();
        out[12] = dfa(&x);
    }
    if n >= 60 {
        out[13] = Some(perm_entropy(&p));
    }
    let nav: Vec<f64> = p.iter().map(|x| x / o).collect();
    let (mut peak, mut trough, mut dd, mut ru) = (nav[0], nav[0], 0.0_f64, 0.0_f64);
    for &x in &nav {
        peak = peak.max(x);
        trough = trough.min(x);
        dd = dd.max(1.0 - x / peak);
        ru = ru.max(1.0 - trough / x);
    }
    out[14] = Some(dd);
    out[15] = Some(ru);
    for (k, (h, bull)) in [(dd, true), (ru, false)].into_iter().enumerate() {
        let (e, g, cv) = epochs(&nav, h, bull);
        out[16 + 3 * k] = Some(sigmoid(10.0 * (e as f64 / nf - 0.5)));
        out[17 + 3 * k] = Some((5.0 * g).tanh());
        out[18 + 3 * k] = Some(sigmoid(4.0 * (cv.unwrap_or(0.0) - 0.5)));
    }
    out
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-3),
        _ => false,
    }
}

/// Every bar of `out` (closed bars, then the trailing one when `tail`) against the oracle.
fn check_against_oracle(t: &Trades, out: &BarColumns) -> Result<(), TestCaseError> {
    prop_assert_eq!(out.intra.len(), out.len());
    for i in 0..out.len() {
        let (a, b) = (
            (out.first_agg_trade_id[i] - t.agg[0]) as usize,
            (out.last_agg_trade_id[i] - t.agg[0]) as usize,
        );
        let (got, want) = (row(&out.intra, i), oracle(t, a, b));
        for k in 0..22 {
            prop_assert!(
                close(got[k], want[k]),
                "bar {} column {}: {:?} vs {:?}",
                i,
                k,
                got[k],
                want[k]
            );
        }
    }
    Ok(())
}

/// Closed bars and the trailing one of `t` at `thr` with the intra group on.
fn all_bars(t: &Trades, thr: i64) -> (BarColumns, RangeBarProcessor) {
    let mut p = with_intra(thr);
    let mut out = BarColumns::default();
    p.process(&t.columns(), &mut out).unwrap();
    p.push_incomplete_bar(&mut out);
    (out, p)
}

// ---------------------------------------------------------------------------------------------

/// Random walks with equal timestamps, runs of equal prices and zero quantities; long enough
/// for bars of 60+ records at 25 and 250 dbps.
fn streams() -> impl Strategy<Value = (Trades, i64)> {
    (
        prop::collection::vec(
            (
                prop_oneof![4 => -3_i64..=3, 1 => Just(0_i64), 1 => -40_i64..=40],
                prop_oneof![2 => Just(0_i64), 3 => 0_i64..50],
                prop_oneof![1 => Just(0_i64), 6 => 0_i64..5_000_000_000],
                any::<bool>(),
            ),
            1..1_200,
        ),
        prop_oneof![Just(5_i64), Just(25), Just(250)],
    )
        .prop_map(|(moves, threshold)| (Trades::walk(moves), threshold))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_column_matches_the_definitions((t, thr) in streams()) {
        let (out, _) = all_bars(&t, thr);
        check_against_oracle(&t, &out)?;
    }

    #[test]
    fn any_split_and_checkpoint_gives_the_same_values(
        (t, thr) in streams(),
        mut cuts in prop::collection::vec(0_usize..1_200, 0..6),
        via_json in any::<bool>(),
        lookback in prop_oneof![Just(0_i64), 1_i64..50],
        min_duration_us in prop_oneof![Just(0_i64), 0_i64..30_000],
        full_columns in any::<bool>(),
    ) {
        cuts.sort_unstable();
        let config = || {
            RangeBarProcessor::with_config(
                ProcessorConfig::new(thr, false)
                    .and_then(|c| c.with_lookback_trades(lookback))
                    .and_then(|c| c.with_min_duration_us(min_duration_us))
                    .unwrap()
                    .with_intra_bar(true),
            )
        };
        // Without the optional columns the row-by-row loop runs; with them, the slice scan.
        let mut cols = t.columns();
        if !full_columns {
            cols.first_trade_id = None;
        }
        let mut whole = config();
        let mut expected = BarColumns::default();
        whole.process(&cols, &mut expected).unwrap();
        whole.push_incomplete_bar(&mut expected);
        let mut p = config();
        let mut got = BarColumns::default();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&t.len())) {
            let end = end.clamp(start, t.len());
            p.process(&cols.slice(start, end), &mut got).unwrap();
            let cp = if via_json {
                Checkpoint::from_json(&p.checkpoint().to_json()).unwrap()
            } else {
                Checkpoint::from_bytes(&p.checkpoint().to_bytes()).unwrap()
            };
            prop_assert_eq!(&cp, &p.checkpoint());
            prop_assert_eq!(cp.version, CHECKPOINT_VERSION);
            p = RangeBarProcessor::from_checkpoint(&cp).unwrap();
            start = end;
        }
        p.push_incomplete_bar(&mut got);
        prop_assert_eq!(&expected.close, &got.close);
        prop_assert_eq!(bits(&expected.intra), bits(&got.intra));
        prop_assert_eq!(whole.checkpoint(), p.checkpoint());
        // The bars themselves are the rule's without the group, and their own columns too.
        if lookback == 0 && min_duration_us == 0 {
            let (plain, _) = run(thr, &t).unwrap();
            prop_assert_eq!(&plain.last_agg_trade_id, &expected.last_agg_trade_id[..plain.len()]);
            if full_columns {
                check_against_oracle(&t, &expected)?;
            }
        }
    }

    #[test]
    fn off_the_bars_are_bit_identical_and_on_they_only_add_the_group((t, thr) in streams()) {
        let (plain, p) = run(thr, &t).unwrap();
        prop_assert!(plain.intra.is_empty());
        prop_assert!(p.checkpoint().intra.is_none());
        let mut on = with_intra(thr);
        let mut out = BarColumns::default();
        on.process(&t.columns(), &mut out).unwrap();
        prop_assert_eq!(out.intra.len(), out.len());
        out.intra = IntraColumns::default();
        prop_assert_eq!(&out, &plain);
    }
}

#[test]
fn long_bars_match_the_definitions() {
    // 30 000 trades of a random walk (0-20 ms apart), steps scaled so that the bars hold a few
    // dozen to thousands of records at each threshold: the DFA and the entropy are defined.
    for (thr, scale) in [(5, 1), (25, 1), (250, 8)] {
        let mut state = 11_u64;
        let mut next = move |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        let moves = (0..30_000)
            .map(|_| {
                let step = (next(21) as i64 - 10) * scale;
                (
                    step,
                    next(21) as i64,
                    1 + next(3_000_000_000) as i64,
                    next(2) == 1,
                )
            })
            .collect();
        let t = Trades::walk(moves);
        let (out, _) = all_bars(&t, thr);
        check_against_oracle(&t, &out).unwrap();
        let defined = |c: &[f64]| c.iter().filter(|v| !v.is_nan()).count();
        assert!(defined(&out.intra.intra_hurst) >= 5, "{thr}: {}", out.len());
        assert!(defined(&out.intra.intra_permutation_entropy) >= 5);
        assert!(defined(&out.intra.intra_burstiness) >= 5);
    }
}

#[test]
fn a_one_trade_bar_has_count_duration_intensity_and_ofi_only() {
    // 100 -> 103 closes the first bar (two trades) at 250 dbps; 103.5 opens the trailing bar,
    // which holds that one trade.
    let t = Trades::from_prices(&[100.0, 103.0, 103.5]);
    let (out, _) = all_bars(&t, 250);
    assert_eq!(out.len(), 2);
    let r = row(&out.intra, 1);
    assert_eq!(&r[..4], &[Some(1.0), Some(0.0), Some(0.0), Some(0.0)]);
    assert!(r[4..].iter().all(Option::is_none), "{r:?}");
    assert_eq!(out.intra.intra_trade_count, vec![2, 1]);
    check_against_oracle(&t, &out).unwrap();
}

#[test]
fn equal_prices_have_no_path_no_epochs_and_a_middle_vwap() {
    let t = Trades::from_prices(&[100.0; 80]);
    let (out, _) = all_bars(&t, 250);
    assert_eq!(out.len(), 1);
    let r = row(&out.intra, 0);
    assert_eq!(r[0], Some(80.0));
    assert_eq!(r[5], Some(0.5)); // vwap position
    assert_eq!(r[6], None); // kyle lambda: ofi = 0 (alternating sides, equal volumes)
    assert_eq!(r[7], None); // burstiness: equal gaps
    assert_eq!((r[8], r[9]), (None, None)); // equal volumes
    assert_eq!(r[10], None); // Kaufman: no path
    assert_eq!(r[11], Some(0.0));
    assert_eq!(r[12], None); // DFA: every fluctuation 0
    assert_eq!(r[13], Some(0.0)); // one pattern
    assert_eq!((r[14], r[15]), (Some(0.0), Some(0.0)));
    // No epochs on either side: density sigmoid(-5), gain tanh(0), cv sigmoid(-2).
    for side in [16, 19] {
        assert_eq!(r[side], Some(sigmoid(-5.0)));
        assert_eq!(r[side + 1], Some(0.0));
        assert_eq!(r[side + 2], Some(sigmoid(-2.0)));
    }
}

#[test]
fn zero_duration_bars_count_their_trades_as_intensity() {
    let mut t = Trades::default();
    for (i, p) in [100.0, 100.1, 99.9, 100.2, 103.0].iter().enumerate() {
        t.push(
            5_000_000,
            (p * 1e8) as i64,
            100_000_000 * (i as i64 + 1),
            i % 2 == 0,
        );
    }
    let (out, _) = all_bars(&t, 250);
    assert_eq!(out.len(), 1);
    let r = row(&out.intra, 0);
    assert_eq!((r[0], r[1], r[2]), (Some(5.0), Some(0.0), Some(5.0)));
    assert_eq!(r[7], None); // every gap is 0
    check_against_oracle(&t, &out).unwrap();
}

#[test]
fn epochs_follow_the_state_machine() {
    // A rise with a dip: bull epochs on new highs above the hurdle; the bear side sees none.
    let t = Trades::from_prices(&[100.0, 100.1, 100.2, 100.15, 100.3, 100.4, 100.35, 100.5]);
    let (out, _) = all_bars(&t, 250);
    check_against_oracle(&t, &out).unwrap();
    let r = row(&out.intra, 0);
    assert!(r[16].unwrap() > sigmoid(-5.0), "{r:?}");
    assert!(r[17].unwrap() > 0.0);
    // Monotone up: D = 0 and U > 0.
    let t = Trades::from_prices(&[100.0, 100.1, 100.2, 100.3]);
    let (out, _) = all_bars(&t, 250);
    check_against_oracle(&t, &out).unwrap();
    let r = row(&out.intra, 0);
    assert_eq!(r[14], Some(0.0));
    assert!(r[15].unwrap() > 0.0);
}

#[test]
fn checkpoints_keep_their_versions_and_reject_foreign_intra_state() {
    let t = Trades::from_prices(&[100.0, 100.2, 100.1]);
    // Off: version 1 (nothing else on) or 2 (lookback), never 3.
    let (_, plain) = run(250, &t).unwrap();
    assert_eq!(plain.checkpoint().version, 1);
    assert!(!plain.checkpoint().to_json().contains("intra"));
    let mut p = with_intra(250);
    p.process(&t.columns(), &mut BarColumns::default()).unwrap();
    let cp = p.checkpoint();
    assert_eq!(cp.version, 3);
    assert_eq!(cp.intra.as_ref().unwrap().len(), 3);
    for restored in [
        Checkpoint::from_bytes(&cp.to_bytes()).unwrap(),
        Checkpoint::from_json(&cp.to_json()).unwrap(),
    ] {
        assert_eq!(restored, cp);
        assert_eq!(RangeBarProcessor::from_checkpoint(&restored).unwrap(), p);
    }
    // The state must be the bar's records, and only a version-3 checkpoint carries it.
    let mut bad = cp.clone();
    bad.version = 2;
    assert!(bad.validate().is_err());
    let mut bad = cp.clone();
    bad.intra.as_mut().unwrap().quantity[1] += 1;
    assert!(bad.validate().is_err());
    assert!(Checkpoint::from_bytes(&bad.to_bytes()).is_err());
    let mut bad = cp.clone();
    bad.intra.as_mut().unwrap().price.pop();
    assert!(bad.validate().is_err());
    let mut bad = cp;
    bad.bar = None;
    bad.last_timestamp_us = None;
    bad.last_agg_trade_id = None;
    assert!(bad.validate().is_err());
}
