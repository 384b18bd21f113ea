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

mod connect;
mod flood;
mod knock;
mod report;

use std::time::Duration;

use flood::{Pace, Step};
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
    kernel_connect: Vec<Duration>,
    queued_connect: Vec<Duration>,
    first_syns: (usize, usize),
    polled: (Vec<harness::probe::Try>, Vec<harness::probe::Try>),
    grants: (knock::Grants, knock::Grants),
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
    let kernel_only = flood::step(&t, None, (22, Pace::Flood), size.step);
    if !size.warmup.is_zero() {
        flood::step(&t, Some(&daemon), (7000, Pace::Flood), size.warmup);
    }
    let steps = size
        .paces
        .iter()
        .map(|&pace| {
            eprintln!("table: flood {} at the first knock port", pace.label());
            flood::step(&t, Some(&daemon), (7000, pace), size.step)
        })
        .collect();

    eprintln!("table: {} connects, kernel path", size.connects);
    let kernel_connect = connect::connects(&t, size.connects);
    eprintln!("table: knock-nfq's knocks");
    let ours_first = knock::first_syns(&t, size.first_syns);
    let ours_polled = knock::polled(&t, &sources[..size.polled]);
    let ours_grants = knock::grants(&t, size.grants);
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

    Figures {
        size,
        ruleset_mode: t.ruleset_mode.clone(),
        kernel_only,
        steps,
        kernel_connect,
        queued_connect,
        first_syns: (ours_first, theirs_first),
        polled: (ours_polled, theirs_polled),
        grants: (ours_grants, theirs_grants),
    }
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
