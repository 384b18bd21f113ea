//! Grants of TOTP and one-time doors: the step or line is consumed, durably, before the grant
//! is committed; one already used, or one that cannot be recorded, grants nothing.

use tracing::{error, info};

use super::Worker;
use crate::cluster::{Claim, Publisher};
use crate::engine::GrantSpec;
use crate::once::Refusal;

impl Worker {
    /// Drops the pending grants whose once-only use is refused, counting each.
    pub(super) fn consume_once_only(&mut self) {
        if self
            .pending
            .iter()
            .all(|(grant, _)| grant.spec.once.is_none())
        {
            return;
        }
        let unix_now = crate::clock::unix_now();
        let state = std::sync::Arc::clone(&self.state);
        let mut once = state.once();
        let fleet = &self.publisher;
        self.pending.retain(|(grant, counters)| {
            let spec = &grant.spec;
            let Some(use_) = spec.once else {
                return true;
            };
            // Nothing is granted to a family the door has no target for: nothing is used up.
            if spec.targets_for(grant.source).is_empty() {
                return true;
            }
            let refused = &counters.refused;
            let consumed = once
                .consume(&spec.origin, use_, unix_now)
                .and_then(|()| claim_in_fleet(fleet, spec, use_));
            match consumed {
                Ok(()) => true,
                Err(Refusal::Used) => {
                    if let Some(used) = &refused.used {
                        used.inc();
                    }
                    info!(door = %spec.door, source = %grant.source, ?use_, "sequence complete, but it was used before: no grant");
                    false
                }
                Err(err @ Refusal::NotRecorded(_)) => {
                    if let Some(lost) = &refused.not_persisted {
                        lost.inc();
                    }
                    error!(door = %spec.door, source = %grant.source, error = %err, "sequence complete, but its use could not be recorded: no grant");
                    false
                }
            }
        });
    }
}

/// Recorded here, the use is claimed for the whole fleet: one that another gateway used
/// first is refused as used. Unverified (no cluster, or etcd away), the local record decides.
fn claim_in_fleet(
    fleet: &Publisher,
    spec: &GrantSpec,
    use_: crate::config::OnceUse,
) -> Result<(), Refusal> {
    let Publisher::Fleet { .. } = fleet else {
        return Ok(());
    };
    let Some((key, lease)) = fleet.claim_key(&spec.door, &spec.origin, use_) else {
        return Ok(());
    };
    match fleet.claim(key, lease) {
        Claim::First | Claim::Unverified => Ok(()),
        Claim::Used => Err(Refusal::Used),
    }
}
