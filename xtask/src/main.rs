//! Project tasks: `cargo xtask test` (every test, installing what they need) and friends.
//!
//! The test command is the one a new user runs, and CI too: on a fresh Debian machine, as root,
//! it installs the Debian packages the build and the netns suite need. `cargo xtask package`
//! builds the Debian package (package.rs).

mod package;

use std::env;
use std::process::{Command, ExitCode};

/// Build: libnftnl/libmnl headers. Tests: nftables, iptables (queue fallback), iproute2, and
/// the real peers and clients (knockd and knock, nmap, nc, scapy, tcpdump), and Prometheus
/// (`prometheus`, `promtool`) to scrape the daemon and run the dashboard's queries. The fleet:
/// `protoc` for the etcd client's build, a real etcd (`etcd`, `etcdctl`) and keepalived for
/// its tests. The man pages and completions (docs-gen): groff renders each page in its tests,
/// and bash, zsh and fish run the completion scripts. The package: `dpkg-dev` for cargo-deb's
/// dependency lookup, `debootstrap` for its test's throw-away Debian root, `systemd-container`
/// (`systemd-nspawn`) to boot that root with systemd as PID 1.
const PACKAGES: &[&str] = &[
    "dpkg-dev",
    "debootstrap",
    "systemd-container",
    "pkg-config",
    "protobuf-compiler",
    "etcd-server",
    "etcd-client",
    "keepalived",
    "libnftnl-dev",
    "libmnl-dev",
    "nftables",
    "iptables",
    "iproute2",
    "procps",
    "knockd",
    "nmap",
    "hping3",
    "netcat-openbsd",
    "python3-scapy",
    "prometheus",
    "systemd",
    "groff-base",
    "zsh",
    "fish",
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("deps") => install_packages(),
        Some("package") => install_packages().and_then(|()| package::package().map(drop)),
        Some("demo") => demo(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => match args.get(1).map(|s| s.parse::<u32>()) {
            None => fuzz(FUZZ_SECONDS),
            Some(Ok(seconds)) => fuzz(seconds),
            Some(Err(_)) => Err("usage: cargo xtask fuzz [SECONDS per target]".into()),
        },
        _ => {
            eprintln!(
                "usage: cargo xtask <demo|test [cargo test args]|bench [--smoke]|package|fuzz [SECONDS]|deps>"
            );
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

/// Installs missing packages, writes the man pages and completions (target/assets), then runs
/// every test target (unit, property, docs, the fuzz targets over their corpora), then the
/// ignored ones: the netns suite and the tests of installed peers, which need root, and the
/// Debian package's tests (tests/package/, on the .deb built first). Without root those cannot
/// run, and the command fails
/// rather than pass with them skipped. A full run (no arguments) then runs the measuring tests
/// alone, optimized (the flood, the fleet's propagation), the benchmark table's smoke run, and
/// ends with a short fuzz run.
fn test(extra: &[String]) -> Result<(), String> {
    install_packages()?;
    package::generate_docs()?;
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
    let deb = package::package()?;
    run(Command::new(cargo())
        .args(["test", "--workspace", "--tests"])
        .args(cargo_args)
        .env("DEB_UNDER_TEST", &deb)
        .args(["--", "--ignored"])
        .args(ALONE_TESTS.iter().flat_map(|name| ["--skip", name]))
        .args(test_args))?;
    if extra.is_empty() {
        // Alone and optimized: the flood takes a core; both measure the daemon, not the build.
        run(Command::new(cargo())
            .args([
                "test",
                "--release",
                "--test",
                "netns",
                "--",
                "--ignored",
                "--nocapture",
            ])
            .args(ALONE_TESTS))?;
        // The benchmark table at a tiny rate: its code keeps measuring (each row asserted).
        bench(&["--smoke".to_owned()])?;
        fuzz(FUZZ_SECONDS)?;
    }
    Ok(())
}

/// The netns tests that measure (a flood, tests/netns/flood.rs; the fleet's propagation
/// latency): run alone and optimized, so that they measure the daemon, not a busy debug build.
const ALONE_TESTS: &[&str] = &["flood::", "fleet_propagation"];

const FUZZ_TARGETS: &[&str] = &["spa_decode", "packet_path", "config_load", "import_knockd"];
/// Per target, in `cargo xtask test`.
const FUZZ_SECONDS: u32 = 15;

/// Runs each cargo-fuzz target for `seconds` from its committed corpus (new inputs go to a
/// scratch directory, so the committed corpus changes only by hand). Needs rustup's nightly
/// toolchain; cargo-fuzz is installed from crates.io when missing. Without nightly it says so:
/// the same targets already ran over their corpora as plain tests (tests/fuzz_corpus.rs).
fn fuzz(seconds: u32) -> Result<(), String> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "cargo", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !nightly {
        eprintln!(
            "xtask: fuzz: NOT RUN: no nightly toolchain (`rustup toolchain install nightly`); \
             the fuzz targets ran only as plain tests over fuzz/corpus (tests/fuzz_corpus.rs)"
        );
        return Ok(());
    }
    let installed = Command::new("rustup")
        .args(["run", "nightly", "cargo", "fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        eprintln!("xtask: installing cargo-fuzz");
        run(Command::new(cargo()).args(["install", "--locked", "cargo-fuzz"]))?;
    }
    let scratch = env::temp_dir().join(format!("knock-nfq-fuzz-{}", std::process::id()));
    for target in FUZZ_TARGETS {
        let new_inputs = scratch.join(target);
        std::fs::create_dir_all(&new_inputs)
            .map_err(|e| format!("{}: {e}", new_inputs.display()))?;
        let corpus = format!("fuzz/corpus/{target}");
        run(Command::new("rustup")
            .args(["run", "nightly", "cargo", "fuzz", "run", target])
            .arg(&new_inputs)
            .arg(&corpus)
            .args(["--", &format!("-max_total_time={seconds}")]))
        .map_err(|err| {
            format!(
                "{err}\nfuzz target {target} found a crash (in fuzz/artifacts/{target}/): \
                 fix it and copy the input into {corpus}/ as crash-NAME, a regression test"
            )
        })?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// `cargo xtask test [cargo args] [-- test args]`.
fn split_test_args(extra: &[String]) -> (&[String], &[String]) {
    match extra.iter().position(|a| a == "--") {
        Some(i) => (&extra[..i], &extra[i + 1..]),
        None => (extra, &[]),
    }
}

/// The benchmark table (benches/table/): the daemon's packet path against the kernel's and
/// knock-nfq against Debian's knockd, in one run, printed as Markdown. Needs root; `--smoke`
/// runs it at a tiny rate in a few seconds.
fn bench(args: &[String]) -> Result<(), String> {
    install_packages()?;
    if !is_root() {
        return Err(
            "the benchmark table needs root (network namespaces, NFQUEUE): \
                    run `cargo xtask bench` as root"
                .into(),
        );
    }
    let smoke = match args {
        [] => None,
        [flag] if flag == "--smoke" => Some("--smoke"),
        _ => return Err("usage: cargo xtask bench [--smoke]".into()),
    };
    run(Command::new(cargo())
        .args(["bench", "--bench", "table", "--"])
        .args(smoke))
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
