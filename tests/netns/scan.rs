//! The shipped example config under a port scan: nmap walking ports 1 to 10000 in order opens
//! nothing, and the example's own sequence, knocked with Debian's `knock`, still does. The same
//! scan does open the door knockd-style (ports in increasing order, not strict).

use std::time::{Duration, Instant};

use crate::harness::daemon::Metrics;
use crate::harness::*;
use crate::require_netns;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/knock-nfq.example.toml");
const GW_SSH4: &str = "192.0.2.1:22";

/// A TCP connect scan of ports 1-10000 in order, as fast as nmap goes: each port the gateway
/// drops costs a timeout, so no retries. Returns nmap's report and how long it took.
fn sequential_connect_scan(t: &Topology) -> (String, Duration) {
    let started = Instant::now();
    let out = t.client.exec(
        "nmap",
        &[
            "-n",
            "-Pn",
            "-sT",
            "-r",
            "-T5",
            "--max-retries",
            "0",
            "-p",
            "1-10000",
            GW4,
        ],
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        started.elapsed(),
    )
}

fn knocks(metrics: &Metrics, door: &str, result: &str) -> f64 {
    metrics.value(
        "knock_nfq_knocks_total",
        &[&format!("door=\"{door}\""), &format!("result=\"{result}\"")],
    )
}

fn open_grants(metrics: &Metrics) -> f64 {
    metrics.value(
        "knock_nfq_grants_total",
        &[r#"door="openSSH""#, r#"action="open""#],
    )
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn a_sequential_port_scan_through_the_example_opens_nothing_but_its_sequence_does() {
    require_netns!();
    let t = Topology::new();
    let example = std::fs::read_to_string(EXAMPLE).expect("read the example");
    let daemon = Daemon::start_at_info(&t.gw, &example);

    let (report, took) = sequential_connect_scan(&t);
    eprintln!("nmap -sT -r -p 1-10000 took {took:?}");
    assert!(report.contains("22/tcp   filtered"), "{report}");
    assert!(took < Duration::from_secs(60), "the scan took {took:?}");
    let metrics = daemon.metrics(&t.gw);
    // The scan did reach the door: it started an attempt at 7000, and the next port reset it.
    assert!(
        knocks(&metrics, "openSSH", "advance") >= 1.0,
        "{}",
        metrics.0
    );
    assert!(knocks(&metrics, "openSSH", "reset") >= 1.0, "{}", metrics.0);
    assert_eq!(knocks(&metrics, "openSSH", "complete"), 0.0);
    assert_eq!(open_grants(&metrics), 0.0);
    assert!(
        !set_elements(&t, "allow4").contains(CLIENT4),
        "{}",
        set_elements(&t, "allow4")
    );
    assert_eq!(t.reaches(CLIENT4, GW_SSH4), None, "the scan opened SSH");

    // The control: the example's sequence, as its comment says to knock it.
    t.knock(GW4, &["7000", "9000", "8000"]);
    assert_eq!(t.reaches(CLIENT4, GW_SSH4).as_deref(), Some("gw"));
    assert_eq!(open_grants(&daemon.metrics(&t.gw)), 1.0);
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn the_same_scan_opens_the_door_knockd_style_in_increasing_order_and_not_strict() {
    require_netns!();
    let t = Topology::new();
    let example = std::fs::read_to_string(EXAMPLE).expect("read the example");
    let knockd_style = example
        .replacen(
            r#"sequence = ["7000:tcp", "9000:tcp", "8000:tcp"]"#,
            r#"sequence = ["7000:tcp", "8000:tcp", "9000:tcp"]"#,
            1,
        )
        .replacen("strict = true\n", "", 1);
    let changed = knockd_style.contains(r#"sequence = ["7000:tcp", "8000:tcp", "9000:tcp"]"#)
        && knockd_style.len() == example.len() - "strict = true\n".len();
    assert!(
        changed,
        "the example's openSSH door changed; update this test"
    );
    let daemon = Daemon::start_at_info(&t.gw, &knockd_style);

    sequential_connect_scan(&t);

    let metrics = daemon.metrics(&t.gw);
    assert_eq!(knocks(&metrics, "openSSH", "complete"), 1.0);
    assert_eq!(open_grants(&metrics), 1.0);
    assert_eq!(t.reaches(CLIENT4, GW_SSH4).as_deref(), Some("gw"));
}
