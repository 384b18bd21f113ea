//! Bounded state under abuse: a sniffed sequence replayed from thousands of forged sources
//! fills a grant set only up to its `size`, a door's grant rate caps what it grants per second,
//! and neither the daemon's memory nor its log grows with the flood.

use std::time::Instant;

use crate::harness::daemon::Metrics;
use crate::harness::*;
use crate::require_netns;

const KNOCKS: [&str; 3] = ["tcp:7000:S", "tcp:8000:S", "udp:9000"];

fn spoofed_completions(t: &Topology, count: usize) -> f64 {
    let mut args = vec!["spoofed", GW4];
    let count = count.to_string();
    args.push(&count);
    args.extend(KNOCKS);
    let seconds = craft(t, &args);
    seconds
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("craft.py printed {seconds:?}"))
}

/// Forged sources (10.64.0.0/10) among the set's elements.
fn spoofed_elements(t: &Topology, set: &str) -> usize {
    set_elements(t, set).matches("10.64.").count()
}

fn ssh_grants(metrics: &Metrics) -> f64 {
    metrics.value(
        "knock_nfq_grants_total",
        &[r#"door="ssh""#, r#"action="open""#],
    )
}

fn ssh_refused(metrics: &Metrics, reason: &str) -> f64 {
    let reason = format!("reason=\"{reason}\"");
    metrics.value(
        "knock_nfq_grants_refused_total",
        &[r#"door="ssh""#, &reason],
    )
}

/// Waits until `name{labels}` reaches `at_least` or 20 s pass; the last scrape.
fn scrape_until(
    t: &Topology,
    daemon: &Daemon,
    name: &str,
    labels: &[&str],
    at_least: f64,
) -> Metrics {
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let metrics = daemon.metrics(&t.gw);
        if metrics.value(name, labels) >= at_least || Instant::now() > deadline {
            return metrics;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn five_thousand_spoofed_completions_stop_at_the_set_size_with_bounded_memory_and_log() {
    require_netns!();
    const SIZE: usize = 500;
    let unlimited = config("5s", "60s")
        .replacen(
            "tcp_flags = \"syn,!ack\"\n",
            "tcp_flags = \"syn,!ack\"\nmax_grants_per_second = 100000\n",
            1,
        )
        .replace("[daemon]\n", &format!("[daemon]\nmax_grants = {SIZE}\n"));
    let t = Topology::new();
    // The shipped ruleset with every set of sources at SIZE.
    let ruleset =
        knock_nfq::sandbox::ruleset::SHIPPED.replace("size 65536;", &format!("size {SIZE};"));
    t.gw.exec("nft", &["delete table inet knock_nfq"]);
    load_ruleset(&t.gw, &ruleset);
    let mut daemon = Daemon::start_at_info(&t.gw, &unlimited);
    let rss_before = daemon.rss_kib();

    let seconds = spoofed_completions(&t, 5000);

    let complete = [r#"door="ssh""#, r#"result="complete""#];
    let metrics = scrape_until(&t, &daemon, "knock_nfq_knocks_total", &complete, 5000.0);
    let rss_after = daemon.rss_kib();
    eprintln!(
        "daemon CPU: {} ticks; nft batches: {} taking {} s",
        daemon.cpu_ticks(),
        metrics.value("knock_nfq_nft_batch_seconds_count", &[]),
        metrics.value("knock_nfq_nft_batch_seconds_sum", &[])
    );
    let (grants, set_full) = (ssh_grants(&metrics), ssh_refused(&metrics, "set_full"));
    let completed = metrics.value("knock_nfq_knocks_total", &complete);
    let log = daemon.log();
    let lines = log.lines().count();
    eprintln!(
        "5000 spoofed completions in {seconds:.1} s: {completed} complete, {grants} granted, \
         {set_full} refused (set_full); allow4 holds {}; RSS {rss_before} -> {rss_after} KiB; \
         {lines} log lines",
        spoofed_elements(&t, "allow4")
    );
    // Each commit waits for nf_tables (milliseconds here), so the queue socket overruns and
    // the kernel drops part of the flood unjudged (fail closed); enough gets through to fill
    // the set and go on past it.
    // Reached: 591 to 1235 completions in runs here, depending on how fast scapy sends.
    assert!(
        completed >= (SIZE + 50) as f64,
        "too little of the flood reached the daemon: {completed} completions"
    );
    assert_eq!(
        spoofed_elements(&t, "allow4"),
        SIZE,
        "the set stops at its size"
    );
    assert_eq!(grants, SIZE as f64);
    assert_eq!(
        grants + set_full,
        completed,
        "every completion is granted or counted refused"
    );
    assert!(rss_after < 64 * 1024, "RSS {rss_after} KiB");
    // One line per grant up to the size, then one summary line per second of refusals.
    assert!(
        lines < SIZE + 40,
        "{lines} log lines for {SIZE} grants:\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert!(daemon.is_running());
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn a_replayed_sequence_from_many_sources_is_held_to_the_doors_grant_rate() {
    require_netns!();
    let limited = config("5s", "60s").replacen(
        "tcp_flags = \"syn,!ack\"\n",
        "tcp_flags = \"syn,!ack\"\nmax_grants_per_second = 5\n",
        1,
    );
    let t = Topology::new();
    let daemon = Daemon::start_at_info(&t.gw, &limited);
    let started = Instant::now();
    spoofed_completions(&t, 300);
    let complete = [r#"door="ssh""#, r#"result="complete""#];
    let metrics = scrape_until(&t, &daemon, "knock_nfq_knocks_total", &complete, 300.0);
    let elapsed = started.elapsed().as_secs_f64();
    let (grants, limited) = (ssh_grants(&metrics), ssh_refused(&metrics, "rate_limited"));
    let completed = metrics.value("knock_nfq_knocks_total", &complete);
    eprintln!(
        "300 spoofed completions in {elapsed:.1} s: {grants} granted, {limited} rate-limited"
    );
    assert!(completed >= 295.0, "{completed} completions");
    assert_eq!(grants + limited, completed);
    // A burst of 5, then 5 a second.
    assert!(
        grants >= 5.0 && grants <= 5.0 + 5.0 * elapsed.ceil(),
        "{grants} grants in {elapsed:.1} s"
    );
    let warnings = daemon
        .log()
        .lines()
        .filter(|l| l.contains("grants refused"))
        .count();
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        (1..=seconds + 1).contains(&(warnings as u64)),
        "{warnings} warnings in {elapsed:.1} s"
    );
}
