//! The bar rule on hand-made streams (REFERENCE §1 and §10.1 cases).

mod common;

use common::{run, Trades};
use rangebar_core::{fixed, BarColumns, Checkpoint, KernelError, RangeBarProcessor, TradeColumns};

#[test]
fn exact_upward_breach_closes_and_next_trade_opens() {
    let (bars, p) = run(
        250,
        &Trades::from_prices(&[50_000.0, 50_100.0, 50_125.0, 50_500.0, 50_510.0]),
    )
    .unwrap();
    assert_eq!(bars.len(), 1);
    assert_eq!(
        (bars.open[0], bars.high[0], bars.low[0], bars.close[0]),
        (50_000.0, 50_125.0, 50_000.0, 50_125.0)
    );
    assert_eq!(bars.volume[0], 3.0);
    let tail = p.incomplete_bar().unwrap();
    assert_eq!(tail.state.open, fixed::parse_decimal("50500").unwrap());
    assert_eq!(tail.state.agg_record_count, 2);
}

#[test]
fn exact_downward_breach() {
    let (bars, _) = run(250, &Trades::from_prices(&[50_000.0, 49_875.0])).unwrap();
    assert_eq!(bars.len(), 1);
    assert_eq!(bars.close[0], 49_875.0);
    assert_eq!(bars.low[0], 49_875.0);
}

#[test]
fn just_inside_the_band_does_not_breach() {
    let (bars, p) = run(
        250,
        &Trades::from_prices(&[50_000.0, 50_124.99999999, 49_875.00000001]),
    )
    .unwrap();
    assert!(bars.is_empty());
    assert_eq!(p.incomplete_bar().unwrap().state.agg_record_count, 3);
}

#[test]
fn a_gap_of_several_thresholds_closes_exactly_one_bar() {
    let (bars, p) = run(
        250,
        &Trades::from_prices(&[50_000.0, 51_000.0, 52_000.0, 40_000.0, 40_001.0]),
    )
    .unwrap();
    assert_eq!(bars.len(), 2);
    assert_eq!((bars.open[0], bars.close[0]), (50_000.0, 51_000.0));
    assert_eq!(
        (bars.open[1], bars.low[1], bars.close[1]),
        (52_000.0, 40_000.0, 40_000.0)
    );
    assert_eq!(
        p.incomplete_bar().unwrap().state.open,
        fixed::parse_decimal("40001").unwrap()
    );
}

#[test]
fn breach_on_the_last_trade_leaves_no_incomplete_bar() {
    let (bars, p) = run(250, &Trades::from_prices(&[50_000.0, 50_125.0])).unwrap();
    assert_eq!(bars.len(), 1);
    assert!(p.incomplete_bar().is_none());
    assert!(p.checkpoint().bar.is_none());
}

#[test]
fn thresholds_are_fixed_at_open_with_truncation() {
    let (_, p) = run(250, &Trades::from_prices(&[42_000.0])).unwrap();
    let s = p.bar_state().unwrap();
    assert_eq!((s.upper, s.lower), (4_210_500_000_000, 4_189_500_000_000));
    // 1 dbps of 0.12345679 is 0.0000012345679 -> truncated to 123 raw units.
    let (_, p) = run(1000, &Trades::from_prices(&[0.12345679])).unwrap();
    let s = p.bar_state().unwrap();
    assert_eq!(s.upper - s.open, 123_456);
}

#[test]
fn features_match_the_reference_examples() {
    // 3 buys 50 000 / 50 100 / 50 125, q = 1, 1 s apart (REFERENCE §3).
    let mut t = Trades::default();
    for (i, p) in [50_000.0, 50_100.0, 50_125.0].iter().enumerate() {
        t.push(
            i as i64 * 1_000_000,
            fixed::from_f64(*p).unwrap(),
            100_000_000,
            false,
        );
    }
    t.first = t.agg.clone();
    t.last = t.agg.clone();
    let (bars, _) = run(250, &t).unwrap();
    assert_eq!(bars.ofi[0], 1.0);
    assert_eq!(bars.vwap[0], 50_075.0);
    assert!((bars.vwap_close_deviation[0] - 0.4).abs() < 1e-12);
    assert!((bars.price_impact[0] - 41.666_666_666_666_664).abs() < 1e-9);
    assert_eq!(bars.trade_intensity[0], 1.5);
    assert_eq!(bars.aggression_ratio[0], 100.0);
    assert_eq!(bars.aggregation_efficiency[0], 1.0);
    assert_eq!(bars.turnover_imbalance[0], 1.0);
    assert_eq!(bars.duration_us[0], 2_000_000);
}

#[test]
fn zero_volume_keeps_vwap_at_open() {
    let mut t = Trades::default();
    for p in [100.0, 100.1, 101.0] {
        t.push(5, fixed::from_f64(p).unwrap(), 0, false);
    }
    let (bars, _) = run(250, &t).unwrap();
    assert_eq!(bars.vwap[0], 100.0);
    assert_eq!(bars.vwap_close_deviation[0], 1.0);
    assert_eq!(bars.price_impact[0], 0.0);
    assert_eq!(bars.ofi[0], 0.0);
    assert_eq!(bars.volume_per_trade[0], 0.0);
    assert_eq!(bars.duration_us[0], 0);
}

