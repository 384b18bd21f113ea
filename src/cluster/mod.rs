//! The fleet: grants shared by a group of gateways through etcd.
//!
//! A worker commits a grant to its own sets first, then hands it to the cluster task over a
//! bounded channel ([`Publisher`]); the packet path never waits on the network. The task writes
//! each grant element as a key with a lease as long as what is left of the grant, deletes the
//! key on a revoke, and watches the prefix to carry out the other gateways' grants and revokes
//! in this one's sets. At (re)connection it lists the prefix, installs what is live and watches
//! from the next revision, so nothing is missed twice or skipped.
//!
//! - `record`: the key layout and the value (pure).
//! - `limits`: what a peer's record may open here: the targets of this gateway's own doors, for
//!   at most their `open_for` (pure).
//! - `mirror`: other gateways' events into element changes (pure).
//! - `outbox`: this gateway's publications, coalesced per element, with backoff (pure).
//! - `once`: fleet-wide once-only uses (SPA nonces, TOTP steps, one-time lines) claimed in etcd.
//! - `etcd`: the task that talks to etcd and to the local sets.

mod etcd;
mod limits;
mod mirror;
pub mod once;
mod outbox;
mod record;

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::{Action, Cluster};
use crate::engine::Grant;
use crate::metrics::ClusterMetrics;
use crate::nft::{Nft, NftError};
pub use etcd::{connect, run};
pub use limits::Limits;
pub use once::{Claim, ClaimRequest};
pub use outbox::Publication;
pub use record::Element;

/// Grants in flight from the workers to the cluster task. Beyond it a publication is dropped
/// and counted: the packet path never waits.
const CHANNEL_CAPACITY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot set up the etcd client for {endpoints}")]
    Client {
        endpoints: String,
        #[source]
        source: Box<etcd_client::Error>,
    },
    #[error("etcd request failed: {what}")]
    Request {
        what: &'static str,
        #[source]
        source: Box<etcd_client::Error>,
    },
    #[error("the watch of {prefix} was cancelled by etcd: {reason}")]
    WatchCancelled { prefix: String, reason: String },
    #[error("the watch of {prefix} ended")]
    WatchEnded { prefix: String },
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot carry out another gateway's grant in the local sets")]
    Nft(#[source] NftError),
}

/// How a worker tells the fleet about the grants it committed.
#[derive(Debug, Clone)]
pub enum Publisher {
    /// No `[cluster]`: nothing to tell.
    Alone,
    Fleet {
        tx: mpsc::Sender<Publication>,
        claims: mpsc::Sender<ClaimRequest>,
        metrics: ClusterMetrics,
        /// `[cluster].prefix`, for the keys of claims.
        prefix: String,
    },
}

/// What the cluster task receives from the workers.
#[derive(Debug)]
pub struct Inbox {
    pub publications: mpsc::Receiver<Publication>,
    pub claims: mpsc::Receiver<ClaimRequest>,
    /// The doors' [`Limits`], sent anew at each reload.
    pub limits: watch::Receiver<Limits>,
}

impl Publisher {
    /// Queues the publication of a committed grant's elements; `wall_now` is the commit time
    /// since the Unix epoch. Never blocks: with the channel full it is counted as an error.
    pub fn publish(&self, grant: &Grant, wall_now: Duration) {
        let Publisher::Fleet { tx, metrics, .. } = self else {
            return;
        };
        let spec = &grant.spec;
        for &target in spec.targets_for(grant.source) {
            let element = Element {
                source: grant.source,
                target,
            };
            let publication = match spec.action {
                Action::Open => Publication::Open {
                    element,
                    expires: wall_now + spec.open_for,
                    open_for: spec.open_for,
                },
                Action::Close => Publication::Close { element },
            };
            if tx.try_send(publication).is_err() {
                metrics.publish_errors.inc();
            }
        }
    }

    /// The etcd key and lease that claim `use_` of `door`; `None` alone or for a use of
    /// another kind than its door's.
    pub fn claim_key(
        &self,
        door: &str,
        origin: &crate::config::SequenceOrigin,
        use_: crate::config::OnceUse,
    ) -> Option<(String, Option<Duration>)> {
        match self {
            Publisher::Alone => None,
            Publisher::Fleet { prefix, .. } => once::claim_key(prefix, door, origin, use_),
        }
    }

    /// The etcd key and lease that claim an SPA nonce of `door`; `None` alone.
    pub fn nonce_key(
        &self,
        door: &str,
        nonce: crate::spa::NonceUse,
        unix_now: Duration,
    ) -> Option<(String, Option<Duration>)> {
        match self {
            Publisher::Alone => None,
            Publisher::Fleet { prefix, .. } => Some(once::nonce_key(
                prefix,
                door,
                &nonce.nonce,
                nonce.expires,
                unix_now,
            )),
        }
    }

    /// Claims a once-only use (already recorded locally) for the whole fleet: `key` is created
    /// in etcd unless another gateway created it first. Waits at most
    /// [`once::CLAIM_BUDGET`], and not at all while the cluster is down.
    pub fn claim(&self, key: String, lease: Option<Duration>) -> Claim {
        let Publisher::Fleet {
            claims, metrics, ..
        } = self
        else {
            return Claim::Unverified;
        };
        if metrics.up.get() != 1 {
            return Claim::Unverified;
        }
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let request = ClaimRequest { key, lease, reply };
        if claims.try_send(request).is_err() {
            return Claim::Unverified;
        }
        answer
            .recv_timeout(once::CLAIM_BUDGET)
            .unwrap_or(Claim::Unverified)
    }
}

/// Claims waiting for the cluster task; beyond it a claim is unverified.
const CLAIM_CAPACITY: usize = 256;

/// The publisher for the workers and the inbox for [`run`]; `Alone` without `[cluster]`.
/// `limits` carries the doors' [`Limits`] to the cluster task.
pub fn channel(
    cluster: Option<&Cluster>,
    metrics: &ClusterMetrics,
    limits: &watch::Sender<Limits>,
) -> (Publisher, Option<Inbox>) {
    match cluster {
        None => (Publisher::Alone, None),
        Some(cluster) => {
            let (tx, publications) = mpsc::channel(CHANNEL_CAPACITY);
            let (claims, claim_rx) = mpsc::channel(CLAIM_CAPACITY);
            let metrics = metrics.clone();
            let inbox = Inbox {
                publications,
                claims: claim_rx,
                limits: limits.subscribe(),
            };
            let prefix = cluster.prefix.clone();
            let publisher = Publisher::Fleet {
                tx,
                claims,
                metrics,
                prefix,
            };
            (publisher, Some(inbox))
        }
    }
}

/// Opens the netlink socket the cluster task installs other gateways' grants with.
pub fn open_sets(table: &str) -> Result<Nft, ClusterError> {
    Nft::open(table).map_err(ClusterError::Nft)
}
