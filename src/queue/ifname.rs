//! Names of the interfaces queued packets arrive on. The kernel reports an index
//! (NFQA_IFINDEX_INDEV); a door's `interfaces` match names. Cached, and forgotten every few
//! seconds so that a renamed or recreated interface (`ppp0` after a redial) is seen.

use std::collections::HashMap;
use std::ffi::CStr;
use std::time::{Duration, Instant};

/// How long a looked-up name is trusted.
const FRESH_FOR: Duration = Duration::from_secs(5);

/// An interface name, copied (at most 15 bytes and a NUL, as the kernel allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfName {
    bytes: [u8; libc::IF_NAMESIZE],
    len: usize,
}

impl IfName {
    pub fn as_str(&self) -> &str {
        // Only built from a `&str` in `lookup`.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct IfNames {
    by_index: HashMap<u32, IfName>,
    looked_up: Instant,
}

impl IfNames {
    pub fn new(now: Instant) -> IfNames {
        IfNames {
            by_index: HashMap::new(),
            looked_up: now,
        }
    }

    /// The name of interface `index` (0: none, as for locally generated packets).
    pub fn name(&mut self, index: u32, now: Instant) -> Option<IfName> {
        if index == 0 {
            return None;
        }
        if now.saturating_duration_since(self.looked_up) > FRESH_FOR {
            self.by_index.clear();
            self.looked_up = now;
        }
        if let Some(name) = self.by_index.get(&index) {
            return Some(*name);
        }
        let name = lookup(index)?;
        self.by_index.insert(index, name);
        Some(name)
    }
}

fn lookup(index: u32) -> Option<IfName> {
    let mut buf: [libc::c_char; libc::IF_NAMESIZE] = [0; libc::IF_NAMESIZE];
    // SAFETY: `buf` holds IF_NAMESIZE bytes, the size if_indextoname(3) writes at most.
    let found = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if found.is_null() {
        return None;
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated name into `buf`.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().ok()?;
    let mut bytes = [0; libc::IF_NAMESIZE];
    let len = name.len().min(libc::IF_NAMESIZE - 1);
    bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
    Some(IfName { bytes, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_named_and_index_zero_is_none() {
        let now = Instant::now();
        let mut names = IfNames::new(now);
        // SAFETY: a NUL-terminated literal, as if_nametoindex(3) requires.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert_ne!(lo, 0, "every network namespace has lo");
        assert_eq!(
            names
                .name(lo, now)
                .map(|n| n.as_str().to_owned())
                .as_deref(),
            Some("lo")
        );
        assert_eq!(names.name(0, now), None);
        assert_eq!(names.name(u32::MAX, now), None);
    }
}
