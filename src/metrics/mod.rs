//! Prometheus metrics. Names and labels are a contract that dashboards and alerts rely on
//! (listed in README, Deploy).
//!
//! The families every queued packet writes (verdicts and their latency, held connections,
//! parse errors, evictions, tracked sources) are kept per worker and summed at scrape time
//! ([`worker`]): a packet writes only its worker's own cache lines. Other labelled children are
//! resolved once (per door at start and on reload) so that the packet path only increments
//! atomics: no lock, no allocation, no label lookup. The kernel's queue counters
//! ([`kernel_queue`]) and the active grants ([`active_grants`]), which change only on grants,
//! are also computed at scrape time.

pub mod active_grants;
pub mod banned_sources;
pub mod kernel_queue;
pub mod worker;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::config::{Config, Door, SequenceOrigin};
use crate::engine::KnockResult;
use crate::spa::Rejection;
pub use active_grants::ActiveGrants;
pub use banned_sources::BannedSources;
use kernel_queue::KernelQueues;
pub use worker::PacketFamilies;

/// Every metric the daemon exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Verdicts, `knock_nfq_verdict_seconds`, held connections, packet errors, evictions and
    /// tracked sources: each worker takes its own counters from here.
    pub packet: PacketFamilies,
    knocks: IntCounterVec,
    grants: IntCounterVec,
    refused: IntCounterVec,
    duplicates: IntCounterVec,
    spa_rejected: IntCounterVec,
    one_time_left: prometheus::IntGaugeVec,
    pub nft_errors: IntCounter,
    pub nft_batch_seconds: Histogram,
    pub queue_enobufs: IntCounter,
    pub queue_errors: IntCounter,
    pub reload_success: IntCounter,
    pub reload_failure: IntCounter,
    pub last_reload_success: prometheus::Gauge,
    pub metrics_connections_refused: IntCounter,
    /// `knock_nfq_bans_total{reason="trap_port"}`.
    pub bans_trap_port: IntCounter,
    /// The belief behind `knock_nfq_active_grants`, fed by the workers after each commit.
    pub active_grants: ActiveGrants,
    /// `knock_nfq_bans_total{reason="scan"}`.
    pub bans_scan: IntCounter,
    /// `knock_nfq_scan_reports_lost_total`: failed reads of the ruleset's scan reports.
    pub scan_reports_lost: IntCounter,
    /// The belief behind `knock_nfq_banned_sources`, fed by the workers after each ban.
    pub banned_sources: BannedSources,
    /// `[cluster]` only (registered only then): see [`ClusterMetrics`].
    pub cluster: ClusterMetrics,
}

/// The fleet's metrics; registered only when `[cluster]` is configured.
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    /// `knock_nfq_cluster_up`: 1 while etcd answers and the watch runs.
    pub up: IntGauge,
    /// `knock_nfq_cluster_publish_errors_total`: failed publications (each retried).
    pub publish_errors: IntCounter,
    /// `knock_nfq_cluster_received_total{action}`: other gateways' grants carried out here.
    pub received_open: IntCounter,
    pub received_close: IntCounter,
    /// `action="refused"`: their target is opened by no door of this gateway.
    pub received_refused: IntCounter,
}

