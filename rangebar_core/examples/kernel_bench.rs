//! Kernel-alone throughput on in-memory columns: `cargo run --release -p rangebar_core --example
//! kernel_bench [rows] [repeat] [thresholds...] [--intra]` (`--intra`: each threshold also with the
//! intra group on). A BTC-like random walk (the same shape as
//! `benchmarks/bench_kernel.py`: $1 steps from {-2,-1,0,0,1,2}, 0-8 ms apart, 0-2 extra trade ids
//! per record, random sides), all seven columns, every feature. Prints best-of-N trades/s (wall
//! clock) and the best CPU time of the thread per 10 M trades (less sensitive to a loaded
//! machine), plus a memory-bandwidth floor (one pass summing all seven columns) for context.

use std::hint::black_box;
use std::time::Instant;

use rangebar_core::{BarColumns, ProcessorConfig, RangeBarProcessor, TradeColumns};

/// CPU time of the calling thread in seconds (`CLOCK_THREAD_CPUTIME_ID`; wall clock elsewhere).
#[cfg(target_os = "linux")]
fn thread_cpu_seconds() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec (64-bit Linux layout).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_seconds() -> f64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

struct Columns {
    ts: Vec<i64>,
    price: Vec<i64>,
    qty: Vec<i64>,
    agg: Vec<i64>,
    first: Vec<i64>,
    last: Vec<i64>,
    ibm: Vec<bool>,
}

fn make(n: usize) -> Columns {
    let mut rng = SplitMix(7);
    let steps = [-2_i64, -1, 0, 0, 1, 2];
    let mut c = Columns {
        ts: Vec::with_capacity(n),
        price: Vec::with_capacity(n),
        qty: Vec::with_capacity(n),
        agg: Vec::with_capacity(n),
        first: Vec::with_capacity(n),
        last: Vec::with_capacity(n),
        ibm: Vec::with_capacity(n),
    };
    let (mut price, mut ts, mut first) = (
        6_000_000_000_000_i64,
        1_723_075_200_000_000_i64,
        5_000_000_000_i64,
    );
    for i in 0..n {
        price += steps[rng.below(6) as usize] * 100_000_000;
        ts += rng.below(8_000) as i64;
        let fanout = rng.below(3) as i64;
        c.price.push(price);
        c.ts.push(ts);
        c.qty.push(1_000 + rng.below(200_000_000 - 1_000) as i64);
        c.agg.push(1_000_000_000 + i as i64);
        c.first.push(first);
        c.last.push(first + fanout);
        c.ibm.push(rng.next() & 1 == 1);
        first += fanout + 1;
    }
    c
}

fn main() {
    let (flags, args): (Vec<String>, Vec<String>) =
        std::env::args().skip(1).partition(|a| a.starts_with("--"));
    let groups: &[bool] = if flags.iter().any(|f| f == "--intra") {
        &[false, true]
    } else {
        &[false]
    };
    let rows: usize = args.first().map_or(10_000_000, |a| a.parse().unwrap());
    let repeat: usize = args.get(1).map_or(7, |a| a.parse().unwrap());
    let thresholds: Vec<i64> = if args.len() > 2 {
        args[2..].iter().map(|a| a.parse().unwrap()).collect()
    } else {
        vec![250, 25]
    };
    let c = make(rows);
    let cols = TradeColumns {
        timestamp_us: &c.ts,
        price: &c.price,
        quantity: &c.qty,
        agg_trade_id: Some(&c.agg),
        first_trade_id: Some(&c.first),
        last_trade_id: Some(&c.last),
        is_buyer_maker: Some(&c.ibm),
    };
    let mut floor = f64::INFINITY;
    for _ in 0..repeat {
        let start = Instant::now();
        let mut acc = 0_i64;
        for i in 0..rows {
            acc = acc
                .wrapping_add(c.ts[i] ^ c.price[i])
                .wrapping_add(c.qty[i] ^ c.agg[i])
                .wrapping_add(c.first[i] ^ c.last[i])
                .wrapping_add(i64::from(c.ibm[i]));
        }
        black_box(acc);
        floor = floor.min(start.elapsed().as_secs_f64());
    }
    println!(
        "{rows} rows: one pass over all 7 columns (bandwidth floor): {:.0} M rows/s",
        rows as f64 / floor / 1e6
    );
    for (&thr, &intra) in thresholds
        .iter()
        .flat_map(|t| groups.iter().map(move |g| (t, g)))
    {
        let (mut best, mut best_cpu) = (f64::INFINITY, f64::INFINITY);
        let mut bars = 0;
        for _ in 0..repeat {
            let config = ProcessorConfig::new(thr, false).unwrap();
            let mut p = RangeBarProcessor::with_config(config.with_intra_bar(intra));
            let mut out = BarColumns::default();
            let (start, cpu) = (Instant::now(), thread_cpu_seconds());
            bars = p.process(black_box(&cols), &mut out).unwrap();
            best = best.min(start.elapsed().as_secs_f64());
            best_cpu = best_cpu.min(thread_cpu_seconds() - cpu);
            black_box(&out);
        }
        println!(
            "{thr} dbps{}: {bars} bars, best of {repeat}: {:.4} s, {:.0} M trades/s; \
             cpu {:.4} s per 10 M trades ({:.0} M trades/s)",
            if intra { " intra" } else { "" },
            best,
            rows as f64 / best / 1e6,
            best_cpu * 1e7 / rows as f64,
            rows as f64 / best_cpu / 1e6
        );
    }
}
