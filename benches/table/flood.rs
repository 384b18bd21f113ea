//! The flood rows: hping3 SYNs from random sources at the gateway, through the daemon (the
//! first knock port, queued) or dropped in the kernel (port 22, `protected`), at stepped rates.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::counters::{QueueCounters, backlog_drops, queues, wan_rx_packets};
use crate::harness::{Daemon, GW4, Topology};

/// How hping3 paces its SYNs: `-i uN` (one every N µs, at best: it sleeps between sends),
/// or `--flood` (as fast as it can).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Every(u32),
    Flood,
}

impl Pace {
    pub fn label(self) -> String {
        match self {
            Pace::Every(us) => format!("-i u{us}"),
            Pace::Flood => "--flood".into(),
        }
    }
}

/// Where the generators run: one hping3 anywhere, or one pinned to each CPU (so that
/// `queue num 0-1 fanout`, which picks the queue by the CPU that handles the packet, sees both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generators {
    One,
    PerCpu,
}

/// hping3 in the client namespace; killed on drop.
pub struct Flood(Vec<Child>);

impl Flood {
    pub fn start(t: &Topology, port: u16, pace: Pace, generators: Generators) -> Flood {
        let port = port.to_string();
        let pace_args: Vec<String> = match pace {
            Pace::Every(us) => vec!["-i".into(), format!("u{us}")],
            Pace::Flood => vec!["--flood".into()],
        };
        let cpus: Vec<Option<usize>> = match generators {
            Generators::One => vec![None],
            Generators::PerCpu => (0..crate::cpus()).map(Some).collect(),
        };
        let children = cpus
            .into_iter()
            .map(|cpu| {
                let mut command = match cpu {
                    Some(cpu) => {
                        let mut c = t.client.command("taskset");
                        c.args(["-c", &cpu.to_string(), "hping3"]);
                        c
                    }
                    None => t.client.command("hping3"),
                };
                command
                    .args(&pace_args)
                    .args(["--rand-source", "-q", "-S", "-p", &port, GW4])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start hping3")
            })
            .collect();
        Flood(children)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Counters read before and after a step.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    rx: u64,
    verdicts: f64,
    arrived: u64,
    queue_drops: u64,
    backlog_drops: u64,
    cpu_ticks: u64,
    worker_ns: u64,
}

/// One step's rates.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub pace: Pace,
    /// Packets per second the gateway's WAN interface received.
    pub offered: f64,
    /// Packets per second that reached the queue: the offered less what routing drops before
    /// the input hook (hping3's multicast and loopback sources).
    pub reached_queue: f64,
    pub verdicts_per_s: f64,
    /// Packets the kernel dropped at the full queue or socket (fail closed, unjudged).
    pub queue_drops: u64,
    /// Packets dropped before any firewall saw them (a CPU's input backlog was full).
    pub backlog_drops: u64,
    /// Daemon CPU time (user + system, /proc/PID/stat) per verdict, µs.
    pub cpu_us_per_verdict: f64,
    /// The part of it spent in the queue workers' threads (the rest: the runtime's threads),
    /// from their schedstat (nanoseconds, where /proc/PID/stat counts 10 ms ticks).
    pub worker_us_per_verdict: f64,
}

fn counters(t: &Topology, daemon: Option<&Daemon>) -> Counters {
    let queues = queues(t);
    Counters {
        rx: wan_rx_packets(t),
        verdicts: daemon.map_or(0.0, |d| verdicts(&d.metrics(&t.gw))),
        arrived: queues.iter().map(QueueCounters::arrived).sum(),
        queue_drops: queues.iter().map(|q| q.full + q.socket_full).sum(),
        backlog_drops: backlog_drops(),
        cpu_ticks: daemon.map_or(0, Daemon::cpu_ticks),
        worker_ns: daemon.map_or(0, Daemon::worker_run_ns),
    }
}

/// Floods `port` for `length` at `pace`; the daemon (if any) gets a moment to answer what is
/// still queued before the counters are read again.
pub fn step(
    t: &Topology,
    daemon: Option<&Daemon>,
    (port, pace, generators): (u16, Pace, Generators),
    length: Duration,
) -> Step {
    let before = counters(t, daemon);
    let started = Instant::now();
    {
        let _flood = Flood::start(t, port, pace, generators);
        std::thread::sleep(length);
    }
    let seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let after = counters(t, daemon);
    let verdicts = after.verdicts - before.verdicts;
    let seconds_of = |ticks: u64| ticks as f64 / crate::clock_ticks();
    let cpu_seconds = seconds_of(after.cpu_ticks - before.cpu_ticks);
    let worker_seconds = (after.worker_ns - before.worker_ns) as f64 / 1e9;
    Step {
        pace,
        offered: (after.rx - before.rx) as f64 / seconds,
        reached_queue: (after.arrived - before.arrived) as f64 / seconds,
        verdicts_per_s: verdicts / seconds,
        queue_drops: after.queue_drops - before.queue_drops,
        backlog_drops: after.backlog_drops - before.backlog_drops,
        cpu_us_per_verdict: 1e6 * cpu_seconds / verdicts.max(1.0),
        worker_us_per_verdict: 1e6 * worker_seconds / verdicts.max(1.0),
    }
}

pub fn verdicts(metrics: &crate::harness::daemon::Metrics) -> f64 {
    ["drop", "accept"]
        .iter()
        .map(|v| metrics.value("knock_nfq_verdicts_total", &[&format!("verdict=\"{v}\"")]))
        .sum()
}
