//! The packaged unit under real systemd: the Debian root booted with `systemd-nspawn -b`
//! (systemd as PID 1) inside the gateway's network namespace of a sandbox topology, the .deb
//! installed there with dpkg, the unit started with all its hardening, and a client knocking
//! through it from its own namespace.
//!
//! Two things are the test's, not the package's, each for a reason of this machine:
//! - The ruleset is loaded from outside the guest, into the gateway namespace, with the sandbox's
//!   loader: this kernel lacks nft's `queue` expression, and the loader's iptables-nft fallback
//!   needs iptables, which the guest has not. So the guest's nftables.service (whose
//!   /etc/nftables.conf begins with `flush ruleset`) is masked: the unit `Wants=` it, and
//!   starting it would flush that ruleset.
//! - The guest gets what a host's init has and nspawn withholds by default:
//!   - `CAP_NET_ADMIN`: nspawn keeps it only with `--private-network`, not with
//!     `--network-namespace-path` (without it the daemon fails with "nf_tables refused the
//!     query: ... need CAP_NET_ADMIN").
//!   - The unified cgroup hierarchy (`SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`), `CAP_BPF` and the
//!     `bpf` system call: systemd enforces `IPAddressDeny=` with a cgroup BPF program, and
//!     ignores it, logging only at debug level, without all three. This machine's cgroups are
//!     hybrid (v1, with cgroup2 at /sys/fs/cgroup/unified), where systemd 252 reports "Not
//!     running with unified cgroups, BPF firewalling is not supported"; without CAP_BPF it is
//!     "Can't load kernel CGROUP SKB BPF program ...: Operation not permitted".
//! - `WatchdogSec=4s` in a drop-in, so the watchdog's pings are seen within seconds.
//!
//! `--register=no --keep-unit` because this machine's PID 1 is not systemd (no machined, no
//! system bus to register with).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use knock_nfq::sandbox::{CLIENT4, GW4, Netns, Topology, connect_from, ruleset, serve};

use crate::root::Root;
use crate::{deb, ok, stdout, text};

const CONFIG: &str = "/etc/knock-nfq/knock-nfq.toml";
/// A door, and metrics on every address: IPAddressAllow=localhost must leave only loopback.
const TEST_CONFIG: &str = r#"[daemon]
interfaces = ["wan0"]
metrics = "0.0.0.0:9469"

[[door]]
name = "ssh"
sequence = ["7000:tcp", "9000:tcp", "8000:tcp"]
strict = true
seq_timeout = "15s"
open = ["22/tcp"]
open_for = "60s"
"#;
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
#[ignore = "needs root and the .deb: run by `cargo xtask test`"]
fn the_unit_runs_hardened_under_systemd_and_a_knock_opens_ssh() {
    let root = Root::fresh();
    // Not /tmp: the guest mounts a tmpfs there.
    root.copy_in(&deb(), "/var/tmp/knock-nfq.deb");
    std::os::unix::fs::symlink(
        "/dev/null",
        root.join("/etc/systemd/system/nftables.service"),
    )
    .unwrap();
    let topology = Topology::build("pks").expect("the sandbox topology");
    let mode = ruleset::load(&topology.gw, include_str!("../../deploy/nftables.conf"))
        .expect("load deploy/nftables.conf into the gateway namespace");
    eprintln!("systemd test: ruleset loaded with the {mode}");
    serve(&topology.gw, 22, "SSH-2.0-test").expect("a service on the gateway's port 22");

    let guest = Guest::boot(&root, &topology.gw);
    install_enables_but_does_not_start(&guest);
    start_hardened(&guest, &root);
    let started = guest.show("ActiveEnterTimestampMonotonic");
    knock_opens_ssh(&topology);
    metrics_answer_on_loopback_only(&topology.gw);
    broken_reload_keeps_it_running(&guest, &root, &topology.gw);
    upgrade_with_a_broken_config_keeps_it_running(&guest);
    watchdog_is_pinged(&guest);
    assert_eq!(guest.show("NRestarts"), "0");
    assert_eq!(
        guest.show("ActiveEnterTimestampMonotonic"),
        started,
        "never restarted"
    );
}

