//! A verdict's metric writes (its verdict counter and the `knock_nfq_verdict_seconds`
//! histogram) as shared prometheus metrics (how the workers wrote them before) and as a worker's
//! own counters ([`knock_nfq::metrics::worker`]), on one thread and on two threads at once (two
//! queue workers). Run: `cargo bench --bench counters`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::Criterion;
use knock_nfq::engine::Verdict;
use knock_nfq::metrics::latency_buckets;
use knock_nfq::metrics::worker::{PacketFamilies, WorkerCounters};
use prometheus::{Histogram, HistogramOpts, IntCounter};

/// A verdict's time in the histogram's third bucket, as a fast verdict is.
const SECONDS: f64 = 0.000_03;

fn shared() -> (IntCounter, Histogram) {
    let opts = HistogramOpts::new("verdict_seconds", "h").buckets(latency_buckets());
    let counter = IntCounter::new("verdicts", "c").unwrap();
    (counter, Histogram::with_opts(opts).unwrap())
}

fn shared_write((counter, histogram): &(IntCounter, Histogram)) {
    counter.inc();
    histogram.observe(black_box(SECONDS));
}

fn own_write(counters: &mut WorkerCounters) {
    counters.verdict(Verdict::Drop);
    counters.verdict_seconds(black_box(SECONDS));
}

/// Runs `write` `iters` times on each of two threads at once; the slower thread's time.
fn on_two_threads<S: Send>(states: &mut [S; 2], iters: u64, write: fn(&mut S)) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|scope| {
        let threads: Vec<_> = states
            .iter_mut()
            .map(|state| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let started = Instant::now();
                    for _ in 0..iters {
                        write(state);
                    }
                    started.elapsed()
                })
            })
            .collect();
        let times = threads.into_iter().map(|t| t.join().unwrap());
        times.max().unwrap_or_default()
    })
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let metrics = shared();
    c.bench_function("verdict_counters/shared/1_thread", |b| {
        b.iter(|| shared_write(&metrics));
    });
    let families = PacketFamilies::new(&latency_buckets());
    let mut own = families.worker();
    c.bench_function("verdict_counters/per_worker/1_thread", |b| {
        b.iter(|| own_write(&mut own));
    });
    let mut both_shared = [&metrics, &metrics];
    c.bench_function("verdict_counters/shared/2_threads", |b| {
        b.iter_custom(|iters| on_two_threads(&mut both_shared, iters, |m| shared_write(m)));
    });
    let mut both_own = [families.worker(), families.worker()];
    c.bench_function("verdict_counters/per_worker/2_threads", |b| {
        b.iter_custom(|iters| on_two_threads(&mut both_own, iters, own_write));
    });
    c.final_summary();
}
