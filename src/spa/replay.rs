//! The nonces of accepted SPA messages, each kept until its message would be too old anyway.
//! Bounded: when full, a new message is rejected (never an old nonce forgotten, which would
//! let its message be replayed). Saved whole after every accepted message, so a restart
//! forgets nothing (see [`ReplayCache::to_bytes`] for the file format).

use std::collections::{BTreeSet, HashSet};

use super::wire::NONCE_LEN;

type Nonce = [u8; NONCE_LEN];

/// The file's first bytes: name and format version.
const MAGIC: &[u8; 8] = b"KNSPA1\n\0";
const ENTRY_LEN: usize = 8 + NONCE_LEN;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayCache {
    seen: HashSet<Nonce>,
    /// (expiry in Unix seconds, nonce), oldest first.
    by_expiry: BTreeSet<(u64, Nonce)>,
    capacity: usize,
}

/// Why a nonce was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Replayed,
    Full,
}

/// A state file that is not a replay cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a knock-nfq SPA replay cache (version 1), or cut short")]
pub struct CorruptCache;

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            seen: HashSet::new(),
            by_expiry: BTreeSet::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// A new bound (a reload); entries beyond it are kept until they expire.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// Whether `nonce` was taken (and may not have expired yet; a message that old is stale).
    pub fn contains(&self, nonce: &Nonce) -> bool {
        self.seen.contains(nonce)
    }

    /// Records `nonce` until `expires` (Unix seconds), unless it was seen or the cache is full
    /// of entries still live at `now`.
    pub fn take(&mut self, nonce: Nonce, expires: u64, now: u64) -> Result<(), Refused> {
        self.forget_expired(now);
        if self.seen.contains(&nonce) {
            return Err(Refused::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refused::Full);
        }
        self.seen.insert(nonce);
        self.by_expiry.insert((expires, nonce));
        Ok(())
    }

    fn forget_expired(&mut self, now: u64) {
        while let Some(&(expires, nonce)) = self.by_expiry.first() {
            if expires > now {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&nonce);
        }
    }

    /// The file format: the 8 bytes `KNSPA1\n\0`, then per entry its expiry (Unix seconds,
    /// u64 big-endian) and its 16-byte nonce.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + ENTRY_LEN * self.len());
        out.extend_from_slice(MAGIC);
        for (expires, nonce) in &self.by_expiry {
            out.extend_from_slice(&expires.to_be_bytes());
            out.extend_from_slice(nonce);
        }
        out
    }

    /// Reads a saved cache, leaving out entries expired at `now`.
    pub fn from_bytes(bytes: &[u8], capacity: usize, now: u64) -> Result<Self, CorruptCache> {
        let entries = bytes.strip_prefix(MAGIC).ok_or(CorruptCache)?;
        if entries.len() % ENTRY_LEN != 0 {
            return Err(CorruptCache);
        }
        let mut cache = ReplayCache::new(capacity);
        for entry in entries.chunks_exact(ENTRY_LEN) {
            let (expires, nonce) = entry.split_at(8);
            let expires = u64::from_be_bytes(expires.try_into().map_err(|_| CorruptCache)?);
            let nonce: Nonce = nonce.try_into().map_err(|_| CorruptCache)?;
            if expires > now && cache.seen.insert(nonce) {
                cache.by_expiry.insert((expires, nonce));
            }
        }
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_taken_once_until_it_expires() {
        let mut cache = ReplayCache::new(8);
        assert_eq!(cache.take([1; 16], 100, 50), Ok(()));
        assert_eq!(cache.take([1; 16], 100, 99), Err(Refused::Replayed));
        assert_eq!(cache.take([1; 16], 200, 100), Ok(()), "expired at 100");
    }

    #[test]
    fn a_full_cache_refuses_new_nonces_rather_than_forget_live_ones() {
        let mut cache = ReplayCache::new(2);
        assert_eq!(cache.take([1; 16], 100, 0), Ok(()));
        assert_eq!(cache.take([2; 16], 150, 0), Ok(()));
        assert_eq!(cache.take([3; 16], 150, 10), Err(Refused::Full));
        assert_eq!(cache.take([1; 16], 150, 10), Err(Refused::Replayed));
        assert_eq!(cache.take([3; 16], 200, 100), Ok(()), "[1] expired");
    }

    #[test]
    fn saved_and_read_back_it_keeps_the_live_entries_only() {
        let mut cache = ReplayCache::new(8);
        cache.take([1; 16], 100, 0).unwrap();
        cache.take([2; 16], 300, 0).unwrap();
        let bytes = cache.to_bytes();
        assert_eq!(bytes.len(), 8 + 2 * 24);
        let mut read = ReplayCache::from_bytes(&bytes, 8, 200).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read.take([2; 16], 300, 200), Err(Refused::Replayed));
        assert_eq!(read.take([1; 16], 300, 200), Ok(()));
    }

    #[test]
    fn a_foreign_or_torn_file_is_refused() {
        assert_eq!(ReplayCache::from_bytes(b"hello", 8, 0), Err(CorruptCache));
        let mut bytes = ReplayCache::new(8).to_bytes();
        bytes.extend_from_slice(&[0; 23]);
        assert_eq!(ReplayCache::from_bytes(&bytes, 8, 0), Err(CorruptCache));
    }
}
