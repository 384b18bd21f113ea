//! The families every queued packet writes, kept per worker and summed at scrape time:
//! `knock_nfq_verdicts_total{verdict}`, `knock_nfq_verdict_seconds`,
//! `knock_nfq_held_connections_total{result}`, `knock_nfq_packet_errors_total{reason}`,
//! `knock_nfq_evictions_total` and `knock_nfq_tracked_sources`.
//!
//! Each worker owns a [`WorkerCounters`]: its own cells, aligned so that no other worker's (nor
//! any other allocation) shares their cache lines, and written by that worker alone with a
//! relaxed load and store (no locked instruction). With several queues no cache line moves
//! between CPUs per packet. [`PacketFamilies`] is the registry's collector: it adds up every
//! worker's cells and exports them under the names, labels, help and types (a histogram with
//! the same buckets) that single shared metrics had.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Gauge, Histogram, Metric, MetricFamily, MetricType};

use super::kernel_queue::{counter, family};
use crate::engine::Verdict;
use crate::packet::PacketError;

/// Finite bucket bounds of `knock_nfq_verdict_seconds` (see `latency_buckets`).
const BOUNDS: usize = 13;

/// One worker's cells. The alignment is the cache-line pair that x86_64's adjacent-line
/// prefetcher fetches together (as crossbeam's `CachePadded`), so two workers' cells never share
/// a line.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Cells {
    /// Indexed by [`verdict_index`]: accept, drop.
    verdicts: [AtomicU64; 2],
    /// Held connections admitted, dropped.
    held: [AtomicU64; 2],
    /// In `PacketError::ALL`'s order.
    packet_errors: [AtomicU64; PacketError::ALL.len()],
    evictions: AtomicU64,
    /// This worker's share: the sum over workers is the gauge (one share may be negative).
    tracked_sources: AtomicI64,
    /// Not cumulative: `latency[i]` counts verdicts at most `BOUNDS[i]` and above the bound
    /// before; the last one those above every bound.
    latency: [AtomicU64; BOUNDS + 1],
    /// The bits of an `f64`: seconds, summed.
    latency_sum: AtomicU64,
}

/// Adds to a cell that only its owner writes: a plain load and store, which readers see whole.
fn bump(cell: &AtomicU64, by: u64) {
    cell.store(cell.load(Relaxed).wrapping_add(by), Relaxed);
}

fn verdict_index(verdict: Verdict) -> usize {
    match verdict {
        Verdict::Accept => 0,
        Verdict::Drop => 1,
    }
}

/// One worker's counters: not `Clone`, and every write takes `&mut self`, so each cell has one
/// writer.
#[derive(Debug)]
pub struct WorkerCounters {
    cells: Arc<Cells>,
    bounds: [f64; BOUNDS],
}

impl WorkerCounters {
    /// `knock_nfq_verdicts_total{verdict}`.
    pub fn verdict(&mut self, verdict: Verdict) {
        bump(&self.cells.verdicts[verdict_index(verdict)], 1);
    }

    /// `knock_nfq_verdict_seconds`: one verdict's time from receipt.
    pub fn verdict_seconds(&mut self, seconds: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BOUNDS);
        bump(&self.cells.latency[bucket], 1);
        let sum = &self.cells.latency_sum;
        sum.store(
            (f64::from_bits(sum.load(Relaxed)) + seconds).to_bits(),
            Relaxed,
        );
    }

    /// `knock_nfq_held_connections_total{result}`: admitted for `Accept`, dropped for `Drop`.
    pub fn held(&mut self, verdict: Verdict) {
        bump(&self.cells.held[verdict_index(verdict)], 1);
    }

    /// `knock_nfq_packet_errors_total{reason}`.
    pub fn packet_error(&mut self, error: PacketError) {
        let index = PacketError::ALL.iter().position(|e| *e == error);
        bump(&self.cells.packet_errors[index.unwrap_or(0)], 1);
    }

    /// `knock_nfq_evictions_total`.
    pub fn eviction(&mut self) {
        bump(&self.cells.evictions, 1);
    }

    /// `knock_nfq_tracked_sources`, by the change this worker made.
    pub fn tracked_sources(&mut self, delta: i64) {
        let cell = &self.cells.tracked_sources;
        cell.store(cell.load(Relaxed).wrapping_add(delta), Relaxed);
    }
}

/// The collector of every worker's cells; clones share them.
#[derive(Debug, Clone)]
pub struct PacketFamilies {
    /// Locked only to add a worker and to scrape.
    workers: Arc<Mutex<Vec<Arc<Cells>>>>,
    /// Changes to `knock_nfq_tracked_sources` made off the packet path (reloads, rotations,
    /// scan bans): rare, by several threads, so a shared `fetch_add`.
    tracked_elsewhere: Arc<AtomicI64>,
    bounds: [f64; BOUNDS],
    descs: Arc<Descs>,
}

#[derive(Debug)]
struct Descs {
    verdicts: Desc,
    verdict_seconds: Desc,
    held: Desc,
    packet_errors: Desc,
    evictions: Desc,
    tracked_sources: Desc,
}

fn desc(name: &str, help: &str, labels: &[&str]) -> Desc {
    let labels = labels.iter().map(|l| (*l).to_owned()).collect();
    Desc::new(name.into(), help.into(), labels, Default::default()).expect("valid desc")
}

