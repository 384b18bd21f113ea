//! The bounded source table: one compact record per source with a live attempt.
//!
//! Records live in a `Vec`-backed slab and are found through a [`SlotIndex`] of slab slots
//! (the key is stored once, in the record). An intrusive doubly-linked list orders records by
//! start time, oldest first, for eviction and the expiry sweep; free slots are chained through
//! the same `next` field. A full table evicts the oldest attempt that has seen only its first
//! knock, among the [`EVICTION_SCAN`] oldest, else the oldest: a flood of forged first knocks
//! pushes out its own attempts before a client that is halfway through its sequence. Once the slab has reached its peak size, nothing here allocates.
//!
//! Sources are hashed with std's `RandomState` (SipHash-1-3, randomly keyed): source addresses
//! are chosen by whoever sends packets, spoofing included, so the index must not be floodable
//! with colliding keys. It costs 13–25 ns per packet on the reference machine (see
//! docs/BENCHMARKS.md); faster hashers (foldhash, ahash) do not claim resistance against an
//! attacker probing a long-running process.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;

use super::Eviction;
use super::index::{SlotIndex, SourceHash};
use crate::config::model::Proto;

/// A source address, IPv4 mapped into IPv6 space, as one integer.
pub(super) type SourceKey = u128;

pub(super) fn source_key(source: IpAddr) -> SourceKey {
    match source {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// One door an attempt tracks: its id and the index of the next expected port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Tracked {
    pub door: u16,
    pub stage: u8,
}

/// Doors tracked inside the record itself; more (doors sharing a first port beyond this) go to
/// a parallel overflow array sized from the config, so the common case costs one cache line.
pub(super) const INLINE_DOORS: usize = 4;

/// The source's last knock that advanced a door, for duplicate (retransmit) detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LastKnock {
    /// Since the attempt's start, saturating: 8 bytes in all instead of 16.
    pub after_start_ms: u32,
    pub port: u16,
    pub proto: Proto,
}

/// One source's attempt: 61 bytes, aligned to a cache line so that reading it is one miss.
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
pub(super) struct Attempt {
    pub key: SourceKey,
    pub started_ms: u64,
    pub last: LastKnock,
    /// Where the index files this record, so removal needs no rehash.
    hash: SourceHash,
    prev: u32,
    next: u32,
    len: u8,
    inline: [Tracked; INLINE_DOORS],
}

impl Attempt {
    const EMPTY: Attempt = Attempt {
        key: 0,
        started_ms: 0,
        last: LastKnock {
            after_start_ms: 0,
            port: 0,
            proto: Proto::Tcp,
        },
        hash: SourceHash(0),
        prev: NONE,
        next: NONE,
        len: 0,
        inline: [Tracked { door: 0, stage: 0 }; INLINE_DOORS],
    };
}

const NONE: u32 = u32::MAX;
/// The oldest attempts a full table looks through for one with a single knock. Bounded, so an
/// insert stays O(1); under a flood of first knocks the oldest is such an attempt already.
pub(super) const EVICTION_SCAN: usize = 8;
/// First slab reservation; later ones double, capped at the bound.
const MIN_GROWTH: usize = 1024;

#[derive(Debug)]
pub(super) struct SourceTable {
    index: SlotIndex,
    hasher: RandomState,
    slots: Vec<Attempt>,
    /// `overflow_stride` extra tracked doors per slot, for configs where more than
    /// `INLINE_DOORS` doors share a first port; empty otherwise.
    overflow: Vec<Tracked>,
    overflow_stride: usize,
    free_head: u32,
    oldest: u32,
    newest: u32,
    len: usize,
    max: usize,
}

