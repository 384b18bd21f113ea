//! What this gateway does with the grants other gateways publish: each etcd event or snapshot
//! becomes element changes for the local sets. Pure: time is passed in.

use std::collections::HashMap;
use std::time::Duration;

use super::limits::Limits;
use super::record::{self, Element, Record};

/// One change to this gateway's grant sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add (or re-arm) the element with this timeout.
    Install {
        element: Element,
        timeout: Duration,
    },
    Remove {
        element: Element,
    },
    /// A peer's grant of a target no door of this gateway opens: not installed, counted.
    Refuse {
        element: Element,
    },
}

/// A key-value change seen on the watch.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Put {
        key: &'a [u8],
        value: &'a [u8],
    },
    /// `prev_value` is the value the key held (etcd's `prev_kv`), when etcd sent it.
    Delete {
        key: &'a [u8],
        prev_value: Option<&'a [u8]>,
    },
}

/// The elements installed from other gateways, so a resync can take back the ones revoked
/// while this gateway was not watching.
#[derive(Debug)]
pub struct Mirror {
    prefix: String,
    node: String,
    limits: Limits,
    /// Installed element → when it ends (since the Unix epoch).
    installed: HashMap<Element, Duration>,
}

impl Mirror {
    pub fn new(prefix: &str, node: &str, limits: Limits) -> Mirror {
        Mirror {
            prefix: prefix.to_owned(),
            node: node.to_owned(),
            limits,
            installed: HashMap::new(),
        }
    }

    /// The doors were reloaded: later records are capped by the new ones.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// One watch event at `now` (since the epoch).
    pub fn on_event(&mut self, event: Event, now: Duration) -> Option<Change> {
        match event {
            Event::Put { key, value } => self.on_put(key, value, now),
            Event::Delete { key, prev_value } => self.on_delete(key, prev_value, now),
        }
    }

    fn on_put(&mut self, key: &[u8], value: &[u8], now: Duration) -> Option<Change> {
        let element = record::parse_key(&self.prefix, key)?;
        let record = Record::decode(value)?;
        if record.node == self.node {
            // Our own grant, already in our sets; it is no longer another gateway's.
            self.installed.remove(&element);
            return None;
        }
        let remaining = record.remaining(now)?;
        let Some(timeout) = self.limits.cap(element.source, element.target, remaining) else {
            // Installed under doors a reload has since narrowed: take it back.
            if self.installed.remove(&element).is_some() {
                return Some(Change::Remove { element });
            }
            return Some(Change::Refuse { element });
        };
        self.installed.insert(element, now + timeout);
        Some(Change::Install { element, timeout })
    }

    /// A deleted key whose grant was still live is a revoke; one that had ended is its lease
    /// expiring, which the kernel's own timeout has already carried out.
    fn on_delete(&mut self, key: &[u8], prev: Option<&[u8]>, now: Duration) -> Option<Change> {
        let element = record::parse_key(&self.prefix, key)?;
        self.installed.remove(&element);
        let live = match prev.and_then(Record::decode) {
            Some(record) => record.remaining(now).is_some(),
            // Not knowing what it was, close: a revoke must not be lost.
            None => true,
        };
        live.then_some(Change::Remove { element })
    }

