//! The price-path features of the intra group: max drawdown D and run-up U of nav_k = p_k / p_1,
//! and the bull/bear epoch state machines (hurdles D and U).
//!
//! Both follow the float definitions exactly (bit for bit) while touching floats only
//! where a state can change: nav is monotone in the integer price, so a float comparison of navs
//! can only succeed where the integer prices compare the same way, and a float expression
//! monotone in nav takes its extreme at the extreme price. Between such events the state
//! machines repeat their last step, which is added in bulk.

use crate::fixed;

/// nav of a fixed-point price: `fl(fl(p / 1e8) / fl(p_1 / 1e8))`, as the definition computes it.
#[derive(Clone, Copy)]
pub(super) struct Nav {
    open: f64,
}

impl Nav {
    pub(super) fn new(first_price: i64) -> Self {
        Self {
            open: fixed::to_f64(first_price),
        }
    }

    #[inline]
    fn of(self, p: i64) -> f64 {
        fixed::to_f64(p) / self.open
    }
}

/// `(D, U)`: `D = max_k (1 - nav_k / max_{j<=k} nav_j)`, `U = max_k (1 - min_{j<=k} nav_j / nav_k)`.
///
/// While the running peak stays the same float, `1 - nav / peak` is largest at the lowest price
/// since the peak was set; likewise `1 - trough / nav` at the highest price since the trough.
pub(super) fn drawdown_runup(price: &[i64], nav: Nav) -> (f64, f64) {
    let first = price[0];
    let (mut peak_p, mut peak, mut lowest) = (first, 1.0, first);
    let (mut trough_p, mut trough, mut highest) = (first, 1.0, first);
    let (mut drawdown, mut runup) = (0.0_f64, 0.0_f64);
    for &p in &price[1..] {
        if p > peak_p {
            drawdown = drawdown.max(1.0 - nav.of(lowest) / peak);
            (peak_p, peak, lowest) = (p, nav.of(p), p);
        } else {
            lowest = lowest.min(p);
        }
        if p < trough_p {
            runup = runup.max(1.0 - trough / nav.of(highest));
            (trough_p, trough, highest) = (p, nav.of(p), p);
        } else {
            highest = highest.max(p);
        }
    }
    drawdown = drawdown.max(1.0 - nav.of(lowest) / peak);
    runup = runup.max(1.0 - trough / nav.of(highest));
    (drawdown, runup)
}

/// One side's epochs: their count E, the sum of the gains G_k, and the intervals between epoch
/// positions (0-based, preceded by 0) as their sum (the last position) and sum of squares.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Epochs {
    count: u64,
    gain_sum: f64,
    last: u64,
    squares: u128,
}

impl Epochs {
    /// sigmoid(10 (E / n - 0.5)).
    pub(super) fn density(&self, n: usize) -> f64 {
        sigmoid(10.0 * (self.count as f64 / n as f64 - 0.5))
    }

    /// tanh(5 sum_k G_k).
    pub(super) fn excess_gain(&self) -> f64 {
        (5.0 * self.gain_sum).tanh()
    }

    /// sigmoid(4 (cv - 0.5)) with cv = std / mean of the intervals (population std; 0 without
    /// epochs). With E intervals summing to S with squares Q, cv = sqrt(E Q - S^2) / S, whose
    /// radicand is an exact integer.
    pub(super) fn cv(&self) -> f64 {
        let cv = if self.count == 0 {
            0.0
        } else {
            let (e, s) = (u128::from(self.count), u128::from(self.last));
            // E Q >= S^2 (Cauchy-Schwarz); E Q <= n^3, far below 2^128.
            ((e * self.squares - s * s) as f64).sqrt() / s as f64
        };
        sigmoid(4.0 * (cv - 0.5))
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One side's state machine. Bull (`UP`): `far` is the candidate crest (new highs give gains
/// from the crest `anchor`), `near` the candidate nadir (new lows give losses). Bear: mirrored,
/// `far` the candidate trough, `near` the candidate peak. Each candidate keeps its price too.
struct Side<const UP: bool> {
    h: f64,
    gain: f64,
    loss: f64,
    anchor: f64,
    far: (f64, i64),
    near: (f64, i64),
    epochs: Epochs,
}

impl<const UP: bool> Side<UP> {
    fn new(h: f64, first_price: i64) -> Self {
        Self {
            h,
            gain: 0.0,
            loss: 0.0,
            anchor: 1.0,
            far: (1.0, first_price),
            near: (1.0, first_price),
            epochs: Epochs::default(),
        }
    }

    /// `(hi, lo)`: a step at a price within `lo..=hi` changes nothing.
    #[inline]
    fn quiet_range(&self) -> (i64, i64) {
        if UP {
            (self.far.1, self.near.1)
        } else {
            (self.near.1, self.far.1)
        }
    }

    /// Steps `k..k + count` that change nothing: each records the current gain and loss.
    #[inline]
    fn repeat(&mut self, k: usize, count: usize) {
        if count == 0 {
            return;
        }
        let e = &mut self.epochs;
        e.gain_sum += self.gain * count as f64;
        if self.gain > self.loss && self.gain > self.h {
            let first = k as u64 - e.last;
            e.count += count as u64;
            e.squares += u128::from(first) * u128::from(first) + (count as u128 - 1);
            e.last = (k + count - 1) as u64;
        }
    }

    /// Step `k` at price `p` (nav `x`), the previous price being `before`: the definition.
    #[inline]
    fn step(&mut self, k: usize, p: i64, x: f64, before: i64, nav: Nav) {
        let (far_beyond, near_beyond) = if UP {
            (
                p > self.far.1 && x > self.far.0,
                p < self.near.1 && x < self.near.0,
            )
        } else {
            (
                p < self.far.1 && x < self.far.0,
                p > self.near.1 && x > self.near.0,
            )
        };
        if far_beyond {
            self.gain = if UP {
                x / self.anchor - 1.0
            } else {
                self.anchor / x - 1.0
            };
            self.far = (x, p);
        }
        if near_beyond {
            self.loss = if UP {
                1.0 - x / self.anchor
            } else {
                1.0 - self.anchor / x
            };
            self.near = (x, p);
        }
        self.repeat(k, 1);
        let moved = if UP {
            self.far.0 >= self.anchor
        } else {
            self.far.0 <= self.anchor
        };
        if self.gain > self.loss.abs() && self.gain > self.h && moved {
            self.anchor = self.far.0;
            self.near = (nav.of(before), before);
            self.gain = 0.0;
            self.loss = 0.0;
        }
    }
}

/// The bull side (hurdle `d`) and the bear side (hurdle `u`) over the prices.
pub(super) fn epochs(price: &[i64], nav: Nav, d: f64, u: f64) -> (Epochs, Epochs) {
    let n = price.len();
    let mut bull = Side::<true>::new(d, price[0]);
    let mut bear = Side::<false>::new(u, price[0]);
    let mut k = 1;
    while k < n {
        let ((bull_hi, bull_lo), (bear_hi, bear_lo)) = (bull.quiet_range(), bear.quiet_range());
        let (hi, lo) = (bull_hi.min(bear_hi), bull_lo.max(bear_lo));
        let quiet = price[k..].iter().position(|&p| p > hi || p < lo);
        let event = quiet.map_or(n, |q| k + q);
        bull.repeat(k, event - k);
        bear.repeat(k, event - k);
        if event == n {
            break;
        }
        let p = price[event];
        let x = nav.of(p);
        bull.step(event, p, x, price[event - 1], nav);
        bear.step(event, p, x, price[event - 1], nav);
        k = event + 1;
    }
    (bull.epochs, bear.epochs)
}
