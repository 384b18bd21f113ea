//! The demo's throw-away network: three namespaces and two veth links, removed on drop.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::thread;

use super::DemoError;

/// The kernel's NFQUEUE mark used by the fallback (see `tests/netns/ruleset`).
const FALLBACK_MARK: &str = "0x40000000";

/// One namespace; deleted (with every process in it) on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    fn create(name: String) -> Result<Netns, DemoError> {
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let netns = Netns { name };
        netns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// `ip netns exec NAME PROGRAM`, to be given arguments and run.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output, DemoError> {
        run(self.command(program).args(args))
    }

    /// Runs `f` on a thread inside this namespace: the sockets it opens live there.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DemoError> {
        let path = format!("/run/netns/{}", self.name);
        let handle = thread::spawn(move || enter(&path).map(|()| f()));
        handle
            .join()
            .map_err(|_| DemoError::Step("a demo thread panicked".into()))?
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &str) -> Result<(), DemoError> {
    let file = File::open(path).map_err(|e| DemoError::Io(format!("open {path}"), e))?;
    // SAFETY: setns with a namespace fd we hold open changes only this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(DemoError::Io(
            format!("setns {path}"),
            io::Error::last_os_error(),
        ))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
            {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid is in our namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs a command, turning a failure into an error that carries its stderr.
pub fn run(command: &mut Command) -> Result<Output, DemoError> {
    let out = command
        .output()
        .map_err(|e| DemoError::Io(format!("{command:?}"), e))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(DemoError::Command(
            format!("{command:?}"),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// client ── wan0 [gateway] lan0 ── LAN host.
#[derive(Debug)]
pub struct Sandbox {
    pub client: Netns,
    pub gateway: Netns,
    pub lan: Netns,
}

pub const GATEWAY: &str = "192.0.2.1";
pub const CLIENT: &str = "192.0.2.2";
pub const LAN_HOST: &str = "198.51.100.10";

impl Sandbox {
    pub fn build() -> Result<Sandbox, DemoError> {
        let tag = std::process::id() % 100_000;
        let sandbox = Sandbox {
            client: Netns::create(format!("kdemo-client-{tag}"))?,
            gateway: Netns::create(format!("kdemo-gw-{tag}"))?,
            lan: Netns::create(format!("kdemo-lan-{tag}"))?,
        };
        let gw = &sandbox.gateway;
        for (dev, peer) in [("wan0", &sandbox.client), ("lan0", &sandbox.lan)] {
            gw.exec(
                "ip",
                &[
                    "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
                ],
            )?;
        }
        for (ns, dev, addr) in [
            (&sandbox.client, "eth0", "192.0.2.2/24"),
            (gw, "wan0", "192.0.2.1/24"),
            (gw, "lan0", "198.51.100.1/24"),
            (&sandbox.lan, "eth0", "198.51.100.10/24"),
        ] {
            ns.exec("ip", &["addr", "add", addr, "dev", dev])?;
            ns.exec("ip", &["link", "set", dev, "up"])?;
        }
        sandbox
            .lan
            .exec("ip", &["route", "add", "default", "via", "198.51.100.1"])?;
        gw.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        gw.exec(
            "nft",
            &["add table ip demo_nat; add chain ip demo_nat pre { type nat hook prerouting priority dstnat; }; \
               add rule ip demo_nat pre iifname wan0 tcp dport 8080 dnat to 198.51.100.10:80"],
        )?;
        Ok(sandbox)
    }

    /// Loads the ruleset into the gateway; on kernels without nft's `queue` expression the queue
    /// rule becomes an iptables-nft NFQUEUE rule, as `tests/netns/ruleset` does. Returns the mode.
    pub fn load_ruleset(&self, ruleset: &str) -> Result<&'static str, DemoError> {
        let probe = "table inet knock_nfq_probe { chain c { type filter hook input priority 0; queue num 0 bypass; } }\n";
        if nft_stdin(&self.gateway, &["-c", "-f", "-"], probe).is_ok() {
            nft_stdin(&self.gateway, &["-f", "-"], ruleset)?;
            return Ok("nft queue statement");
        }
        let marked: String = ruleset
            .lines()
            .map(|line| match line.trim_start().strip_prefix("queue num") {
                Some(_) => format!("\t\tmeta mark set mark or {FALLBACK_MARK}\n"),
                None => format!("{line}\n"),
            })
            .collect();
        nft_stdin(&self.gateway, &["-f", "-"], &marked)?;
        let mark = format!("{FALLBACK_MARK}/{FALLBACK_MARK}");
        for tables in ["iptables-nft", "ip6tables-nft"] {
            self.gateway.exec(
                tables,
                &[
                    "-I",
                    "INPUT",
                    "-m",
                    "mark",
                    "--mark",
                    &mark,
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    "0",
                    "--queue-bypass",
                ],
            )?;
        }
        Ok("iptables-nft NFQUEUE rule, as this kernel lacks nft's queue expression")
    }
}

fn nft_stdin(ns: &Netns, args: &[&str], input: &str) -> Result<(), DemoError> {
    let mut child = ns
        .command("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| DemoError::Io("nft".into(), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| DemoError::Io("nft stdin".into(), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| DemoError::Io("nft".into(), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DemoError::Command(
            format!("nft {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}
