//! Grants and revokes of this gateway waiting to be written to etcd, one per element (the
//! latest wins), retried with backoff while etcd is away. Pure: time is passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::record::Element;

/// What this gateway did to one element, to tell the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    /// Granted until `expires` (since the Unix epoch), for at most `open_for`.
    Open {
        element: Element,
        expires: Duration,
        open_for: Duration,
    },
    Close {
        element: Element,
    },
}

impl Publication {
    pub fn element(&self) -> Element {
        match *self {
            Publication::Open { element, .. } | Publication::Close { element } => element,
        }
    }
}

/// Whether a publication found room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// The outbox is full of other elements: this one is not published (counted as an error).
    Full,
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The wait after `failures` failures in a row: 100 ms, doubling, at most 5 s.
pub fn backoff(failures: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << failures.min(6))
        .min(MAX_RETRY)
}

#[derive(Debug)]
pub struct Outbox {
    pending: BTreeMap<Element, Publication>,
    capacity: usize,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Outbox {
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            pending: BTreeMap::new(),
            capacity,
            failures: 0,
            retry_at: None,
        }
    }

    pub fn push(&mut self, publication: Publication) -> Queued {
        let element = publication.element();
        if self.pending.len() >= self.capacity && !self.pending.contains_key(&element) {
            return Queued::Full;
        }
        self.pending.insert(element, publication);
        Queued::Yes
    }

    /// Whether it is time to write (nothing failed lately, or the backoff has passed).
    pub fn is_due(&self, now: Instant) -> bool {
        !self.pending.is_empty() && self.retry_at.is_none_or(|at| now >= at)
    }

    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at.filter(|_| !self.pending.is_empty())
    }

    /// The next publication to write, taken out. A grant that has ended by `wall_now` (since
    /// the epoch) is dropped: published late, it would only outlive itself elsewhere.
    pub fn take(&mut self, wall_now: Duration) -> Option<Publication> {
        while let Some((_, publication)) = self.pending.pop_first() {
            match publication {
                Publication::Open { expires, .. } if expires <= wall_now => continue,
                publication => return Some(publication),
            }
        }
        None
    }

    /// Writing `publication` failed: it goes back (unless a newer one for its element came)
    /// and the next try waits, twice as long each time, up to 5 s.
    pub fn failed(&mut self, publication: Publication, now: Instant) {
        self.pending
            .entry(publication.element())
            .or_insert(publication);
        self.retry_at = Some(now + backoff(self.failures));
        self.failures += 1;
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Proto, Target};

    fn element(last: u8) -> Element {
        Element {
            source: std::net::IpAddr::from([203, 0, 113, last]),
            target: Target::Local {
                port: 22,
                proto: Proto::Tcp,
            },
        }
    }

    fn open(last: u8, expires: u64) -> Publication {
        Publication::Open {
            element: element(last),
            expires: Duration::from_secs(expires),
            open_for: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_latest_publication_of_an_element_wins_and_a_full_outbox_refuses_new_elements() {
        let mut outbox = Outbox::new(1);
        assert_eq!(outbox.push(open(1, 100)), Queued::Yes);
        let close = Publication::Close {
            element: element(1),
        };
        assert_eq!(outbox.push(close), Queued::Yes);
        assert_eq!(outbox.push(open(2, 100)), Queued::Full);
        assert_eq!(outbox.take(Duration::from_secs(50)), Some(close));
        assert_eq!(outbox.take(Duration::from_secs(50)), None);
    }

    #[test]
    fn a_grant_that_ended_while_waiting_is_never_published() {
        let mut outbox = Outbox::new(8);
        outbox.push(open(1, 100));
        outbox.push(open(2, 200));
        assert_eq!(outbox.take(Duration::from_secs(150)), Some(open(2, 200)));
        assert_eq!(outbox.take(Duration::from_secs(150)), None);
    }

    #[test]
    fn failures_back_off_doubling_up_to_five_seconds_and_a_success_resets() {
        let mut outbox = Outbox::new(8);
        let start = Instant::now();
        outbox.push(open(1, 100));
        assert!(outbox.is_due(start));
        let mut waits = Vec::new();
        for _ in 0..8 {
            let p = outbox.take(Duration::ZERO).unwrap();
            outbox.failed(p, start);
            waits.push(outbox.retry_at().unwrap() - start);
        }
        let ms = Duration::from_millis;
        assert_eq!(&waits[..4], &[ms(100), ms(200), ms(400), ms(800)]);
        assert_eq!(waits[7], Duration::from_secs(5));
        assert!(!outbox.is_due(start));
        outbox.succeeded();
        assert!(outbox.is_due(start));
        assert_eq!(outbox.len(), 1);
    }
}
