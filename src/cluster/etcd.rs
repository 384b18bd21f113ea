//! The cluster task: publishes this gateway's grants to etcd, and carries out the other
//! gateways' grants in the local sets. It runs on the daemon's runtime; a failure here never
//! reaches the packet path: etcd away, the gateway goes on alone and retries.

use std::future::pending;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, WatchOptions, WatchResponse, WatchStream, Watcher,
};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout};
use tracing::{info, warn};

use super::mirror::{Change, Event, Mirror};
use super::once::{Claim, ClaimRequest};
use super::outbox::{self, Outbox, Publication, Queued};
use super::record::{self, Record};
use super::{ClusterError, Inbox, Limits};
use crate::clock::unix_now;
use crate::config::Cluster;
use crate::metrics::ClusterMetrics;
use crate::nft::{ElementChange, Nft};
use crate::queue::GrantEpoch;
use crate::queue::limit::{Gate, RateLimit};

/// Per request: etcd answers a healthy client in milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings: a peer that vanished without a reset is noticed within about this long.
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// Publications waiting while etcd is away: about one per grant element.
const OUTBOX_CAPACITY: usize = 65_536;
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Whether the watch is running.
enum Link {
    Down {
        retry_at: Instant,
        failures: u32,
    },
    Up {
        stream: Box<WatchStream>,
        /// Dropping it would cancel the watch.
        _watcher: Watcher,
    },
}

struct Task {
    cluster: Cluster,
    client: Client,
    nft: Nft,
    metrics: ClusterMetrics,
    rx: mpsc::Receiver<Publication>,
    claims: mpsc::Receiver<ClaimRequest>,
    limits: watch::Receiver<Limits>,
    mirror: Mirror,
    outbox: Outbox,
    link: Link,
    warnings: RateLimit,
    /// Bumped when other gateways' grants are installed: a connection held here may wait for one.
    grant_epoch: GrantEpoch,
}

/// The etcd client. It connects lazily: etcd being away is no error here, only a client that
/// cannot be set up (a TLS file it refuses).
pub async fn connect(cluster: &Cluster) -> Result<Client, ClusterError> {
    Client::connect(&cluster.endpoints, Some(options(cluster)))
        .await
        .map_err(|source| ClusterError::Client {
            endpoints: cluster.endpoints.join(","),
            source: Box::new(source),
        })
}

/// Runs until the publishers are gone (the daemon stopping).
pub async fn run(
    cluster: Cluster,
    client: Client,
    nft: Nft,
    inbox: Inbox,
    metrics: ClusterMetrics,
    grant_epoch: GrantEpoch,
) {
    metrics.up.set(0);
    let limits = inbox.limits.borrow().clone();
    let mut task = Task {
        mirror: Mirror::new(&cluster.prefix, &cluster.node, limits),
        cluster,
        client,
        nft,
        metrics,
        rx: inbox.publications,
        claims: inbox.claims,
        limits: inbox.limits,
        outbox: Outbox::new(OUTBOX_CAPACITY),
        link: Link::Down {
            retry_at: Instant::now(),
            failures: 0,
        },
        warnings: RateLimit::new(WARNING_INTERVAL),
        grant_epoch,
    };
    task.run().await;
}

fn options(cluster: &Cluster) -> ConnectOptions {
    let mut options = ConnectOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(KEEP_ALIVE, KEEP_ALIVE)
        .with_keep_alive_while_idle(true);
    if let Some(files) = &cluster.tls {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &files.ca {
            tls = tls.ca_certificate(Certificate::from_pem(&ca.bytes));
        }
        if let Some((cert, key)) = &files.identity {
            tls = tls.identity(Identity::from_pem(&cert.bytes, &key.bytes));
        }
        options = options.with_tls(tls);
    }
    options
}

