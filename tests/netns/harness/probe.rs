//! Knocks and connection probes that measure: how soon a connection is admitted after the last
//! knock (polled), and whether the first SYN right behind it is. Shared by the latency bench,
//! the benchmark table (`cargo xtask bench`) and the first-SYN tests.
#![allow(
    dead_code,
    reason = "the polled probes serve the benches, the first-SYN ones the tests too"
)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::thread::sleep;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{GW4, Topology, connect_from};

/// How long one probe waits for its SYN to be answered before the next probe.
pub const PROBE: Duration = Duration::from_micros(100);
/// Shorter than the kernel's first SYN retransmit (1 s): a connection made within it was
/// admitted on its first SYN.
pub const FIRST_SYN: Duration = Duration::from_millis(900);

/// One polled try: from the last knock to the admitted connection, and the probes it took.
#[derive(Debug, Clone, Copy)]
pub struct Try {
    pub latency: Duration,
    pub attempts: u32,
}

/// Sends one SYN from `source` without waiting; the socket is the caller's to poll or drop.
pub fn knock_syn(source: IpAddr, dest: SocketAddr) -> Socket {
    let socket =
        Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket
        .bind(&SockAddr::from(SocketAddr::new(source, 0)))
        .expect("bind");
    socket.set_nonblocking(true).expect("nonblocking");
    let _ = socket.connect(&SockAddr::from(dest));
    socket
}

/// The test door's sequence from `source` to the gateway: 7000/tcp, 8000/tcp, 9000/udp, 20 ms
/// apart. Call it inside the client's namespace.
pub fn knock_sequence(source: IpAddr) {
    let gw: IpAddr = GW4.parse().expect("literal");
    knock_syn(source, SocketAddr::new(gw, 7000));
    sleep(Duration::from_millis(20));
    knock_syn(source, SocketAddr::new(gw, 8000));
    sleep(Duration::from_millis(20));
    let udp = UdpSocket::bind(SocketAddr::new(source, 0)).expect("bind");
    udp.send_to(b"knock", SocketAddr::new(gw, 9000))
        .expect("send");
}

/// One try from `source`: `knock` (run in the client's namespace), then a new SYN to the
/// gateway's port 22 every [`PROBE`] until one is admitted; the clock starts after `knock`.
pub fn time_to_admit(
    topology: &Topology,
    source: IpAddr,
    knock: impl FnOnce() + Send + 'static,
) -> Try {
    topology.client.run(move || {
        let gw: IpAddr = GW4.parse().expect("literal");
        knock();
        let started = Instant::now();
        for attempts in 1.. {
            if probe(source, SocketAddr::new(gw, 22)) {
                return Try {
                    latency: started.elapsed(),
                    attempts,
                };
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{source}: not admitted within 5 s"
            );
        }
        unreachable!()
    })
}

/// One non-blocking connect, waiting up to [`PROBE`] (ppoll: microsecond resolution).
pub fn probe(source: IpAddr, dest: SocketAddr) -> bool {
    let socket = knock_syn(source, dest);
    let mut pollfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: i64::try_from(PROBE.as_nanos()).expect("small"),
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask.
    let ready = unsafe { libc::ppoll(&raw mut pollfd, 1, &raw const timeout, std::ptr::null()) };
    ready == 1 && socket.take_error().ok().flatten().is_none() && socket.peer_addr().is_ok()
}

/// A client nobody here wrote would do this: three knocks 2 ms apart, then connect at once.
/// Returns how long the connection took, or `None` if its first SYN was not admitted.
pub fn knock_and_connect_at_once(
    t: &Topology,
    source: &str,
    host: &str,
    dest: &str,
) -> Option<Duration> {
    let source: IpAddr = source.parse().unwrap();
    let host: IpAddr = host.parse().unwrap();
    let dest: SocketAddr = dest.parse().unwrap();
    t.client.run(move || {
        let mut syns = Vec::new();
        for port in [7000, 8000] {
            syns.push(knock_syn(source, SocketAddr::new(host, port)));
            sleep(Duration::from_millis(2));
        }
        let udp = UdpSocket::bind(SocketAddr::new(source, 0)).unwrap();
        udp.send_to(b"knock", SocketAddr::new(host, 9000)).unwrap();
        let started = Instant::now();
        let connected = connect_from(source, dest, FIRST_SYN);
        connected.ok().map(|_| started.elapsed())
    })
}

/// Empties every grant set in the gateway (revokes all grants).
pub fn revoke_all(t: &Topology) {
    for set in ["allow4", "allow6", "allow_fwd4", "allow_fwd6"] {
        t.gw.exec("nft", &["flush", "set", "inet", "knock_nfq", set]);
    }
}
