//! Property tests: split invariance, checkpoint round trips, conservation, breach consistency,
//! no lookahead.

mod common;

use common::{process_in_pieces, run, Trades};
use proptest::prelude::*;
use rangebar_core::{BarColumns, Checkpoint, RangeBarProcessor};

fn streams() -> impl Strategy<Value = (Trades, i64)> {
    let step = prop_oneof![
        8 => -300_i64..=300,                      // small moves (in 1e-4 units)
        1 => Just(0_i64),                           // flat runs
        1 => prop_oneof![-40_000_i64..-5_000, 5_000_i64..40_000], // jumps of several thresholds
    ];
    (
        prop::collection::vec(
            (step, 0_i64..3, 0_i64..5_000_000_000, any::<bool>()),
            1..400,
        ),
        prop_oneof![
            Just(1_i64),
            Just(5),
            Just(25),
            Just(250),
            Just(1000),
            1_i64..2000
        ],
    )
        .prop_map(|(moves, threshold)| (Trades::walk(moves), threshold))
}

fn process_split(
    threshold: i64,
    t: &Trades,
    cuts: &[usize],
    via_checkpoint: bool,
) -> (BarColumns, RangeBarProcessor) {
    let mut p = RangeBarProcessor::new(threshold, false).unwrap();
    let out = process_in_pieces(&mut p, t, cuts, via_checkpoint);
    (out, p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_split_gives_the_same_bars((t, thr) in streams(), mut cuts in prop::collection::vec(0_usize..400, 0..6), via_cp in any::<bool>()) {
        cuts.sort_unstable();
        let (whole, p_whole) = run(thr, &t).unwrap();
        let (split, p_split) = process_split(thr, &t, &cuts, via_cp);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(p_whole.checkpoint(), p_split.checkpoint());
    }

    #[test]
    fn checkpoints_round_trip_losslessly_at_every_position((t, thr) in streams()) {
        let mut p = RangeBarProcessor::new(thr, false).unwrap();
        let mut out = BarColumns::default();
        for i in 0..t.len() {
            p.process(&t.columns().slice(i, i + 1), &mut out).unwrap();
            let cp = p.checkpoint();
            prop_assert_eq!(&Checkpoint::from_bytes(&cp.to_bytes()).unwrap(), &cp);
            prop_assert_eq!(&Checkpoint::from_json(&cp.to_json()).unwrap(), &cp);
            prop_assert_eq!(&RangeBarProcessor::from_checkpoint(&cp).unwrap(), &p);
        }
    }

    #[test]
    fn volume_and_ids_are_conserved((t, thr) in streams()) {
        let (bars, p) = run(thr, &t).unwrap();
        let tail = p.incomplete_bar();
        let total: i128 = t.qty.iter().map(|&q| i128::from(q)).sum();
        let bar_volume: i128 = bars.volume.iter().map(|&v| (v * 1e8).round() as i128).sum::<i128>()
            + tail.map_or(0, |b| b.state.volume());
        // Float columns are exact here (volumes < 2^53 units); compare in fixed point.
        prop_assert_eq!(bar_volume, total);
        let records: i64 = bars.agg_record_count.iter().sum::<i64>() + tail.map_or(0, |b| b.state.agg_record_count);
        prop_assert_eq!(records as usize, t.len());
        for i in 1..bars.len() {
            prop_assert_eq!(bars.first_agg_trade_id[i], bars.last_agg_trade_id[i - 1] + 1);
        }
        if let (Some(b), Some(&last)) = (tail, bars.last_agg_trade_id.last()) {
            prop_assert_eq!(b.state.first_agg_trade_id, last + 1);
        }
        for i in 0..bars.len() {
            prop_assert!((bars.buy_volume[i] + bars.sell_volume[i] - bars.volume[i]).abs() <= 1e-6 * bars.volume[i].max(1.0));
        }
    }

    #[test]
    fn closed_bars_are_breach_consistent((t, thr) in streams()) {
        let (bars, _) = run(thr, &t).unwrap();
        for i in 0..bars.len() {
            let open = (bars.open[i] * 1e8).round() as i128;
            let close = (bars.close[i] * 1e8).round() as i128;
            let delta = open * i128::from(thr) / 100_000;
            prop_assert!(close >= open + delta || close <= open - delta);
            if close >= open + delta { prop_assert_eq!(bars.close[i], bars.high[i]); }
            if close <= open - delta { prop_assert_eq!(bars.close[i], bars.low[i]); }
            prop_assert!(bars.low[i] <= bars.vwap[i] && bars.vwap[i] <= bars.high[i]);
            prop_assert!(bars.low[i] <= bars.open[i].min(bars.close[i]));
            prop_assert!(bars.high[i] >= bars.open[i].max(bars.close[i]));
            prop_assert!(bars.duration_us[i] >= 0);
            prop_assert!((-1.0..=1.0).contains(&bars.ofi[i]));
            prop_assert!((-1.0..=1.0).contains(&bars.turnover_imbalance[i]));
        }
    }

    #[test]
    fn no_lookahead_a_prefix_gives_a_prefix_of_the_bars((t, thr) in streams(), cut in 0_usize..400) {
        let cut = cut.min(t.len());
        let (whole, _) = run(thr, &t).unwrap();
        let (prefix, _) = run(thr, &t.head(cut)).unwrap();
        let n = prefix.len();
        prop_assert!(n <= whole.len());
        let mut head = whole.clone();
        head.truncate(n);
        prop_assert_eq!(head, prefix);
    }
}
