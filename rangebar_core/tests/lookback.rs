//! The lookback group in the kernel: split and checkpoint invariance, the window's bounds, off =
//! nothing added.

mod common;

use common::{run, Trades};
use proptest::prelude::*;
use rangebar_core::{BarColumns, Checkpoint, KernelError, ProcessorConfig, RangeBarProcessor};

fn with_lookback(threshold: i64, n: i64) -> RangeBarProcessor {
    RangeBarProcessor::with_config(
        ProcessorConfig::new(threshold, false)
            .and_then(|c| c.with_lookback_trades(n))
            .unwrap(),
    )
}

/// Every lookback column as bits (NaN marks null, so compare bit patterns).
fn lookback_bits(c: &BarColumns) -> Vec<Vec<u64>> {
    let l = &c.lookback;
    let mut out = vec![
        l.lookback_trade_count.iter().map(|&v| v as u64).collect(),
        l.lookback_duration_us.iter().map(|&v| v as u64).collect(),
    ];
    for col in [
        &l.lookback_ofi,
        &l.lookback_count_imbalance,
        &l.lookback_intensity,
        &l.lookback_vwap,
        &l.lookback_vwap_position,
        &l.lookback_price_range,
        &l.lookback_kyle_lambda,
        &l.lookback_kaufman_er,
        &l.lookback_garman_klass_vol,
        &l.lookback_burstiness,
        &l.lookback_volume_skew,
        &l.lookback_volume_kurt,
        &l.lookback_hurst,
        &l.lookback_permutation_entropy,
    ] {
        out.push(col.iter().map(|v| v.to_bits()).collect());
    }
    out
}

fn streams() -> impl Strategy<Value = (Trades, i64, i64)> {
    (
        prop::collection::vec(
            (
                -300_i64..=300,
                0_i64..3,
                0_i64..5_000_000_000,
                any::<bool>(),
            ),
            1..400,
        ),
        prop_oneof![Just(5_i64), Just(25), Just(250)],
        prop_oneof![Just(1_i64), Just(3), Just(70), 1_i64..200],
    )
        .prop_map(|(moves, threshold, n)| (Trades::walk(moves), threshold, n))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_split_and_checkpoint_gives_the_same_bars((t, thr, n) in streams(), mut cuts in prop::collection::vec(0_usize..400, 0..6), via_json in any::<bool>()) {
        cuts.sort_unstable();
        let mut whole = with_lookback(thr, n);
        let mut expected = BarColumns::default();
        whole.process(&t.columns(), &mut expected).unwrap();
        let mut p = with_lookback(thr, n);
        let mut got = BarColumns::default();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&t.len())) {
            let end = end.clamp(start, t.len());
            p.process(&t.columns().slice(start, end), &mut got).unwrap();
            let cp = if via_json {
                Checkpoint::from_json(&p.checkpoint().to_json()).unwrap()
            } else {
                Checkpoint::from_bytes(&p.checkpoint().to_bytes()).unwrap()
            };
            prop_assert_eq!(&cp, &p.checkpoint());
            p = RangeBarProcessor::from_checkpoint(&cp).unwrap();
            start = end;
        }
        prop_assert_eq!(expected.len(), expected.lookback.len());
        prop_assert_eq!(&expected.close, &got.close);
        prop_assert_eq!(lookback_bits(&expected), lookback_bits(&got));
        prop_assert_eq!(whole.checkpoint(), p.checkpoint());
        // The bars themselves are the plain rule's.
        let (plain, _) = run(thr, &t).unwrap();
        prop_assert_eq!(&plain.last_agg_trade_id, &expected.last_agg_trade_id);
        prop_assert!(expected.lookback.lookback_trade_count.iter().all(|&c| c <= n));
    }
}

#[test]
fn the_window_holds_only_trades_before_the_open() {
    // Two trades at t=0 (the second closes a bar at 250 dbps), then a bar opening at t=0 again:
    // nothing is strictly before it. The next bar opens at t=2s with all 3 earlier trades in W.
    let mut t = Trades::default();
    t.push(0, 10_000_000_000, 100_000_000, false);
    t.push(0, 10_030_000_000, 100_000_000, true);
    t.push(0, 10_030_000_000, 100_000_000, false);
    t.push(1_000_000, 10_100_000_000, 100_000_000, false);
    t.push(2_000_000, 10_100_000_000, 100_000_000, false);
    let mut p = with_lookback(250, 10);
    let mut out = BarColumns::default();
    p.process(&t.columns(), &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out.lookback.lookback_trade_count, vec![0, 0]);
    let mut tail = BarColumns::default();
    assert!(p.push_incomplete_bar(&mut tail));
    assert_eq!(tail.lookback.lookback_trade_count, vec![4]);
    assert_eq!(tail.lookback.lookback_duration_us, vec![1_000_000]);
}

#[test]
fn off_adds_nothing_and_bad_lengths_are_rejected() {
    let t = Trades::from_prices(&[100.0, 100.3, 100.1, 100.5]);
    let (out, p) = run(250, &t).unwrap();
    assert!(out.lookback.is_empty());
    assert_eq!(p.checkpoint().version, 1);
    assert!(p.checkpoint().lookback.is_none());
    for bad in [-1, 1_000_001] {
        assert_eq!(
            ProcessorConfig::new(250, false).and_then(|c| c.with_lookback_trades(bad)),
            Err(KernelError::InvalidLookback(bad))
        );
    }
}
