//! The netns integration harness: the library's sandbox (namespaces, the topology, the ruleset
//! loader, the services) with panicking methods, the real daemon, real clients.

pub mod counters;
pub mod daemon;
pub mod knockd;
pub mod netns;
pub mod probe;
pub mod prometheus;
pub mod topology;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

pub use daemon::Daemon;
pub use topology::*;

/// Why this machine cannot run the suite, if it cannot.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, nftables, NFQUEUE)".into());
    }
    for tool in [
        "ip",
        "nft",
        "iptables-nft",
        "knock",
        "nmap",
        "hping3",
        "/usr/bin/python3",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Some(format!(
                "{tool} is not installed (cargo xtask test installs it)"
            ));
        }
    }
    None
}

/// Fails a test, saying why, where the suite cannot run. The netns tests are `#[ignore]`d, so a
/// plain `cargo test` lists them as ignored (a visible skip); `cargo xtask test` runs them as
/// root, and there a missing requirement is a failure, never a silent pass.
#[macro_export]
macro_rules! require_netns {
    () => {
        if let Some(why) = $crate::harness::unavailable() {
            panic!("cannot run: {why}");
        }
    };
}

/// The LAN targets every test door opens, besides the gateway's own port 22.
pub const TARGETS: &str = r#"["22/tcp", "198.51.100.10:80/tcp", "[2001:db8:2::10]:80/tcp"]"#;

/// The test config: door `ssh` (7000, 8000 tcp, 9000 udp) opens; `ssh-close` (9100, 9200) closes.
pub fn config(seq_timeout: &str, open_for: &str) -> String {
    format!(
        r#"[daemon]
queues = [0]
interfaces = ["wan0"]
metrics = "127.0.0.1:9469"

[[door]]
name = "ssh"
sequence = ["7000:tcp", "8000:tcp", "9000:udp"]
seq_timeout = "{seq_timeout}"
tcp_flags = "syn,!ack"
open = {TARGETS}
open_for = "{open_for}"

[[door]]
name = "ssh-close"
sequence = ["9100:tcp", "9200:tcp"]
action = "close"
open = {TARGETS}
"#
    )
}

/// Knocks from a chosen source address, as a knock client does: a TCP knock is one SYN (a
/// non-blocking connect, then close), a UDP knock one datagram.
pub fn knock_from(topology: &Topology, source: &str, host: &str, ports: &[&str]) {
    knock_in(&topology.client, source, host, ports);
}

/// [`knock_from`] from any namespace's address.
pub fn knock_in(client: &netns::Netns, source: &str, host: &str, ports: &[&str]) {
    let source: IpAddr = source.parse().expect("literal");
    let host: IpAddr = host.parse().expect("literal");
    let ports: Vec<String> = ports.iter().map(|p| (*p).to_owned()).collect();
    client.run(move || {
        for port in ports {
            let (number, udp) = match port.split_once(':') {
                Some((n, proto)) => (n.parse::<u16>().expect("port"), proto == "udp"),
                None => (port.parse().expect("port"), false),
            };
            let dest = SocketAddr::new(host, number);
            if udp {
                let socket = UdpSocket::bind(SocketAddr::new(source, 0)).expect("bind");
                socket.send_to(b"knock", dest).expect("send");
            } else {
                let socket =
                    Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP))
                        .expect("socket");
                socket
                    .bind(&SockAddr::from(SocketAddr::new(source, 0)))
                    .expect("bind");
                socket.set_nonblocking(true).expect("nonblocking");
                let _ = socket.connect(&SockAddr::from(dest));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

/// Runs tests/netns/craft.py (scapy) in the client namespace; returns its stdout.
pub fn craft(topology: &Topology, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netns/craft.py");
    let mut all = vec![script.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let out = topology.client.exec("/usr/bin/python3", &all);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The elements of a set in the gateway, as `nft` lists them.
pub fn set_elements(topology: &Topology, set: &str) -> String {
    let out = topology
        .gw
        .exec("nft", &["list", "set", "inet", "knock_nfq", set]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
