//! Time from the last knock to the first admitted connection, end to end on real netfilter:
//! knock-nfq against Debian's knockd (grant by `nft add element`), on the same namespaces, in
//! the same run. Needs root. `cargo bench --bench latency`.
//!
//! Two measurements per daemon, each try from a fresh source address:
//! - time to admit: send the sequence (7000/tcp, 8000/tcp, 9000/udp, 20 ms apart), start the
//!   clock at the last knock, then connect to port 22 with a new SYN every 100 µs until one is
//!   admitted. The first SYN leaves microseconds after the knock, racing the daemon's wake-up.
//! - as a user runs it: Debian's `knock` client, then one connection attempt (1 s timeout), like
//!   `knock host ... && ssh host`; counts the first attempts admitted.
//!
//! The same daemon also serves an SPA door: one signed datagram instead of the sequence, then
//! the same probes (knockd has no SPA; the plain sequence is its reference).

#[path = "../tests/netns/harness/mod.rs"]
#[allow(dead_code, reason = "the harness serves the tests too")]
mod harness;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use harness::knockd::Knockd;
use harness::probe::{Try, knock_sequence, time_to_admit};
use harness::{Daemon, Topology, config, connect_from};
use knock_nfq::spa::{Key, Message};

const TRIES: usize = 20;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "latency: end-to-end benchmark; run it with `cargo bench --bench latency` (as root)"
        );
        return;
    }
    if let Some(why) = harness::unavailable() {
        println!("latency: skipped: {why}");
        return;
    }
    let topology = Topology::new();
    println!("{}", topology.ruleset_mode);
    let sources: Vec<String> = (0..3 * TRIES)
        .map(|i| format!("192.0.2.{}", 100 + i))
        .collect();
    for source in &sources {
        topology.client.ip(&[
            "addr",
            "add",
            &format!("{source}/24"),
            "dev",
            "eth0",
            "preferred_lft",
            "0",
        ]);
    }

    let secrets = tempfile::tempdir().expect("tempdir");
    let key = spa_key(secrets.path());
    let mut daemon = Daemon::start(&topology.gw, &bench_config(secrets.path()));
    let ours: Vec<Try> = sources[..TRIES]
        .iter()
        .map(|s| measure(&topology, s, Knock::Sequence))
        .collect();
    let spa: Vec<Try> = sources[2 * TRIES..]
        .iter()
        .map(|s| measure(&topology, s, Knock::Spa(&key)))
        .collect();
    let ours_user = user_flow(&topology);
    let metrics = daemon.metrics(&topology.gw);
    let mean_us = |name: &str| {
        1e6 * metrics.value(&format!("{name}_sum"), &[])
            / metrics.value(&format!("{name}_count"), &[]).max(1.0)
    };
    let (verdict_us, batch_us) = (
        mean_us("knock_nfq_verdict_seconds"),
        mean_us("knock_nfq_nft_batch_seconds"),
    );
    daemon.kill9(); // the sets stay: `protected` keeps port 22 dropped for knockd's run

    let knockd = Knockd::start(&topology.gw);
    let theirs: Vec<Try> = sources[TRIES..2 * TRIES]
        .iter()
        .map(|s| measure(&topology, s, Knock::Sequence))
        .collect();
    let theirs_user = user_flow(&topology);
    drop(knockd);

    report("knock-nfq", &ours, ours_user);
    report("knockd", &theirs, theirs_user);
    report_spa(&spa);
    println!(
        "knock-nfq inside: mean {verdict_us:.0} µs from receive to verdict, mean {batch_us:.0} µs per grant batch"
    );
    let ratio = median(&theirs).as_secs_f64() / median(&ours).as_secs_f64();
    println!("ratio knockd / knock-nfq (median): {ratio:.0}x");
}

/// The harness's test config with door `ssh` granting fast enough for the bench (twenty grants
/// in about two seconds exceed the default 10 a second), and SPA door `spa` on 62201.
fn bench_config(secrets: &Path) -> String {
    let state = secrets.join("state");
    std::fs::create_dir(&state).expect("state dir");
    config("5s", "30s")
        .replacen(
            "tcp_flags = \"syn,!ack\"\n",
            "tcp_flags = \"syn,!ack\"\nmax_grants_per_second = 1000\n",
            1,
        )
        .replacen(
            "[[door]]",
            &format!("state_dir = \"{}\"\n\n[[door]]", state.display()),
            1,
        )
        + &format!(
            "\n[[door]]\nname = \"spa\"\nspa = {{ port = \"{SPA_PORT}/udp\", key_file = \"{}\" }}\n\
             open = [\"22/tcp\"]\nmax_grants_per_second = 1000\n",
            secrets.join("spa.key").display()
        )
}

