//! The benchmark table: the daemon's packet path against the kernel's, and knock-nfq against
//! Debian's knockd, measured side by side in one run on real netfilter (network namespaces,
//! the shipped ruleset, the real daemon binary, hping3, Debian's `knock` and knockd). Needs
//! root. Prints a Markdown table for docs/BENCHMARKS.md.
//!
//!     cargo xtask bench            # the full table (about three minutes)
//!     cargo xtask bench --smoke    # a tiny rate and a few tries: the code still measures
//!
//! (`cargo bench --bench table -- [--smoke]` without the package installation.) Every row's
//! counts are asserted to be measured (non-zero); whether a target is met is printed, not
//! asserted: a missed target is a figure to report.

#[path = "../../tests/netns/harness/mod.rs"]
#[allow(dead_code, reason = "the harness serves the tests too")]
mod harness;

mod backlog;
mod connect;
mod flood;
mod knock;
mod report;

use std::time::Duration;

use flood::{Generators, Pace, Step};
use harness::knockd::Knockd;
use harness::{Daemon, Topology, config};

/// How much each row measures.
#[derive(Debug, Clone, Copy)]
struct Size {
    name: &'static str,
    step: Duration,
    /// A flood before the steps, long enough to fill the daemon's source table (100 000).
    warmup: Duration,
    paces: &'static [Pace],
    /// The fixed rate the CPU per verdict is read at.
    fixed: Pace,
    /// The pace of each generator for one worker against two.
    workers_pace: Pace,
    /// SYNs queued while the daemon is stopped, for the backlog row, and how many times.
    backlog: (u32, usize),
    connects: usize,
    first_syns: usize,
    knockd_first_syns: usize,
    polled: usize,
    grants: usize,
}

const FULL: Size = Size {
    name: "full",
    step: Duration::from_secs(3),
    warmup: Duration::from_secs(3),
    paces: &[
        Pace::Every(1000),
        Pace::Every(100),
        Pace::Every(50),
        Pace::Every(20),
        Pace::Every(10),
        Pace::Flood,
    ],
    fixed: Pace::Every(50),
    workers_pace: Pace::Flood,
    // Within the kernel queue (4096) and the socket's buffer.
    backlog: (3000, 5),
    connects: 10_000,
    first_syns: 100,
    // Each of knockd's misses waits the whole connect timeout (0.9 s).
    knockd_first_syns: 20,
    polled: 20,
    grants: 300,
};

const SMOKE: Size = Size {
    name: "smoke",
    step: Duration::from_secs(1),
    warmup: Duration::ZERO,
    paces: &[Pace::Every(1000)],
    fixed: Pace::Every(1000),
    workers_pace: Pace::Every(1000),
    backlog: (200, 1),
    connects: 200,
    first_syns: 3,
    knockd_first_syns: 2,
    polled: 2,
    grants: 10,
};

/// Everything the table shows.
#[derive(Debug)]
pub struct Figures {
    size: Size,
    ruleset_mode: String,
    kernel_only: Step,
    steps: Vec<Step>,
    /// Each drain, sorted by CPU per verdict.
    backlogs: Vec<backlog::Backlog>,
    kernel_connect: Vec<Duration>,
    queued_connect: Vec<Duration>,
    first_syns: (usize, usize),
    polled: (Vec<harness::probe::Try>, Vec<harness::probe::Try>),
    grants: (knock::Grants, knock::Grants),
    /// The flood with a generator on each CPU: one worker, two (fanout).
    workers: (Step, Step),
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "table: end-to-end benchmark; run it with `cargo xtask bench [--smoke]` (as root)"
        );
        return;
    }
    if let Some(why) = harness::unavailable() {
        panic!("table: cannot run: {why}");
    }
    let size = match args.iter().any(|a| a == "--smoke") {
        true => SMOKE,
        false => FULL,
    };
    let figures = measure(size);
    report::check_measured(&figures);
    print!("{}", report::markdown(&figures));
}

/// The door `ssh` of the harness config, granting as fast as the rows ask.
fn bench_config(door_extra: &str) -> String {
    config("5s", "30s").replacen(
        "tcp_flags = \"syn,!ack\"\n",
        &format!("tcp_flags = \"syn,!ack\"\nmax_grants_per_second = 100000\n{door_extra}"),
        1,
    )
}

