//! The deployment files: the systemd unit (checked by `systemd-analyze`, where it is installed)
//! and the Grafana dashboard (its structure; the netns suite runs its queries against a real
//! Prometheus scraping a real daemon).

#[path = "support/dashboard.rs"]
mod dashboard;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/knock-nfq.service");
const INSTALLED_EXEC: &str = "ExecStart=/usr/local/bin/knock-nfq ";

fn unit_text() -> String {
    std::fs::read_to_string(UNIT).expect("read the unit")
}

/// `KEY=VALUE` lines of the unit, comments and section headers left out.
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(['#', '[']))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// Why `systemd-analyze` cannot be used here, if it cannot.
fn systemd_analyze_missing() -> Option<String> {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("systemd-analyze is not installed (Debian package systemd)".into()),
    }
}

fn analyze(args: &[&str], unit: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("run systemd-analyze")
}

/// The unit with ExecStart pointing at the binary cargo built, everything else identical.
fn unit_for_this_build(dir: &Path) -> std::path::PathBuf {
    let unit = unit_text();
    let built = format!("ExecStart={} ", env!("CARGO_BIN_EXE_knock-nfq"));
    let copy = unit.replace(INSTALLED_EXEC, &built);
    let changed = unit.lines().zip(copy.lines()).filter(|(a, b)| a != b);
    assert_eq!(changed.count(), 1, "only the ExecStart line differs");
    let path = dir.join("knock-nfq.service");
    std::fs::write(&path, copy).expect("write the unit copy");
    path
}

#[test]
fn the_unit_has_the_settings_the_deployment_relies_on() {
    let unit = unit_text();
    let directives = directives(&unit);
    let has = |key: &str, value: &str| {
        directives
            .iter()
            .any(|(k, v)| k == key && v.split_whitespace().eq(value.split_whitespace()))
    };
    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/local/bin/knock-nfq run --config /etc/knock-nfq/knock-nfq.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        // Fail closed and restart forever.
        ("Restart", "always"),
        ("RestartSec", "2"),
        ("StartLimitIntervalSec", "0"),
        ("MemoryMax", "128M"),
        ("TasksMax", "32"),
        // A static user, so the config can be 0640 root:knock-nfq.
        ("User", "knock-nfq"),
        ("Group", "knock-nfq"),
        ("WatchdogSec", "30s"),
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_ADMIN"),
        ("CapabilityBoundingSet", "CAP_NET_ADMIN"),
        (
            "RestrictAddressFamilies",
            "AF_NETLINK AF_INET AF_INET6 AF_UNIX",
        ),
        ("SystemCallFilter", "@system-service"),
        ("ProtectSystem", "strict"),
        ("ProtectProc", "invisible"),
        ("UMask", "0077"),
        ("StateDirectory", "knock-nfq"),
        ("ConfigurationDirectory", "knock-nfq"),
        ("After", "nftables.service"),
        ("Wants", "nftables.service"),
        ("Before", "network-pre.target"),
        ("Wants", "network-pre.target"),
        ("WantedBy", "multi-user.target"),
    ] {
        assert!(has(key, value), "{key}={value} is missing from {UNIT}");
    }
    for key in [
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "SystemCallArchitectures",
        "MemoryDenyWriteExecute",
        "LockPersonality",
        "RestrictNamespaces",
        "RestrictRealtime",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
    ] {
        assert!(
            has(key, "yes") || (key == "SystemCallArchitectures" && has(key, "native")),
            "{key} is not set in {UNIT}"
        );
    }
    // ProcSubset=pid would hide /proc/net/netfilter, where the kernel's queue counters are.
    assert!(!directives.iter().any(|(k, _)| k == "ProcSubset"));
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if let Some(why) = systemd_analyze_missing() {
        panic!("cannot run: {why}");
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let out = analyze(&["verify"], &unit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify:\n{stderr}");
    assert!(
        !stderr.contains("knock-nfq.service"),
        "systemd-analyze verify warns about the unit:\n{stderr}"
    );
}

/// systemd's exposure levels, best first.
const ACCEPTED_LEVELS: [&str; 3] = ["PERFECT", "SAFE", "OK"];

#[test]
fn the_unit_exposure_is_at_most_ok() {
    if let Some(why) = systemd_analyze_missing() {
        panic!("cannot run: {why}");
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let out = analyze(&["security", "--offline=yes", "--no-pager"], &unit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("unrecognized option") {
        panic!("cannot run: this systemd-analyze has no --offline (systemd < 250)");
    }
    assert!(out.status.success(), "{stdout}{stderr}");
    let overall = stdout
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for knock-nfq.service: "))
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_else(|| panic!("no overall exposure line:\n{stdout}"));
    let mut words = overall.split_whitespace();
    let score: f64 = words.next().and_then(|s| s.parse().ok()).expect("a score");
    let level = words.next().expect("a level");
    eprintln!("systemd-analyze security: {score} {level}");
    assert!(
        ACCEPTED_LEVELS.contains(&level),
        "exposure {score} {level}, expected at most OK:\n{stdout}"
    );
}

#[test]
fn the_dashboard_is_a_grafana_model_with_a_prometheus_input() {
    let dashboard = dashboard::load();
    let input = &dashboard["__inputs"][0];
    assert_eq!(input["name"], "DS_PROMETHEUS");
    assert_eq!(input["pluginId"], "prometheus");
    assert!(
        dashboard["__requires"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "grafana" && r["version"].as_str().unwrap().starts_with("10."))
    );
    let mut ids = BTreeSet::new();
    for panel in dashboard::panels(&dashboard) {
        let title = panel["title"].as_str().expect("a title");
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id reused"
        );
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let grid = &panel["gridPos"];
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24);
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = target["expr"].as_str().unwrap();
            assert!(!dashboard::metric_names(expr).is_empty(), "{title}: {expr}");
        }
    }
}

#[test]
fn the_dashboard_shows_every_metric_family_operators_need() {
    let dashboard = dashboard::load();
    let used: BTreeSet<String> = dashboard::queries(&dashboard)
        .iter()
        .flat_map(|q| dashboard::metric_names(q))
        .collect();
    for name in [
        "knock_nfq_knocks_total",
        "knock_nfq_grants_total",
        "knock_nfq_active_grants",
        "knock_nfq_verdicts_total",
        "knock_nfq_verdict_seconds_bucket",
        "knock_nfq_tracked_sources",
        "knock_nfq_evictions_total",
        "knock_nfq_queue_kernel_drops_total",
        "knock_nfq_queue_length",
        "knock_nfq_queue_enobufs_total",
        "knock_nfq_reloads_total",
        "knock_nfq_last_reload_success_timestamp_seconds",
        "knock_nfq_bans_total",
        "knock_nfq_banned_sources",
        "knock_nfq_cluster_up",
        "knock_nfq_cluster_received_total",
        "knock_nfq_cluster_publish_errors_total",
    ] {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
    for query in dashboard::queries(&dashboard) {
        if query.contains("rate(") || query.contains("increase(") {
            assert!(
                query.contains("[$__rate_interval]") || query.contains("[$__range]"),
                "a fixed range window: {query}"
            );
        }
    }
}
