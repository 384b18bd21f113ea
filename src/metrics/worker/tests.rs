use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use super::*;
use crate::metrics::latency_buckets;

fn families() -> PacketFamilies {
    PacketFamilies::new(&latency_buckets())
}

fn render(collector: Box<dyn Collector>) -> String {
    let registry = Registry::new();
    registry.register(collector).unwrap();
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn lines_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn two_workers_are_summed_in_the_exposition() {
    let families = families();
    let (mut one, mut two) = (families.worker(), families.worker());
    one.verdict(Verdict::Accept);
    one.verdict(Verdict::Drop);
    two.verdict(Verdict::Drop);
    two.verdict(Verdict::Drop);
    one.held(Verdict::Accept);
    two.held(Verdict::Drop);
    two.held(Verdict::Drop);
    one.packet_error(PacketError::Fragment);
    two.packet_error(PacketError::Fragment);
    two.packet_error(PacketError::Truncated);
    one.eviction();
    two.eviction();
    let text = render(Box::new(families));
    assert_eq!(
        lines_of(&text, "knock_nfq_verdicts_total"),
        [
            r#"knock_nfq_verdicts_total{verdict="accept"} 1"#,
            r#"knock_nfq_verdicts_total{verdict="drop"} 3"#,
        ]
    );
    assert_eq!(
        lines_of(&text, "knock_nfq_held_connections_total"),
        [
            r#"knock_nfq_held_connections_total{result="admitted"} 1"#,
            r#"knock_nfq_held_connections_total{result="dropped"} 2"#,
        ]
    );
    assert_eq!(
        lines_of(&text, "knock_nfq_packet_errors_total"),
        [
            r#"knock_nfq_packet_errors_total{reason="bad_ip_header"} 0"#,
            r#"knock_nfq_packet_errors_total{reason="fragment"} 2"#,
            r#"knock_nfq_packet_errors_total{reason="not_tcp_or_udp"} 0"#,
            r#"knock_nfq_packet_errors_total{reason="truncated"} 1"#,
        ]
    );
    assert_eq!(
        lines_of(&text, "knock_nfq_evictions_total"),
        ["knock_nfq_evictions_total 2"]
    );
}

#[test]
fn the_histogram_is_cumulative_with_count_and_sum() {
    let families = families();
    let (mut one, mut two) = (families.worker(), families.worker());
    // Exact in binary, so the sum is exact: the first bucket (10 µs), 0.25 s's bucket
    // (0.238..0.596) and beyond every bound.
    one.verdict_seconds(1.0 / 131_072.0);
    two.verdict_seconds(0.25);
    two.verdict_seconds(2.0);
    one.verdict_seconds(0.25);
    let text = render(Box::new(families));
    let buckets = lines_of(&text, "knock_nfq_verdict_seconds_bucket");
    assert_eq!(buckets.len(), BOUNDS + 1);
    assert_eq!(
        buckets[0],
        r#"knock_nfq_verdict_seconds_bucket{le="0.00001"} 1"#
    );
    assert!(
        buckets[1..11].iter().all(|l| l.ends_with("} 1")),
        "{buckets:?}"
    );
    assert_eq!(
        buckets[11],
        r#"knock_nfq_verdict_seconds_bucket{le="0.2384185791015625"} 1"#
    );
    assert_eq!(
        buckets[12],
        r#"knock_nfq_verdict_seconds_bucket{le="0.5960464477539063"} 3"#
    );
    assert_eq!(
        buckets[13],
        r#"knock_nfq_verdict_seconds_bucket{le="+Inf"} 4"#
    );
    assert_eq!(
        lines_of(&text, "knock_nfq_verdict_seconds_"),
        [
            buckets.as_slice(),
            &[
                "knock_nfq_verdict_seconds_sum 2.5000076293945313",
                "knock_nfq_verdict_seconds_count 4",
            ]
        ]
        .concat()
    );
}

#[test]
fn tracked_sources_add_every_share_and_changes_elsewhere() {
    let families = families();
    let (mut one, mut two) = (families.worker(), families.worker());
    one.tracked_sources(5);
    two.tracked_sources(2);
    // A reload forgot sources that worker two had started tracking.
    families.tracked_sources_elsewhere(-3);
    one.tracked_sources(-1);
    let text = render(Box::new(families));
    assert_eq!(
        lines_of(&text, "knock_nfq_tracked_sources"),
        ["knock_nfq_tracked_sources 3"]
    );
}

#[test]
fn a_finished_workers_counts_stay() {
    let families = families();
    let mut gone = families.worker();
    gone.verdict(Verdict::Accept);
    drop(gone);
    families.worker().verdict(Verdict::Accept);
    let text = render(Box::new(families));
    assert!(
        text.contains("knock_nfq_verdicts_total{verdict=\"accept\"} 2\n"),
        "{text}"
    );
}

/// The families as they were before they were kept per worker: shared prometheus metrics.
fn shared_metrics() -> (Registry, [IntCounter; 2], Histogram, IntGauge) {
    let registry = Registry::new();
    let vec = |name: &str, help: &str, label: &str| {
        let metric = IntCounterVec::new(Opts::new(name, help), &[label]).unwrap();
        registry.register(Box::new(metric.clone())).unwrap();
        metric
    };
    let verdicts = vec(
        "knock_nfq_verdicts_total",
        "Verdicts sent for queued packets.",
        "verdict",
    );
    let held = vec(
        "knock_nfq_held_connections_total",
        "New connections to a protected service that the kernel queued because their source \
         knocked in the last 5 s: admitted (the source held a grant by then) or dropped.",
        "result",
    );
    held.with_label_values(&["admitted"]);
    held.with_label_values(&["dropped"]);
    let errors = vec(
        "knock_nfq_packet_errors_total",
        "Queued packets that could not be parsed as TCP or UDP (dropped: not judged, not let through).",
        "reason",
    );
    for error in PacketError::ALL {
        errors.with_label_values(&[error.label()]);
    }
    let evictions = IntCounter::new(
        "knock_nfq_evictions_total",
        "Attempts evicted because max_sources was reached.",
    )
    .unwrap();
    registry.register(Box::new(evictions.clone())).unwrap();
    let tracked = IntGauge::new(
        "knock_nfq_tracked_sources",
        "Sources with a knock attempt in progress.",
    )
    .unwrap();
    registry.register(Box::new(tracked.clone())).unwrap();
    let opts = HistogramOpts::new(
        "knock_nfq_verdict_seconds",
        "Time from receiving a packet to sending its verdict.",
    );
    let seconds = Histogram::with_opts(opts.buckets(latency_buckets())).unwrap();
    registry.register(Box::new(seconds.clone())).unwrap();
    let verdicts = [
        verdicts.with_label_values(&["accept"]),
        verdicts.with_label_values(&["drop"]),
    ];
    (registry, verdicts, seconds, tracked)
}

#[test]
fn the_exposition_is_the_shared_metrics_one() {
    let (registry, [accept, drop], seconds, tracked) = shared_metrics();
    let families = families();
    let mut worker = families.worker();
    for (verdict, at) in [(Verdict::Accept, 0.000_5), (Verdict::Drop, 0.125)] {
        worker.verdict(verdict);
        worker.verdict_seconds(at);
        seconds.observe(at);
    }
    accept.inc();
    drop.inc();
    worker.tracked_sources(4);
    tracked.add(4);
    let mut before = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut before)
        .unwrap();
    assert_eq!(
        render(Box::new(families)),
        String::from_utf8(before).unwrap()
    );
}
