//! Connections that raced their own knock and found no grant yet. Packets of one client can
//! reach the queue out of order (the client's thread moved to another core between the knock and
//! the connect, or a multi-queue NIC spread them), so a connection is held briefly, off the
//! queue's order, and decided again after each grant commit by any worker or the cluster task
//! (the grant epoch, [`super::epoch`]; with `fanout` the knock and the connect can reach
//! different workers): admitted once its grant is in the kernel, at its deadline looked up a
//! last time and dropped without one. The list is bounded; beyond it a connection is dropped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::nft::Attempt;

/// How long a held connection waits for its grant: far longer than a knock overtaken by a few
/// microseconds needs, far shorter than the client's SYN retransmit (1 s).
pub const HOLD_FOR: Duration = Duration::from_millis(100);
/// Held connections per worker; a flood of them is dropped beyond it.
pub const MAX_HELD: usize = 64;
/// How often a worker with held connections looks at the clock when no packet arrives.
pub const POLL: Duration = Duration::from_millis(1);

/// A held connection: its queued packet (an `nfq::Detached` in the worker: what its verdict
/// needs, without the receive buffer a whole message would keep) and what it asks.
#[derive(Debug, Clone, Copy)]
pub struct HeldConnection<M> {
    pub message: M,
    pub attempt: Attempt,
    pub received: Instant,
}

/// What to do with a held connection now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    /// A grant was committed since the last look (by any worker, or a peer's through the
    /// cluster task): ask the kernel about every held connection.
    All,
    /// Nothing changed: only the deadlines matter.
    Expired,
}

#[derive(Debug)]
pub struct Held<M> {
    waiting: VecDeque<HeldConnection<M>>,
}

impl<M> Default for Held<M> {
    fn default() -> Held<M> {
        Held {
            waiting: VecDeque::new(),
        }
    }
}

impl<M> Held<M> {
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Holds `connection`, or hands it back when the list is full.
    pub fn hold(&mut self, connection: HeldConnection<M>) -> Result<(), HeldConnection<M>> {
        if self.waiting.len() >= MAX_HELD {
            return Err(connection);
        }
        self.waiting.push_back(connection);
        Ok(())
    }

    /// Takes out what must be decided now: every connection for [`Recheck::All`] (the caller
    /// holds again those still without a grant and before their deadline), else the expired.
    pub fn due(&mut self, now: Instant, recheck: Recheck) -> Vec<HeldConnection<M>> {
        match recheck {
            Recheck::All => self.waiting.drain(..).collect(),
            Recheck::Expired => {
                let mut due = Vec::new();
                for connection in std::mem::take(&mut self.waiting) {
                    match expired(connection.received, now) {
                        true => due.push(connection),
                        false => self.waiting.push_back(connection),
                    }
                }
                due
            }
        }
    }

    /// Every held connection, for the verdicts a stopping worker owes.
    pub fn take_all(&mut self) -> Vec<HeldConnection<M>> {
        self.waiting.drain(..).collect()
    }
}

pub fn expired(received: Instant, now: Instant) -> bool {
    now.duration_since(received) >= HOLD_FOR
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Proto;

    fn connection(id: u32, received: Instant) -> HeldConnection<u32> {
        let attempt = Attempt::Local {
            source: [192, 0, 2, 7].into(),
            proto: Proto::Tcp,
            port: 22,
        };
        HeldConnection {
            message: id,
            attempt,
            received,
        }
    }

    #[test]
    fn deadlines_release_in_order_a_recheck_releases_all_and_the_list_is_bounded() {
        let start = Instant::now();
        let mut held = Held::default();
        held.hold(connection(1, start)).unwrap();
        held.hold(connection(2, start + Duration::from_millis(50)))
            .unwrap();
        let ids = |due: Vec<HeldConnection<u32>>| due.iter().map(|c| c.message).collect::<Vec<_>>();
        assert_eq!(
            ids(held.due(start + Duration::from_millis(99), Recheck::Expired)),
            [] as [u32; 0]
        );
        assert_eq!(ids(held.due(start + HOLD_FOR, Recheck::Expired)), [1]);
        assert_eq!(ids(held.due(start + HOLD_FOR, Recheck::All)), [2]);
        assert!(held.is_empty());
        for id in 0..MAX_HELD {
            held.hold(connection(u32::try_from(id).unwrap(), start))
                .unwrap();
        }
        assert_eq!(held.hold(connection(99, start)).unwrap_err().message, 99);
        assert_eq!(held.take_all().len(), MAX_HELD);
    }
}