/// A new key file (mode 0600) in `dir`, and the key.
fn spa_key(dir: &Path) -> Key {
    let contents = knock_nfq::config::new_key_file().expect("random");
    let path = dir.join("spa.key");
    std::fs::write(&path, contents).expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    knock_nfq::config::read_key_file(&path).expect("read key")
}

const SPA_PORT: u16 = 62201;

#[derive(Clone, Copy)]
enum Knock<'a> {
    /// 7000/tcp, 8000/tcp, 9000/udp, 20 ms apart; the clock starts at the last.
    Sequence,
    /// One datagram to door `spa`; the clock starts when it is sent.
    Spa(&'a Key),
}

fn spa_datagram(key: &Key) -> Vec<u8> {
    let message = Message {
        timestamp: knock_nfq::clock::unix_now().as_secs(),
        nonce: knock_nfq::clock::unix_now().as_nanos().to_be_bytes(),
        door: "spa".into(),
        ports: Vec::new(),
        address: None,
    };
    knock_nfq::spa::encode(&message, key)
}

/// One try from `source`: the knock, then connections until one is admitted.
fn measure(topology: &Topology, source: &str, knock: Knock) -> Try {
    let source: IpAddr = source.parse().expect("literal");
    match knock {
        Knock::Spa(key) => {
            let datagram = spa_datagram(key);
            time_to_admit(topology, source, move || {
                let gw: IpAddr = harness::GW4.parse().expect("literal");
                let udp = UdpSocket::bind(SocketAddr::new(source, 0)).expect("bind");
                udp.send_to(&datagram, SocketAddr::new(gw, SPA_PORT))
                    .expect("send");
            })
        }
        Knock::Sequence => time_to_admit(topology, source, move || knock_sequence(source)),
    }
}

/// Debian's `knock` from `source`'s namespace default, then one connection attempt.
fn knock_then_connect(topology: &Topology, source: &str) -> bool {
    topology.client.exec(
        "knock",
        &["-d", "20", harness::GW4, "7000", "8000", "9000:udp"],
    );
    let source: IpAddr = source.parse().expect("literal");
    topology.client.run(move || {
        let gw: IpAddr = harness::GW4.parse().expect("literal");
        connect_from(source, SocketAddr::new(gw, 22), Duration::from_secs(1)).is_ok()
    })
}

/// `knock`, then one connection, `TRIES` times; each try starts without a grant.
fn user_flow(topology: &Topology) -> usize {
    (0..TRIES)
        .filter(|_| {
            topology
                .gw
                .exec("nft", &["flush", "set", "inet", "knock_nfq", "allow4"]);
            knock_then_connect(topology, harness::CLIENT4)
        })
        .count()
}

fn median(tries: &[Try]) -> Duration {
    let mut latencies: Vec<Duration> = tries.iter().map(|t| t.latency).collect();
    latencies.sort();
    latencies[latencies.len() / 2]
}

fn report_spa(tries: &[Try]) {
    let first = tries.iter().filter(|t| t.attempts == 1).count();
    println!(
        "{:>10}: time to admit median {:.3} ms ({first} of {} immediate first SYNs admitted)",
        "knock-nfq SPA",
        median(tries).as_secs_f64() * 1e3,
        tries.len(),
    );
}

fn report(name: &str, tries: &[Try], user_flow_admitted: usize) {
    let first = tries.iter().filter(|t| t.attempts == 1).count();
    let mut sorted: Vec<Duration> = tries.iter().map(|t| t.latency).collect();
    sorted.sort();
    let max = sorted.last().copied().unwrap_or_default();
    println!(
        "{name:>10}: time to admit median {:.3} ms, min {:.3} ms, max {:.3} ms ({first} of {} immediate first SYNs admitted); \
         knock then connect: {user_flow_admitted} of {TRIES} first attempts admitted",
        median(tries).as_secs_f64() * 1e3,
        sorted[0].as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        tries.len(),
    );
}
