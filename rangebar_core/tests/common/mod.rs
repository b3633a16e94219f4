//! Test helpers: owned trade columns and a one-call runner.
#![allow(dead_code)]

use rangebar_core::{fixed::SCALE, BarColumns, KernelError, RangeBarProcessor, TradeColumns};

#[derive(Debug, Clone, Default)]
pub struct Trades {
    pub ts: Vec<i64>,
    pub price: Vec<i64>,
    pub qty: Vec<i64>,
    pub agg: Vec<i64>,
    pub first: Vec<i64>,
    pub last: Vec<i64>,
    pub ibm: Vec<bool>,
}

impl Trades {
    /// Trades at whole-unit prices, one second apart, quantity 1, alternating sides.
    pub fn from_prices(prices: &[f64]) -> Self {
        let mut t = Self::default();
        for (i, p) in prices.iter().enumerate() {
            t.push(
                1_000_000 * i as i64,
                (p * SCALE as f64).round() as i64,
                SCALE,
                i % 2 == 1,
            );
        }
        t
    }

    pub fn push(&mut self, ts: i64, price: i64, qty: i64, ibm: bool) {
        let id = self.agg.last().map_or(100, |l| l + 1);
        self.ts.push(ts);
        self.price.push(price);
        self.qty.push(qty);
        self.agg.push(id);
        self.first.push(id * 3);
        self.last.push(id * 3 + (id % 3));
        self.ibm.push(ibm);
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn columns(&self) -> TradeColumns<'_> {
        TradeColumns {
            timestamp_us: &self.ts,
            price: &self.price,
            quantity: &self.qty,
            agg_trade_id: Some(&self.agg),
            first_trade_id: Some(&self.first),
            last_trade_id: Some(&self.last),
            is_buyer_maker: Some(&self.ibm),
        }
    }
}

pub fn run(
    threshold: i64,
    trades: &Trades,
) -> Result<(BarColumns, RangeBarProcessor), KernelError> {
    let mut p = RangeBarProcessor::new(threshold, false)?;
    let mut out = BarColumns::default();
    p.process(&trades.columns(), &mut out)?;
    Ok((out, p))
}
