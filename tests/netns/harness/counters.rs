//! The kernel's packet counters a flood is measured by, for the flood test and the bench table.

use super::Topology;

/// Packets the gateway's WAN interface has received.
pub fn wan_rx_packets(t: &Topology) -> u64 {
    let out =
        t.gw.exec("cat", &["/sys/class/net/wan0/statistics/rx_packets"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("rx_packets: {text:?}"))
}

/// Packets the kernel dropped before any firewall saw them, because a CPU's input backlog
/// (`net.core.netdev_max_backlog`) was full: the second column of /proc/net/softnet_stat, over
/// every CPU.
pub fn backlog_drops() -> u64 {
    let stat = std::fs::read_to_string("/proc/net/softnet_stat").expect("softnet_stat");
    stat.lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|hex| u64::from_str_radix(hex, 16).expect("hex"))
        .sum()
}

/// One bound queue's line of /proc/net/netfilter/nfnetlink_queue (in the namespace that bound
/// it; fields: queue, port id, waiting, copy mode, range, dropped, user-dropped, id sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounters {
    pub queue: u64,
    /// Packets handed to the daemon's socket, or lost there (`user_dropped`): the id sequence.
    pub queued: u64,
    /// Dropped because the queue was full (`queue_dropped`).
    pub full: u64,
    /// Dropped because the socket was full (`queue_user_dropped`).
    pub socket_full: u64,
}

impl QueueCounters {
    /// Every packet that reached the queue: what the daemon got and what was dropped there.
    pub fn arrived(&self) -> u64 {
        self.queued + self.full
    }
}

/// The gateway's bound queues (none without a daemon).
pub fn queues(t: &Topology) -> Vec<QueueCounters> {
    let out = t.gw.exec("cat", &["/proc/net/netfilter/nfnetlink_queue"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            (f.len() >= 8).then(|| QueueCounters {
                queue: f[0],
                queued: f[7],
                full: f[5],
                socket_full: f[6],
            })
        })
        .collect()
}
