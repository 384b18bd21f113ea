//! `knock_nfq_active_grants{door}`: how many sources each open door has granted right now, in
//! the daemon's belief. The kernel is not asked (a set dump per scrape would cost more than the
//! whole packet path); the belief is kept from the grants the daemon committed:
//!
//! - a grant of (door, source) lives for the door's `open_for`; a re-grant re-arms it;
//! - a close door revokes its targets for the source: pairs left with no target are gone;
//! - the book is bounded (by `max_sources`): when full, the pair closest to expiry makes room.
//!
//! It changes only when a grant is committed (rare, and then already on the slow path of a
//! netlink batch) and is read at scrape time, under its own lock; other packets never touch it.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};

use super::kernel_queue::{family, gauge};
use crate::config::{Action, Door, Target};
use crate::engine::GrantSpec;

/// (door index in [`GrantBook::doors`], source).
type Key = (usize, IpAddr);

#[derive(Debug)]
struct Entry {
    expires: Instant,
    /// The door's targets not revoked since the grant.
    remaining: Vec<Target>,
}

/// The doors of the current configuration, as far as the book needs them.
#[derive(Debug)]
struct BookDoor {
    name: String,
    action: Action,
}

/// The belief itself; pure (time is passed in).
#[derive(Debug)]
pub struct GrantBook {
    doors: Vec<BookDoor>,
    by_name: HashMap<String, usize>,
    entries: HashMap<Key, Entry>,
    by_expiry: BTreeSet<(Instant, Key)>,
    active: Vec<u64>,
    capacity: usize,
}

impl GrantBook {
    /// `capacity` below 1 is taken as 1.
    pub fn new(doors: &[Door], capacity: usize) -> GrantBook {
        let mut book = GrantBook {
            doors: Vec::new(),
            by_name: HashMap::new(),
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
            active: Vec::new(),
            capacity: capacity.max(1),
        };
        book.set_doors(doors);
        book
    }

    /// Notes a committed grant (or, for a close door, revoke) of `door` for `source`.
    /// A door the book does not know (removed by a reload racing the grant) is ignored.
    pub fn record(&mut self, now: Instant, door: &GrantSpec, source: IpAddr) {
        self.expire(now);
        let Some(&id) = self.by_name.get(door.door.as_str()) else {
            return;
        };
        match door.action {
            Action::Open => self.open((id, source), now + door.open_for, &door.targets),
            Action::Close => self.revoke(source, &door.targets),
        }
    }

    fn open(&mut self, key: Key, expires: Instant, targets: &[Target]) {
        if let Some(old) = self.remove(key) {
            self.by_expiry.remove(&(old.expires, key));
        } else if self.entries.len() >= self.capacity {
            self.evict_soonest();
        }
        self.entries.insert(
            key,
            Entry {
                expires,
                remaining: targets.to_vec(),
            },
        );
        self.by_expiry.insert((expires, key));
        self.active[key.0] += 1;
    }

    fn revoke(&mut self, source: IpAddr, revoked: &[Target]) {
        for id in 0..self.doors.len() {
            let key = (id, source);
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            entry.remaining.retain(|t| !revoked.contains(t));
            if entry.remaining.is_empty() {
                let expires = entry.expires;
                self.remove(key);
                self.by_expiry.remove(&(expires, key));
            }
        }
    }