impl ClusterMetrics {
    fn new(registry: &Registry, config: &Config) -> ClusterMetrics {
        let unregistered = Registry::new();
        let registry = match config.cluster {
            Some(_) => registry,
            None => &unregistered,
        };
        let up = IntGauge::new(
            "knock_nfq_cluster_up",
            "1 while the etcd cluster answers and its grants are watched; 0 while this gateway \
             works alone (its own knocks still open it).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(up.clone()))
            .expect("unique metric name");
        let received = counter_vec(
            registry,
            "knock_nfq_cluster_received_total",
            "Grants (open) and revokes (close) of other gateways carried out in this one's sets; \
             refused: grants of a target no door of this gateway opens.",
            &["action"],
        );
        ClusterMetrics {
            up,
            publish_errors: counter(
                registry,
                "knock_nfq_cluster_publish_errors_total",
                "Publications of a grant or revoke to etcd that failed (retried with backoff \
                 while the grant lasts).",
            ),
            received_open: received.with_label_values(&["open"]),
            received_close: received.with_label_values(&["close"]),
            received_refused: received.with_label_values(&["refused"]),
        }
    }
}

/// One door's counters, resolved up front.
#[derive(Debug, Clone)]
pub struct DoorMetrics {
    advance: IntCounter,
    complete: IntCounter,
    reset: IntCounter,
    expired: IntCounter,
    duplicate: IntCounter,
    pub grants: IntCounter,
    pub refused: Refused,
}

/// `knock_nfq_grants_refused_total{door,reason}` of one door.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The door's `max_grants_per_second` was spent.
    pub rate_limited: IntCounter,
    /// The kernel's grant set is at its `size`.
    pub set_full: IntCounter,
    /// nftables refused the batch for another reason.
    pub nft_error: IntCounter,
    /// TOTP and one-time doors only: the step or line was used already.
    pub used: Option<IntCounter>,
    /// TOTP and one-time doors only: the use could not be recorded durably.
    pub not_persisted: Option<IntCounter>,
}

impl DoorMetrics {
    pub fn knock(&self, result: KnockResult) {
        match result {
            KnockResult::Advance => self.advance.inc(),
            KnockResult::Complete => self.complete.inc(),
            KnockResult::Reset => self.reset.inc(),
            KnockResult::Expired => self.expired.inc(),
            KnockResult::Duplicate => self.duplicate.inc(),
        }
    }
}

/// Latency buckets from 10 µs to 1 s: a verdict or a netlink batch normally takes microseconds.
pub fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.000_01, 2.5, 13).expect("valid bucket layout")
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(latency_buckets()))
        .expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

