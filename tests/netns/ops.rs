//! Operations: exact metric deltas for scripted knocks, reloads (broken and good) as systemd
//! sees them, the watchdog, flood warnings, promtool's lint, and a real Prometheus scraping the
//! daemon and running every dashboard query.

#[path = "../support/dashboard.rs"]
pub mod dashboard;

use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::harness::prometheus::{self, Prometheus};
use crate::harness::*;
use crate::{GW_SSH4, assert_closed, assert_open, require_netns, start_with};

const COMPLETE: [&str; 2] = [r#"door="ssh""#, r#"result="complete""#];
const ADVANCE: [&str; 2] = [r#"door="ssh""#, r#"result="advance""#];
const RESET: [&str; 2] = [r#"door="ssh""#, r#"result="reset""#];
const SSH_GRANTS: [&str; 2] = [r#"door="ssh""#, r#"action="open""#];
const CLOSE_GRANTS: [&str; 2] = [r#"door="ssh-close""#, r#"action="close""#];
const SSH_ACTIVE: [&str; 1] = [r#"door="ssh""#];

/// Fails the test, saying why, where Prometheus or promtool is missing.
macro_rules! require_prometheus {
    () => {
        $crate::require_netns!();
        if let Some(why) = prometheus::unavailable() {
            panic!("cannot run: {why}");
        }
    };
}

/// Scrapes until `name{labels}` has `expected` (the daemon handles a knock a moment after the
/// client sent it), for at most two seconds; the last scrape.
fn scrape_until(
    t: &Topology,
    daemon: &Daemon,
    name: &str,
    labels: &[&str],
    expected: f64,
) -> daemon::Metrics {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let metrics = daemon.metrics(&t.gw);
        if metrics.value(name, labels) == expected || Instant::now() > deadline {
            return metrics;
        }
        sleep(Duration::from_millis(20));
    }
}

/// `after - before` for one series.
fn delta(before: &daemon::Metrics, after: &daemon::Metrics, name: &str, labels: &[&str]) -> f64 {
    after.value(name, labels) - before.value(name, labels)
}

/// Log lines with `message` and every one of `fields` (`door=ssh`).
fn log_lines(daemon: &Daemon, message: &str, fields: &[&str]) -> Vec<String> {
    daemon
        .log()
        .lines()
        .filter(|line| line.contains(message) && fields.iter().all(|f| line.contains(f)))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn scripted_knocks_move_each_counter_by_exactly_their_share() {
    require_netns!();
    let (t, daemon) = start_with(&config("5s", "3s"));
    let before = daemon.metrics(&t.gw);
    assert_eq!(
        before.series("knock_nfq_active_grants", &SSH_ACTIVE),
        Some(0.0)
    );

    // One completed sequence: two advances, one completion, one grant, three drop verdicts.
    t.knock(GW4, &["7000", "8000", "9000:udp"]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    let granted = daemon.metrics(&t.gw);
    assert_eq!(
        delta(&before, &granted, "knock_nfq_knocks_total", &COMPLETE),
        1.0
    );
    assert_eq!(
        delta(&before, &granted, "knock_nfq_knocks_total", &ADVANCE),
        2.0
    );
    assert_eq!(
        delta(&before, &granted, "knock_nfq_knocks_total", &RESET),
        0.0
    );
    assert_eq!(
        delta(&before, &granted, "knock_nfq_grants_total", &SSH_GRANTS),
        1.0
    );
    let drops = [r#"verdict="drop""#];
    assert_eq!(
        delta(&before, &granted, "knock_nfq_verdicts_total", &drops),
        3.0
    );
    assert_eq!(granted.value("knock_nfq_active_grants", &SSH_ACTIVE), 1.0);
    assert_eq!(granted.value("knock_nfq_tracked_sources", &[]), 0.0);

    // A wrong knock (a knock port out of order) resets the other source's attempt, once.
    knock_from(&t, OTHER4, GW4, &["7000", "9200"]);
    let reset = scrape_until(&t, &daemon, "knock_nfq_knocks_total", &RESET, 1.0);
    assert_eq!(
        delta(&granted, &reset, "knock_nfq_knocks_total", &RESET),
        1.0
    );
    assert_eq!(
        delta(&granted, &reset, "knock_nfq_knocks_total", &COMPLETE),
        0.0
    );
    assert_eq!(
        delta(&granted, &reset, "knock_nfq_grants_total", &SSH_GRANTS),
        0.0
    );

    // The same source completes: a second active grant. Then the first revokes its own.
    knock_from(&t, OTHER4, GW4, &["7000", "8000", "9000:udp"]);
    assert_open(&t, OTHER4, GW_SSH4, "gw");
    let second_grant = Instant::now();
    assert_eq!(
        daemon
            .metrics(&t.gw)
            .value("knock_nfq_active_grants", &SSH_ACTIVE),
        2.0
    );
    t.knock(GW4, &["9100", "9200"]);
    let revoked = scrape_until(&t, &daemon, "knock_nfq_grants_total", &CLOSE_GRANTS, 1.0);
    assert_eq!(revoked.value("knock_nfq_grants_total", &CLOSE_GRANTS), 1.0);
    assert_eq!(revoked.value("knock_nfq_active_grants", &SSH_ACTIVE), 1.0);
    assert_closed(&t, CLIENT4, &[GW_SSH4]);

    // Past open_for the remaining grant is no longer counted; no counter moved meanwhile.
    sleep(
        Duration::from_secs(3).saturating_sub(second_grant.elapsed()) + Duration::from_millis(300),
    );
    let expired = daemon.metrics(&t.gw);
    assert_eq!(expired.value("knock_nfq_active_grants", &SSH_ACTIVE), 0.0);
    assert_eq!(expired.value("knock_nfq_grants_total", &SSH_GRANTS), 2.0);
    assert_eq!(expired.value("knock_nfq_knocks_total", &COMPLETE), 2.0);

    // The kernel's view of queue 0, read from /proc in the daemon's namespace.
    for reason in ["queue_full", "socket_full"] {
        let labels = [r#"queue="0""#, &format!(r#"reason="{reason}""#)];
        assert_eq!(
            expired.series("knock_nfq_queue_kernel_drops_total", &labels),
            Some(0.0)
        );
    }
    assert_eq!(
        expired.series("knock_nfq_queue_length", &[r#"queue="0""#]),
        Some(0.0)
    );

    // One log event per completed knock, grant and revoke, with structured fields.
    let client = format!("source={CLIENT4}");
    assert_eq!(
        log_lines(
            &daemon,
            "knock sequence complete",
            &["door=ssh", &client, "knocks=3"]
        )
        .len(),
        1
    );
    let grant = [
        "door=ssh",
        &client,
        "targets=22/tcp,198.51.100.10:80/tcp,[2001:db8:2::10]:80/tcp",
        "open_for=3s",
    ];
    assert_eq!(
        log_lines(&daemon, "grant committed", &grant).len(),
        1,
        "{}",
        daemon.log()
    );
    assert_eq!(
        log_lines(&daemon, "grant revoked", &["door=ssh-close", &client]).len(),
        1
    );
}

/// The test config with door `ssh`'s `open_for` made unreadable.
fn broken_config() -> String {
    config("5s", "30s").replacen(r#"open_for = "30s""#, r#"open_for = "soon""#, 1)
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn a_broken_reload_is_rejected_naming_the_key_and_the_old_doors_keep_working() {
    require_netns!();
    let (t, mut daemon) = start_with(&config("5s", "30s"));
    std::fs::write(&daemon.config_path, broken_config()).unwrap();

    daemon.signal(libc::SIGHUP);
    daemon.wait_for("RELOADING=1");
    daemon.wait_for("READY=1");

    assert!(daemon.is_running(), "{}", daemon.log());
    t.knock(GW4, &["7000", "8000", "9000:udp"]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    let metrics = daemon.metrics(&t.gw);
    assert_eq!(
        metrics.value("knock_nfq_reloads_total", &[r#"result="failure""#]),
        1.0
    );
    assert_eq!(
        metrics.value("knock_nfq_reloads_total", &[r#"result="success""#]),
        0.0
    );
    let rejected = log_lines(&daemon, "reload rejected", &[r#"door[0] ("ssh").open_for"#]);
    assert_eq!(rejected.len(), 1, "{}", daemon.log());
    assert!(rejected[0].contains(r#"found "soon""#), "{}", rejected[0]);
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn a_reload_adding_a_door_opens_it_and_keeps_existing_grants() {
    require_netns!();
    let (t, mut daemon) = start_with(&config("5s", "30s"));
    t.knock(GW4, &["7000", "8000", "9000:udp"]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    let before = daemon.metrics(&t.gw);
    let with_web = format!(
        "{}\n[[door]]\nname = \"web\"\nsequence = [\"7100:tcp\", \"7200:tcp\"]\n\
         open = [\"22/tcp\"]\nopen_for = \"30s\"\n",
        config("5s", "30s")
    );
    std::fs::write(&daemon.config_path, with_web).unwrap();
    sleep(Duration::from_millis(1100)); // the reload timestamp has whole-second resolution to beat

    daemon.signal(libc::SIGHUP);
    daemon.wait_for("RELOADING=1");
    daemon.wait_for("READY=1");

    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    assert_closed(&t, OTHER4, &[GW_SSH4]);
    knock_from(&t, OTHER4, GW4, &["7100", "7200"]);
    assert_open(&t, OTHER4, GW_SSH4, "gw");
    let after = daemon.metrics(&t.gw);
    let success = [r#"result="success""#];
    assert_eq!(
        delta(&before, &after, "knock_nfq_reloads_total", &success),
        1.0
    );
    assert!(
        after.value("knock_nfq_last_reload_success_timestamp_seconds", &[])
            > before.value("knock_nfq_last_reload_success_timestamp_seconds", &[])
    );
    let web = [r#"door="web""#];
    assert_eq!(
        after.value("knock_nfq_knocks_total", &[web[0], r#"result="complete""#]),
        1.0
    );
    assert_eq!(after.value("knock_nfq_active_grants", &web), 1.0);
    assert_eq!(after.value("knock_nfq_active_grants", &SSH_ACTIVE), 1.0);
    assert_eq!(
        log_lines(
            &daemon,
            "configuration reloaded",
            &["doors=ssh,ssh-close,web"]
        )
        .len(),
        1
    );
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn the_watchdog_is_pinged_at_half_its_interval() {
    require_netns!();
    let t = Topology::new();
    let mut daemon = Daemon::start_watched(&t.gw, &config("5s", "30s"), 400_000);
    // Every 200 ms: about five in a second; allow for scheduling either way.
    let pings = daemon.count_notifications("WATCHDOG=1", Duration::from_secs(1));
    assert!((4..=6).contains(&pings), "{pings} pings in 1 s");
    assert_eq!(
        log_lines(&daemon, "systemd watchdog enabled", &["period=200ms"]).len(),
        1
    );
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn no_watchdog_pings_unless_systemd_asks_for_them() {
    require_netns!();
    let (_t, mut daemon) = start_with(&config("5s", "30s"));
    assert_eq!(
        daemon.count_notifications("WATCHDOG=1", Duration::from_millis(500)),
        0
    );
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn evictions_under_a_source_flood_are_counted_and_warned_about_once() {
    require_netns!();
    let tiny = config("5s", "30s").replace(
        r#"metrics = "127.0.0.1:9469""#,
        "metrics = \"127.0.0.1:9469\"\nmax_sources = 1",
    );
    let (t, daemon) = start_with(&tiny);
    knock_from(&t, CLIENT4, GW4, &["7000"]);
    knock_from(&t, OTHER4, GW4, &["7000"]);
    knock_from(&t, CLIENT6, GW6, &["7000"]);
    knock_from(&t, OTHER6, GW6, &["7000"]);
    let metrics = scrape_until(&t, &daemon, "knock_nfq_evictions_total", &[], 3.0);
    assert_eq!(metrics.value("knock_nfq_evictions_total", &[]), 3.0);
    assert_eq!(metrics.value("knock_nfq_tracked_sources", &[]), 1.0);
    let warnings = log_lines(&daemon, "knock attempts evicted", &["WARN"]);
    assert_eq!(warnings.len(), 1, "{}", daemon.log());
    assert!(warnings[0].contains("evicted=1"), "{}", warnings[0]);
}

/// A daemon that has seen a completed sequence, so every series has samples.
fn knocked_daemon() -> (Topology, Daemon) {
    let (t, daemon) = start_with(&config("5s", "30s"));
    t.knock(GW4, &["7000", "8000", "9000:udp"]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    (t, daemon)
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn promtool_finds_nothing_to_lint_in_the_exposition() {
    require_prometheus!();
    let (t, daemon) = knocked_daemon();
    let exposition = daemon.metrics(&t.gw).0;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics:\n{report}");
    assert_eq!(report.trim(), "", "promtool lint warnings");
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn every_metric_the_dashboard_queries_is_exported() {
    require_netns!();
    let (t, daemon) = knocked_daemon();
    let exported = daemon.metrics(&t.gw).names();
    let board = dashboard::load();
    let queries = dashboard::queries(&board)
        .into_iter()
        .chain(dashboard::variable_queries(&board))
        .filter(|q| !dashboard::fleet_only(q));
    for query in queries {
        for name in dashboard::metric_names(&query) {
            assert!(
                exported.contains(&name),
                "{name} (in {query}) is not exported; exported: {exported:?}"
            );
        }
    }
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn prometheus_scrapes_the_knock_counts_and_runs_every_dashboard_query() {
    require_prometheus!();
    let (t, _daemon) = start_with(&config("5s", "30s"));
    let server = Prometheus::start(&t.gw, "127.0.0.1:9469");
    let complete = r#"knock_nfq_knocks_total{door="ssh",result="complete"}"#;
    let scrape_wait = Duration::from_secs(15);
    // Scraped at least once before the knock, so increase() sees the step from 0 to 1.
    server.wait_for_value(&t.gw, complete, 0.0, scrape_wait);

    t.knock(GW4, &["7000", "8000", "9000:udp"]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");

    server.wait_for_value(&t.gw, complete, 1.0, scrape_wait);
    assert_eq!(
        server.value(&t.gw, &format!("max_over_time({complete}[1m])")),
        Some(1.0)
    );
    let increase = server
        .value(&t.gw, &format!("increase({complete}[1m])"))
        .expect("an increase");
    assert!(increase > 0.0, "increase() = {increase}");
    server.wait_for_value(
        &t.gw,
        r#"knock_nfq_active_grants{door="ssh"}"#,
        1.0,
        scrape_wait,
    );
    assert_eq!(server.value(&t.gw, r#"up{job="knock-nfq"}"#), Some(1.0));

    let board = dashboard::load();
    let variables = dashboard::variable_queries(&board)
        .into_iter()
        .map(|v| dashboard::variable_selector(&v));
    let queries = dashboard::queries(&board).into_iter().chain(variables);
    for query in queries.filter(|q| !dashboard::fleet_only(q)) {
        let promql = dashboard::substitute(&query);
        let answer = server.query(&t.gw, &promql);
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        let result = answer["data"]["result"]
            .as_array()
            .expect("a result vector");
        assert!(!result.is_empty(), "{promql} returned no data");
    }
}
