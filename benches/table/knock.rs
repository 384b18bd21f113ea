//! The knock rows, run the same way against knock-nfq and Debian's knockd: the first SYN
//! right behind the last knock, the polled time from the last knock to an admitted connection,
//! and grants per second from distinct (forged) sources.

use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::probe::{self, Try};
use crate::harness::{CLIENT4, GW4, Topology};

/// First SYNs admitted of `tries` (knock, then connect at once; grants revoked between tries).
pub fn first_syns(t: &Topology, tries: usize) -> usize {
    (0..tries)
        .filter(|_| {
            probe::revoke_all(t);
            probe::knock_and_connect_at_once(t, CLIENT4, GW4, "192.0.2.1:22").is_some()
        })
        .count()
}

/// Polled knock → open from each of `sources` (fresh addresses of the client).
pub fn polled(t: &Topology, sources: &[String]) -> Vec<Try> {
    sources
        .iter()
        .map(|source| {
            let source: IpAddr = source.parse().expect("literal");
            probe::time_to_admit(t, source, move || probe::knock_sequence(source))
        })
        .collect()
}

pub fn median(tries: &[Try]) -> Duration {
    let mut latencies: Vec<Duration> = tries.iter().map(|t| t.latency).collect();
    latencies.sort();
    latencies[latencies.len() / 2]
}

/// Grants from `count` forged sources, each sending the whole sequence back to back (scapy,
/// `craft.py spoofed`), and what they took.
#[derive(Debug, Clone, Copy)]
pub struct Grants {
    pub granted: usize,
    /// Grants per second in `allow4`, from the first grant seen to the last.
    pub per_second: f64,
    /// Sources per second the generator sent.
    pub offered: f64,
}

/// Sends the forged completions and watches `allow4` (every 10 ms) until it holds all of
/// them or has not grown for 2 s. The rate counts from the first grant seen to the last (the
/// generator's start-up is not the daemon's).
pub fn grants(t: &Topology, count: usize) -> Grants {
    probe::revoke_all(t);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns/craft.py");
    let sender = t
        .client
        .command("/usr/bin/python3")
        .arg(&script)
        .args(["spoofed", GW4, &count.to_string()])
        .args(["tcp:7000:S", "tcp:8000:S", "udp:9000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start craft.py");
    let started = Instant::now();
    let (mut granted, mut first, mut last) = (0, None, started);
    while granted < count && last.elapsed() < Duration::from_secs(if granted == 0 { 10 } else { 2 })
    {
        std::thread::sleep(Duration::from_millis(10));
        let now = spoofed_grants(t);
        if now > granted {
            first.get_or_insert((now, Instant::now()));
            (granted, last) = (now, Instant::now());
        }
    }
    let out = sender.wait_with_output().expect("craft.py");
    assert!(out.status.success(), "craft.py spoofed failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let sent: f64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("craft.py printed {text:?}"));
    let per_second = first.map_or(0.0, |(at_first, when)| {
        (granted - at_first) as f64 / last.duration_since(when).as_secs_f64().max(1e-3)
    });
    Grants {
        granted,
        per_second,
        offered: count as f64 / sent.max(1e-3),
    }
}

/// Elements of `allow4` for the forged sources (10.64.0.0/10).
fn spoofed_grants(t: &Topology) -> usize {
    let out =
        t.gw.exec("nft", &["list", "set", "inet", "knock_nfq", "allow4"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    listed.matches("10.64.").count() + listed.matches("10.65.").count()
}
