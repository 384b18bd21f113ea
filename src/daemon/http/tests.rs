use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::Config;

const CONFIG: &str = r#"
[[door]]
name = "ssh"
sequence = [7000, 8000]
open = ["22/tcp"]
"#;

/// Serves on a free loopback port within `limits`.
async fn start(limits: Limits) -> (SocketAddr, Metrics) {
    let config = Config::from_toml_str(CONFIG, Path::new("test.toml")).expect("valid");
    let metrics = Metrics::new(&config);
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_within(listener, metrics.clone(), limits));
    (addr, metrics)
}

const LONG: Duration = Duration::from_secs(30);

fn limits(max_connections: usize, header_timeout: Duration, lifetime: Duration) -> Limits {
    Limits {
        max_connections,
        header_timeout,
        lifetime,
    }
}

/// Whether the server closes `stream` within `within` (EOF or a reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(n)) => n == 0,
        Ok(Err(_)) => true,
        Err(_) => false,
    }
}

/// An HTTP/1.1 scrape (keep-alive by default); the whole response, once the server closed.
async fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut response))
        .await
        .expect("the server closes after one response")
        .unwrap();
    response
}

#[tokio::test]
async fn a_scrape_is_answered_and_its_connection_closed() {
    let (addr, _metrics) = start(Limits::DAEMON).await;
    let response = scrape(addr).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("\nknock_nfq_metrics_connections_refused_total 0\n"),
        "{response}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    let (addr, metrics) = start(limits(4, LONG, LONG)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut fifth = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut fifth, Duration::from_secs(1)).await);
    assert_eq!(metrics.metrics_connections_refused.get(), 1);
    for stream in &mut held {
        assert!(!closed_within(stream, Duration::from_millis(50)).await);
    }

    // A slot freed by a client that leaves is served again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(scrape(addr).await.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(metrics.metrics_connections_refused.get(), 1);
}

#[tokio::test]
async fn a_client_that_sends_no_request_is_closed_at_the_header_timeout() {
    let timeout = Duration::from_millis(200);
    let (addr, _metrics) = start(limits(1, timeout, LONG)).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout && elapsed < 4 * timeout, "{elapsed:?}");
    // Its slot, the only one, is free again.
    assert!(scrape(addr).await.starts_with("HTTP/1.1 200 OK\r\n"));
}

#[tokio::test]
async fn a_trickled_request_is_cut_at_the_connection_lifetime() {
    let lifetime = Duration::from_millis(300);
    let (addr, _metrics) = start(limits(1, LONG, lifetime)).await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
    // A header line every 50 ms: the header never ends, the header timeout is far away.
    while started.elapsed() < 4 * lifetime {
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err()
            || closed_within(&mut slow, Duration::from_millis(50)).await
        {
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= lifetime && elapsed < 2 * lifetime, "{elapsed:?}");
}

#[test]
fn accept_failures_pause_doubling_up_to_a_second_and_a_success_starts_over() {
    let mut backoff = AcceptBackoff::default();
    let pauses: Vec<u64> = (0..9)
        .map(|_| u64::try_from(backoff.failed().as_millis()).unwrap())
        .collect();
    assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    backoff.succeeded();
    assert_eq!(backoff.failed(), ACCEPT_BACKOFF_MIN);
}