impl Metrics {
    /// Every metric, with the kernel counters of `config`'s queues and an active-grants book for
    /// its doors, bounded like the source table (`max_sources`).
    pub fn new(config: &Config) -> Metrics {
        let registry = Registry::new();
        registry
            .register(Box::new(KernelQueues::new(&config.daemon.queues)))
            .expect("unique metric name");
        let active_grants = ActiveGrants::new(&config.doors, config.daemon.max_sources);
        registry
            .register(Box::new(active_grants.clone()))
            .expect("unique metric name");
        let banned_sources = BannedSources::new();
        registry
            .register(Box::new(banned_sources.clone()))
            .expect("unique metric name");
        let bans = counter_vec(
            &registry,
            "knock_nfq_bans_total",
            "Sources banned in the kernel's blocked sets, by reason (trap_port: it touched a \
             [blocklist] trap port; scan: it probed [blocklist] scan's distinct_ports ports \
             within its window).",
            &["reason"],
        );
        let packet = PacketFamilies::new(&latency_buckets());
        registry
            .register(Box::new(packet.clone()))
            .expect("unique metric name");
        let reloads = counter_vec(
            &registry,
            "knock_nfq_reloads_total",
            "Configuration reloads (SIGHUP).",
            &["result"],
        );
        let last_reload_success = prometheus::Gauge::new(
            "knock_nfq_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (start or reload).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(last_reload_success.clone()))
            .expect("unique metric name");
        Metrics {
            reload_success: reloads.with_label_values(&["success"]),
            reload_failure: reloads.with_label_values(&["failure"]),
            last_reload_success,
            packet,
            knocks: counter_vec(
                &registry,
                "knock_nfq_knocks_total",
                "Knock attempts by door and result.",
                &["door", "result"],
            ),
            grants: counter_vec(
                &registry,
                "knock_nfq_grants_total",
                "Grants committed to nftables.",
                &["door", "action"],
            ),
            refused: counter_vec(
                &registry,
                "knock_nfq_grants_refused_total",
                "Completed sequences whose grant was not made: rate_limited (the door's \
                 max_grants_per_second), set_full (the grant set is at its size), nft_error; \
                 TOTP and one-time doors: used (the step or line granted before), \
                 not_persisted (the use could not be recorded).",
                &["door", "reason"],
            ),
            duplicates: counter_vec(
                &registry,
                "knock_nfq_duplicate_knocks_total",
                "Repeats of a source's last knock (SYN retransmits), ignored.",
                &["door"],
            ),
            spa_rejected: counter_vec(
                &registry,
                "knock_nfq_spa_rejected_total",
                "SPA datagrams that opened nothing, by reason (door is empty when the datagram \
                 named no SPA door of its port).",
                &["door", "reason"],
            ),
            one_time_left: {
                let opts = Opts::new(
                    "knock_nfq_one_time_sequences_left",
                    "Unused lines of each one-time door's sequence file; at 0 the door is \
                     disabled until lines are added and the daemon reloaded.",
                );
                let metric = prometheus::IntGaugeVec::new(opts, &["door"]).expect("valid metric");
                registry
                    .register(Box::new(metric.clone()))
                    .expect("unique metric name");
                metric
            },
            nft_errors: counter(
                &registry,
                "knock_nfq_nft_errors_total",
                "nftables batches that failed.",
            ),
            nft_batch_seconds: histogram(
                &registry,
                "knock_nfq_nft_batch_seconds",
                "Time to commit one grant batch.",
            ),
            queue_enobufs: counter(
                &registry,
                "knock_nfq_queue_enobufs_total",
                "Times the kernel reported the queue socket's buffer overrun (packets lost).",
            ),
            queue_errors: counter(
                &registry,
                "knock_nfq_queue_errors_total",
                "Failed receives or verdicts on a queue.",
            ),
            metrics_connections_refused: counter(
                &registry,
                "knock_nfq_metrics_connections_refused_total",
                "Connections to this endpoint closed unanswered because the most it serves at \
                 once were open.",
            ),
            bans_trap_port: bans.with_label_values(&["trap_port"]),
            bans_scan: bans.with_label_values(&["scan"]),
            scan_reports_lost: counter(
                &registry,
                "knock_nfq_scan_reports_lost_total",
                "Failed reads of the ruleset's scan reports (NFLOG), e.g. a socket overrun: \
                 lost reports can only miss a scan ban.",
            ),
            active_grants,
            banned_sources,
            cluster: ClusterMetrics::new(&registry, config),
            registry,
        }
    }

    /// `knock_nfq_spa_rejected_total{door,reason}`; `door` is `None` for a datagram that named
    /// no door of its port. Only the SPA path uses it, so the label lookup is no hot-path cost.
    pub fn spa_rejected(&self, door: Option<&str>, reason: Rejection) -> IntCounter {
        self.spa_rejected
            .with_label_values(&[door.unwrap_or(""), reason.label()])
    }

    /// `knock_nfq_one_time_sequences_left{door}`.
    pub fn one_time_left(&self, door: &str) -> prometheus::IntGauge {
        self.one_time_left.with_label_values(&[door])
    }

    /// Resolves one door's counters (creating the series at zero, so dashboards see them).
    pub fn door(&self, door: &Door) -> DoorMetrics {
        if door.spa.is_some() {
            for reason in Rejection::ALL {
                self.spa_rejected(Some(&door.name), reason);
            }
            for reason in [Rejection::Malformed, Rejection::UnknownDoor] {
                self.spa_rejected(None, reason);
            }
        }
        let once_only = door.origin != SequenceOrigin::Fixed;
        let knocks = |result: &str| self.knocks.with_label_values(&[door.name.as_str(), result]);
        let refused = |reason: &str| {
            self.refused
                .with_label_values(&[door.name.as_str(), reason])
        };
        DoorMetrics {
            advance: knocks("advance"),
            complete: knocks("complete"),
            reset: knocks("reset"),
            expired: knocks("expired"),
            duplicate: self.duplicates.with_label_values(&[door.name.as_str()]),
            grants: self
                .grants
                .with_label_values(&[door.name.as_str(), door.action.name()]),
            refused: Refused {
                rate_limited: refused("rate_limited"),
                set_full: refused("set_full"),
                nft_error: refused("nft_error"),
                used: once_only.then(|| refused("used")),
                not_persisted: once_only.then(|| refused("not_persisted")),
            },
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