/// A booted guest: systemd-nspawn's child running systemd as PID 1. Powered off on drop.
struct Guest {
    nspawn: Child,
    pid1: u32,
    log: std::path::PathBuf,
}

impl Guest {
    fn boot(root: &Root, gw: &Netns) -> Guest {
        // Inside the root, so it goes with it; read on failure.
        let log = root.join("/var/log/nspawn-console.log");
        let console = File::create(&log).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .args([
                "-b",
                "-q",
                "--register=no",
                "--keep-unit",
                "--console=read-only",
            ])
            // What a host's init has and nspawn withholds (see the header).
            .args([
                "--capability=CAP_NET_ADMIN,CAP_BPF",
                "--system-call-filter=bpf",
            ])
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .arg(format!("--network-namespace-path=/run/netns/{}", gw.name))
            .arg("-D")
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .unwrap_or_else(|e| panic!("systemd test: step boot: cannot run systemd-nspawn: {e}"));
        let booting = Instant::now();
        let mut guest = Guest {
            nspawn,
            pid1: 0,
            log,
        };
        guest.pid1 = guest.wait_for_pid1();
        guest.wait_until_running();
        eprintln!(
            "systemd test: guest running after {:.1?}",
            booting.elapsed()
        );
        guest
    }

    /// The guest's init, seen from here: a descendant of nspawn whose pid in its namespace is 1.
    fn wait_for_pid1(&mut self) -> u32 {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                self.fail(
                    "boot",
                    &format!("systemd-nspawn exited ({status}) before init ran"),
                );
            }
            if let Some(pid) = init_under(self.nspawn.id()) {
                return pid;
            }
            sleep(Duration::from_millis(100));
        }
        self.fail(
            "boot",
            "no process with pid 1 in its namespace under systemd-nspawn",
        )
    }

    fn wait_until_running(&mut self) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut state = String::new();
        while Instant::now() < deadline {
            state = stdout(&self.run("systemctl", &["is-system-running"]));
            match state.as_str() {
                "running" => return,
                "degraded" => {
                    let failed = self.run("systemctl", &["--failed", "--no-legend"]);
                    eprintln!("systemd test: guest degraded: {}", text(&failed));
                    return;
                }
                _ => sleep(Duration::from_millis(250)),
            }
        }
        self.fail("boot", &format!("the guest did not reach running: {state}"))
    }

    /// `program args` in every namespace of the guest (systemctl talks to its PID 1).
    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args).output().unwrap()
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &self.pid1.to_string(), "-a", program])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive");
        command
    }

    /// Runs a step's command, which must succeed; else fails with the unit's status and log.
    fn must(&self, step: &str, program: &str, args: &[&str]) -> Output {
        let out = self.run(program, args);
        if !out.status.success() {
            self.fail(step, &format!("{program} {args:?} failed: {}", text(&out)));
        }
        out
    }

    /// `systemctl show -p PROPERTY --value knock-nfq`.
    fn show(&self, property: &str) -> String {
        stdout(&self.must(
            "show",
            "systemctl",
            &["show", "-p", property, "--value", "knock-nfq"],
        ))
    }

    fn fail(&self, step: &str, why: &str) -> ! {
        let status = self.run("systemctl", &["status", "--no-pager", "-l", "knock-nfq"]);
        let journal = self.run("journalctl", &["--no-pager", "-u", "knock-nfq", "-n", "40"]);
        let boot = std::fs::read_to_string(&self.log).unwrap_or_default();
        let boot_tail: String = boot.lines().rev().take(30).collect::<Vec<_>>().join("\n");
        panic!(
            "systemd test: step {step} failed: {why}\n--- systemctl status\n{}\n--- journal\n{}\n\
             --- guest console (last lines, newest first)\n{boot_tail}",
            text(&status),
            text(&journal)
        )
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if self.pid1 != 0 {
            let _ = self.run("systemctl", &["poweroff"]);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            sleep(Duration::from_millis(200));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The process under `ancestor` whose innermost pid is 1.
fn init_under(ancestor: u32) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let innermost_one = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .is_some_and(|ids| {
                    let ids: Vec<&str> = ids.split_whitespace().collect();
                    ids.len() > 1 && ids.last() == Some(&"1")
                });
            innermost_one && descends_from(pid, ancestor)
        })
}

