//! Two queue workers (`queues = [0, 1]`, `queue num 0-1 fanout`): each keeps its own packet
//! counters and the scrape adds them up, so every verdict is counted once, whichever worker
//! gave it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::require_netns;

/// SYNs sent from each CPU.
const SYNS: u32 = 20;
/// Where each CPU's SYNs come from (hping3 `-a`): both addresses of the client.
const SOURCES: [&str; 2] = [CLIENT4, OTHER4];

/// Packets the kernel has queued to `queue` in the gateway (`id_sequence`, the last packet id
/// of the queue's instance); 0 while no one is bound to it.
fn queued(t: &Topology, queue: u16) -> u64 {
    let out = t.gw.exec("cat", &["/proc/net/netfilter/nfnetlink_queue"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&queue.to_string().as_str()))
        .and_then(|fields| fields.get(7)?.parse().ok())
        .unwrap_or(0)
}

/// `SYNS` SYNs to the first knock port from `source`, sent on `cpu` (so the kernel handles
/// them there and fanout puts them on that CPU's queue); waits for hping3 to finish. (hping3
/// exits 1 when nothing answers, as knocks never are: its summary says what it sent.)
fn syns_on_cpu(t: &Topology, cpu: usize, source: &str) {
    let out = t
        .client
        .command("taskset")
        .args(["-c", &cpu.to_string(), "hping3", "-q", "-S", "-p", "7000"])
        .args(["-c", &SYNS.to_string(), "-i", "u5000", "-a", source, GW4])
        .stdin(Stdio::null())
        .output()
        .expect("run hping3");
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("{SYNS} packets transmitted")),
        "hping3 on CPU {cpu}: {}\n{text}",
        out.status
    );
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn two_workers_counters_are_summed_once_each_in_the_scrape() {
    require_netns!();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(
        cpus >= 2,
        "cannot run: fanout over two queues needs two CPUs, this machine has {cpus}"
    );
    let t = Topology::with_fanout();
    let config = config("30s", "3s").replacen("queues = [0]", "queues = [0, 1]", 1);
    let daemon = Daemon::start(&t.gw, &config);
    let before = daemon.metrics(&t.gw);
    let queued_before = [queued(&t, 0), queued(&t, 1)];

    for (cpu, source) in SOURCES.iter().enumerate() {
        syns_on_cpu(&t, cpu, source);
    }

    let total = f64::from(2 * SYNS);
    let drops = [r#"verdict="drop""#];
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut after = daemon.metrics(&t.gw);
    while after.value("knock_nfq_verdicts_total", &drops)
        < before.value("knock_nfq_verdicts_total", &drops) + total
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        after = daemon.metrics(&t.gw);
    }
    let per_queue = [
        queued(&t, 0) - queued_before[0],
        queued(&t, 1) - queued_before[1],
    ];
    eprintln!(
        "{}; packets queued per queue: {per_queue:?}",
        t.ruleset_mode
    );
    assert_eq!(
        per_queue,
        [u64::from(SYNS); 2],
        "each CPU's SYNs on its own queue (fanout), so both workers judged packets"
    );
    let delta =
        |name: &str, labels: &[&str]| after.value(name, labels) - before.value(name, labels);
    assert_eq!(delta("knock_nfq_verdicts_total", &drops), total);
    assert_eq!(
        delta("knock_nfq_verdicts_total", &[r#"verdict="accept""#]),
        0.0
    );
    assert_eq!(delta("knock_nfq_verdict_seconds_count", &[]), total);
    assert_eq!(
        delta("knock_nfq_verdict_seconds_bucket", &[r#"le="+Inf""#]),
        total
    );
    // Each source's first SYN started an attempt at the door (the rest are retransmits).
    assert_eq!(after.value("knock_nfq_tracked_sources", &[]), 2.0);
    assert_eq!(
        delta(
            "knock_nfq_knocks_total",
            &[r#"door="ssh""#, r#"result="advance""#]
        ),
        2.0
    );
}
