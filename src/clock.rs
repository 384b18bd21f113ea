//! The wall clock, read only at the edges: SPA timestamps and TOTP steps are Unix time. The
//! engine and the gates take the time they are given.

use std::time::{Duration, SystemTime};

/// Time since the Unix epoch (zero for a clock set before 1970).
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}