    /// Forgets every grant whose lifetime has run out by `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(expires, key)) = self.by_expiry.first() {
            if expires > now {
                return;
            }
            self.by_expiry.pop_first();
            self.remove(key);
        }
    }

    fn evict_soonest(&mut self) {
        if let Some((_, key)) = self.by_expiry.pop_first() {
            self.remove(key);
        }
    }

    /// Removes the entry only (the caller keeps `by_expiry` in step).
    fn remove(&mut self, key: Key) -> Option<Entry> {
        let entry = self.entries.remove(&key)?;
        self.active[key.0] -= 1;
        Some(entry)
    }

    /// Whether a source in `scope` (one address, or an IPv6 network a ban would cover) holds a
    /// grant of an open door that has not run out by `now`.
    pub fn holds_within(&mut self, now: Instant, scope: ipnet::IpNet) -> bool {
        self.expire(now);
        if scope.prefix_len() == scope.max_prefix_len() {
            let source = scope.addr();
            return (0..self.doors.len()).any(|id| self.entries.contains_key(&(id, source)));
        }
        self.entries
            .keys()
            .any(|&(_, source)| scope.contains(&source))
    }

    /// Active grants per open door at `now`, in config order.
    pub fn active(&mut self, now: Instant) -> Vec<(&str, u64)> {
        self.expire(now);
        self.doors
            .iter()
            .zip(&self.active)
            .filter(|(door, _)| door.action == Action::Open)
            .map(|(door, &count)| (door.name.as_str(), count))
            .collect()
    }

    /// Follows a reload: grants of doors that are still open doors (by name) are kept, as the
    /// kernel keeps them; others are forgotten.
    pub fn replace_doors(&mut self, doors: &[Door], capacity: usize) {
        let old_names: Vec<String> = self.doors.iter().map(|d| d.name.clone()).collect();
        let entries = std::mem::take(&mut self.entries);
        self.by_expiry.clear();
        self.set_doors(doors);
        self.capacity = capacity.max(1);
        let mut kept: Vec<(Key, Entry)> = entries
            .into_iter()
            .filter_map(|((old_id, source), entry)| {
                let id = *self.by_name.get(old_names[old_id].as_str())?;
                (self.doors[id].action == Action::Open).then_some(((id, source), entry))
            })
            .collect();
        // Over a smaller capacity, the grants expiring last are the ones kept.
        kept.sort_by_key(|(_, entry)| std::cmp::Reverse(entry.expires));
        kept.truncate(self.capacity);
        for (key, entry) in kept {
            self.by_expiry.insert((entry.expires, key));
            self.active[key.0] += 1;
            self.entries.insert(key, entry);
        }
    }

    fn set_doors(&mut self, doors: &[Door]) {
        self.doors = doors
            .iter()
            .map(|d| BookDoor {
                name: d.name.clone(),
                action: d.action,
            })
            .collect();
        self.by_name.clear();
        // The first door of a name wins, as in the engine's reload mapping (names are unique).
        for (id, door) in doors.iter().enumerate().rev() {
            self.by_name.insert(door.name.clone(), id);
        }
        self.active = vec![0; doors.len()];
    }
}

/// The shared book and its collector: workers record, scrapes read.
#[derive(Debug, Clone)]
pub struct ActiveGrants {
    book: Arc<Mutex<GrantBook>>,
    desc: Desc,
}

impl ActiveGrants {
    pub fn new(doors: &[Door], capacity: usize) -> ActiveGrants {
        ActiveGrants {
            book: Arc::new(Mutex::new(GrantBook::new(doors, capacity))),
            desc: Desc::new(
                "knock_nfq_active_grants".into(),
                "Sources each open door has granted whose open_for has not run out (the \
                 daemon's belief, from the grants and revokes it committed)."
                    .into(),
                vec!["door".into()],
                HashMap::new(),
            )
            .expect("valid desc"),
        }
    }

    /// A poisoned lock is taken anyway: every book operation leaves it consistent.
    fn book(&self) -> std::sync::MutexGuard<'_, GrantBook> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn record(&self, now: Instant, door: &GrantSpec, source: IpAddr) {
        self.book().record(now, door, source);
    }

    pub fn holds_within(&self, now: Instant, scope: ipnet::IpNet) -> bool {
        self.book().holds_within(now, scope)
    }

    pub fn replace_doors(&self, doors: &[Door], capacity: usize) {
        self.book().replace_doors(doors, capacity);
    }
}

impl Collector for ActiveGrants {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut book = self.book();
        let metrics = book
            .active(Instant::now())
            .into_iter()
            .map(|(door, count)| gauge(&[("door", door)], count))
            .collect();
        vec![family(&self.desc, MetricType::GAUGE, metrics)]
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;

    fn doors(extra: &str) -> Vec<Door> {
        let toml = format!(
            r#"
[[door]]
name = "ssh"
sequence = [7000, 8000]
open = ["22/tcp", "80/tcp"]
open_for = "10s"

[[door]]
name = "web"
sequence = [7100, 8100]
open = ["80/tcp"]
open_for = "5s"

[[door]]
name = "close"
sequence = [9100, 9200]
open = ["22/tcp", "80/tcp"]
action = "close"

[[door]]
name = "close-ssh"
sequence = [9300, 9400]
open = ["22/tcp"]
action = "close"
{extra}"#
        );
        Config::from_toml_str(&toml, Path::new("test.toml"))
            .expect("valid")
            .doors
    }

