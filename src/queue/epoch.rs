//! The grant epoch: a count of grant commits by anyone, every worker and the cluster task.
//! With several queues (`fanout` picks one by the CPU that handles the packet), a connection
//! can be held on another worker than the one that commits its grant; each worker holding
//! connections compares the epoch with the one it last saw, on every turn of its loop, and
//! looks its held connections up again when it moved.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::held::Recheck;

/// Shared by the workers and the cluster task; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct GrantEpoch(Arc<AtomicU64>);

impl GrantEpoch {
    /// After a commit was acknowledged: its grants are in the kernel for any lookup from now.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The epoch one worker last looked its held connections up at.
#[derive(Debug, Default)]
pub struct SeenEpoch(u64);

impl SeenEpoch {
    /// [`Recheck::All`] if anyone committed since the last call, else [`Recheck::Expired`].
    /// A commit acknowledged after this read bumps the epoch after it: the next call sees it.
    pub fn recheck(&mut self, epoch: &GrantEpoch) -> Recheck {
        let now = epoch.current();
        match std::mem::replace(&mut self.0, now) == now {
            true => Recheck::Expired,
            false => Recheck::All,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_by_any_holder_of_the_epoch_makes_every_worker_recheck_once() {
        let epoch = GrantEpoch::default();
        let (mut own, mut other) = (SeenEpoch::default(), SeenEpoch::default());
        assert_eq!(own.recheck(&epoch), Recheck::Expired);
        assert_eq!(other.recheck(&epoch), Recheck::Expired);
        // The cluster task or another worker commits: both workers recheck, once each.
        epoch.clone().bump();
        assert_eq!(own.recheck(&epoch), Recheck::All);
        assert_eq!(own.recheck(&epoch), Recheck::Expired);
        epoch.bump();
        epoch.bump();
        assert_eq!(other.recheck(&epoch), Recheck::All);
        assert_eq!(other.recheck(&epoch), Recheck::Expired);
        assert_eq!(own.recheck(&epoch), Recheck::All);
    }
}
