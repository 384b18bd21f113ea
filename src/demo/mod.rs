//! `knock-nfq demo`: the whole product in a throw-away sandbox of network namespaces: a client,
//! a gateway running the real daemon on real netfilter, and a LAN host behind it. Narrates each
//! step and succeeds only if each behaved as expected; cleans up on failure and Ctrl-C too.

mod daemon;

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::sandbox::{self, CLIENT4, GW4, LAN4, SandboxError, Session, Topology, ruleset, serve};
use daemon::{Daemon, Files};

const CONFIG: &str = r#"[daemon]
interfaces = ["wan0"]
metrics = "127.0.0.1:9469"

[[door]]
name = "ssh"
sequence = ["7000:tcp", "9000:udp", "8000:tcp"]
seq_timeout = "10s"
tcp_flags = "syn,!ack"
strict = true                 # any other new connection resets the attempt: a port scan opens nothing
open = ["22/tcp", "198.51.100.10:80/tcp"]
open_for = "30s"
"#;

/// Debian packages the demo runs: `ip`, `nft`, and iptables-nft for the queue fallback.
const PACKAGES: [&str; 3] = ["iproute2", "nftables", "iptables"];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo needs root (network namespaces, nftables, NFQUEUE): run it with sudo")]
    NotRoot,
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("{0}")]
    Io(String, #[source] io::Error),
    #[error("unexpected: {0}")]
    Step(String),
    #[error("interrupted")]
    Interrupted,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Runs the demo, printing to `out`. `binary` is knock-nfq itself: the gateway's daemon and the
/// client's knock.
pub fn run(binary: &Path, out: &mut impl Write) -> Result<(), DemoError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(DemoError::NotRoot);
    }
    catch_interrupt();
    ensure_packages(out)?;
    let _ = writeln!(
        out,
        "knock-nfq demo: a client, a gateway running knock-nfq, and a LAN host, each in a network namespace."
    );
    let _ = writeln!(
        out,
        "  client {CLIENT4} ── {GW4} [gateway] 198.51.100.1 ── {LAN4} LAN host\n"
    );
    let result = Topology::build("kdemo-")
        .map_err(DemoError::from)
        .and_then(|sandbox| {
            Demo {
                sandbox: &sandbox,
                out,
                step: 0,
            }
            .run(binary)
        });
    let _ = writeln!(out, "\nRemoved the namespaces, and with them the daemon.");
    if result.is_ok() {
        let _ = writeln!(out, "Every step behaved as expected.");
    }
    result
}

struct Demo<'a, W: Write> {
    sandbox: &'a Topology,
    out: &'a mut W,
    step: usize,
}

const STEPS: usize = 8;

