//! Single-packet authorization with real datagrams: `knock-nfq spa` (and `knock --config`) as
//! the client, tests/netns/craft.py as an independent encoder written from docs/spa.md and as
//! the attacker who captured a datagram and sends it again, from the same source and another.

use std::path::{Path, PathBuf};

use crate::harness::*;
use crate::require_netns;
use crate::{CLIENT4, CLIENT6, GW_SSH4, GW_SSH6, OTHER4, assert_closed, assert_open};

const SPA_PORT: &str = "62201";
const NAT_PORT: &str = "62202";
const REJECTED: &str = "knock_nfq_spa_rejected_total";
const REASONS: &[&str] = &[
    "malformed",
    "unknown_door",
    "bad_mac",
    "stale",
    "future",
    "port_not_allowed",
    "source_not_allowed",
    "address_not_allowed",
    "replayed",
    "cache_full",
    "not_persisted",
    "rate_limited",
];

/// A key written by `knock-nfq keygen` and a state directory, both in a private tempdir.
struct Secrets {
    dir: tempfile::TempDir,
}

impl Secrets {
    fn new() -> Secrets {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("state")).expect("state dir");
        let secrets = Secrets { dir };
        keygen(&secrets.key());
        secrets
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("ssh.key")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Door `spa` (sender only) and door `spa-nat` (may name the address to grant).
    fn config(&self) -> String {
        let key = self.key();
        let state = self.path("state");
        format!(
            r#"[daemon]
queues = [0]
interfaces = ["wan0"]
metrics = "127.0.0.1:9469"
state_dir = "{state}"

[[door]]
name = "spa"
spa = {{ port = "{SPA_PORT}/udp", key_file = "{key}", max_age = "30s" }}
open = {TARGETS}
open_for = "30s"

[[door]]
name = "spa-nat"
spa = {{ port = "{NAT_PORT}/udp", key_file = "{key}" }}
spa_allow_address = true
open = {TARGETS}
"#,
            state = state.display(),
            key = key.display(),
        )
    }
}

fn keygen(path: &Path) {
    let out = std::process::Command::new(daemon::BINARY)
        .args(["keygen", "--output"])
        .arg(path)
        .output()
        .expect("run knock-nfq keygen");
    assert!(out.status.success(), "keygen: {out:?}");
}

fn start_spa() -> (Topology, Daemon, Secrets) {
    let secrets = Secrets::new();
    let topology = Topology::new();
    let daemon = Daemon::start(&topology.gw, &secrets.config());
    (topology, daemon, secrets)
}

