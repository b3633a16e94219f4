//! Lookback features (opt-in): per bar, statistics of its window W = the N most recent trades
//! (agg records) with timestamp strictly before the bar's open time. W never contains a trade at
//! or after the open, so the features cannot look ahead. The rolling state is part of the
//! checkpoint, so split invariance holds with the group on.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::fixed;

/// Largest accepted window (trades).
pub const LOOKBACK_TRADES_MAX: u32 = 1_000_000;
/// Fewest trades for burstiness and skewness, kurtosis, and the Hurst exponent.
const MIN_BURSTINESS: usize = 3;
const MIN_KURTOSIS: usize = 4;
const MIN_HURST: usize = 64;

/// One trade as the window keeps it (fixed point, microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowTrade {
    pub timestamp_us: i64,
    pub price: i64,
    pub quantity: i64,
    pub is_buyer_maker: bool,
}

/// Rolling state: the last trades seen, split at the latest timestamp, and the window of the bar
/// in progress (fixed when it opened).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookback {
    /// N, the window length.
    pub capacity: u32,
    /// The most recent trades (at most N) with timestamp before that of `latest`.
    pub before: VecDeque<WindowTrade>,
    /// The most recent trades (at most N) at the latest timestamp seen.
    pub latest: VecDeque<WindowTrade>,
    /// W of the bar in progress.
    pub bar_window: Vec<WindowTrade>,
}

fn push_capped(q: &mut VecDeque<WindowTrade>, t: WindowTrade, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(t);
}

impl Lookback {
    /// An empty state with window length `capacity` (>= 1).
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    /// Record a trade (after [`Lookback::open_bar`] when the trade opens a bar).
    #[inline]
    pub(crate) fn push(&mut self, t: WindowTrade) {
        let cap = self.capacity as usize;
        if self
            .latest
            .back()
            .is_some_and(|l| t.timestamp_us > l.timestamp_us)
        {
            while let Some(x) = self.latest.pop_front() {
                push_capped(&mut self.before, x, cap);
            }
        }
        push_capped(&mut self.latest, t, cap);
    }

    /// Fix W for a bar opening at `open_time`: the last N trades seen with timestamp < open_time.
    pub(crate) fn open_bar(&mut self, open_time: i64) {
        let cap = self.capacity as usize;
        let later = self
            .latest
            .back()
            .is_some_and(|l| l.timestamp_us < open_time);
        self.bar_window.clear();
        if later {
            let skip = (self.before.len() + self.latest.len()).saturating_sub(cap);
            self.bar_window
                .extend(self.before.iter().chain(&self.latest).skip(skip));
        } else {
            self.bar_window.extend(self.before.iter());
        }
    }

    /// Internal consistency (for checkpoints).
    pub(crate) fn is_consistent(&self) -> bool {
        let cap = self.capacity as usize;
        fn sorted<'a>(mut w: impl Iterator<Item = &'a WindowTrade>) -> bool {
            let mut prev = i64::MIN;
            w.all(|t| {
                let ok = t.timestamp_us >= prev && t.price > 0 && t.quantity >= 0;
                prev = t.timestamp_us;
                ok
            })
        }
        (1..=LOOKBACK_TRADES_MAX).contains(&self.capacity)
            && self.before.len() <= cap
            && self.latest.len() <= cap
            && self.bar_window.len() <= cap
            && sorted(self.before.iter().chain(&self.latest))
            && sorted(self.bar_window.iter())
            && self
                .latest
                .iter()
                .all(|t| Some(t.timestamp_us) == self.latest.back().map(|l| l.timestamp_us))
            && self
                .before
                .back()
                .zip(self.latest.back())
                .is_none_or(|(b, l)| b.timestamp_us < l.timestamp_us)
    }
}

/// The lookback columns of one bar; `None` where a formula is undefined (never NaN or inf).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LookbackFeatures {
    pub trade_count: i64,
    pub duration_us: Option<i64>,
    pub ofi: Option<f64>,
    pub count_imbalance: Option<f64>,
    pub intensity: Option<f64>,
    pub vwap: Option<f64>,
    pub vwap_position: Option<f64>,
    pub price_range: Option<f64>,
    pub kyle_lambda: Option<f64>,
    pub kaufman_er: Option<f64>,
    pub garman_klass_vol: Option<f64>,
    pub burstiness: Option<f64>,
    pub volume_skew: Option<f64>,
    pub volume_kurt: Option<f64>,
    pub hurst: Option<f64>,
    pub permutation_entropy: Option<f64>,
}

pub(crate) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

pub(crate) fn ratio(num: f64, den: f64) -> Option<f64> {
    if den == 0.0 {
        None
    } else {
        finite(num / den)
    }
}

