//! Busy polling under a flood. A worker that sleeps on its socket after every receive must be
//! woken for the next packet, and on a virtual machine that wake-up (an inter-processor
//! interrupt sent from the CPU that queues the packet) costs that CPU more than queuing the
//! packet does. So while receives come closer together than [`BUSY_GAP`] on average, the
//! worker polls the socket without sleeping for [`SPIN_FOR`] after each one: packets arriving
//! in that time need no wake-up. At ordinary rates it sleeps as before.

use std::time::{Duration, Instant};

/// The average gap between receives below which the worker polls (about 65 000 receives/s).
pub const BUSY_GAP: Duration = Duration::from_micros(15);
/// How long it polls after a receive before it sleeps.
pub const SPIN_FOR: Duration = Duration::from_micros(30);
/// Longer gaps count as this much: one pause in a flood ends the polling (an eighth of it
/// is far above [`BUSY_GAP`]), and about 16 close receives after it start it again.
const LONGEST_GAP: Duration = Duration::from_millis(1);

/// The recent gap between receives, and until when to poll.
#[derive(Debug)]
pub struct BusyPoll {
    last: Option<Instant>,
    /// Exponentially weighted (1/8) average gap.
    average: Duration,
    until: Option<Instant>,
}

impl Default for BusyPoll {
    fn default() -> BusyPoll {
        BusyPoll {
            last: None,
            average: LONGEST_GAP,
            until: None,
        }
    }
}

impl BusyPoll {
    /// A receive brought packets at `now`.
    pub fn received(&mut self, now: Instant) {
        let gap = self
            .last
            .map_or(LONGEST_GAP, |last| now.duration_since(last))
            .min(LONGEST_GAP);
        self.average = self.average - self.average / 8 + gap / 8;
        self.last = Some(now);
    }

    /// The receive's packets are answered at `now`: poll from here if receives are close.
    pub fn drained(&mut self, now: Instant) {
        self.until = (self.average < BUSY_GAP).then(|| now + SPIN_FOR);
    }

    /// Whether to poll rather than sleep at `now`.
    pub fn polling(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receives(gap: Duration, count: u32) -> (BusyPoll, Instant) {
        let mut busy = BusyPoll::default();
        let start = Instant::now();
        for i in 0..count {
            busy.received(start + gap * i);
        }
        (busy, start + gap * count.saturating_sub(1))
    }

    #[test]
    fn close_receives_poll_for_a_while_then_sleep() {
        let (mut busy, last) = receives(Duration::from_micros(10), 50);
        busy.drained(last);
        assert!(busy.polling(last + Duration::from_micros(1)));
        assert!(!busy.polling(last + SPIN_FOR));
    }

    #[test]
    fn ordinary_rates_and_a_first_receive_sleep_at_once() {
        let (mut busy, last) = receives(Duration::from_micros(100), 50);
        busy.drained(last);
        assert!(!busy.polling(last));
        let (mut first, at) = receives(Duration::ZERO, 1);
        first.drained(at);
        assert!(!first.polling(at));
    }

    #[test]
    fn a_pause_in_a_flood_soon_ends_the_polling() {
        let (mut busy, last) = receives(Duration::from_micros(10), 50);
        // One receive 1 ms later lifts the average far above the gap.
        let later = last + Duration::from_millis(1);
        busy.received(later);
        busy.drained(later);
        assert!(!busy.polling(later));
    }
}