impl SourceTable {
    /// `max_doors_per_attempt`: the most doors one attempt can track (doors sharing a first port).
    pub fn new(max: usize, max_doors_per_attempt: usize) -> SourceTable {
        // Slots are u32 and NONE is reserved.
        let max = max.clamp(1, NONE as usize);
        SourceTable {
            index: SlotIndex::with_capacity(0),
            hasher: RandomState::new(),
            slots: Vec::new(),
            overflow: Vec::new(),
            overflow_stride: max_doors_per_attempt.saturating_sub(INLINE_DOORS),
            free_head: NONE,
            oldest: NONE,
            newest: NONE,
            len: 0,
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[expect(
        clippy::cast_possible_truncation,
        reason = "folds the hash into 32 bits"
    )]
    pub fn hash(&self, key: SourceKey) -> SourceHash {
        let hash = self.hasher.hash_one(key);
        SourceHash((hash >> 32) as u32 ^ hash as u32)
    }

    pub fn find(&self, key: SourceKey, hash: SourceHash) -> Option<u32> {
        self.index
            .find(hash, |slot| self.slots[idx(slot)].key == key)
    }

    pub fn get(&self, slot: u32) -> &Attempt {
        &self.slots[idx(slot)]
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut Attempt {
        &mut self.slots[idx(slot)]
    }

    /// The attempt with the earliest start, if any.
    pub fn oldest(&self) -> Option<u32> {
        (self.oldest != NONE).then_some(self.oldest)
    }

    /// Slots from the oldest attempt to the newest.
    pub fn oldest_first(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(self.oldest(), |&slot| {
            let next = self.slots[idx(slot)].next;
            (next != NONE).then_some(next)
        })
    }

    /// Replaces `out` with the doors the attempt in `slot` tracks.
    pub fn load_doors(&self, slot: u32, out: &mut Vec<Tracked>) {
        let attempt = &self.slots[idx(slot)];
        let len = usize::from(attempt.len);
        out.clear();
        out.extend_from_slice(&attempt.inline[..len.min(INLINE_DOORS)]);
        if len > INLINE_DOORS {
            let start = idx(slot) * self.overflow_stride;
            out.extend_from_slice(&self.overflow[start..start + len - INLINE_DOORS]);
        }
    }

    /// Sets the doors the attempt in `slot` tracks (at most the configured maximum).
    pub fn store_doors(&mut self, slot: u32, doors: &[Tracked]) {
        let inline = doors.len().min(INLINE_DOORS);
        let attempt = &mut self.slots[idx(slot)];
        attempt.len = u8::try_from(doors.len()).expect("doors per attempt fit in u8");
        attempt.inline[..inline].copy_from_slice(&doors[..inline]);
        if doors.len() > INLINE_DOORS {
            let start = idx(slot) * self.overflow_stride;
            self.overflow[start..start + doors.len() - INLINE_DOORS]
                .copy_from_slice(&doors[INLINE_DOORS..]);
        }
    }

    /// Adds an attempt for a source that has none, evicting one when full (see the module docs).
    pub fn insert(
        &mut self,
        key: SourceKey,
        hash: SourceHash,
        started_ms: u64,
        last: LastKnock,
        doors: &[Tracked],
    ) -> Eviction {
        let eviction = match self.victim() {
            Some(victim) if self.len == self.max => {
                self.remove(victim);
                Eviction::Evicted
            }
            _ => Eviction::None,
        };
        let slot = self.allocate_slot();
        self.slots[idx(slot)] = Attempt {
            key,
            started_ms,
            last,
            hash,
            prev: self.newest,
            ..Attempt::EMPTY
        };
        self.store_doors(slot, doors);
        self.link_newest(slot);
        self.index.insert(hash, slot);
        self.len += 1;
        eviction
    }

    /// The attempt a full table gives up: the oldest with a single knock among the
    /// [`EVICTION_SCAN`] oldest, else the oldest.
    fn victim(&self) -> Option<u32> {
        let oldest = self.oldest()?;
        let single = self
            .oldest_first()
            .take(EVICTION_SCAN)
            .find(|&slot| self.has_one_knock(slot));
        Some(single.unwrap_or(oldest))
    }

    /// Whether every door the attempt tracks has seen only its first knock.
    fn has_one_knock(&self, slot: u32) -> bool {
        let attempt = &self.slots[idx(slot)];
        let len = usize::from(attempt.len);
        let first = |tracked: &Tracked| tracked.stage <= 1;
        let overflow = match len > INLINE_DOORS {
            true => {
                let start = idx(slot) * self.overflow_stride;
                &self.overflow[start..start + len - INLINE_DOORS]
            }
            false => &[],
        };
        attempt.inline[..len.min(INLINE_DOORS)].iter().all(first) && overflow.iter().all(first)
    }

    pub fn remove(&mut self, slot: u32) {
        self.index.remove(self.slots[idx(slot)].hash, slot);
        self.unlink(slot);
        self.slots[idx(slot)].next = self.free_head;
        self.free_head = slot;
        self.len -= 1;
    }

    fn link_newest(&mut self, slot: u32) {
        match self.newest {
            NONE => self.oldest = slot,
            newest => self.slots[idx(newest)].next = slot,
        }
        self.newest = slot;
    }

    /// The oldest record's `prev` is never read, so unlinking it writes no other record:
    /// eviction and the sweep touch one record, not two.
    fn unlink(&mut self, slot: u32) {
        let Attempt { prev, next, .. } = self.slots[idx(slot)];
        let was_oldest = slot == self.oldest;
        if was_oldest {
            self.oldest = next;
        } else {
            self.slots[idx(prev)].next = next;
        }
        if slot == self.newest {
            self.newest = if was_oldest { NONE } else { prev };
        } else if !was_oldest {
            self.slots[idx(next)].prev = prev;
        }
    }

    fn allocate_slot(&mut self) -> u32 {
        if self.free_head != NONE {
            let slot = self.free_head;
            self.free_head = self.slots[idx(slot)].next;
            return slot;
        }
        if self.slots.len() == self.slots.capacity() {
            self.grow();
        }
        let slot = u32::try_from(self.slots.len()).expect("slots are bounded by max < u32::MAX");
        self.slots.push(Attempt::EMPTY);
        let overflow_len = self.overflow.len() + self.overflow_stride;
        self.overflow.resize(overflow_len, Tracked::default());
        slot
    }
}

impl SourceTable {
    /// Doubles the slab, capped at the bound, and the index with it.
    fn grow(&mut self) {
        let extra = self.slots.capacity().max(MIN_GROWTH);
        let extra = extra.min(self.max - self.slots.len());
        self.slots.reserve_exact(extra);
        self.overflow.reserve_exact(extra * self.overflow_stride);
        if self.index.capacity() < self.slots.capacity() {
            self.index = self.index.resized(self.slots.capacity());
        }
    }
}

fn idx(slot: u32) -> usize {
    slot as usize
}