    /// The whole prefix as listed at (re)connection: install what other gateways hold now, and
    /// remove what was installed from them but is gone (revoked while we were not watching).
    pub fn on_snapshot<'a>(
        &mut self,
        kvs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        now: Duration,
    ) -> Vec<Change> {
        let before = std::mem::take(&mut self.installed);
        let mut changes = Vec::new();
        let mut listed = std::collections::HashSet::new();
        for (key, value) in kvs {
            if let Some(element) = record::parse_key(&self.prefix, key) {
                listed.insert(element);
            }
            changes.extend(self.on_put(key, value, now));
        }
        for (element, ends) in before {
            if ends > now && !listed.contains(&element) {
                changes.push(Change::Remove { element });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::limits::tests::ssh_for_a_minute;
    use crate::config::{Proto, Target};

    const PREFIX: &str = "/k/";
    const S: fn(u64) -> Duration = Duration::from_secs;

    fn element(last: u8) -> Element {
        Element {
            source: std::net::IpAddr::from([203, 0, 113, last]),
            target: Target::Local {
                port: 22,
                proto: Proto::Tcp,
            },
        }
    }

    fn value(node: &str, expires: Duration) -> Vec<u8> {
        Record {
            node: node.into(),
            expires_unix_ms: u64::try_from(expires.as_millis()).unwrap(),
            open_for_ms: 30_000,
        }
        .encode()
    }

    fn put(
        mirror: &mut Mirror,
        e: Element,
        node: &str,
        expires: Duration,
        now: Duration,
    ) -> Option<Change> {
        let key = record::key(PREFIX, e);
        let value = value(node, expires);
        mirror.on_event(
            Event::Put {
                key: key.as_bytes(),
                value: &value,
            },
            now,
        )
    }

    #[test]
    fn a_peers_grant_is_installed_for_what_is_left_of_it_and_our_own_is_skipped() {
        let mut mirror = Mirror::new(PREFIX, "gw2", ssh_for_a_minute());
        assert_eq!(
            put(&mut mirror, element(1), "gw1", S(1030), S(1010)),
            Some(Change::Install {
                element: element(1),
                timeout: S(20)
            })
        );
        assert_eq!(put(&mut mirror, element(2), "gw2", S(1030), S(1010)), None);
        // Published too late to matter: nothing is installed.
        assert_eq!(put(&mut mirror, element(3), "gw1", S(1000), S(1010)), None);
    }

    #[test]
    fn deleting_a_live_grant_removes_it_and_a_lease_running_out_changes_nothing() {
        let mut mirror = Mirror::new(PREFIX, "gw2", ssh_for_a_minute());
        let key = record::key(PREFIX, element(1));
        let prev = value("gw1", S(1030));
        fn delete<'a>(key: &'a str, prev: Option<&'a [u8]>) -> Event<'a> {
            Event::Delete {
                key: key.as_bytes(),
                prev_value: prev,
            }
        }
        assert_eq!(
            mirror.on_event(delete(&key, Some(&prev)), S(1010)),
            Some(Change::Remove {
                element: element(1)
            })
        );
        assert_eq!(mirror.on_event(delete(&key, Some(&prev)), S(1031)), None);
        assert_eq!(
            mirror.on_event(delete(&key, None), S(1031)),
            Some(Change::Remove {
                element: element(1)
            })
        );
    }

    #[test]
    fn a_resync_installs_what_is_live_and_takes_back_what_was_revoked_meanwhile() {
        let mut mirror = Mirror::new(PREFIX, "gw2", ssh_for_a_minute());
        put(&mut mirror, element(1), "gw1", S(1030), S(1000));
        put(&mut mirror, element(2), "gw1", S(1005), S(1000));
        let (key3, value3) = (record::key(PREFIX, element(3)), value("gw3", S(1040)));
        let changes = mirror.on_snapshot([(key3.as_bytes(), value3.as_slice())], S(1010));
        assert_eq!(
            changes,
            vec![
                Change::Install {
                    element: element(3),
                    timeout: S(30)
                },
                // element 1 was deleted while live; element 2 simply ran out.
                Change::Remove {
                    element: element(1)
                },
            ]
        );
    }

    #[test]
    fn a_peers_grant_is_capped_by_this_gateways_doors_and_one_they_never_open_is_refused() {
        let mut mirror = Mirror::new(PREFIX, "gw2", ssh_for_a_minute());
        // A forged record asking for a day gets the door's minute.
        let key = record::key(PREFIX, element(1));
        let day = Record {
            node: "gw1".into(),
            expires_unix_ms: (1000 + 86_400) * 1000,
            open_for_ms: 86_400_000,
        }
        .encode();
        let forged = Event::Put {
            key: key.as_bytes(),
            value: &day,
        };
        assert_eq!(
            mirror.on_event(forged, S(1000)),
            Some(Change::Install {
                element: element(1),
                timeout: S(60)
            })
        );
        let web = Element {
            target: Target::Local {
                port: 80,
                proto: Proto::Tcp,
            },
            ..element(2)
        };
        assert_eq!(
            put(&mut mirror, web, "gw1", S(1030), S(1000)),
            Some(Change::Refuse { element: web })
        );
        // After a reload that drops the door, 22/tcp is taken back, then refused.
        mirror.set_limits(Limits::default());
        assert_eq!(
            put(&mut mirror, element(1), "gw1", S(1030), S(1010)),
            Some(Change::Remove {
                element: element(1)
            })
        );
        assert_eq!(
            put(&mut mirror, element(1), "gw1", S(1030), S(1010)),
            Some(Change::Refuse {
                element: element(1)
            })
        );
    }
}