impl Task {
    async fn run(&mut self) {
        loop {
            self.reconnect_if_due().await;
            self.publish_due().await;
            let wake = self.next_wake();
            tokio::select! {
                received = self.rx.recv() => match received {
                    Some(publication) => self.queue(publication),
                    None => return,
                },
                Some(claim) = self.claims.recv() => self.claim(claim).await,
                Ok(()) = self.limits.changed() => {
                    self.mirror.set_limits(self.limits.borrow_and_update().clone());
                }
                message = next_message(&mut self.link) => self.on_watch(message),
                () = sleep_until(wake.into()) => {}
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let link = match self.link {
            Link::Down { retry_at, .. } => retry_at,
            Link::Up { .. } => far,
        };
        link.min(self.outbox.retry_at().unwrap_or(far))
    }

    /// Takes this publication and whatever else is waiting in the channel.
    fn queue(&mut self, first: Publication) {
        let mut next = Some(first);
        while let Some(publication) = next {
            if self.outbox.push(publication) == Queued::Full {
                self.metrics.publish_errors.inc();
            }
            next = self.rx.try_recv().ok();
        }
    }

    async fn publish_due(&mut self) {
        while self.outbox.is_due(Instant::now()) {
            let Some(publication) = self.outbox.take(unix_now()) else {
                return;
            };
            match timed(self.write(publication)).await {
                Ok(()) => {
                    self.outbox.succeeded();
                    if matches!(self.link, Link::Up { .. }) {
                        self.metrics.up.set(1);
                    }
                }
                Err(err) => {
                    self.metrics.publish_errors.inc();
                    self.metrics.up.set(0);
                    self.outbox.failed(publication, Instant::now());
                    self.warn("publishing a grant to etcd failed; retrying", &err);
                    return;
                }
            }
        }
    }

    async fn write(&mut self, publication: Publication) -> Result<(), ClusterError> {
        let prefix = &self.cluster.prefix;
        match publication {
            Publication::Open {
                element,
                expires,
                open_for,
            } => {
                // Only what is left: a grant published late must not outlive itself elsewhere.
                let Some(left) = expires.checked_sub(unix_now()).filter(|d| !d.is_zero()) else {
                    return Ok(());
                };
                let lease = self
                    .client
                    .lease_grant(record::lease_seconds(left), None)
                    .await
                    .map_err(request_error("granting a lease"))?;
                let value = Record {
                    node: self.cluster.node.clone(),
                    expires_unix_ms: millis(expires),
                    open_for_ms: millis(open_for),
                };
                let put = PutOptions::new().with_lease(lease.id());
                self.client
                    .put(record::key(prefix, element), value.encode(), Some(put))
                    .await
                    .map_err(request_error("writing a grant"))?;
            }
            Publication::Close { element } => {
                self.client
                    .delete(record::key(prefix, element), None)
                    .await
                    .map_err(request_error("deleting a revoked grant"))?;
            }
        }
        Ok(())
    }

    /// Answers a worker's claim; a worker that stopped waiting gets nothing, which is fine.
    async fn claim(&mut self, request: ClaimRequest) {
        let claim = match self.link {
            Link::Down { .. } => Claim::Unverified,
            Link::Up { .. } => match timed(self.create_if_absent(&request)).await {
                Ok(true) => Claim::First,
                Ok(false) => Claim::Used,
                Err(err) => {
                    self.warn("claiming a once-only use in etcd failed", &err);
                    Claim::Unverified
                }
            },
        };
        let _ = request.reply.try_send(claim);
    }

    /// Whether `request.key` was created now (it was absent).
    async fn create_if_absent(&mut self, request: &ClaimRequest) -> Result<bool, ClusterError> {
        let mut put = PutOptions::new();
        if let Some(lease) = request.lease {
            let lease = self
                .client
                .lease_grant(record::lease_seconds(lease), None)
                .await
                .map_err(request_error("granting a lease"))?;
            put = put.with_lease(lease.id());
        }
        let key = request.key.as_str();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, self.cluster.node.as_str(), Some(put))]);
        let response = self
            .client
            .txn(txn)
            .await
            .map_err(request_error("claiming a once-only use"))?;
        Ok(response.succeeded())
    }

    async fn reconnect_if_due(&mut self) {
        let failures = match self.link {
            Link::Down { retry_at, failures } if Instant::now() >= retry_at => failures,
            _ => return,
        };
        match timed(self.resync()).await {
            Ok((watcher, stream)) => {
                info!(endpoints = %self.cluster.endpoints.join(","), node = %self.cluster.node, "cluster: watching the fleet's grants");
                self.link = Link::Up {
                    stream: Box::new(stream),
                    _watcher: watcher,
                };
                if self.outbox.retry_at().is_none() {
                    self.metrics.up.set(1);
                }
            }
            Err(err) => self.down(failures + 1, &err),
        }
    }

    /// Lists the grants and installs the live ones, then watches from the next revision.
    async fn resync(&mut self) -> Result<(Watcher, WatchStream), ClusterError> {
        let prefix = record::grants_prefix(&self.cluster.prefix);
        let listing = self
            .client
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(request_error("listing the grants"))?;
        let revision = listing
            .header()
            .map_or(0, etcd_client::ResponseHeader::revision);
        let kvs = listing.kvs().iter().map(|kv| (kv.key(), kv.value()));
        let changes = self.mirror.on_snapshot(kvs, unix_now());
        self.apply(&changes);
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(revision + 1);
        self.client
            .watch(prefix.as_str(), Some(options))
            .await
            .map_err(request_error("watching the grants"))
    }

    fn on_watch(&mut self, message: Result<Option<WatchResponse>, etcd_client::Error>) {
        let prefix = self.cluster.prefix.clone();
        let response = match message {
            Ok(Some(response)) if response.canceled() => Err(ClusterError::WatchCancelled {
                prefix,
                reason: response.cancel_reason().to_owned(),
            }),
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(ClusterError::WatchEnded { prefix }),
            Err(source) => Err(ClusterError::Request {
                what: "watching the grants",
                source: Box::new(source),
            }),
        };
        match response {
            Ok(response) => self.on_events(&response),
            Err(err) => self.down(1, &err),
        }
    }

    fn on_events(&mut self, response: &WatchResponse) {
        let now = unix_now();
        let mut changes = Vec::new();
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let event = match event.event_type() {
                etcd_client::EventType::Put => Event::Put {
                    key: kv.key(),
                    value: kv.value(),
                },
                etcd_client::EventType::Delete => Event::Delete {
                    key: kv.key(),
                    prev_value: event.prev_kv().map(etcd_client::KeyValue::value),
                },
            };
            changes.extend(self.mirror.on_event(event, now));
        }
        self.apply(&changes);
    }

    fn apply(&mut self, changes: &[Change]) {
        self.refuse(changes);
        let elements: Vec<_> = changes
            .iter()
            .filter_map(|change| match *change {
                Change::Install { element, timeout } => Some((
                    element.source,
                    element.target,
                    ElementChange::Add { timeout },
                )),
                Change::Remove { element } => {
                    Some((element.source, element.target, ElementChange::Remove))
                }
                Change::Refuse { .. } => None,
            })
            .collect();
        if elements.is_empty() {
            return;
        }
        match self.nft.apply_elements(elements) {
            Ok(()) => {
                if changes.iter().any(|c| matches!(c, Change::Install { .. })) {
                    self.grant_epoch.bump();
                }
                for change in changes {
                    match change {
                        Change::Install { .. } => self.metrics.received_open.inc(),
                        Change::Remove { .. } => self.metrics.received_close.inc(),
                        Change::Refuse { .. } => {}
                    }
                }
            }
            Err(err) => self.warn(
                "carrying out other gateways' grants failed",
                &ClusterError::Nft(err),
            ),
        }
    }

    /// Counts and reports peers' grants of targets no door here opens.
    fn refuse(&mut self, changes: &[Change]) {
        for change in changes {
            if let Change::Refuse { element } = change {
                self.metrics.received_refused.inc();
                if let Gate::Report { events } = self.warnings.check(Instant::now()) {
                    warn!(
                        source = %element.source, target = %element.target, events,
                        "cluster: refused another gateway's grant: no door of this gateway opens \
                         its target (a forged record, or gateways with different doors)"
                    );
                }
            }
        }
    }

    /// The watch is gone: work alone, and try again after a backoff.
    fn down(&mut self, failures: u32, err: &ClusterError) {
        self.metrics.up.set(0);
        self.link = Link::Down {
            retry_at: Instant::now() + outbox::backoff(failures.saturating_sub(1)),
            failures,
        };
        self.warn(
            "cluster: etcd unreachable; this gateway works alone and retries",
            err,
        );
    }

    fn warn(&mut self, what: &str, err: &ClusterError) {
        if let Gate::Report { events } = self.warnings.check(Instant::now()) {
            let cause = std::error::Error::source(err).map(ToString::to_string);
            warn!(error = %err, cause = ?cause, events, pending = self.outbox.len(), "{what}");
        }
    }
}

async fn next_message(link: &mut Link) -> Result<Option<WatchResponse>, etcd_client::Error> {
    match link {
        Link::Up { stream, .. } => stream.message().await,
        Link::Down { .. } => pending().await,
    }
}

async fn timed<T>(
    future: impl Future<Output = Result<T, ClusterError>>,
) -> Result<T, ClusterError> {
    timeout(REQUEST_TIMEOUT, future)
        .await
        .map_err(|_| ClusterError::Timeout(REQUEST_TIMEOUT))?
}

fn request_error(what: &'static str) -> impl FnOnce(etcd_client::Error) -> ClusterError {
    move |source| ClusterError::Request {
        what,
        source: Box::new(source),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
