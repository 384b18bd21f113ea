//! Scan bans (`[blocklist] scan`): real nmap SYN scans from the client namespace at the
//! gateway. The ruleset reports their probes over NFLOG; the daemon counts distinct ports and
//! bans in the kernel's blocked sets: a 100-port scan bans, a smaller one does not, and neither
//! a `never` source nor a source holding a grant is banned.

use std::time::{Duration, Instant};

use crate::harness::daemon::Metrics;
use crate::harness::*;
use crate::{GW_SSH4, GW_SSH6, assert_closed, assert_open, require_netns};

const SSH: [&str; 3] = ["7000", "8000", "9000:udp"];
/// 100 ports, none of them a knock port: 22 and 1000-1098.
const HUNDRED: &str = "22,1000-1098";

fn config_with(blocklist: &str) -> String {
    format!(
        "{}\n[blocklist]\nscan = {{ distinct_ports = 8, within = \"5s\", ban_for = \"10m\" }}\n{blocklist}",
        config("5s", "30s")
    )
}

/// `nmap -sS` of `ports` at `target` from `source` (an address of the client namespace).
fn syn_scan(t: &Topology, source: &str, target: &str, ports: &str) -> String {
    let mut args = vec!["-n", "-Pn", "-sS", "-T5", "--max-retries", "0"];
    if target.contains(':') {
        args.push("-6");
    }
    args.extend(["-S", source, "-e", "eth0", "-p", ports, target]);
    let out = t.client.exec("nmap", &args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many ports nmap found closed: listed one by one, or summed up as "Not shown".
fn closed_ports(report: &str) -> usize {
    let listed = report.lines().filter(|l| l.contains("/tcp closed")).count();
    let hidden = report.lines().find_map(|l| {
        let rest = l.strip_prefix("Not shown: ")?;
        rest.split(", ").find_map(|part| {
            let (n, what) = part.split_once(' ')?;
            what.starts_with("closed")
                .then(|| n.parse::<usize>().ok())?
        })
    });
    listed + hidden.unwrap_or(0)
}

fn scan_bans(metrics: &Metrics) -> f64 {
    metrics.value("knock_nfq_bans_total", &[r#"reason="scan""#])
}

/// Waits up to 2 s for `want` scan bans.
fn wait_for_bans(t: &Topology, daemon: &Daemon, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let bans = scan_bans(&daemon.metrics(&t.gw));
        if bans >= want || Instant::now() > deadline {
            return bans;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn an_nmap_scan_of_100_ports_bans_the_source_and_its_ipv6_64_but_never_a_never_source() {
    require_netns!();
    let t = Topology::new();
    let daemon = Daemon::start(&t.gw, &config_with(&format!("never = [\"{OTHER4}/32\"]\n")));

    // The first probes find closed ports (the gateway resets them); once the source is banned
    // the rest go unanswered.
    let report = syn_scan(&t, CLIENT4, GW4, HUNDRED);
    assert!(
        report.contains("filtered tcp ports (no-response)"),
        "{report}"
    );
    eprintln!(
        "ports answered (closed) before the ban took effect: {} of 100",
        closed_ports(&report)
    );
    assert_eq!(
        wait_for_bans(&t, &daemon, 1.0),
        1.0,
        "log:\n{}",
        daemon.log()
    );
    assert!(set_elements(&t, "blocked4").contains(CLIENT4));
    // Only one ban: once banned, the scan's later probes are dropped before they are reported.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(scan_bans(&daemon.metrics(&t.gw)), 1.0);
    // Banned: a correct sequence is dropped in the kernel before it reaches the daemon.
    knock_from(&t, CLIENT4, GW4, &SSH);
    assert_closed(&t, CLIENT4, &[GW_SSH4]);

    // IPv6: the ban covers the scanner's /64.
    syn_scan(&t, CLIENT6, GW6, HUNDRED);
    assert_eq!(
        wait_for_bans(&t, &daemon, 2.0),
        2.0,
        "log:\n{}",
        daemon.log()
    );
    assert!(set_elements(&t, "blocked6_nets").contains("2001:db8:1::/64"));
    knock_from(&t, CLIENT6, GW6, &SSH);
    assert_closed(&t, CLIENT6, &[GW_SSH6]);

    // A `never` source scans the same ports (all but 22, which is protected, answer closed)
    // and still opens its door.
    let report = syn_scan(&t, OTHER4, GW4, HUNDRED);
    assert!(report.contains("99 closed tcp ports"), "{report}");
    std::thread::sleep(Duration::from_millis(500));
    let metrics = daemon.metrics(&t.gw);
    assert_eq!(scan_bans(&metrics), 2.0, "log:\n{}", daemon.log());
    assert_eq!(metrics.value("knock_nfq_banned_sources", &[]), 2.0);
    assert!(!set_elements(&t, "blocked4").contains(OTHER4));
    knock_from(&t, OTHER4, GW4, &SSH);
    assert_open(&t, OTHER4, GW_SSH4, "gw");
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn a_scan_below_the_threshold_or_from_a_granted_source_bans_nothing_and_a_reload_applies() {
    require_netns!();
    let t = Topology::new();
    let mut daemon = Daemon::start(&t.gw, &config_with(""));

    // Seven distinct ports, twice: below distinct_ports = 8.
    for _ in 0..2 {
        let report = syn_scan(&t, CLIENT4, GW4, "22,1000-1005");
        assert!(report.contains("1005/tcp closed"), "{report}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        scan_bans(&daemon.metrics(&t.gw)),
        0.0,
        "log:\n{}",
        daemon.log()
    );
    knock_from(&t, CLIENT4, GW4, &SSH);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");

    // Now holding a grant, the same source scans 100 ports: not banned, still admitted.
    let report = syn_scan(&t, CLIENT4, GW4, HUNDRED);
    assert!(report.contains("99 closed tcp ports"), "{report}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        scan_bans(&daemon.metrics(&t.gw)),
        0.0,
        "log:\n{}",
        daemon.log()
    );
    assert!(!set_elements(&t, "blocked4").contains(CLIENT4));
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    assert!(
        daemon
            .log()
            .contains("not banned for a port scan: a source there holds a grant"),
        "log:\n{}",
        daemon.log()
    );

    // The reporting is real: another source's scan of the same ports is banned.
    syn_scan(&t, OTHER4, GW4, HUNDRED);
    assert_eq!(
        wait_for_bans(&t, &daemon, 1.0),
        1.0,
        "log:\n{}",
        daemon.log()
    );
    // Reloaded without `scan`: a scan bans nothing; reloaded with it: the same scan bans.
    let reload = |daemon: &mut Daemon, config: &str| {
        std::fs::write(&daemon.config_path, config).expect("write config");
        daemon.signal(libc::SIGHUP);
        daemon.wait_for("RELOADING=1");
        daemon.wait_for("READY=1");
    };
    reload(&mut daemon, &config("5s", "30s"));
    let report = syn_scan(&t, CLIENT6, GW6, HUNDRED);
    assert!(report.contains("99 closed tcp ports"), "{report}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        scan_bans(&daemon.metrics(&t.gw)),
        1.0,
        "log:\n{}",
        daemon.log()
    );
    reload(&mut daemon, &config_with(""));
    syn_scan(&t, CLIENT6, GW6, HUNDRED);
    assert_eq!(
        wait_for_bans(&t, &daemon, 2.0),
        2.0,
        "log:\n{}",
        daemon.log()
    );
    assert!(set_elements(&t, "blocked6_nets").contains("2001:db8:1::/64"));
}
