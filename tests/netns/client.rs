//! The project's own client, `knock-nfq knock`, run in the client namespace as a user runs it:
//! against the daemon (IPv4 with a UDP knock, `-u`, IPv6, `--config/--door`) and against
//! Debian's knockd, which must open for it as it does for knockd's own `knock`.

use std::process::Output;
use std::time::{Duration, Instant};

use crate::harness::knockd::Knockd;
use crate::harness::*;
use crate::require_netns;
use crate::{
    CLIENT4, FORWARD6, GW_SSH4, GW_SSH6, LAN_WEB6, OTHER4, assert_closed, assert_open, start,
};

/// `knock-nfq knock ARGS` in the client namespace.
fn our_knock(t: &Topology, args: &[&str]) -> Output {
    t.client
        .command(daemon::BINARY)
        .arg("knock")
        .args(args)
        .output()
        .expect("run knock-nfq knock")
}

fn our_knock_ok(t: &Topology, args: &[&str]) -> String {
    let out = our_knock(t, args);
    assert!(
        out.status.success(),
        "knock-nfq knock {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn our_client_opens_the_door_over_ipv4_with_a_udp_knock() {
    require_netns!();
    let (t, daemon) = start();
    assert_closed(&t, CLIENT4, &[GW_SSH4]);

    let printed = our_knock_ok(&t, &["-v", "-d", "20", GW4, "7000", "8000", "9000:udp"]);

    assert_eq!(
        printed,
        "hitting tcp 192.0.2.1:7000\nhitting tcp 192.0.2.1:8000\nhitting udp 192.0.2.1:9000\n"
    );
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    assert_closed(&t, OTHER4, &[GW_SSH4]);
    let metrics = daemon.metrics(&t.gw);
    let complete = [r#"door="ssh""#, r#"result="complete""#];
    assert_eq!(metrics.value("knock_nfq_knocks_total", &complete), 1.0);
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn dash_u_knocks_udp_unless_a_port_says_tcp() {
    require_netns!();
    let (t, _daemon) = start();
    // All UDP: 7000 and 8000 are TCP knocks of the door, so it stays shut.
    our_knock_ok(&t, &["-u", "-d", "20", GW4, "7000", "8000", "9000"]);
    assert_closed(&t, CLIENT4, &[GW_SSH4]);

    our_knock_ok(&t, &["-u", "-d", "20", GW4, "7000:tcp", "8000:tcp", "9000"]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn our_client_opens_the_door_over_ipv6() {
    require_netns!();
    let (t, _daemon) = start();
    // Three checks, as in main.rs's IPv6 test: a fresh namespace's first neighbour solicitation
    // can go unanswered, and a connection queued behind the next one would race the knocks.
    assert_closed(&t, CLIENT6, &[GW_SSH6, FORWARD6, LAN_WEB6]);

    let printed = our_knock_ok(
        &t,
        &["-6", "-v", "-d", "20", GW6, "7000", "8000", "9000:udp"],
    );

    assert!(
        printed.starts_with("hitting tcp [2001:db8:1::1]:7000\n"),
        "{printed}"
    );
    assert_open(&t, CLIENT6, GW_SSH6, "gw");
    assert_closed(&t, CLIENT4, &[GW_SSH4]);
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn the_sequence_can_come_from_a_door_of_the_config() {
    require_netns!();
    let (t, daemon) = start();
    let config = daemon.config_path.to_str().expect("UTF-8 path");

    our_knock_ok(&t, &["--config", config, "--door", "ssh", "-d", "20", GW4]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");

    our_knock_ok(
        &t,
        &["--config", config, "--door", "ssh-close", "-d", "20", GW4],
    );
    // The client returns once its last knock is sent; the revoke follows within milliseconds
    // (longer on a loaded machine).
    let closes = [r#"door="ssh-close""#, r#"action="close""#];
    let deadline = Instant::now() + Duration::from_secs(3);
    while daemon
        .metrics(&t.gw)
        .value("knock_nfq_grants_total", &closes)
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "no revoke; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        t.reaches(CLIENT4, GW_SSH4),
        None,
        "revoked, yet admitted; log:\n{}",
        daemon.log()
    );
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn an_unresolvable_host_is_a_clear_error() {
    require_netns!();
    let t = Topology::new();
    // The namespace has no route to a name server: the lookup fails at once, inside it.
    let out = our_knock(&t, &["no-such-host.invalid", "7000"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("knock-nfq: cannot resolve host \"no-such-host.invalid\": "),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn our_client_opens_a_door_of_debian_s_knockd() {
    require_netns!();
    let (t, mut daemon) = start();
    // The daemon filled the ruleset's sets (`protected` holds tcp . 22); with it gone, port 22
    // stays dropped in the kernel and only knockd's grants can open it.
    daemon.kill9();
    let knockd = Knockd::start(&t.gw);
    assert_closed(&t, CLIENT4, &[GW_SSH4]);

    our_knock_ok(&t, &["-d", "20", GW4, "7000", "8000", "9000:udp"]);

    // knockd runs nft from a shell after the last knock: give it a moment.
    knockd.wait_for_log("OPEN SESAME");
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.reaches(CLIENT4, GW_SSH4).is_none() {
        assert!(
            Instant::now() < deadline,
            "knockd did not admit 192.0.2.2; its log:\n{}",
            knockd.log()
        );
    }
    assert!(set_elements(&t, "allow4").contains("192.0.2.2 . tcp . 22"));
    assert_closed(&t, OTHER4, &[GW_SSH4]);
}
