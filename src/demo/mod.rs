//! `knock-nfq demo`: the whole product in a throw-away sandbox of network namespaces: a client,
//! a gateway running the real daemon on real netfilter, and a LAN host behind it. Narrates each
//! step and succeeds only if each behaved as expected; cleans up on failure and Ctrl-C too.

mod sandbox;

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sandbox::{CLIENT, GATEWAY, LAN_HOST, Netns, Sandbox};

/// The ruleset the demo loads: the one shipped in `deploy/`.
const RULESET: &str = include_str!("../../deploy/nftables.conf");

const CONFIG: &str = r#"[daemon]
interfaces = ["wan0"]
metrics = "127.0.0.1:9469"

[[door]]
name = "ssh"
sequence = ["7000:tcp", "8000:tcp", "9000:udp"]
seq_timeout = "10s"
tcp_flags = "syn,!ack"
open = ["22/tcp", "198.51.100.10:80/tcp"]
open_for = "30s"
"#;

/// Debian packages the demo runs: `ip`, `nft`, and iptables-nft for the queue fallback.
const PACKAGES: [&str; 3] = ["iproute2", "nftables", "iptables"];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo needs root (network namespaces, nftables, NFQUEUE): run it with sudo")]
    NotRoot,
    #[error("{0} failed: {1}")]
    Command(String, String),
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
        "  client {CLIENT} ── {GATEWAY} [gateway] 198.51.100.1 ── {LAN_HOST} LAN host\n"
    );
    let result = Sandbox::build().and_then(|sandbox| {
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
    sandbox: &'a Sandbox,
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
        let mode = self.sandbox.load_ruleset(RULESET)?;
        self.done(&format!("ok (mode: {mode})"));

        self.say(
            "Starting knock-nfq on the gateway, with door \"ssh\": 7000/tcp 8000/tcp 9000/udp",
        )?;
        serve(&self.sandbox.gateway, 22, "SSH-2.0-knock-nfq-demo")?;
        serve(&self.sandbox.lan, 80, "hello from the LAN host")?;
        let dir = tempdir()?;
        let _daemon = Daemon::start(&self.sandbox.gateway, daemon, &dir)?;
        self.done("ready (it told systemd's notify socket READY=1)");

        self.say(&format!("client → {GATEWAY}:22 (ssh) before knocking"))?;
        self.expect_dropped(22)?;

        self.say(&format!(
            "Knocking from the client: knock-nfq knock -v {GATEWAY} 7000 8000 9000:udp"
        ))?;
        let binary = daemon.to_str().unwrap_or("knock-nfq");
        let knocked = self.sandbox.client.exec(
            binary,
            &["knock", "-v", GATEWAY, "7000", "8000", "9000:udp"],
        )?;
        self.done("sent; no answer (knock ports look filtered):");
        for line in String::from_utf8_lossy(&knocked.stdout).lines() {
            let _ = writeln!(self.out, "      {line}");
        }

        self.say(&format!("client → {GATEWAY}:22 again"))?;
        let greeting = self.expect_admitted(22)?;
        self.done(&format!("connected at once: \"{greeting}\""));

        self.say(&format!(
            "client → {GATEWAY}:8080, port-forwarded to the LAN host {LAN_HOST}:80"
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
        let dest: SocketAddr = format!("{GATEWAY}:{port}")
            .parse()
            .expect("a literal address");
        self.sandbox.client.run(move || {
            let stream = TcpStream::connect_timeout(&dest, timeout)?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line)?;
            Ok(line.trim_end().to_owned())
        })
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
            .gateway
            .exec("nft", &["list", "set", "inet", "knock_nfq", "allow4"])?;
        let listing = String::from_utf8_lossy(&out.stdout);
        let start = listing
            .find(CLIENT)
            .ok_or_else(|| DemoError::Step(format!("no grant for {CLIENT} in allow4")))?;
        let grant = listing[start..]
            .split(['}', ','])
            .next()
            .unwrap_or_default()
            .trim();
        Ok(grant.to_owned())
    }

    fn metrics_excerpt(&self) -> Result<Vec<String>, DemoError> {
        let body = self.sandbox.gateway.run(|| {
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

/// A TCP service in `ns` that greets each client with one line.
fn serve(ns: &Netns, port: u16, greeting: &'static str) -> Result<(), DemoError> {
    let listener = ns.run(move || TcpListener::bind(("0.0.0.0", port)))?;
    let listener = listener.map_err(|e| DemoError::Io(format!("listen on {port}"), e))?;
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = writeln!(stream, "{greeting}");
        }
    });
    Ok(())
}

/// The daemon process on the gateway; killed when dropped.
struct Daemon(Child);

impl Daemon {
    fn start(gw: &Netns, binary: &Path, dir: &Path) -> Result<Daemon, DemoError> {
        let config = dir.join("knock-nfq.toml");
        fs::write(&config, CONFIG)
            .map_err(|e| DemoError::Io("writing the demo config".into(), e))?;
        let notify_path = dir.join("notify");
        let notify = UnixDatagram::bind(&notify_path)
            .map_err(|e| DemoError::Io("notify socket".into(), e))?;
        let child = gw
            .command(binary.to_str().unwrap_or("knock-nfq"))
            .args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| DemoError::Io("starting knock-nfq".into(), e))?;
        let mut daemon = Daemon(child);
        daemon.wait_ready(&notify)?;
        Ok(daemon)
    }

    fn wait_ready(&mut self, notify: &UnixDatagram) -> Result<(), DemoError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 256];
        let _ = notify.set_read_timeout(Some(Duration::from_millis(100)));
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Err(DemoError::Step(format!(
                    "knock-nfq exited ({status}) before it was ready"
                )));
            }
            if let Ok(n) = notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                return Ok(());
            }
        }
        Err(DemoError::Step(
            "knock-nfq was not ready within 10 s".into(),
        ))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private directory for the demo's config and notify socket, removed afterwards.
fn tempdir() -> Result<TempDir, DemoError> {
    let path = std::env::temp_dir().join(format!("knock-nfq-demo-{}", std::process::id()));
    fs::create_dir_all(&path)
        .map_err(|e| DemoError::Io(format!("creating {}", path.display()), e))?;
    Ok(TempDir(path))
}

struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
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
