//! A datagram to an SPA port: the gate judges it; an accepted message's nonce is saved before
//! its grant joins the packet's pending grants. The datagram itself is always dropped.

use std::time::{Duration, Instant};

use tracing::{debug, error};

use super::Worker;
use crate::cluster::Claim;
use crate::engine::{Arrival, Grant, KnockResult, Verdict};
use crate::packet::{self, Packet};
use crate::queue::limit::Gate;
use crate::spa::{NonceUse, Rejection, SpaOutcome};

impl Worker {
    pub(super) fn authorize(
        &mut self,
        now: Instant,
        (packet, arrival): (&Packet, Arrival),
        bytes: &[u8],
    ) -> Verdict {
        let datagram = packet::udp_payload(bytes).unwrap_or_default();
        let unix_now = crate::clock::unix_now();
        let source = packet.knock.source;
        let mut spa = self.state.spa();
        let outcome = spa.gate.on_datagram(
            (now, unix_now),
            (source, arrival),
            packet.knock.port,
            datagram,
        );
        let (door, reason) = match outcome {
            SpaOutcome::Granted(grant, nonce) => match spa.save() {
                Ok(()) => {
                    drop(spa);
                    if self.claim_nonce(&grant, nonce, unix_now) == Claim::Used {
                        let name = grant.spec.door.as_str();
                        self.state
                            .metrics
                            .spa_rejected(Some(name), Rejection::Replayed)
                            .inc();
                        debug!(%source, door = name, "SPA datagram replayed: another gateway accepted it first");
                        return Verdict::Drop;
                    }
                    self.granted(grant);
                    return Verdict::Drop;
                }
                Err(err) => {
                    if let Gate::Report { events } = self.grant_failure_warnings.check(now) {
                        error!(
                            door = %grant.spec.door, %source, error = %err, failed = events,
                            "SPA message valid, but the replay cache cannot be saved: no grant"
                        );
                    }
                    (Some(grant.door), Rejection::NotPersisted)
                }
            },
            SpaOutcome::Rejected { door, reason } => {
                // A message over the rate used its nonce: it must stay used after a restart.
                if reason == Rejection::RateLimited
                    && let Err(err) = spa.save()
                    && let Gate::Report { events } = self.grant_failure_warnings.check(now)
                {
                    error!(%source, error = %err, failed = events, "the SPA replay cache cannot be saved");
                }
                (door, reason)
            }
        };
        let name = door.and_then(|id| spa.gate.door_name(id));
        self.state.metrics.spa_rejected(name, reason).inc();
        debug!(%source, door = name.unwrap_or(""), reason = reason.label(), "SPA datagram rejected");
        Verdict::Drop
    }

    /// Saved here, the nonce is claimed for the whole fleet (see `cluster::once`).
    fn claim_nonce(&self, grant: &Grant, nonce: NonceUse, unix_now: Duration) -> Claim {
        match self.publisher.nonce_key(&grant.spec.door, nonce, unix_now) {
            Some((key, lease)) => self.publisher.claim(key, lease),
            None => Claim::Unverified,
        }
    }

    /// Counts the completion and queues the grant for the commit before the verdict. The
    /// counters are found by name: the engine's doors are numbered differently from the
    /// gate's (TOTP doors expand into several).
    fn granted(&mut self, grant: Grant) {
        let counters = {
            let shard = self.state.shard(grant.source);
            let index = shard
                .engine
                .doors()
                .iter()
                .position(|door| door.name == grant.spec.door);
            index.and_then(|i| shard.door_metrics.get(i).cloned())
        };
        // A reload between the gate's decision and here removed the door: let the client send
        // again rather than count under the wrong door.
        let Some(counters) = counters else {
            debug!(source = %grant.source, "SPA grant dropped: the doors were reloaded meanwhile");
            return;
        };
        counters.knock(KnockResult::Complete);
        self.pending.push((grant, counters));
    }
}
