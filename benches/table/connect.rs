//! Connect latency: SYN to SYN-ACK from the client to a plain service on the gateway, measured
//! by a blocking connect, with the SYN queued to the daemon (a strict door queues every new
//! connection; the daemon accepts those to ports outside its sequences) or not (the kernel's
//! path alone).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::harness::{CLIENT4, GW4, Topology};

/// The plain service the connects go to: not a knock port, not protected.
pub const PORT: u16 = 2222;

/// Latencies of `count` sequential connects, sorted.
pub fn connects(t: &Topology, count: usize) -> Vec<Duration> {
    // Room for every connect's port; each ends with a RST (linger 0), so none waits in TIME_WAIT.
    t.client
        .sysctl("net.ipv4.ip_local_port_range=1024 65000")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut times = t.client.run(move || {
        let source: IpAddr = CLIENT4.parse().expect("literal");
        let dest = SockAddr::from(SocketAddr::new(GW4.parse().expect("literal"), PORT));
        (0..count)
            .map(|_| {
                let socket =
                    Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
                socket
                    .bind(&SockAddr::from(SocketAddr::new(source, 0)))
                    .expect("bind");
                socket.set_linger(Some(Duration::ZERO)).expect("linger");
                let started = Instant::now();
                socket
                    .connect_timeout(&dest, Duration::from_secs(2))
                    .expect("connect to the plain service");
                started.elapsed()
            })
            .collect::<Vec<_>>()
    });
    times.sort();
    times
}

/// The `p`-th percentile (0–100) of sorted `times`.
pub fn percentile(times: &[Duration], p: usize) -> Duration {
    times[(times.len() * p / 100).min(times.len() - 1)]
}