fn measure(size: Size) -> Figures {
    let t = Topology::new();
    eprintln!("table ({}): {}", size.name, t.ruleset_mode);
    harness::serve(&t.gw, connect::PORT, "plain");
    let sources: Vec<String> = (0..2 * size.polled)
        .map(|i| format!("192.0.2.{}", 100 + i))
        .collect();
    for source in &sources {
        let address = format!("{source}/24");
        t.client
            .ip(&["addr", "add", &address, "dev", "eth0", "preferred_lft", "0"]);
    }
    let daemon = Daemon::start_at_info(&t.gw, &bench_config(""));

    eprintln!("table: the kernel-only flood (port 22, dropped by `protected`)");
    let kernel_only = flood::step(&t, None, (22, Pace::Flood, Generators::One), size.step);
    if !size.warmup.is_zero() {
        flood::step(
            &t,
            Some(&daemon),
            (7000, Pace::Flood, Generators::One),
            size.warmup,
        );
    }
    let steps = size
        .paces
        .iter()
        .map(|&pace| {
            eprintln!("table: flood {} at the first knock port", pace.label());
            flood::step(&t, Some(&daemon), (7000, pace, Generators::One), size.step)
        })
        .collect();
    let (backlog_size, drains) = size.backlog;
    eprintln!("table: a backlog of {backlog_size} SYNs, drained {drains} times");
    let mut backlogs: Vec<_> = (0..drains)
        .map(|_| backlog::drain(&t, &daemon, backlog_size))
        .collect();
    backlogs.sort_by(|a, b| {
        a.worker_us_per_verdict()
            .total_cmp(&b.worker_us_per_verdict())
    });

    eprintln!("table: {} connects, kernel path", size.connects);
    let kernel_connect = connect::connects(&t, size.connects);
    eprintln!("table: knock-nfq's knocks");
    let ours_first = knock::first_syns(&t, size.first_syns);
    let ours_polled = knock::polled(&t, &sources[..size.polled]);
    let ours_grants = knock::grants(&t, size.grants);
    eprintln!("table: one worker, a generator on each CPU");
    let one_worker = flood::step(
        &t,
        Some(&daemon),
        (7000, size.workers_pace, Generators::PerCpu),
        size.step,
    );
    drop(daemon);

    eprintln!("table: {} connects, queued (a strict door)", size.connects);
    let strict = Daemon::start_at_info(&t.gw, &bench_config("strict = true\n"));
    let queued_connect = connect::connects(&t, size.connects);
    drop(strict); // the sets stay: `protected` keeps port 22 dropped for knockd's run

    eprintln!("table: Debian's knockd");
    let knockd = Knockd::start(&t.gw);
    let theirs_first = knock::first_syns(&t, size.knockd_first_syns);
    let theirs_polled = knock::polled(&t, &sources[size.polled..]);
    let theirs_grants = knock::grants(&t, size.grants);
    drop(knockd);
    let two_workers = fanout(size);

    Figures {
        size,
        ruleset_mode: t.ruleset_mode.clone(),
        kernel_only,
        steps,
        backlogs,
        kernel_connect,
        queued_connect,
        first_syns: (ours_first, theirs_first),
        polled: (ours_polled, theirs_polled),
        grants: (ours_grants, theirs_grants),
        workers: (one_worker, two_workers),
    }
}

/// Two queues (`queue num 0-1 fanout`) and two workers, one pinned to each CPU, under the
/// same generators as the one-worker step, on a topology of its own.
fn fanout(size: Size) -> Step {
    let t = Topology::with_fanout();
    let config = bench_config("").replacen("queues = [0]", "queues = [0, 1]", 1);
    let daemon = Daemon::start_at_info(&t.gw, &config);
    // The workers name their threads as they start; give them a moment on a busy machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut pinned = worker_cpus(&daemon);
    while pinned.len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        pinned = worker_cpus(&daemon);
    }
    eprintln!("table: two workers (fanout), pinned to CPUs {pinned:?}");
    assert_eq!(
        pinned.len(),
        2,
        "two workers, each on one CPU: {pinned:?}; the daemon's log:\n{}",
        daemon.log()
    );
    assert_ne!(pinned[0], pinned[1], "the workers share a CPU");
    if !size.warmup.is_zero() {
        let warmup = (7000, Pace::Flood, Generators::PerCpu);
        flood::step(&t, Some(&daemon), warmup, size.warmup);
    }
    flood::step(
        &t,
        Some(&daemon),
        (7000, size.workers_pace, Generators::PerCpu),
        size.step,
    )
}

/// The CPUs each worker thread (`queue-N`) may run on, from /proc/PID/task/*/status.
fn worker_cpus(daemon: &Daemon) -> Vec<String> {
    let tasks = format!("/proc/{}/task", daemon.pid());
    let mut cpus: Vec<(String, String)> = std::fs::read_dir(&tasks)
        .expect("tasks")
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            let allowed = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
            name.starts_with("queue-")
                .then(|| (name.trim().to_owned(), allowed.trim().to_owned()))
        })
        .collect();
    cpus.sort();
    cpus.into_iter().map(|(_, allowed)| allowed).collect()
}

/// CPUs this process may run on.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Clock ticks per second, the unit of /proc/PID/stat's CPU times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64
}