fn descends_from(mut pid: u32, ancestor: u32) -> bool {
    while pid > 1 {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return false;
        };
        let parent = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|p| p.trim().parse().ok());
        match parent {
            Some(p) if p == ancestor => return true,
            Some(p) => pid = p,
            None => return false,
        }
    }
    false
}

/// dpkg -i with systemd running: the unit is enabled, and not started, as the shipped config
/// has no door (the postinst says why).
fn install_enables_but_does_not_start(guest: &Guest) {
    let out = guest.must("install", "dpkg", &["-i", "/var/tmp/knock-nfq.deb"]);
    let said = text(&out);
    assert!(said.contains("enabled, not started"), "{said}");
    assert!(said.contains("door: missing"), "{said}");
    assert_eq!(
        stdout(&guest.run("systemctl", &["is-enabled", "knock-nfq"])),
        "enabled"
    );
    assert_eq!(
        stdout(&guest.run("systemctl", &["is-active", "knock-nfq"])),
        "inactive"
    );
}

/// The admin's config and the test's watchdog drop-in; the postinst, run again, starts the unit
/// (systemd waits for the daemon's READY=1); it runs as the unprivileged user with CAP_NET_ADMIN only, seccomp filtered.
fn start_hardened(guest: &Guest, root: &Root) {
    // Written in place: the file keeps the postinst's 0640 root:knock-nfq.
    std::fs::write(root.join(CONFIG), TEST_CONFIG).unwrap();
    let dropin = root.join("/etc/systemd/system/knock-nfq.service.d");
    std::fs::create_dir_all(&dropin).unwrap();
    std::fs::write(dropin.join("watchdog.conf"), "[Service]\nWatchdogSec=4s\n").unwrap();
    guest.must("start", "systemctl", &["daemon-reload"]);
    guest.must(
        "start",
        "knock-nfq",
        &["check", "--ruleset", "--config", CONFIG],
    );
    // The postinst starts it now: dpkg -i again, as an upgrade would.
    guest.must("start", "dpkg", &["-i", "/var/tmp/knock-nfq.deb"]);
    let active = stdout(&guest.run("systemctl", &["is-active", "knock-nfq"]));
    if active != "active" {
        guest.fail(
            "start",
            &format!("the postinst did not start the unit: {active}"),
        );
    }
    let pid = guest.show("MainPID");
    let status = stdout(&guest.must("hardening", "cat", &[&format!("/proc/{pid}/status")]));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let uid = field("Uid:");
    assert!(
        !uid.starts_with("0\t") && !uid.starts_with("0 "),
        "runs as root: {uid}"
    );
    let user = stdout(&guest.must(
        "hardening",
        "id",
        &["-un", uid.split_whitespace().next().unwrap()],
    ));
    assert_eq!(user, "knock-nfq");
    // CAP_NET_ADMIN is capability 12: only bit 12, effective and bounding.
    assert_eq!(field("CapEff:"), "0000000000001000");
    assert_eq!(field("CapBnd:"), "0000000000001000");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(
        field("Seccomp:"),
        "2",
        "SystemCallFilter= applies a seccomp filter"
    );
    // Sets, printed in any order.
    let words = |text: &str| {
        let mut words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        words.sort();
        words
    };
    for (property, value) in [
        ("DynamicUser", "yes"),
        ("IPAddressDeny", "0.0.0.0/0 ::/0"),
        ("WatchdogUSec", "4s"),
    ] {
        assert_eq!(words(&guest.show(property)), words(value), "{property}");
    }
}

/// From the client's namespace: port 22 dropped, Debian's `knock`, then port 22 admitted, and
/// the grant in the kernel's set.
fn knock_opens_ssh(topology: &Topology) {
    let ssh: SocketAddr = format!("{GW4}:22").parse().unwrap();
    let source = CLIENT4.parse().unwrap();
    let connect = move || connect_from(source, ssh, Duration::from_secs(2)).map(drop);
    let before = topology.client.run(connect).unwrap();
    assert!(before.is_err(), "port 22 answered before the knock");
    ok(topology
        .client
        .command("knock")
        .args([GW4, "7000", "9000", "8000"]));
    let after = topology.client.run(connect).unwrap();
    assert!(
        after.is_ok(),
        "port 22 stayed closed after the knock: {after:?}"
    );
    let set = topology
        .gw
        .exec("nft", &["list", "set", "inet", "knock_nfq", "allow4"])
        .expect("list the grant set");
    assert!(text(&set).contains(CLIENT4), "{}", text(&set));
}

