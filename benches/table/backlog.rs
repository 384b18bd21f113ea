//! The backlog row: the queue worker's CPU per verdict when every receive is full. The daemon
//! is stopped (SIGSTOP) while hping3 queues SYNs from random sources at the first knock port,
//! then resumed: it drains the kernel queue 32 packets per receive, so the figure is the packet
//! path's own cost, without the wake-up per packet that a paced flood costs.

use std::time::{Duration, Instant};

use crate::flood::verdicts;
use crate::harness::{Daemon, GW4, Topology};

/// One drain of a backlog.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    /// Packets waiting in the kernel queue when the daemon was resumed.
    pub queued: u64,
    pub verdicts: f64,
    /// The queue workers' CPU time over the drain (/proc/PID/task/TID/schedstat, ns).
    pub worker_ns: u64,
    pub drained_in: Duration,
}

impl Backlog {
    pub fn worker_us_per_verdict(&self) -> f64 {
        self.worker_ns as f64 / 1e3 / self.verdicts.max(1.0)
    }
}

pub fn drain(t: &Topology, daemon: &Daemon, packets: u32) -> Backlog {
    let verdicts_before = verdicts(&daemon.metrics(&t.gw));
    let ns_before = daemon.worker_run_ns();
    daemon.signal(libc::SIGSTOP);
    let sent = t
        .client
        .command("hping3")
        .args([
            "-c",
            &packets.to_string(),
            "-i",
            "u20",
            "--rand-source",
            "-q",
        ])
        .args(["-S", "-p", "7000", GW4])
        .output();
    let queued = queue_length(t);
    daemon.signal(libc::SIGCONT);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    while queue_length(t) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let drained_in = started.elapsed();
    let worker_ns = daemon.worker_run_ns() - ns_before;
    let verdicts = verdicts(&daemon.metrics(&t.gw)) - verdicts_before;
    // hping3 exits non-zero when nothing answers, as here: only that it ran counts.
    sent.expect("run hping3");
    Backlog {
        queued,
        verdicts,
        worker_ns,
        drained_in,
    }
}

/// Packets waiting for a verdict in the gateway's queues (field 3 of each line of
/// /proc/net/netfilter/nfnetlink_queue).
fn queue_length(t: &Topology) -> u64 {
    let out = t.gw.exec("cat", &["/proc/net/netfilter/nfnetlink_queue"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum()
}