impl LookbackFeatures {
    /// The features of window `w` (oldest first).
    pub fn compute(w: &[WindowTrade]) -> Self {
        let n = w.len();
        let (Some(first), Some(last)) = (w.first(), w.last()) else {
            return Self::default();
        };
        let (mut buy_vol, mut sell_vol, mut buys, mut turnover) = (0_i128, 0_i128, 0_i64, 0_i128);
        let (mut high, mut low, mut path) = (first.price, first.price, 0_i128);
        let mut prev = first.price;
        for t in w {
            let q = i128::from(t.quantity);
            if t.is_buyer_maker {
                sell_vol += q;
            } else {
                buy_vol += q;
                buys += 1;
            }
            turnover += i128::from(t.price) * q;
            high = high.max(t.price);
            low = low.min(t.price);
            path += i128::from((t.price - prev).abs());
            prev = t.price;
        }
        let nf = n as f64;
        let (o, c, h, l) = (
            fixed::to_f64(first.price),
            fixed::to_f64(last.price),
            fixed::to_f64(high),
            fixed::to_f64(low),
        );
        let volume = buy_vol + sell_vol;
        let ofi = ratio(
            fixed::wide_to_f64(buy_vol - sell_vol),
            fixed::wide_to_f64(volume),
        );
        let duration_us = last.timestamp_us - first.timestamp_us;
        let (skew, kurt) = if n >= MIN_BURSTINESS {
            let (skew, kurt) = moments(w);
            (skew, if n >= MIN_KURTOSIS { kurt } else { None })
        } else {
            (None, None)
        };
        let vwap = ratio(turnover as f64, volume as f64).map(|v| v / fixed::SCALE as f64);
        Self {
            trade_count: n as i64,
            duration_us: Some(duration_us),
            ofi,
            count_imbalance: finite((2 * buys - n as i64) as f64 / nf),
            intensity: ratio(nf, duration_us as f64 / 1e6),
            vwap,
            vwap_position: vwap.and_then(|v| ratio(v - l, h - l)),
            price_range: ratio(h - l, o),
            kyle_lambda: ofi.and_then(|f| ratio((c - o) / o, f)),
            kaufman_er: ratio((last.price - first.price).abs() as f64, path as f64),
            garman_klass_vol: finite(
                (0.5 * (h / l).ln().powi(2) - (2.0 * 2f64.ln() - 1.0) * (c / o).ln().powi(2))
                    .max(0.0)
                    .sqrt(),
            ),
            burstiness: (n >= MIN_BURSTINESS).then(|| burstiness(w)).flatten(),
            volume_skew: skew,
            volume_kurt: kurt,
            hurst: (n >= MIN_HURST).then(|| hurst(w)).flatten(),
            permutation_entropy: (n >= 3).then(|| permutation_entropy(w)).flatten(),
        }
    }
}