impl<W: Write> Demo<'_, W> {
    fn say(&mut self, what: &str) -> Result<(), DemoError> {
        if INTERRUPTED.load(Ordering::Relaxed) {
            return Err(DemoError::Interrupted);
        }
        self.step += 1;
        let _ = write!(self.out, "[{}/{STEPS}] {what} ... ", self.step);
        let _ = self.out.flush();
        Ok(())
    }

    fn done(&mut self, result: &str) {
        let _ = writeln!(self.out, "{result}");
    }

    fn run(mut self, daemon: &Path) -> Result<(), DemoError> {
        self.say("Loading deploy/nftables.conf (table inet knock_nfq) into the gateway")?;
        let mode = ruleset::load(&self.sandbox.gw, ruleset::SHIPPED)?;
        self.done(&format!("ok (mode: {mode})"));

        self.say(
            "Starting knock-nfq on the gateway, with door \"ssh\": 7000/tcp 9000/udp 8000/tcp (strict)",
        )?;
        serve(&self.sandbox.gw, 22, "SSH-2.0-knock-nfq-demo")?;
        serve(&self.sandbox.lan, 80, "hello from the LAN host")?;
        let files = Files::create()?;
        let _daemon = Daemon::start(&self.sandbox.gw, daemon, CONFIG, &files)?;
        self.done("ready (it told systemd's notify socket READY=1)");

        self.say(&format!("client → {GW4}:22 (ssh) before knocking"))?;
        self.expect_dropped(22)?;

        self.say(&format!(
            "Knocking from the client: knock-nfq knock -v {GW4} 7000 9000:udp 8000"
        ))?;
        let binary = daemon.to_str().unwrap_or("knock-nfq");
        let knocked = self
            .sandbox
            .client
            .exec(binary, &["knock", "-v", GW4, "7000", "9000:udp", "8000"])?;
        self.done("sent; no answer (knock ports look filtered):");
        for line in String::from_utf8_lossy(&knocked.stdout).lines() {
            let _ = writeln!(self.out, "      {line}");
        }

        self.say(&format!("client → {GW4}:22 again"))?;
        let greeting = self.expect_admitted(22)?;
        self.done(&format!("connected at once: \"{greeting}\""));

        self.say(&format!(
            "client → {GW4}:8080, port-forwarded to the LAN host {LAN4}:80"
        ))?;
        let greeting = self.expect_admitted(8080)?;
        self.done(&format!("connected: \"{greeting}\""));

        self.say("The grant, as the kernel holds it (nft list set inet knock_nfq allow4)")?;
        let grant = self.grant_line()?;
        self.done(&grant);

        self.say("An excerpt of the daemon's /metrics")?;
        let metrics = self.metrics_excerpt()?;
        self.done("");
        for line in metrics {
            let _ = writeln!(self.out, "      {line}");
        }
        Ok(())
    }

    fn connect(&self, port: u16, timeout: Duration) -> Result<io::Result<String>, DemoError> {
        let source: IpAddr = CLIENT4.parse().expect("a literal address");
        let dest = SocketAddr::new(GW4.parse().expect("a literal address"), port);
        let greeting = self
            .sandbox
            .client
            .run(move || Session::open(source, dest, timeout).map(|s| s.greeting))?;
        Ok(greeting)
    }

    fn expect_dropped(&mut self, port: u16) -> Result<(), DemoError> {
        match self.connect(port, Duration::from_secs(1))? {
            Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                self.done("no answer after 1 s: silently dropped in the kernel, as expected");
                Ok(())
            }
            Err(err) => Err(DemoError::Step(format!(
                "port {port} should be silently dropped, but: {err}"
            ))),
            Ok(_) => Err(DemoError::Step(format!(
                "port {port} answered before any knock"
            ))),
        }
    }

    fn expect_admitted(&self, port: u16) -> Result<String, DemoError> {
        self.connect(port, Duration::from_secs(1))?.map_err(|err| {
            DemoError::Step(format!(
                "port {port} should be open after the knock, but: {err}"
            ))
        })
    }

    fn grant_line(&self) -> Result<String, DemoError> {
        let out = self
            .sandbox
            .gw
            .exec("nft", &["list", "set", "inet", "knock_nfq", "allow4"])?;
        let listing = String::from_utf8_lossy(&out.stdout);
        let start = listing
            .find(CLIENT4)
            .ok_or_else(|| DemoError::Step(format!("no grant for {CLIENT4} in allow4")))?;
        let grant = listing[start..]
            .split(['}', ','])
            .next()
            .unwrap_or_default()
            .trim();
        Ok(grant.to_owned())
    }

    fn metrics_excerpt(&self) -> Result<Vec<String>, DemoError> {
        let body = self.sandbox.gw.run(|| {
            let mut stream = TcpStream::connect("127.0.0.1:9469")?;
            stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
            let mut body = String::new();
            stream.read_to_string(&mut body)?;
            Ok::<_, io::Error>(body)
        })?;
        let body = body.map_err(|e| DemoError::Io("scraping /metrics".into(), e))?;
        let wanted = [
            "knock_nfq_knocks_total{",
            "knock_nfq_grants_total{",
            "knock_nfq_verdicts_total{",
            "knock_nfq_tracked_sources ",
        ];
        let lines: Vec<String> = body
            .lines()
            .filter(|l| wanted.iter().any(|w| l.starts_with(w)))
            .map(str::to_owned)
            .collect();
        if !lines.iter().any(|l| {
            l.starts_with("knock_nfq_knocks_total") && l.contains("complete") && l.ends_with(" 1")
        }) {
            return Err(DemoError::Step(
                "the metrics do not show the completed knock".into(),
            ));
        }
        Ok(lines)
    }
}

fn ensure_packages(out: &mut impl Write) -> Result<(), DemoError> {
    let missing: Vec<&str> = PACKAGES
        .into_iter()
        .filter(|p| {
            let status = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !status.is_ok_and(|o| o.stdout.starts_with(b"install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let _ = writeln!(out, "Installing Debian packages: {}", missing.join(" "));
    sandbox::run(Command::new("apt-get").args(["update", "-qq"]))?;
    sandbox::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Ctrl-C ends the demo at the next step, after which the sandbox is removed.
fn catch_interrupt() {
    // SAFETY: a zeroed sigaction is valid to start from.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::sigaction(libc::SIGINT, &raw const action, std::ptr::null_mut()) };
}
