//! The kernel's own NFQUEUE counters, read from `/proc/net/netfilter/nfnetlink_queue` at scrape
//! time (that file is per network namespace: the daemon's own).
//!
//! One row per bound queue: `queue_number peer_portid queue_total copy_mode copy_range
//! queue_dropped user_dropped id_sequence 1`. `queue_dropped` counts packets dropped because the
//! queue was full, `user_dropped` packets the daemon's socket could not take. The daemon's queues
//! fail closed, so both are packets dropped unjudged: the signs of overload, with
//! `knock_nfq_queue_enobufs_total`.

use std::fs;
use std::path::PathBuf;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// Where the kernel publishes the counters.
pub const PROC_PATH: &str = "/proc/net/netfilter/nfnetlink_queue";

/// One row of the proc file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: u16,
    /// Packets waiting for a verdict.
    pub total: u64,
    /// Dropped because the queue was full (`queue_dropped`).
    pub queue_full: u64,
    /// Dropped because the daemon's socket buffer was full (`user_dropped`).
    pub socket_full: u64,
}

/// Parses the proc file; rows it cannot read are skipped (the format is the kernel's, stable
/// since 2.6, but a scrape must never fail on it).
pub fn parse(text: &str) -> Vec<QueueStats> {
    text.lines().filter_map(parse_row).collect()
}

fn parse_row(line: &str) -> Option<QueueStats> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(QueueStats {
        queue: fields.first()?.parse().ok()?,
        total: number(2)?,
        queue_full: number(5)?,
        socket_full: number(6)?,
    })
}

/// Exports `knock_nfq_queue_kernel_drops_total{queue,reason}` and `knock_nfq_queue_length{queue}`
/// for the daemon's configured queues.
#[derive(Debug, Clone)]
pub struct KernelQueues {
    queues: Vec<u16>,
    path: PathBuf,
    drops: Desc,
    length: Desc,
}

impl KernelQueues {
    pub fn new(queues: &[u16]) -> KernelQueues {
        KernelQueues::reading(queues, PROC_PATH.into())
    }

    /// Reads `path` instead of the proc file (for tests).
    pub fn reading(queues: &[u16], path: PathBuf) -> KernelQueues {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            let labels = labels.iter().map(|l| (*l).to_owned()).collect();
            Desc::new(name.into(), help.into(), labels, Default::default()).expect("valid desc")
        };
        KernelQueues {
            queues: queues.to_vec(),
            path,
            drops: desc(
                "knock_nfq_queue_kernel_drops_total",
                "Packets the kernel dropped instead of queueing them to the daemon: queue_full \
                 (queue at its maximum length) or socket_full (the daemon's socket buffer). The \
                 queues fail closed: these packets were dropped unjudged.",
                &["queue", "reason"],
            ),
            length: desc(
                "knock_nfq_queue_length",
                "Packets waiting in the kernel's queue for the daemon's verdict.",
                &["queue"],
            ),
        }
    }

    /// The configured queues' rows; a queue not bound (absent from the file) has none.
    fn stats(&self) -> Vec<QueueStats> {
        let text = fs::read_to_string(&self.path).unwrap_or_default();
        parse(&text)
            .into_iter()
            .filter(|row| self.queues.contains(&row.queue))
            .collect()
    }
}

impl Collector for KernelQueues {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.drops, &self.length]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.stats();
        let mut drops = Vec::with_capacity(2 * stats.len());
        let mut lengths = Vec::with_capacity(stats.len());
        for row in &stats {
            let queue = row.queue.to_string();
            drops.push(counter(
                &[("queue", &queue), ("reason", "queue_full")],
                row.queue_full,
            ));
            drops.push(counter(
                &[("queue", &queue), ("reason", "socket_full")],
                row.socket_full,
            ));
            lengths.push(gauge(&[("queue", &queue)], row.total));
        }
        vec![
            family(&self.drops, MetricType::COUNTER, drops),
            family(&self.length, MetricType::GAUGE, lengths),
        ]
    }
}

pub(super) fn family(desc: &Desc, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

pub(super) fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect()
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^53
pub(super) fn counter(pairs: &[(&str, &str)], value: u64) -> Metric {
    let mut counter = Counter::default();
    counter.set_value(value as f64);
    let mut metric = Metric::from_label(labels(pairs));
    metric.set_counter(counter);
    metric
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^53
pub(super) fn gauge(pairs: &[(&str, &str)], value: u64) -> Metric {
    let mut gauge = Gauge::default();
    gauge.set_value(value as f64);
    let mut metric = Metric::from_label(labels(pairs));
    metric.set_gauge(gauge);
    metric
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "    0  12345     3 2 128     7     9      512 1\n\
                          \x20   5  23456     0 2 128     0     0       14 1\n";

    #[test]
    fn rows_map_total_and_both_drop_columns() {
        assert_eq!(
            parse(SAMPLE),
            [
                QueueStats {
                    queue: 0,
                    total: 3,
                    queue_full: 7,
                    socket_full: 9
                },
                QueueStats {
                    queue: 5,
                    total: 0,
                    queue_full: 0,
                    socket_full: 0
                },
            ]
        );
    }

    #[test]
    fn short_or_garbled_rows_are_skipped() {
        assert_eq!(parse("0 1 2\nx y z a b c d e 1\n\n"), []);
    }

    #[test]
    fn only_configured_queues_are_exported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nfnetlink_queue");
        fs::write(&path, SAMPLE).unwrap();
        let families = KernelQueues::reading(&[5], path).collect();
        let drops = &families[0];
        assert_eq!(drops.name(), "knock_nfq_queue_kernel_drops_total");
        assert_eq!(drops.get_metric().len(), 2);
        assert!(
            drops
                .get_metric()
                .iter()
                .all(|m| m.get_label()[0].value() == "5")
        );
        assert_eq!(families[1].get_metric().len(), 1);
    }

    #[test]
    fn a_missing_file_exports_nothing() {
        let families = KernelQueues::reading(&[0], "/nonexistent/nfq".into()).collect();
        assert!(families.iter().all(|f| f.get_metric().is_empty()));
    }
}
