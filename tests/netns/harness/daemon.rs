//! The real `knock-nfq` binary, run in the gateway namespace like systemd would: readiness is
//! the `READY=1` it sends to `NOTIFY_SOCKET`.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;

pub const BINARY: &str = env!("CARGO_BIN_EXE_knock-nfq");

#[derive(Debug)]
pub struct Daemon {
    child: Child,
    netns: String,
    dir: tempfile::TempDir,
    pub config_path: PathBuf,
    notify: UnixDatagram,
    log_filter: &'static str,
}

const DEBUG: &str = "knock_nfq=debug";
const INFO: &str = "knock_nfq=info";

impl Daemon {
    /// Writes `config` and starts the daemon in `gw`, waiting until it reports ready.
    pub fn start(gw: &Netns, config: &str) -> Daemon {
        Daemon::launch(gw, config, Watchdog::Off, DEBUG)
    }

    /// Like [`Daemon::start`], logging at info as in production (a flood logs every packet at
    /// debug, which would slow the daemon down and hide what an operator's journal holds).
    pub fn start_at_info(gw: &Netns, config: &str) -> Daemon {
        Daemon::launch(gw, config, Watchdog::Off, INFO)
    }

    /// Like [`Daemon::start`], with systemd's watchdog asked for every `usec` microseconds.
    pub fn start_watched(gw: &Netns, config: &str, usec: u64) -> Daemon {
        Daemon::launch(gw, config, Watchdog::Every(usec), DEBUG)
    }

    fn launch(gw: &Netns, config: &str, watchdog: Watchdog, log_filter: &'static str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("knock-nfq.toml");
        fs::write(&config_path, config).expect("write config");
        let notify_path = dir.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
        let child = spawn(
            gw,
            &config_path,
            &notify_path,
            &dir.path().join("daemon.log"),
            watchdog,
            log_filter,
        );
        let mut daemon = Daemon {
            log_filter,
            child,
            netns: gw.name.clone(),
            dir,
            config_path,
            notify,
        };
        daemon.wait_for("READY=1");
        daemon
    }

    /// How many notifications containing `state` arrive within `window`.
    pub fn count_notifications(&mut self, state: &str, window: Duration) -> usize {
        let deadline = Instant::now() + window;
        let mut buf = [0u8; 512];
        let mut count = 0;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.notify
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            if let Ok(n) = self.notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == state)
            {
                count += 1;
            }
        }
        count
    }

    /// Starts a new daemon process on the same config (after `kill9`).
    pub fn restart(&mut self, gw: &Netns) {
        let notify_path = self.dir.path().join("notify");
        self.child = spawn(
            gw,
            &self.config_path,
            &notify_path,
            &self.dir.path().join("daemon.log"),
            Watchdog::Off,
            self.log_filter,
        );
        self.wait_for("READY=1");
    }

    /// Waits for a notification containing `state` (e.g. `READY=1` after a reload).
    pub fn wait_for(&mut self, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "knock-nfq exited ({status}) before {state}; its log:\n{}",
                    self.log()
                );
            }
            self.notify
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            if let Ok(n) = self.notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == state)
            {
                return;
            }
        }
        panic!(
            "knock-nfq did not send {state} within 15 s; its log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.pid(), signal) };
    }

    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's CPU time (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        let after_name = &stat[stat.rfind(')').expect("(comm)") + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |i: usize| fields[i].parse::<u64>().expect("a tick count");
        ticks(11) + ticks(12)
    }

    /// Nanoseconds the queue workers have run (schedstat: finer than clock ticks).
    #[allow(dead_code, reason = "harness API: the benchmark table uses it")]
    pub fn worker_run_ns(&self) -> u64 {
        let tasks = fs::read_dir(format!("/proc/{}/task", self.pid())).expect("task dir");
        tasks
            .filter_map(|task| {
                let dir = task.ok()?.path();
                let name = fs::read_to_string(dir.join("comm")).ok()?;
                let stat = fs::read_to_string(dir.join("schedstat")).ok()?;
                name.starts_with("queue-")
                    .then(|| stat.split_whitespace().next()?.parse::<u64>().ok())?
            })
            .sum()
    }

    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Scrapes `/metrics` from inside the gateway namespace.
    pub fn metrics(&self, gw: &Netns) -> Metrics {
        assert_eq!(gw.name, self.netns, "scrape the daemon's own namespace");
        let body = gw.run(|| {
            let mut stream = TcpStream::connect("127.0.0.1:9469").expect("metrics endpoint");
            stream
                .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .expect("request");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("response");
            response
        });
        let (head, body) = body.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        Metrics(body.to_owned())
    }
}

fn log_file(path: &PathBuf) -> File {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

/// Whether the daemon is started as systemd starts a unit with `WatchdogSec=`.
#[derive(Debug, Clone, Copy)]
enum Watchdog {
    Off,
    Every(u64),
}

fn spawn(
    gw: &Netns,
    config: &PathBuf,
    notify: &PathBuf,
    log: &PathBuf,
    watchdog: Watchdog,
    log_filter: &str,
) -> Child {
    let log = log_file(log);
    let mut command = match watchdog {
        Watchdog::Off => gw.command(BINARY),
        Watchdog::Every(usec) => {
            // systemd names the pid the watchdog is for: the shell's, which execs the daemon.
            let mut command = gw.command("sh");
            command.args(["-c", r#"export WATCHDOG_PID=$$; exec "$0" "$@""#, BINARY]);
            command.env("WATCHDOG_USEC", usec.to_string());
            command
        }
    };
    command
        .args(["run", "--config"])
        .arg(config)
        .env("NOTIFY_SOCKET", notify)
        .env("RUST_LOG", log_filter)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("spawn knock-nfq")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scraped exposition.
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of series `name` with all of `labels` (`door="ssh"`). A series that is not
    /// exported fails the test: a renamed metric must not read as 0.
    pub fn value(&self, name: &str, labels: &[&str]) -> f64 {
        self.series(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in the exposition:\n{}", self.0))
    }

    /// The value of series `name` with all of `labels`, if it is exported.
    pub fn series(&self, name: &str, labels: &[&str]) -> Option<f64> {
        self.0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(series, _)| {
                let series_name = series.split('{').next().unwrap_or_default();
                series_name == name && labels.iter().all(|label| series.contains(label))
            })
            .map(|(_, value)| value.parse().expect("a number"))
    }

    /// Every metric name with at least one sample (histograms as their `_bucket`, `_sum` and
    /// `_count` series).
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.0
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| line.split(['{', ' ']).next())
            .map(str::to_owned)
            .collect()
    }
}
