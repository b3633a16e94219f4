//! Test helpers: owned trade columns and a one-call runner.
#![allow(dead_code)]

use rangebar_core::{
    fixed::SCALE, BarColumns, Checkpoint, KernelError, RangeBarProcessor, TradeColumns,
};

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

    /// A random walk from 50 000 at 1.7e15 us: each move is (price step in units of 0.1, time step
    /// in ms, quantity in 1e-8 units, is_buyer_maker); equal timestamps are allowed.
    pub fn walk(moves: Vec<(i64, i64, i64, bool)>) -> Self {
        let mut t = Self::default();
        let mut price: i64 = 5_000_000_000_000;
        let mut ts: i64 = 1_700_000_000_000_000;
        for (dp, dt, qty, ibm) in moves {
            price = (price + dp * 10_000 * 1000).max(100_000_000);
            ts += dt * 1000;
            t.push(ts, price, qty, ibm);
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

    /// The first `n` trades, owned.
    pub fn head(&self, n: usize) -> Self {
        Self {
            ts: self.ts[..n].to_vec(),
            price: self.price[..n].to_vec(),
            qty: self.qty[..n].to_vec(),
            agg: self.agg[..n].to_vec(),
            first: self.first[..n].to_vec(),
            last: self.last[..n].to_vec(),
            ibm: self.ibm[..n].to_vec(),
        }
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

/// Feeds `trades` to `p` cut at `cuts` (ascending), through a byte checkpoint at every cut when
/// `via_checkpoint`; returns every bar closed.
pub fn process_in_pieces(
    p: &mut RangeBarProcessor,
    trades: &Trades,
    cuts: &[usize],
    via_checkpoint: bool,
) -> BarColumns {
    let mut out = BarColumns::default();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&trades.len())) {
        let end = end.clamp(start, trades.len());
        p.process(&trades.columns().slice(start, end), &mut out)
            .unwrap();
        if via_checkpoint {
            let cp = Checkpoint::from_bytes(&p.checkpoint().to_bytes()).unwrap();
            *p = RangeBarProcessor::from_checkpoint(&cp).unwrap();
        }
        start = end;
    }
    out
}
