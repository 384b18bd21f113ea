//! The Prometheus endpoint: `GET /metrics` in the text format, on the tokio runtime.
//!
//! Clients that connect and say nothing cannot exhaust it: it serves a bounded number of
//! connections at once and closes the next ones at once, each gets a few seconds to send its
//! request and a bounded life, and a failing accept (out of file descriptors) backs off instead
//! of spinning a core.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::queue::limit::{Gate, RateLimit};

/// Connections served at once: Prometheus needs one, a person with curl another few.
const MAX_CONNECTIONS: usize = 64;
/// Time a client gets to send its request headers (a scrape sends them at once).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection lives, whatever its client does (a trickled body, a slow reader).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);
/// The first pause after a failed accept, doubled at each failure in a row up to the max.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one warning per interval about failed accepts, and one about refused connections.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// How the endpoint bounds its clients.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    header_timeout: Duration,
    lifetime: Duration,
}

impl Limits {
    const DAEMON: Limits = Limits {
        max_connections: MAX_CONNECTIONS,
        header_timeout: HEADER_TIMEOUT,
        lifetime: CONNECTION_LIFETIME,
    };
}

/// Binds the listener now, so a port already in use is a startup error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    info!(%addr, "serving metrics at /metrics");
    Ok(listener)
}

/// Serves scrapes until the runtime shuts down.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    serve_within(listener, metrics, Limits::DAEMON).await;
}

async fn serve_within(listener: TcpListener, metrics: Metrics, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = AcceptBackoff::default();
    let mut accept_warnings = RateLimit::new(WARNING_INTERVAL);
    let mut refusal_warnings = RateLimit::new(WARNING_INTERVAL);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(err) => {
                let pause = backoff.failed();
                if let Gate::Report { events } = accept_warnings.check(Instant::now()) {
                    warn!(error = %err, failures = events, ?pause, "cannot accept metrics connections; pausing");
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        // Dropping the stream closes it: the client learns at once instead of waiting.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.metrics_connections_refused.inc();
            if let Gate::Report { events } = refusal_warnings.check(Instant::now()) {
                warn!(%peer, refused = events, max = limits.max_connections, "metrics connections refused: too many open");
            }
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            metrics.clone(),
            limits,
            slot,
        ));
    }
}

/// Answers one request on `stream`, holding `_slot` until the connection ends.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    metrics: Metrics,
    limits: Limits,
    _slot: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |request| respond(request, metrics.clone()));
    // One request per connection: scrapes are seconds apart, and an idle kept-alive
    // connection would hold a slot.
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(limits.lifetime, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => debug!(%peer, error = %err, "metrics connection ended with an error"),
        Err(_) => debug!(%peer, "metrics connection closed at the end of its lifetime"),
    }
}

/// The pause before the next accept after failures in a row.
#[derive(Debug)]
struct AcceptBackoff {
    next: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            next: ACCEPT_BACKOFF_MIN,
        }
    }
}

impl AcceptBackoff {
    fn failed(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(ACCEPT_BACKOFF_MAX);
        pause
    }

    fn succeeded(&mut self) {
        self.next = ACCEPT_BACKOFF_MIN;
    }
}

async fn respond(
    request: Request<Incoming>,
    metrics: Metrics,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, metrics.render()),
        (&Method::GET, "/") => (
            StatusCode::OK,
            "knock-nfq: metrics at /metrics\n".to_owned(),
        ),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests;
