//! The minimum-duration gate: a bar closes only on a breaching trade at least `D` microseconds
//! after its open; D = 0 is the plain rule; the setting travels in (version-2) checkpoints.

mod common;

use common::{process_in_pieces, run, Trades};
use proptest::prelude::*;
use rangebar_core::{
    BarColumns, Checkpoint, KernelError, ProcessorConfig, RangeBarProcessor, CHECKPOINT_VERSION,
};

fn gated(threshold: i64, min_duration_us: i64) -> RangeBarProcessor {
    RangeBarProcessor::with_config(
        ProcessorConfig::new(threshold, false)
            .and_then(|c| c.with_min_duration_us(min_duration_us))
            .unwrap(),
    )
}

/// The rule written plainly over fixed-point trades: `(last index of each closed bar)`.
fn reference_closes(t: &Trades, threshold: i64, d: i64) -> Vec<usize> {
    let mut closes = Vec::new();
    let mut open: Option<(i64, i64, i64)> = None; // (open_time, upper, lower)
    for i in 0..t.len() {
        match open {
            None => {
                let delta = (i128::from(t.price[i]) * i128::from(threshold) / 100_000) as i64;
                open = Some((t.ts[i], t.price[i] + delta, t.price[i] - delta));
            }
            Some((open_time, upper, lower)) => {
                let beyond = t.price[i] >= upper || t.price[i] <= lower;
                if beyond && t.ts[i] - open_time >= d {
                    closes.push(i);
                    open = None;
                }
            }
        }
    }
    closes
}

fn streams() -> impl Strategy<Value = (Trades, i64, i64)> {
    (
        prop::collection::vec(
            (
                -300_i64..=300,
                0_i64..4,
                0_i64..5_000_000_000,
                any::<bool>(),
            ),
            1..300,
        ),
        prop_oneof![Just(5_i64), Just(25), Just(250)],
        prop_oneof![Just(0_i64), Just(1), 1_i64..5_000, Just(10_000)],
    )
        .prop_map(|(moves, threshold, d)| (Trades::walk(moves), threshold, d))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn closes_follow_the_plain_rule((t, thr, d) in streams()) {
        let mut p = gated(thr, d);
        let mut out = BarColumns::default();
        p.process(&t.columns(), &mut out).unwrap();
        let closes = reference_closes(&t, thr, d);
        let got: Vec<i64> = out.last_agg_trade_id.clone();
        let expected: Vec<i64> = closes.iter().map(|&i| t.agg[i]).collect();
        prop_assert_eq!(got, expected);
        for (open, close) in out.open_time.iter().zip(&out.close_time) {
            prop_assert!(close - open >= d);
        }
    }

    #[test]
    fn any_split_gives_the_same_bars((t, thr, d) in streams(), mut cuts in prop::collection::vec(0_usize..300, 0..6), via_cp in any::<bool>()) {
        cuts.sort_unstable();
        let mut whole = gated(thr, d);
        let expected = process_in_pieces(&mut whole, &t, &[], false);
        let mut split = gated(thr, d);
        let got = process_in_pieces(&mut split, &t, &cuts, via_cp);
        prop_assert_eq!(&expected, &got);
        prop_assert_eq!(whole.checkpoint(), split.checkpoint());
    }

    #[test]
    fn zero_is_the_plain_rule_bit_for_bit((t, thr, _d) in streams()) {
        let (plain, p_plain) = run(thr, &t).unwrap();
        let mut p = gated(thr, 0);
        let mut out = BarColumns::default();
        p.process(&t.columns(), &mut out).unwrap();
        prop_assert_eq!(&plain, &out);
        prop_assert_eq!(p_plain.checkpoint().to_bytes(), p.checkpoint().to_bytes());
    }
}

#[test]
fn an_early_breach_does_not_close_the_bar() {
    // 250 dbps of 100 = 0.25: the breach at t=1s is too early for D = 2s; the one at 3s closes.
    let t = Trades::from_prices(&[100.0, 100.3, 100.1, 100.26, 100.0]);
    let mut p = gated(250, 2_000_000);
    let mut out = BarColumns::default();
    p.process(&t.columns(), &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out.close, vec![100.26]);
    assert_eq!(out.high, vec![100.3]); // the range exceeds the threshold
    assert_eq!(out.duration_us, vec![3_000_000]);
}