/// `/metrics` on 127.0.0.1 answers with the knock counted once; on the gateway's own address
/// (the daemon listens on every address) IPAddressDeny=any refuses it.
fn metrics_answer_on_loopback_only(gw: &Netns) {
    let body = scrape(gw, "127.0.0.1:9469").expect("/metrics on loopback");
    for line in [
        "knock_nfq_knocks_total{door=\"ssh\",result=\"complete\"} 1",
        "knock_nfq_grants_total{action=\"open\",door=\"ssh\"} 1",
    ] {
        assert!(body.lines().any(|l| l == line), "no `{line}` in:\n{body}");
    }
    let outside = scrape(gw, &format!("{GW4}:9469"));
    assert!(
        outside.is_err(),
        "IPAddressDeny=any IPAddressAllow=localhost did not take effect: /metrics answered on \
         {GW4}:9469"
    );
}

fn scrape(gw: &Netns, addr: &str) -> std::io::Result<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    gw.run(move || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })
    .expect("enter the gateway namespace")
}

/// `systemctl reload` with a broken config: the same process keeps running, the journal names
/// the key, and the failed reload is counted once.
fn broken_reload_keeps_it_running(guest: &Guest, root: &Root, gw: &Netns) {
    let pid = guest.show("MainPID");
    let broken = TEST_CONFIG.replace("\"7000:tcp\"", "\"70000:tcp\"");
    std::fs::write(root.join(CONFIG), broken).unwrap();
    guest.must("reload", "systemctl", &["reload", "knock-nfq"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let failed = "knock_nfq_reloads_total{result=\"failure\"} 1";
    while Instant::now() < deadline {
        let body = scrape(gw, "127.0.0.1:9469").expect("/metrics after the reload");
        if body.lines().any(|l| l == failed) {
            break;
        }
        sleep(Duration::from_millis(100));
    }
    let body = scrape(gw, "127.0.0.1:9469").expect("/metrics after the reload");
    assert!(
        body.lines().any(|l| l == failed),
        "no `{failed}` in:\n{body}"
    );
    assert_eq!(
        stdout(&guest.run("systemctl", &["is-active", "knock-nfq"])),
        "active"
    );
    assert_eq!(guest.show("MainPID"), pid, "the same daemon runs on");
    let journal = text(&guest.run("journalctl", &["--no-pager", "-u", "knock-nfq"]));
    assert!(
        journal.contains("door[0] (\"ssh\").sequence[0]"),
        "the journal names the key:\n{journal}"
    );
}

/// dpkg -i over a config that check refuses: the running daemon is not restarted.
fn upgrade_with_a_broken_config_keeps_it_running(guest: &Guest) {
    let pid = guest.show("MainPID");
    let out = guest.must("upgrade", "dpkg", &["-i", "/var/tmp/knock-nfq.deb"]);
    let said = text(&out);
    assert!(
        said.contains("still running the previous process, not restarted"),
        "{said}"
    );
    assert!(
        said.contains("70000"),
        "the postinst shows check's error: {said}"
    );
    assert_eq!(guest.show("MainPID"), pid, "the same daemon runs on");
    assert_eq!(
        stdout(&guest.run("systemctl", &["is-active", "knock-nfq"])),
        "active"
    );
}

/// With WatchdogSec=4s the daemon pings every 2 s: the last ping's time moves on.
fn watchdog_is_pinged(guest: &Guest) {
    let first: u64 = guest.show("WatchdogTimestampMonotonic").parse().unwrap();
    sleep(Duration::from_secs(5));
    let second: u64 = guest.show("WatchdogTimestampMonotonic").parse().unwrap();
    assert!(
        first > 0 && second > first,
        "no watchdog ping: {first} then {second}"
    );
}
