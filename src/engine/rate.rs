//! Per-door grant rate limit: a token bucket on the engine's millisecond clock. A sniffed
//! sequence replayed from thousands of forged sources completes each time; the bucket bounds
//! the grants (kernel set elements and log lines) that makes, per second.

/// Tokens are counted in thousandths, so a millisecond of refill is exact for any rate.
const MILLI: u64 = 1000;

#[derive(Debug, Clone)]
pub(crate) struct GrantBucket {
    per_second: u64,
    /// Thousandths of a grant; full (one second's worth) at the start.
    tokens: u64,
    refilled_ms: u64,
}

impl GrantBucket {
    pub fn new(per_second: u32) -> GrantBucket {
        let per_second = u64::from(per_second.max(1));
        GrantBucket {
            per_second,
            tokens: per_second * MILLI,
            refilled_ms: 0,
        }
    }

    /// Takes one grant's token at `now_ms`, if the door has one left.
    pub fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.refilled_ms);
        let capacity = self.per_second * MILLI;
        self.tokens = capacity.min(self.tokens + elapsed.saturating_mul(self.per_second));
        self.refilled_ms = now_ms.max(self.refilled_ms);
        if self.tokens < MILLI {
            return false;
        }
        self.tokens -= MILLI;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_seconds_worth_then_one_grant_per_period() {
        let mut bucket = GrantBucket::new(10);
        assert_eq!((0..15).filter(|_| bucket.take(0)).count(), 10);
        assert!(
            !bucket.take(99),
            "a tenth of a second refills just under one"
        );
        assert!(bucket.take(100));
        assert!(!bucket.take(100));
        // Idle for long: full again, never more than a second's worth.
        assert_eq!((0..15).filter(|_| bucket.take(60_000)).count(), 10);
    }

    #[test]
    fn the_slowest_rate_still_grants_once_a_second() {
        let mut bucket = GrantBucket::new(1);
        assert!(bucket.take(0));
        assert!(!bucket.take(999));
        assert!(bucket.take(1000));
    }
}
