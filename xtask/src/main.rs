//! Project tasks: `cargo xtask test` (every test, installing what they need) and friends.
//!
//! The test command is the one a new user runs, and CI too: on a fresh Debian machine, as root,
//! it installs the Debian packages the build and the netns suite need.

use std::env;
use std::process::{Command, ExitCode};

/// Build: libnftnl/libmnl headers. Tests: nftables, iptables (queue fallback), iproute2, and
/// the real peers and clients (knockd and knock, nmap, nc, scapy, tcpdump), and Prometheus
/// (`prometheus`, `promtool`) to scrape the daemon and run the dashboard's queries.
const PACKAGES: &[&str] = &[
    "pkg-config",
    "libnftnl-dev",
    "libmnl-dev",
    "nftables",
    "iptables",
    "iproute2",
    "procps",
    "knockd",
    "nmap",
    "netcat-openbsd",
    "python3-scapy",
    "prometheus",
    "systemd",
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("deps") => install_packages(),
        Some("demo") => demo(),
        _ => {
            eprintln!("usage: cargo xtask <demo|test [cargo test args]|deps>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Installs missing packages, then runs every test target (unit, property, docs), then the
/// ignored ones: the netns suite and the tests of installed peers, which need root. Without
/// root those cannot run, and the command fails rather than pass with them skipped.
fn test(extra: &[String]) -> Result<(), String> {
    install_packages()?;
    let (cargo_args, test_args) = split_test_args(extra);
    run(Command::new(cargo())
        .args(["test", "--workspace", "--all-targets"])
        .args(cargo_args)
        .arg("--")
        .args(test_args))?;
    run(Command::new(cargo()).args(["test", "--workspace", "--doc"]))?;
    if !is_root() {
        return Err(
            "the netns suite (the ignored tests) needs root and did not run: \
             run `cargo xtask test` as root"
                .into(),
        );
    }
    run(Command::new(cargo())
        .args(["test", "--workspace", "--tests"])
        .args(cargo_args)
        .args(["--", "--ignored"])
        .args(test_args))
}

/// `cargo xtask test [cargo args] [-- test args]`.
fn split_test_args(extra: &[String]) -> (&[String], &[String]) {
    match extra.iter().position(|a| a == "--") {
        Some(i) => (&extra[..i], &extra[i + 1..]),
        None => (extra, &[]),
    }
}

/// Builds the daemon and runs `knock-nfq demo` (which needs root).
fn demo() -> Result<(), String> {
    install_packages()?;
    run(Command::new(cargo()).args(["run", "--quiet", "--bin", "knock-nfq", "--", "demo"]))
}

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|package| {
            let status = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", package])
                .output();
            !status.is_ok_and(|out| {
                String::from_utf8_lossy(&out.stdout).starts_with("install ok installed")
            })
        })
        .collect()
}

fn install_packages() -> Result<(), String> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let line = format!("apt-get install -y {}", missing.join(" "));
    if !is_root() {
        return Err(format!(
            "missing Debian packages; as root run:\n  apt-get update && {line}"
        ));
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("{command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed: {status}"))
    }
}
