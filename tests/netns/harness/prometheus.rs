//! A real Prometheus server (Debian's `prometheus`) in the gateway namespace, scraping the
//! daemon's `/metrics` every second, with its storage in a tempdir; killed when dropped.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::netns::Netns;

/// Where the server listens, inside the namespace.
const LISTEN: &str = "127.0.0.1:9090";
/// How long the server gets to start.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// Why the Prometheus tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    for tool in ["prometheus", "promtool"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Some(format!(
                "{tool} is not installed (Debian package prometheus; cargo xtask test installs it)"
            ));
        }
    }
    None
}

#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    netns: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts the server in `ns` scraping `target` (host:port) and waits until it is ready.
    pub fn start(ns: &Netns, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: knock-nfq\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = ns
            .command("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={LISTEN}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut prometheus = Prometheus {
            child,
            netns: ns.name.clone(),
            dir,
        };
        prometheus.wait_ready(ns);
        prometheus
    }

    fn wait_ready(&mut self, ns: &Netns) {
        let deadline = Instant::now() + STARTUP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}); its log:\n{}", self.log());
            }
            if get(ns, LISTEN, "/-/ready").is_ok_and(|(status, _)| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "prometheus was not ready within {STARTUP_LIMIT:?}; its log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query through the HTTP API; the whole JSON answer.
    pub fn query(&self, ns: &Netns, promql: &str) -> Value {
        assert_eq!(ns.name, self.netns, "query the server's own namespace");
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (status, body) =
            get(ns, LISTEN, &path).unwrap_or_else(|e| panic!("query {promql}: {e}"));
        let answer: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("query {promql}: HTTP {status}, not JSON ({e}): {body}"));
        answer
    }

    /// The single sample value of an instant query that must return one series.
    pub fn value(&self, ns: &Netns, promql: &str) -> Option<f64> {
        let answer = self.query(ns, promql);
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        let result = answer["data"]["result"].as_array()?;
        let sample = result.first()?;
        assert_eq!(result.len(), 1, "{promql}: more than one series: {answer}");
        sample["value"][1].as_str()?.parse().ok()
    }

    /// Polls `promql` until it returns `expected`, for at most `limit`.
    pub fn wait_for_value(&self, ns: &Netns, promql: &str, expected: f64, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(ns, promql);
            if last == Some(expected) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("{promql} stayed at {last:?}, expected {expected} within {limit:?}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.0 GET from inside `ns`: the status code and the body.
pub fn get(ns: &Netns, addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let (addr, request) = (
        addr.to_owned(),
        format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n"),
    );
    ns.run(move || {
        let mut stream = TcpStream::connect(&addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(request.as_bytes())?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_owned()))
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
