//! The metrics endpoint under a connection flood: 2000 idle TCP connections neither spin the
//! daemon nor keep a later scrape or a knock from working.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::harness::daemon::Metrics;
use crate::harness::*;
use crate::{GW_SSH4, assert_open, require_netns};

/// `daemon.metrics` in the harness's config.
const ENDPOINT: &str = "127.0.0.1:9469";
const IDLE: usize = 2000;
/// The connections the daemon serves at once (the rest are closed at once).
const MAX_CONNECTIONS: usize = 64;
/// How long the daemon waits for a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// systemd's default soft limit of open files for a service (the shipped unit sets none).
const SERVICE_NOFILE: &str = "1024";

/// Raises this process's soft limit of open files far enough to hold `IDLE` sockets.
fn allow_open_files(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0);
    if limit.rlim_cur >= needed {
        return;
    }
    if limit.rlim_max < needed {
        panic!(
            "cannot run: the hard limit of open files is {}",
            limit.rlim_max
        );
    }
    limit.rlim_cur = needed;
    // SAFETY: setrlimit reads the rlimit we own.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(rc, 0);
}

/// Opens up to `count` connections that never send a byte, in batches that wait for the
/// daemon to accept the last: a SYN dropped on a full accept queue would stall the test on the
/// kernel's retransmission timer. Stops, and says why, when the daemon stops accepting.
fn open_idle(gw: &netns::Netns, count: usize) -> (Vec<TcpStream>, Option<String>) {
    let endpoint: SocketAddr = ENDPOINT.parse().unwrap();
    gw.run(move || {
        let mut streams = Vec::with_capacity(count);
        while streams.len() < count {
            for _ in 0..BATCH.min(count - streams.len()) {
                match TcpStream::connect_timeout(&endpoint, Duration::from_secs(3)) {
                    Ok(stream) => streams.push(stream),
                    Err(err) => return (streams, Some(err.to_string())),
                }
            }
            let deadline = Instant::now() + Duration::from_secs(1);
            while accept_queue() > BATCH {
                if Instant::now() > deadline {
                    let why = format!("{} connections left unaccepted for 1 s", accept_queue());
                    return (streams, Some(why));
                }
                sleep(Duration::from_millis(1));
            }
        }
        (streams, None)
    })
}

/// Connections opened before waiting for the daemon to accept them.
const BATCH: usize = 100;

/// Connections to `ENDPOINT` that the kernel completed and the daemon has not accepted yet: the
/// `rx_queue` of the listening socket, in the calling thread's namespace.
fn accept_queue() -> usize {
    let table = std::fs::read_to_string("/proc/thread-self/net/tcp").expect("/proc/net/tcp");
    let listening = |f: &[&str]| f[1] == "0100007F:24FD" && f[3] == "0A"; // 127.0.0.1:9469
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 4 && listening(f))
        .and_then(|f| usize::from_str_radix(f[4].split(':').nth(1)?, 16).ok())
        .expect("the metrics listener")
}

/// How many of `streams` the daemon has closed (EOF or reset), without waiting.
fn closed_by_daemon(streams: &[TcpStream]) -> usize {
    let mut buf = [0u8; 16];
    streams
        .iter()
        .filter(|stream| {
            let mut stream: &TcpStream = stream;
            stream.set_nonblocking(true).unwrap();
            match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            }
        })
        .count()
}

/// One scrape on a fresh connection, given a second; its latency and exposition.
fn scrape_within_a_second(gw: &netns::Netns) -> Result<(Duration, Metrics), String> {
    let endpoint: SocketAddr = ENDPOINT.parse().unwrap();
    gw.run(move || {
        let started = Instant::now();
        let limit = Duration::from_secs(1);
        let mut stream = TcpStream::connect_timeout(&endpoint, limit).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(limit)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| format!("reading the response: {e}"))?;
        let latency = started.elapsed();
        match response.split_once("\r\n\r\n") {
            Some((head, body)) if head.contains(" 200 ") => Ok((latency, Metrics(body.to_owned()))),
            _ => Err(format!("not an HTTP 200 response: {response:?}")),
        }
    })
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn two_thousand_idle_connections_leave_the_daemon_idle_and_scrapes_and_knocks_working() {
    require_netns!();
    allow_open_files(IDLE as u64 + 256);
    let t = Topology::new();
    let mut daemon = Daemon::start_at_info(&t.gw, &config("5s", "30s"));
    netns::run_ok(std::process::Command::new("prlimit").args([
        "--pid",
        &daemon.pid().to_string(),
        &format!("--nofile={SERVICE_NOFILE}:"),
    ]));
    let rss_before = daemon.rss_kib();
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;

    let opened_at = Instant::now();
    let (idle, stopped) = open_idle(&t.gw, IDLE);
    let connect_time = opened_at.elapsed();
    let window = Duration::from_secs(3);
    let ticks_before = daemon.cpu_ticks();
    sleep(window);
    let cpu = (daemon.cpu_ticks() - ticks_before) as f64 / ticks_per_second;
    let cpu_percent = 100.0 * cpu / window.as_secs_f64();
    let closed_at_once = closed_by_daemon(&idle);
    let during_flood = scrape_within_a_second(&t.gw);
    // Past the header timeout, with the client still holding every socket open.
    sleep(
        (opened_at + HEADER_TIMEOUT + Duration::from_secs(1))
            .saturating_duration_since(Instant::now()),
    );
    let closed_later = closed_by_daemon(&idle);
    let scrape = scrape_within_a_second(&t.gw);
    let rss_after = daemon.rss_kib();
    eprintln!(
        "{} of {IDLE} idle connections opened in {connect_time:.2?} ({stopped:?}; daemon NOFILE {SERVICE_NOFILE}); \
         daemon CPU over {window:?}: {cpu_percent:.1} % of one core; closed by the daemon: \
         {closed_at_once} at once, {closed_later} 1 s past the header timeout; scrape during the \
         flood: {}; scrape after: {}; RSS {rss_before} -> {rss_after} KiB",
        idle.len(),
        describe(&during_flood),
        describe(&scrape),
    );

    assert_eq!(
        idle.len(),
        IDLE,
        "the daemon stopped accepting: {stopped:?}"
    );
    assert!(
        cpu_percent < 10.0,
        "the daemon used {cpu_percent:.1} % of a core holding idle connections"
    );
    assert_eq!(
        closed_at_once,
        IDLE - MAX_CONNECTIONS,
        "connections over the cap are closed at once"
    );
    assert_eq!(
        closed_later, IDLE,
        "idle connections are closed at the header timeout"
    );
    let (latency, metrics) = scrape.expect("a scrape after the flood");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    // Every connection over the cap, the scrape during the flood too if it was one of them.
    let refused = IDLE - MAX_CONNECTIONS + usize::from(during_flood.is_err());
    assert_eq!(
        metrics.value("knock_nfq_metrics_connections_refused_total", &[]),
        refused as f64
    );
    t.knock(GW4, &["7000", "8000", "9000:udp"]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    assert!(daemon.is_running());
    drop(idle);
}

fn describe(scrape: &Result<(Duration, Metrics), String>) -> String {
    match scrape {
        Ok((latency, metrics)) => format!("{latency:.2?}, {} metric names", metrics.names().len()),
        Err(why) => format!("failed ({why})"),
    }
}