#[test]
fn same_timestamp_gate_defers_the_close() {
    let mut t = Trades::default();
    t.push(10, fixed::from_f64(100.0).unwrap(), 1, false);
    t.push(10, fixed::from_f64(101.0).unwrap(), 1, false);
    t.push(11, fixed::from_f64(100.5).unwrap(), 1, false);
    let mut gated = RangeBarProcessor::new(250, true).unwrap();
    let mut out = BarColumns::default();
    gated.process(&t.columns(), &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out.close[0], 100.5);
    assert_eq!(out.high[0], 101.0);
    let (ungated, _) = run(250, &t).unwrap();
    assert_eq!(ungated.close[0], 101.0);
}

#[test]
fn errors_name_the_row_and_leave_state_unchanged() {
    let mut t = Trades::from_prices(&[100.0, 100.1, 100.2, 100.3]);
    t.ts[2] = t.ts[1] - 1;
    let mut p = RangeBarProcessor::new(250, false).unwrap();
    let before = p.clone();
    let mut out = BarColumns::default();
    match p.process(&t.columns(), &mut out) {
        Err(KernelError::Unsorted { row: 2, .. }) => {}
        other => panic!("expected Unsorted at row 2, got {other:?}"),
    }
    assert_eq!(p, before);
    assert!(out.is_empty());

    let mut t = Trades::from_prices(&[100.0, 100.1]);
    t.agg[1] = t.agg[0];
    t.ts[1] = t.ts[0];
    assert!(matches!(
        run(250, &t),
        Err(KernelError::Unsorted { row: 1, .. })
    ));

    let mut t = Trades::from_prices(&[100.0, 100.1]);
    t.price[1] = 0;
    assert!(matches!(
        run(250, &t),
        Err(KernelError::InvalidPrice { row: 1, .. })
    ));
    let mut t = Trades::from_prices(&[100.0, 100.1]);
    t.qty[0] = -1;
    assert!(matches!(
        run(250, &t),
        Err(KernelError::InvalidQuantity { row: 0, .. })
    ));
    let mut t = Trades::from_prices(&[100.0, 100.1]);
    t.first[1] = t.last[1] + 1;
    assert!(matches!(
        run(250, &t),
        Err(KernelError::InvalidTradeIds { row: 1, .. })
    ));
    assert!(matches!(
        run(250, &Trades::from_prices(&[0.000001])),
        Err(KernelError::ThresholdTooSmall { row: 0, .. })
    ));
    assert!(matches!(
        RangeBarProcessor::new(0, false),
        Err(KernelError::InvalidThreshold(0))
    ));
    assert!(matches!(
        RangeBarProcessor::new(100_001, false),
        Err(KernelError::InvalidThreshold(100_001))
    ));
    assert!(
        RangeBarProcessor::new(1, false).is_ok() && RangeBarProcessor::new(100_000, false).is_ok()
    );
}

#[test]
fn unsorted_across_calls_is_detected() {
    let t = Trades::from_prices(&[100.0, 100.1]);
    let mut p = RangeBarProcessor::new(250, false).unwrap();
    let mut out = BarColumns::default();
    p.process(&t.columns(), &mut out).unwrap();
    assert!(matches!(
        p.process(&t.columns(), &mut out),
        Err(KernelError::Unsorted { row: 0, .. })
    ));
}

#[test]
fn huge_volumes_do_not_wrap() {
    // 2 x 9e10 units would overflow an i64 fixed-point accumulator; i128 keeps it exact.
    let mut t = Trades::default();
    let q = fixed::parse_decimal("90000000000").unwrap();
    t.push(1, fixed::from_f64(100.0).unwrap(), q, false);
    t.push(2, fixed::from_f64(100.0).unwrap(), q, true);
    t.push(3, fixed::from_f64(200.0).unwrap(), q, false);
    let (bars, _) = run(250, &t).unwrap();
    assert_eq!(bars.volume[0], 2.7e11);
    assert_eq!(bars.buy_volume[0] + bars.sell_volume[0], 2.7e11);
}

#[test]
fn missing_optional_columns_get_positional_ids_that_continue_across_calls() {
    let ts = [1_i64, 2, 3, 4];
    let price = [
        10_000_000_000_i64,
        10_000_000_000,
        10_100_000_000,
        10_000_000_000,
    ];
    let qty = [100_000_000_i64; 4];
    let mut p = RangeBarProcessor::new(250, false).unwrap();
    let mut out = BarColumns::default();
    p.process(
        &TradeColumns::new(&ts[..2], &price[..2], &qty[..2]),
        &mut out,
    )
    .unwrap();
    p.process(
        &TradeColumns::new(&ts[2..], &price[2..], &qty[2..]),
        &mut out,
    )
    .unwrap();
    assert_eq!(out.first_agg_trade_id, vec![0]);
    assert_eq!(out.last_agg_trade_id, vec![2]);
    assert_eq!(out.buy_volume[0], 3.0);
    assert_eq!(p.incomplete_bar().unwrap().state.first_agg_trade_id, 3);
}

#[test]
fn checkpoint_rejects_garbage_and_inconsistent_state() {
    let (_, p) = run(250, &Trades::from_prices(&[100.0, 100.1])).unwrap();
    let mut cp = p.checkpoint();
    assert_eq!(Checkpoint::from_bytes(&cp.to_bytes()).unwrap(), cp);
    assert!(Checkpoint::from_bytes(b"nope").is_err());
    assert!(Checkpoint::from_json("{}").is_err());
    cp.bar.as_mut().unwrap().upper += 1;
    assert!(matches!(
        RangeBarProcessor::from_checkpoint(&cp),
        Err(KernelError::Checkpoint(_))
    ));
}
