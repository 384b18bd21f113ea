//! Rate limits for warnings that a flood would otherwise repeat thousands of times a second.

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
}
