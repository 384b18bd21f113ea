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