#[test]
fn negative_durations_are_rejected() {
    assert_eq!(
        ProcessorConfig::new(250, false).and_then(|c| c.with_min_duration_us(-1)),
        Err(KernelError::InvalidMinDuration(-1))
    );
}

#[test]
fn checkpoints_are_version_1_when_off_and_version_2_when_on() {
    let t = Trades::from_prices(&[100.0, 100.3, 100.1]);
    let (_, plain) = run(250, &t).unwrap();
    let cp = plain.checkpoint();
    assert_eq!(cp.version, 1);
    assert!(!cp.to_json().contains("min_duration_us"));

    let mut p = gated(250, 5_000_000);
    p.process(&t.columns(), &mut BarColumns::default()).unwrap();
    let cp = p.checkpoint();
    // Version 2 carries the gate (version 3 is written only with the intra group on).
    assert_eq!(cp.version, 2);
    const { assert!(CHECKPOINT_VERSION >= 2) };
    assert_eq!(cp.min_duration_us, 5_000_000);
    for restored in [
        Checkpoint::from_bytes(&cp.to_bytes()).unwrap(),
        Checkpoint::from_json(&cp.to_json()).unwrap(),
    ] {
        assert_eq!(restored, cp);
        assert_eq!(RangeBarProcessor::from_checkpoint(&restored).unwrap(), p);
    }
    // A version-1 checkpoint cannot carry the gate; nor can bytes carry a negative one.
    let mut bad = cp.clone();
    bad.version = 1;
    assert!(bad.validate().is_err());
    bad.version = 2;
    bad.min_duration_us = -5;
    assert!(Checkpoint::from_bytes(&bad.to_bytes()).is_err());
}

/// Bytes and JSON of a checkpoint written by the version-1 build (main before the gate): a bar
/// in progress at 100 (250 dbps) after `Trades::from_prices(&[100.0, 100.1])`.
const V1_HEX: &str = "5242435001fa0100010080897a8090dfc04a80eaa3ca4a8090dfc04a80eaa3ca4a80f1cad84a80aff3a84a8084af5f8080a0f6f4acdbe01b048084af5f8080d4c2c98ca2e41b0604c801ca01d804e2040180897a01ca0102";
const V1_JSON: &str = r#"{"version":1,"threshold_decimal_bps":250,"same_timestamp_gate":false,"bar":{"open_time":0,"close_time":1000000,"open":10000000000,"high":10010000000,"low":10000000000,"close":10010000000,"upper":10025000000,"lower":9975000000,"buy":{"volume":100000000,"turnover":1000000000000000000,"trades":2},"sell":{"volume":100000000,"turnover":1001000000000000000,"trades":3},"agg_record_count":2,"first_agg_trade_id":100,"last_agg_trade_id":101,"first_trade_id":300,"last_trade_id":305},"last_timestamp_us":1000000,"last_agg_trade_id":101,"trades_seen":2}"#;

#[test]
fn checkpoints_written_before_version_2_still_load_and_keep_their_bytes() {
    let v1_bytes: Vec<u8> = (0..V1_HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&V1_HEX[i..i + 2], 16).unwrap())
        .collect();
    let from_bytes = Checkpoint::from_bytes(&v1_bytes).unwrap();
    let from_json = Checkpoint::from_json(V1_JSON).unwrap();
    assert_eq!(from_bytes, from_json);
    assert_eq!((from_bytes.version, from_bytes.min_duration_us), (1, 0));
    // Today's processor without the gate writes exactly the same bytes and JSON.
    let (_, p) = run(250, &Trades::from_prices(&[100.0, 100.1])).unwrap();
    assert_eq!(RangeBarProcessor::from_checkpoint(&from_bytes).unwrap(), p);
    assert_eq!(p.checkpoint().to_bytes(), v1_bytes);
    assert_eq!(p.checkpoint().to_json(), V1_JSON);
}
