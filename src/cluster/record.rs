//! The key layout and the value of a published grant. Pure: no I/O, no clock.
//!
//! `{prefix}grants/{source}/{target}` holds one grant element, e.g.
//! `/knock-nfq/grants/203.0.113.7/22/tcp` or `/knock-nfq/grants/2001:db8::7/[2001:db8::5]:443/tcp`.
//! The source has no `/`, so the first `/` after it starts the target.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Target;
use crate::config::parse;

/// What one key names: a source's access to one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Element {
    pub source: IpAddr,
    pub target: Target,
}

/// The value of a grant key. Wall-clock expiry, because a lease's TTL is rounded up to whole
/// seconds and renewed in full when etcd elects a new leader: the value says when it really ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The gateway that granted it.
    pub node: String,
    /// Milliseconds since the Unix epoch at which the grant ends.
    pub expires_unix_ms: u64,
    /// The door's `open_for`: no peer installs more, whatever the clocks say.
    pub open_for_ms: u64,
}

impl Record {
    /// What is left of the grant at `now` (since the epoch), capped at `open_for`; `None` once
    /// it has ended.
    pub fn remaining(&self, now: Duration) -> Option<Duration> {
        let left = Duration::from_millis(self.expires_unix_ms).checked_sub(now)?;
        let left = left.min(Duration::from_millis(self.open_for_ms));
        (left >= Duration::from_millis(1)).then_some(left)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Option<Record> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The prefix of every grant key.
pub fn grants_prefix(prefix: &str) -> String {
    format!("{prefix}grants/")
}

pub fn key(prefix: &str, element: Element) -> String {
    format!("{prefix}grants/{}/{}", element.source, element.target)
}

/// The element a key names, or `None` for a key that is not a grant key of this layout.
pub fn parse_key(prefix: &str, key: &[u8]) -> Option<Element> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(&grants_prefix(prefix))?;
    let (source, target) = rest.split_once('/')?;
    Some(Element {
        source: source.parse().ok()?,
        target: parse::target(target).ok()?,
    })
}

/// The lease for a grant with `remaining` left: whole seconds, rounded up (etcd's unit).
pub fn lease_seconds(remaining: Duration) -> i64 {
    let secs = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Proto;

    const PREFIX: &str = "/knock-nfq/";

    fn elements() -> [Element; 3] {
        [
            Element {
                source: "203.0.113.7".parse().unwrap(),
                target: Target::Local {
                    port: 22,
                    proto: Proto::Tcp,
                },
            },
            Element {
                source: "2001:db8::7".parse().unwrap(),
                target: Target::Forward {
                    addr: "2001:db8::5".parse().unwrap(),
                    port: 443,
                    proto: Proto::Tcp,
                },
            },
            Element {
                source: "203.0.113.8".parse().unwrap(),
                target: Target::Forward {
                    addr: "198.51.100.10".parse().unwrap(),
                    port: 53,
                    proto: Proto::Udp,
                },
            },
        ]
    }

    #[test]
    fn every_key_reads_back_as_the_element_it_was_made_from() {
        assert_eq!(
            key(PREFIX, elements()[0]),
            "/knock-nfq/grants/203.0.113.7/22/tcp"
        );
        for element in elements() {
            let key = key(PREFIX, element);
            assert_eq!(parse_key(PREFIX, key.as_bytes()), Some(element), "{key}");
        }
    }

    #[test]
    fn keys_of_another_prefix_or_layout_are_not_grants() {
        for key in [
            "/other/grants/203.0.113.7/22/tcp",
            "/knock-nfq/once/x",
            "/knock-nfq/grants/not-an-ip/22/tcp",
            "/knock-nfq/grants/203.0.113.7/70000/tcp",
            "/knock-nfq/grants/203.0.113.7",
        ] {
            assert_eq!(parse_key(PREFIX, key.as_bytes()), None, "{key}");
        }
    }

    #[test]
    fn a_record_gives_what_is_left_capped_at_open_for_and_nothing_once_over() {
        let record = Record {
            node: "gw1".into(),
            expires_unix_ms: 100_000,
            open_for_ms: 30_000,
        };
        let at = Duration::from_millis;
        assert_eq!(record.remaining(at(90_000)), Some(at(10_000)));
        // A peer whose clock is behind never installs more than the door's open_for.
        assert_eq!(record.remaining(at(10_000)), Some(at(30_000)));
        assert_eq!(record.remaining(at(100_000)), None);
        assert_eq!(record.remaining(at(200_000)), None);
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(Record::decode(b"garbage"), None);
    }

    #[test]
    fn leases_are_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(lease_seconds(Duration::from_millis(1)), 1);
        assert_eq!(lease_seconds(Duration::from_millis(29_001)), 30);
        assert_eq!(lease_seconds(Duration::from_secs(30)), 30);
    }
}
