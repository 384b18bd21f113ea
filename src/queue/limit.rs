//! Rate limits for warnings that a flood would otherwise repeat thousands of times a second, and
//! the backoff of a loop whose error keeps repeating.

use std::time::{Duration, Instant};

/// Lets one event through per interval and counts the ones held back in between.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Instant>,
    held_back: u64,
}

/// Whether to report an event now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Report it; `events` counts it and those held back since the last report.
    Report {
        events: u64,
    },
    HoldBack,
}

impl RateLimit {
    pub const fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval,
            last: None,
            held_back: 0,
        }
    }

    pub fn check(&mut self, now: Instant) -> Gate {
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if !due {
            self.held_back += 1;
            return Gate::HoldBack;
        }
        self.last = Some(now);
        let events = std::mem::take(&mut self.held_back) + 1;
        Gate::Report { events }
    }
}

/// The same error this many times in a row (no success between) is a broken socket, not a burst.
const REPEATS_BEFORE_PAUSE: u32 = 100;

/// Whether a failing loop should pause before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Go on at once: a burst of errors (ENOBUFS, a stray signal) must not stall the queue.
    Retry,
    /// The same error keeps coming back: pause, so the loop cannot spin a core.
    Pause,
}

/// Counts repeats of one error code since the last success.
#[derive(Debug, Default)]
pub struct ErrorStreak {
    last: Option<i32>,
    repeats: u32,
}

impl ErrorStreak {
    pub fn clear(&mut self) {
        self.last = None;
    }

    pub fn failed(&mut self, code: i32) -> Backoff {
        self.repeats = match self.last.replace(code) {
            Some(last) if last == code => self.repeats.saturating_add(1),
            _ => 0,
        };
        if self.repeats >= REPEATS_BEFORE_PAUSE {
            Backoff::Pause
        } else {
            Backoff::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_passes_then_one_per_interval_with_the_count() {
        let mut limit = RateLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.check(t0), Gate::Report { events: 1 });
        for i in 1..=5 {
            assert_eq!(limit.check(t0 + Duration::from_secs(i)), Gate::HoldBack);
        }
        assert_eq!(
            limit.check(t0 + Duration::from_secs(10)),
            Gate::Report { events: 6 }
        );
        assert_eq!(limit.check(t0 + Duration::from_secs(11)), Gate::HoldBack);
    }

    #[test]
    fn only_the_same_error_repeated_without_a_success_pauses() {
        let mut streak = ErrorStreak::default();
        for _ in 0..REPEATS_BEFORE_PAUSE {
            assert_eq!(streak.failed(libc::EIO), Backoff::Retry);
        }
        assert_eq!(streak.failed(libc::EIO), Backoff::Pause);
        // A different error, or a success in between, starts over.
        assert_eq!(streak.failed(libc::EBADF), Backoff::Retry);
        for _ in 0..REPEATS_BEFORE_PAUSE - 1 {
            streak.failed(libc::EBADF);
        }
        streak.clear();
        assert_eq!(streak.failed(libc::EBADF), Backoff::Retry);
    }
}
