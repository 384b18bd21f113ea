//! The source index: an open-addressing table from a source's hash to its slab slot.
//!
//! Entries are 8 bytes (hash tag, slot), eight to a cache line, with linear probing at a load of
//! at most one half and backward-shift deletion (no tombstones, so no periodic rehash). A lookup
//! usually reads one index line, then the record to confirm the key; a removal finds its entry
//! from the hash stored in the record. Compared with `hashbrown::HashTable<u32>` (control bytes,
//! then bucket, then record) this saves a cache miss per lookup and per removal.

/// The part of a source's hash the index keeps: its low bits pick the home bucket, all 32 bits
/// filter probes before the record is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SourceHash(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    tag: SourceHash,
    slot: u32,
}

const VACANT: Entry = Entry {
    tag: SourceHash(0),
    slot: u32::MAX,
};

impl Entry {
    fn is_vacant(self) -> bool {
        self.slot == VACANT.slot
    }
}

#[derive(Debug)]
pub(super) struct SlotIndex {
    entries: Vec<Entry>,
    mask: usize,
}

impl SlotIndex {
    /// An index that holds up to `capacity` slots at a load of at most one half.
    pub fn with_capacity(capacity: usize) -> SlotIndex {
        let buckets = (2 * capacity).next_power_of_two().max(8);
        SlotIndex {
            entries: vec![VACANT; buckets],
            mask: buckets - 1,
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len() / 2
    }

    /// The slot whose record `is_source` accepts, among those filed under `hash`.
    pub fn find(&self, hash: SourceHash, mut is_source: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut pos = self.home(hash);
        loop {
            let entry = self.entries[pos];
            if entry.is_vacant() {
                return None;
            }
            if entry.tag == hash && is_source(entry.slot) {
                return Some(entry.slot);
            }
            pos = self.next(pos);
        }
    }

    /// Files `slot` under `hash`; the caller keeps the load at most `capacity()`.
    pub fn insert(&mut self, hash: SourceHash, slot: u32) {
        let mut pos = self.home(hash);
        while !self.entries[pos].is_vacant() {
            pos = self.next(pos);
        }
        self.entries[pos] = Entry { tag: hash, slot };
    }

    /// Removes `slot`, filed under `hash`, closing the gap so probes need no tombstones.
    pub fn remove(&mut self, hash: SourceHash, slot: u32) {
        let mut hole = self.home(hash);
        while self.entries[hole].slot != slot {
            assert!(
                !self.entries[hole].is_vacant(),
                "removing a slot that is not indexed"
            );
            hole = self.next(hole);
        }
        let mut pos = hole;
        loop {
            pos = self.next(pos);
            let entry = self.entries[pos];
            if entry.is_vacant() {
                break;
            }
            // The entry may fill the hole if its probe from home passes the hole.
            let home = self.home(entry.tag);
            if pos.wrapping_sub(home) & self.mask >= pos.wrapping_sub(hole) & self.mask {
                self.entries[hole] = entry;
                hole = pos;
            }
        }
        self.entries[hole] = VACANT;
    }

    /// A new index of at least `capacity`, holding the same entries.
    pub fn resized(&self, capacity: usize) -> SlotIndex {
        let mut index = SlotIndex::with_capacity(capacity);
        for entry in self.entries.iter().filter(|entry| !entry.is_vacant()) {
            index.insert(entry.tag, entry.slot);
        }
        index
    }

    fn home(&self, hash: SourceHash) -> usize {
        hash.0 as usize & self.mask
    }

    fn next(&self, pos: usize) -> usize {
        (pos + 1) & self.mask
    }
}