impl Descs {
    fn new() -> Descs {
        Descs {
            verdicts: desc(
                "knock_nfq_verdicts_total",
                "Verdicts sent for queued packets.",
                &["verdict"],
            ),
            verdict_seconds: desc(
                "knock_nfq_verdict_seconds",
                "Time from receiving a packet to sending its verdict.",
                &[],
            ),
            held: desc(
                "knock_nfq_held_connections_total",
                "New connections to a protected service that the kernel queued because their \
                 source knocked in the last 5 s: admitted (the source held a grant by then) or \
                 dropped.",
                &["result"],
            ),
            packet_errors: desc(
                "knock_nfq_packet_errors_total",
                "Queued packets that could not be parsed as TCP or UDP (dropped: not judged, not \
                 let through).",
                &["reason"],
            ),
            evictions: desc(
                "knock_nfq_evictions_total",
                "Attempts evicted because max_sources was reached.",
                &[],
            ),
            tracked_sources: desc(
                "knock_nfq_tracked_sources",
                "Sources with a knock attempt in progress.",
                &[],
            ),
        }
    }
}

/// Every worker's cells added up.
#[derive(Debug, Default)]
struct Totals {
    verdicts: [u64; 2],
    held: [u64; 2],
    packet_errors: [u64; PacketError::ALL.len()],
    evictions: u64,
    tracked_sources: i64,
    latency: [u64; BOUNDS + 1],
    latency_sum: f64,
}

fn add(totals: &mut [u64], cells: &[AtomicU64]) {
    for (total, cell) in totals.iter_mut().zip(cells) {
        *total = total.wrapping_add(cell.load(Relaxed));
    }
}

impl Totals {
    fn add(&mut self, cells: &Cells) {
        add(&mut self.verdicts, &cells.verdicts);
        add(&mut self.held, &cells.held);
        add(&mut self.packet_errors, &cells.packet_errors);
        self.evictions = self.evictions.wrapping_add(cells.evictions.load(Relaxed));
        self.tracked_sources = self
            .tracked_sources
            .wrapping_add(cells.tracked_sources.load(Relaxed));
        add(&mut self.latency, &cells.latency);
        self.latency_sum += f64::from_bits(cells.latency_sum.load(Relaxed));
    }
}

impl PacketFamilies {
    /// No workers yet; `bounds` are `knock_nfq_verdict_seconds`'s buckets.
    pub fn new(bounds: &[f64]) -> PacketFamilies {
        PacketFamilies {
            workers: Arc::default(),
            tracked_elsewhere: Arc::default(),
            bounds: bounds.try_into().expect("13 latency buckets"),
            descs: Arc::new(Descs::new()),
        }
    }

    /// A new worker's counters, exported from now on (and after the worker ends).
    pub fn worker(&self) -> WorkerCounters {
        let cells = Arc::new(Cells::default());
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&cells));
        WorkerCounters {
            cells,
            bounds: self.bounds,
        }
    }

    /// `knock_nfq_tracked_sources` changed off the packet path (a reload, a rotation, a scan
    /// ban); any thread may call it.
    pub fn tracked_sources_elsewhere(&self, delta: i64) {
        self.tracked_elsewhere.fetch_add(delta, Relaxed);
    }

    fn totals(&self) -> Totals {
        let mut totals = Totals {
            tracked_sources: self.tracked_elsewhere.load(Relaxed),
            ..Totals::default()
        };
        for cells in self
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            totals.add(cells);
        }
        totals
    }

    fn histogram(&self, totals: &Totals) -> Metric {
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&totals.latency)
            .map(|(bound, count)| {
                cumulative += count;
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(cumulative);
                bucket
            })
            .collect();
        let mut histogram = Histogram::default();
        histogram.set_bucket(buckets);
        // From the buckets read, so `_count` always equals the `+Inf` bucket.
        histogram.set_sample_count(totals.latency.iter().sum());
        histogram.set_sample_sum(totals.latency_sum);
        let mut metric = Metric::default();
        metric.set_histogram(histogram);
        metric
    }
}

/// One counter per label value.
fn counters(label: &str, values: &[u64], names: &[&str]) -> Vec<Metric> {
    let each = names.iter().zip(values);
    each.map(|(name, value)| counter(&[(label, name)], *value))
        .collect()
}

#[allow(clippy::cast_precision_loss)] // far below 2^53
fn gauge(value: i64) -> Metric {
    let mut gauge = Gauge::default();
    gauge.set_value(value as f64);
    Metric::from_gauge(gauge)
}

impl Collector for PacketFamilies {
    fn desc(&self) -> Vec<&Desc> {
        let d = &*self.descs;
        vec![
            &d.verdicts,
            &d.verdict_seconds,
            &d.held,
            &d.packet_errors,
            &d.evictions,
            &d.tracked_sources,
        ]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (t, d) = (self.totals(), &*self.descs);
        let error_labels = PacketError::ALL.map(PacketError::label);
        vec![
            family(
                &d.verdicts,
                MetricType::COUNTER,
                counters("verdict", &t.verdicts, &["accept", "drop"]),
            ),
            family(
                &d.verdict_seconds,
                MetricType::HISTOGRAM,
                vec![self.histogram(&t)],
            ),
            family(
                &d.held,
                MetricType::COUNTER,
                counters("result", &t.held, &["admitted", "dropped"]),
            ),
            family(
                &d.packet_errors,
                MetricType::COUNTER,
                counters("reason", &t.packet_errors, &error_labels),
            ),
            family(
                &d.evictions,
                MetricType::COUNTER,
                vec![counter(&[], t.evictions)],
            ),
            family(
                &d.tracked_sources,
                MetricType::GAUGE,
                vec![gauge(t.tracked_sources)],
            ),
        ]
    }
}

#[cfg(test)]
mod tests;
