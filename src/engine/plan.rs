//! The doors, precomputed for per-packet lookups: a knock-port bitset, the doors each first port
//! starts, timeouts in the engine's millisecond clock.

use std::sync::Arc;

use super::grant::GrantSpec;
use crate::config::model::{Door, KnockPort, Proto, ScanPolicy};

/// Whether a packet's (proto, port) belongs to any door's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PortKind {
    Knock,
    Other,
}

/// Whether packets to non-knock ports can matter at all (only to strict doors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OtherPorts {
    Ignored,
    ResetStrictDoors,
}

/// One bit per (proto, port): O(1) knock-port test, 16 KiB.
#[derive(Debug)]
struct PortSet {
    bits: Vec<u64>,
}

impl PortSet {
    const PORTS: usize = 1 << 16;

    fn new() -> PortSet {
        PortSet {
            bits: vec![0; 2 * Self::PORTS / 64],
        }
    }

    fn bit(port: KnockPort) -> usize {
        let proto = match port.proto {
            Proto::Tcp => 0,
            Proto::Udp => 1,
        };
        proto * Self::PORTS + usize::from(port.port)
    }

    fn insert(&mut self, port: KnockPort) {
        let bit = Self::bit(port);
        self.bits[bit / 64] |= 1 << (bit % 64);
    }

    fn contains(&self, port: KnockPort) -> bool {
        let bit = Self::bit(port);
        self.bits[bit / 64] & (1 << (bit % 64)) != 0
    }
}

/// A (proto, port) pair as one orderable number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey(u32);

impl PortKey {
    fn of(port: KnockPort) -> PortKey {
        PortKey(u32::from(port.proto.number()) << 16 | u32::from(port.port))
    }
}

#[derive(Debug)]
pub(super) struct DoorPlan {
    doors: Vec<Door>,
    grants: Vec<Arc<GrantSpec>>,
    timeouts_ms: Vec<u64>,
    knock_ports: PortSet,
    /// First ports, sorted, each with the door ids (ascending) whose sequence starts there:
    /// a binary search over a few entries beats hashing the port.
    starters: Vec<(PortKey, Vec<u16>)>,
    max_doors_per_attempt: usize,
    max_timeout_ms: u64,
    other_ports: OtherPorts,
}

impl DoorPlan {
    /// # Panics
    /// With more than 65 536 doors or a sequence over 255 ports (ids and stages are stored
    /// as `u16` and `u8`; validated configs have at most `MAX_SEQUENCE_LEN` ports).
    pub fn new(doors: Vec<Door>) -> DoorPlan {
        assert!(doors.len() <= 1 << 16, "at most 65536 doors");
        let longest = doors.iter().map(|door| door.sequence.len()).max();
        assert!(
            longest.unwrap_or(0) <= usize::from(u8::MAX),
            "at most 255 ports a sequence"
        );
        let mut knock_ports = PortSet::new();
        let mut starters: Vec<(PortKey, Vec<u16>)> = Vec::new();
        for (id, door) in doors.iter().enumerate() {
            door.sequence
                .iter()
                .for_each(|&port| knock_ports.insert(port));
            let Some(&first) = door.sequence.first() else {
                continue;
            };
            let id = u16::try_from(id).expect("checked above");
            match starters.binary_search_by_key(&PortKey::of(first), |(key, _)| *key) {
                Ok(found) => starters[found].1.push(id),
                Err(at) => starters.insert(at, (PortKey::of(first), vec![id])),
            }
        }
        let timeouts_ms: Vec<u64> = doors.iter().map(|d| millis(d.seq_timeout)).collect();
        let strict = doors
            .iter()
            .any(|d| d.scan_policy == ScanPolicy::ResetOnOtherPorts);
        DoorPlan {
            grants: doors.iter().map(|d| Arc::new(GrantSpec::of(d))).collect(),
            max_doors_per_attempt: starters.iter().map(|(_, ids)| ids.len()).max().unwrap_or(0),
            max_timeout_ms: timeouts_ms.iter().copied().max().unwrap_or(0),
            other_ports: if strict {
                OtherPorts::ResetStrictDoors
            } else {
                OtherPorts::Ignored
            },
            doors,
            timeouts_ms,
            knock_ports,
            starters,
        }
    }

    pub fn doors(&self) -> &[Door] {
        &self.doors
    }

    pub fn door(&self, id: u16) -> &Door {
        &self.doors[usize::from(id)]
    }

    pub fn grant(&self, id: u16) -> &Arc<GrantSpec> {
        &self.grants[usize::from(id)]
    }

    pub fn grants(&self) -> &[Arc<GrantSpec>] {
        &self.grants
    }

    pub fn timeout_ms(&self, id: u16) -> u64 {
        self.timeouts_ms[usize::from(id)]
    }

    pub fn port_kind(&self, port: KnockPort) -> PortKind {
        if self.knock_ports.contains(port) {
            PortKind::Knock
        } else {
            PortKind::Other
        }
    }

    /// Doors whose sequence starts at `port`, ascending.
    pub fn starters(&self, port: KnockPort) -> &[u16] {
        match self
            .starters
            .binary_search_by_key(&PortKey::of(port), |(key, _)| *key)
        {
            Ok(found) => &self.starters[found].1,
            Err(_) => &[],
        }
    }

    /// The most doors one attempt can track: the most doors sharing a first port.
    pub fn max_doors_per_attempt(&self) -> usize {
        self.max_doors_per_attempt
    }

    /// Every attempt is expired once this old.
    pub fn max_timeout_ms(&self) -> u64 {
        self.max_timeout_ms
    }

    pub fn other_ports(&self) -> OtherPorts {
        self.other_ports
    }
}

pub(super) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