    fn source(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn counts(book: &mut GrantBook, now: Instant) -> Vec<(String, u64)> {
        book.active(now)
            .into_iter()
            .map(|(name, n)| (name.to_owned(), n))
            .collect()
    }

    fn count(book: &mut GrantBook, now: Instant, door: &str) -> u64 {
        counts(book, now)
            .into_iter()
            .find(|(name, _)| name == door)
            .map(|(_, n)| n)
            .expect("an open door")
    }

    #[test]
    fn only_open_doors_are_reported_all_at_zero() {
        let doors = doors("");
        let mut book = GrantBook::new(&doors, 10);
        assert_eq!(
            counts(&mut book, Instant::now()),
            [("ssh".to_owned(), 0), ("web".to_owned(), 0)]
        );
    }

    #[test]
    fn a_grant_counts_until_open_for_runs_out_and_a_regrant_rearms_it() {
        let doors = doors("");
        let mut book = GrantBook::new(&doors, 10);
        let t0 = Instant::now();
        book.record(t0, &GrantSpec::of(&doors[0]), source(1));
        book.record(t0, &GrantSpec::of(&doors[0]), source(2));
        assert_eq!(count(&mut book, t0, "ssh"), 2);
        book.record(
            t0 + Duration::from_secs(8),
            &GrantSpec::of(&doors[0]),
            source(1),
        );
        assert_eq!(count(&mut book, t0 + Duration::from_secs(10), "ssh"), 1);
        assert_eq!(count(&mut book, t0 + Duration::from_secs(18), "ssh"), 0);
    }

    #[test]
    fn a_close_door_removes_pairs_whose_targets_it_all_revoked() {
        let doors = doors("");
        let mut book = GrantBook::new(&doors, 10);
        let t0 = Instant::now();
        book.record(t0, &GrantSpec::of(&doors[0]), source(1));
        book.record(t0, &GrantSpec::of(&doors[1]), source(1));
        book.record(t0, &GrantSpec::of(&doors[0]), source(2));
        // Revoking 22/tcp leaves ssh's 80/tcp granted; web (80/tcp only) is untouched.
        book.record(t0, &GrantSpec::of(&doors[3]), source(1));
        assert_eq!(count(&mut book, t0, "ssh"), 2);
        assert_eq!(count(&mut book, t0, "web"), 1);
        // Revoking both removes both doors' pairs, for that source only.
        book.record(t0, &GrantSpec::of(&doors[2]), source(1));
        assert_eq!(count(&mut book, t0, "ssh"), 1);
        assert_eq!(count(&mut book, t0, "web"), 0);
    }

    #[test]
    fn a_regrant_after_a_partial_revoke_restores_every_target() {
        let doors = doors("");
        let mut book = GrantBook::new(&doors, 10);
        let t0 = Instant::now();
        book.record(t0, &GrantSpec::of(&doors[0]), source(1));
        book.record(t0, &GrantSpec::of(&doors[3]), source(1));
        book.record(t0, &GrantSpec::of(&doors[0]), source(1));
        book.record(t0, &GrantSpec::of(&doors[3]), source(1));
        assert_eq!(count(&mut book, t0, "ssh"), 1, "80/tcp is still granted");
    }

    #[test]
    fn the_book_is_bounded_and_evicts_the_grant_closest_to_expiry() {
        let doors = doors("");
        let mut book = GrantBook::new(&doors, 2);
        let t0 = Instant::now();
        book.record(t0, &GrantSpec::of(&doors[1]), source(1)); // expires at 5 s
        book.record(t0, &GrantSpec::of(&doors[0]), source(2)); // 10 s
        book.record(t0, &GrantSpec::of(&doors[0]), source(3)); // 10 s: evicts source 1's web grant
        assert_eq!(count(&mut book, t0, "web"), 0);
        assert_eq!(count(&mut book, t0, "ssh"), 2);
        assert_eq!(book.entries.len(), 2);
    }

    #[test]
    fn a_reload_keeps_grants_of_doors_still_open_by_name() {
        let old = doors("");
        let mut book = GrantBook::new(&old, 10);
        let t0 = Instant::now();
        book.record(t0, &GrantSpec::of(&old[0]), source(1));
        book.record(t0, &GrantSpec::of(&old[1]), source(1));
        // New order, web gone, a door added.
        let new =
            doors("\n[[door]]\nname = \"extra\"\nsequence = [5000, 5001]\nopen = [\"443/tcp\"]\n");
        let new: Vec<Door> = [new[4].clone(), new[0].clone()].into();
        book.replace_doors(&new, 10);
        assert_eq!(
            counts(&mut book, t0),
            [("extra".to_owned(), 0), ("ssh".to_owned(), 1)]
        );
        // The kept grant still expires on its old schedule.
        assert_eq!(count(&mut book, t0 + Duration::from_secs(10), "ssh"), 0);
    }

    #[test]
    fn grants_of_unknown_doors_are_ignored() {
        let doors = doors("");
        let mut book = GrantBook::new(&doors[1..], 10);
        book.record(Instant::now(), &GrantSpec::of(&doors[0]), source(1));
        assert!(book.entries.is_empty());
    }
}