/// `knock-nfq ARGS` in the client namespace; fails the test unless it succeeds.
fn client(t: &Topology, args: &[&str]) {
    let out = t
        .client
        .command(daemon::BINARY)
        .args(args)
        .output()
        .expect("run knock-nfq");
    assert!(
        out.status.success(),
        "knock-nfq {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The reasons counted for `door`; `door=""` holds those that name no door of the config.
fn reasons(door: &str) -> &'static [&'static str] {
    if door.is_empty() {
        &REASONS[..2]
    } else {
        REASONS
    }
}

fn rejections(daemon: &Daemon, t: &Topology, door: &str) -> Vec<f64> {
    let metrics = daemon.metrics(&t.gw);
    let door = format!("door=\"{door}\"");
    reasons(door.trim_start_matches("door=").trim_matches('"'))
        .iter()
        .map(|reason| metrics.value(REJECTED, &[&door, &format!("reason=\"{reason}\"")]))
        .collect()
}

/// Runs `send`, then asserts that exactly `reason` of `door` moved, by exactly one.
fn assert_rejected_once(daemon: &Daemon, t: &Topology, door: &str, reason: &str, send: impl Fn()) {
    let before = rejections(daemon, t, door);
    send();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after = rejections(daemon, t, door);
    for ((name, b), a) in reasons(door).iter().zip(&before).zip(&after) {
        let expected = if *name == reason { b + 1.0 } else { *b };
        assert_eq!(
            *a,
            expected,
            "{REJECTED}{{door={door},reason={name}}} after a {reason} datagram; log:\n{}",
            daemon.log()
        );
    }
}

fn opens(daemon: &Daemon, t: &Topology, door: &str) -> f64 {
    let labels = [format!("door=\"{door}\""), r#"action="open""#.to_owned()];
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    daemon
        .metrics(&t.gw)
        .value("knock_nfq_grants_total", &labels)
}

fn wait_until_opened(daemon: &Daemon, t: &Topology, door: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while opens(daemon, t, door) < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no grant for door {door}; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Removes every grant, so that whether a replay opens is visible.
fn revoke_all(t: &Topology) {
    for set in ["allow4", "allow6", "allow_fwd4", "allow_fwd6"] {
        t.gw.exec("nft", &["flush", "set", "inet", "knock_nfq", set]);
    }
}

fn replay(t: &Topology, bytes: &str, source: &str) {
    craft(t, &["raw", GW4, SPA_PORT, bytes, &format!("src={source}")]);
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn an_spa_datagram_opens_once_and_its_captured_bytes_are_rejected_also_after_a_restart() {
    require_netns!();
    let (t, mut daemon, secrets) = start_spa();
    assert_closed(&t, CLIENT4, &[GW_SSH4]);
    let key = secrets.key();
    let key = key.to_str().expect("utf-8");

    let captured = craft(
        &t,
        &[
            "capture",
            GW4,
            SPA_PORT,
            daemon::BINARY,
            "spa",
            GW4,
            "--door",
            "spa",
            "--key-file",
            key,
            "--port",
            SPA_PORT,
        ],
    );
    let captured = captured.trim();

    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    assert_closed(&t, OTHER4, &[GW_SSH4]);
    assert_eq!(opens(&daemon, &t, "spa"), 1.0);
    revoke_all(&t);

    for source in [CLIENT4, OTHER4] {
        assert_rejected_once(&daemon, &t, "spa", "replayed", || {
            replay(&t, captured, source);
        });
    }
    assert_closed(&t, CLIENT4, &[GW_SSH4]);
    assert_closed(&t, OTHER4, &[GW_SSH4]);

    daemon.kill9();
    daemon.restart(&t.gw);
    for source in [CLIENT4, OTHER4] {
        assert_rejected_once(&daemon, &t, "spa", "replayed", || {
            replay(&t, captured, source);
        });
    }
    assert_closed(&t, CLIENT4, &[GW_SSH4]);
    assert_closed(&t, OTHER4, &[GW_SSH4]);
    assert_eq!(opens(&daemon, &t, "spa"), 0.0, "no replay opened");

    client(&t, &["spa", GW4, "--door", "spa", "--key-file", key]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn each_bad_datagram_is_dropped_and_counted_under_its_reason_by_exactly_one() {
    require_netns!();
    let (t, daemon, secrets) = start_spa();
    let key = secrets.key();
    let key = key.to_str().expect("utf-8");
    let wrong = secrets.path("wrong.key");
    keygen(&wrong);
    let wrong = wrong.to_str().expect("utf-8");
    let spa = |key: &str, extra: &[&str]| {
        let mut args = vec!["spa", GW4, SPA_PORT, key, "spa"];
        args.extend_from_slice(extra);
        craft(&t, &args);
    };

    // Byte 10 is the first nonce byte: a changed byte the MAC no longer covers.
    assert_rejected_once(&daemon, &t, "spa", "bad_mac", || spa(key, &["tamper=10"]));
    assert_rejected_once(&daemon, &t, "spa", "bad_mac", || spa(wrong, &[]));
    assert_rejected_once(&daemon, &t, "spa", "stale", || spa(key, &["age=120"]));
    assert_rejected_once(&daemon, &t, "spa", "future", || spa(key, &["age=-120"]));
    assert_rejected_once(&daemon, &t, "spa", "port_not_allowed", || {
        spa(key, &["open=23/tcp"]);
    });
    let grant_other = format!("grant={OTHER4}");
    assert_rejected_once(&daemon, &t, "spa", "address_not_allowed", || {
        spa(key, &[&grant_other]);
    });
    assert_rejected_once(&daemon, &t, "", "unknown_door", || {
        craft(&t, &["spa", GW4, SPA_PORT, key, "nope"]);
    });
    assert_rejected_once(&daemon, &t, "", "malformed", || {
        craft(&t, &["raw", GW4, SPA_PORT, "01ff00"]);
    });
    assert_closed(&t, CLIENT4, &[GW_SSH4]);
    assert_closed(&t, OTHER4, &[GW_SSH4]);
    assert_eq!(opens(&daemon, &t, "spa"), 0.0);

    // The independent encoder's well-formed message opens: the format is as documented.
    spa(key, &["open=22/tcp"]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    assert_eq!(opens(&daemon, &t, "spa"), 1.0);
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn nat_mode_grants_the_named_address_only_on_a_door_that_allows_it() {
    require_netns!();
    let (t, daemon, secrets) = start_spa();
    let key = secrets.key();
    let key = key.to_str().expect("utf-8");

    let args = ["--key-file", key, "--grant-address", OTHER4];
    let mut refused = vec!["spa", GW4, "--door", "spa", "--port", SPA_PORT];
    refused.extend_from_slice(&args);
    assert_rejected_once(&daemon, &t, "spa", "address_not_allowed", || {
        client(&t, &refused);
    });
    assert_closed(&t, OTHER4, &[GW_SSH4]);

    let mut allowed = vec!["spa", GW4, "--door", "spa-nat", "--port", NAT_PORT];
    allowed.extend_from_slice(&args);
    client(&t, &allowed);
    // The kernel holds a racing connection only from the datagram's sender; the named
    // address connects once the grant is in.
    wait_until_opened(&daemon, &t, "spa-nat");
    assert_open(&t, OTHER4, GW_SSH4, "gw");
    assert_closed(&t, CLIENT4, &[GW_SSH4]);
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn knock_with_the_config_sends_spa_for_an_spa_door_over_ipv6() {
    require_netns!();
    let (t, daemon, _secrets) = start_spa();
    assert_closed(&t, CLIENT6, &[GW_SSH6]);
    let config = daemon.config_path.to_str().expect("utf-8").to_owned();

    client(&t, &["knock", "--config", &config, "--door", "spa", GW6]);

    assert_open(&t, CLIENT6, GW_SSH6, "gw");
    assert_eq!(opens(&daemon, &t, "spa"), 1.0);
}