/// Population mean and standard deviation.
fn mean_sd(x: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = x.clone().count() as f64;
    let mean = x.clone().sum::<f64>() / n;
    let var = x.map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// `(sd - mean) / (sd + mean)` of the inter-arrival times.
fn burstiness(w: &[WindowTrade]) -> Option<f64> {
    let gaps = w
        .windows(2)
        .map(|p| (p[1].timestamp_us - p[0].timestamp_us) as f64);
    let (mean, sd) = mean_sd(gaps);
    ratio(sd - mean, sd + mean)
}

/// Skewness `m3 / m2^1.5` and excess kurtosis `m4 / m2^2 - 3` of the quantities.
fn moments(w: &[WindowTrade]) -> (Option<f64>, Option<f64>) {
    let q = || w.iter().map(|t| fixed::to_f64(t.quantity));
    let n = w.len() as f64;
    let mean = q().sum::<f64>() / n;
    let m = |k: i32| q().map(|v| (v - mean).powi(k)).sum::<f64>() / n;
    let m2 = m(2);
    if m2 == 0.0 {
        return (None, None);
    }
    (finite(m(3) / m2.powf(1.5)), finite(m(4) / (m2 * m2) - 3.0))
}

/// Slope and intercept of the least-squares line, as antropy's `_linear_regression` computes them
/// (its denominator carries `+ 1e-9`).
pub(crate) fn linear_regression(x: &[f64], y: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let (mut sx2, mut sx, mut sy, mut sxy) = (0.0, 0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        sx2 += a * a;
        sx += a;
        sxy += a * b;
        sy += b;
    }
    let slope = (n * sxy - sx * sy) / (n * sx2 - sx * sx + 1e-9);
    (slope, sy / n - slope * (sx / n))
}

/// Window sizes `floor(min_n * factor^i)` (antropy's `_log_n`).
pub(crate) fn log_n(min_n: usize, max_n: f64, factor: f64) -> Vec<usize> {
    let max_i = ((max_n / min_n as f64).ln() / factor.ln()).floor();
    let mut ns = vec![min_n];
    let mut i = 0.0;
    while i <= max_i {
        let n = (min_n as f64 * factor.powf(i)).floor() as usize;
        if n > *ns.last().expect("ns starts non-empty") {
            ns.push(n);
        }
        i += 1.0;
    }
    ns
}

/// The DFA exponent of the window's log returns, as `antropy.detrended_fluctuation` computes it.
fn hurst(w: &[WindowTrade]) -> Option<f64> {
    let x: Vec<f64> = w
        .windows(2)
        .map(|p| (fixed::to_f64(p[1].price) / fixed::to_f64(p[0].price)).ln())
        .collect();
    dfa(&x)
}

/// The DFA exponent of `x` (antropy's `detrended_fluctuation`; also the intra group's Hurst).
pub(crate) fn dfa(x: &[f64]) -> Option<f64> {
    let n_total = x.len();
    let mean = x.iter().sum::<f64>() / n_total as f64;
    let walk: Vec<f64> = x
        .iter()
        .scan(0.0, |acc, v| {
            *acc += v - mean;
            Some(*acc)
        })
        .collect();
    let (mut log_n_kept, mut log_f) = (Vec::new(), Vec::new());
    let (mut sxy, mut sy, mut ss) = (Vec::new(), Vec::new(), Vec::new());
    let mut line = Vec::new();
    for n in log_n(4, 0.1 * n_total as f64, 1.2) {
        let segments = n_total / n;
        let nf = n as f64;
        // Per segment, antropy's regression of the walk on 0..n and the squared residuals around
        // it. Every per-segment sum runs over j in order as antropy's does (identical results);
        // the segments advance in lockstep only so that their independent sums overlap.
        let (mut sx2, mut sx) = (0.0, 0.0);
        for j in 0..n {
            sx2 += (j as f64) * (j as f64);
            sx += j as f64;
        }
        sxy.clear();
        sxy.resize(segments, 0.0);
        sy.clear();
        sy.resize(segments, 0.0);
        for j in 0..n {
            let r = j as f64;
            for s in 0..segments {
                let v = walk[s * n + j];
                sxy[s] += r * v;
                sy[s] += v;
            }
        }
        line.clear();
        line.extend((0..segments).map(|s| {
            let slope = (nf * sxy[s] - sx * sy[s]) / (nf * sx2 - sx * sx + 1e-9);
            (slope, sy[s] / nf - slope * (sx / nf))
        }));
        ss.clear();
        ss.resize(segments, 0.0);
        for j in 0..n {
            let r = j as f64;
            for s in 0..segments {
                let (slope, intercept) = line[s];
                ss[s] += (walk[s * n + j] - (intercept + slope * r)).powi(2);
            }
        }
        // Root of the mean (over segments) mean squared residual.
        let total: f64 = ss.iter().fold(0.0, |acc, v| acc + v / nf);
        let fluctuation = (total / segments as f64).sqrt();
        if fluctuation != 0.0 {
            log_n_kept.push(nf.ln());
            log_f.push(fluctuation.ln());
        }
    }
    if log_f.is_empty() {
        return None;
    }
    finite(linear_regression(&log_n_kept, &log_f).0)
}

/// Normalised permutation entropy of the window's prices (see [`permutation_entropy_of`]).
fn permutation_entropy(w: &[WindowTrade]) -> Option<f64> {
    permutation_entropy_of(w.len(), |i| w[i].price)
}

/// Normalised permutation entropy of the `n >= 3` prices `price(0..n)`, order 3, delay 1
/// (`antropy.perm_entropy`; ties ordered by position, as its stable sort of three values does).
#[inline]
pub(crate) fn permutation_entropy_of(n: usize, price: impl Fn(usize) -> i64) -> Option<f64> {
    // The ordinal pattern from the three pairwise comparisons (`<=`: ties by position), indexed in
    // the order of antropy's pattern hashes (5, 7, 11, 15, 19, 21); keys 0b010 and 0b101 cannot occur.
    const ORDINAL: [usize; 8] = [0, 1, 0, 4, 2, 0, 3, 5];
    // Counted in eight 8-bit lanes of one register (no store-to-load chain on a hot bin),
    // emptied into `by_key` every 255 windows.
    let mut by_key = [0_u64; 8];
    let mut i = 2;
    while i < n {
        let end = n.min(i + 255);
        let mut lanes = 0_u64;
        for j in i..end {
            let (a, b, c) = (price(j - 2), price(j - 1), price(j));
            let key = (u32::from(a <= b) << 2) | (u32::from(a <= c) << 1) | u32::from(b <= c);
            lanes += 1 << (8 * key);
        }
        for (key, count) in by_key.iter_mut().enumerate() {
            *count += (lanes >> (8 * key)) & 0xff;
        }
        i = end;
    }
    let mut counts = [0_u64; 6];
    for (key, &count) in by_key.iter().enumerate() {
        counts[ORDINAL[key]] += count;
    }
    let total = (n - 2) as f64;
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
