//! The engine's input ([`Knock`]) and the instructions it returns ([`Outcome`]).

use std::net::IpAddr;
use std::sync::Arc;

use super::SWEEP_BUDGET;
use super::grant::GrantSpec;
use crate::config::model::{Action, Proto};

/// A queued packet, as the engine needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knock {
    pub source: IpAddr,
    pub proto: Proto,
    pub port: u16,
    /// TCP header flag bits ([`crate::config::model::tcp_flag`]); 0 for UDP.
    pub tcp_flags: u8,
}

/// The interface a packet arrived on, if the caller knows it: doors with `interfaces` count
/// only knocks whose interface they name (an unknown one never matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival<'a> {
    Unknown,
    On(&'a str),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Accept,
    Drop,
}

/// Index into [`Engine::doors`](super::Engine::doors).
pub type DoorId = usize;

/// What a packet did to one door of a source's attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KnockResult {
    Advance,
    Complete,
    Reset,
    Expired,
    Duplicate,
}

impl KnockResult {
    /// Lower-case name, for metric labels and logs.
    pub fn name(self) -> &'static str {
        match self {
            KnockResult::Advance => "advance",
            KnockResult::Complete => "complete",
            KnockResult::Reset => "reset",
            KnockResult::Expired => "expired",
            KnockResult::Duplicate => "duplicate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorEvent {
    pub door: DoorId,
    pub result: KnockResult,
}

/// A completed door: add (or, for [`Action::Close`], remove) `source` in the door's sets, as
/// `spec` says. Complete in itself: carrying it out needs nothing else of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub door: DoorId,
    pub source: IpAddr,
    pub spec: Arc<GrantSpec>,
}

impl Grant {
    pub fn action(&self) -> Action {
        self.spec.action
    }
}

/// A completed door whose grant was not made: its `max_grants_per_second` was spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub door: DoorId,
    pub source: IpAddr,
}

/// Whether this packet's new attempt pushed another out of the full table (the oldest attempt
/// with a single knock among the few oldest, else the oldest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    None,
    Evicted,
}

/// Instructions for one packet; borrows the engine's reusable buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome<'a> {
    pub verdict: Verdict,
    pub events: &'a [DoorEvent],
    pub grants: &'a [Grant],
    /// Completions beyond their door's grant rate (each also has its `Complete` event).
    pub refused: &'a [Refusal],
    pub eviction: Eviction,
    /// Every door's grant spec, by [`DoorId`]: what an event's door is called and does.
    pub doors: &'a [Arc<GrantSpec>],
}

/// Per-packet output buffers, reused so a warm engine does not allocate.
#[derive(Debug, Default)]
pub(super) struct Output {
    events: Vec<DoorEvent>,
    grants: Vec<Grant>,
    refused: Vec<Refusal>,
}

impl Output {
    pub fn outcome<'a>(
        &'a self,
        verdict: Verdict,
        eviction: Eviction,
        doors: &'a [Arc<GrantSpec>],
    ) -> Outcome<'a> {
        Outcome {
            verdict,
            events: &self.events,
            grants: &self.grants,
            refused: &self.refused,
            eviction,
            doors,
        }
    }

    pub fn clear(&mut self) {
        self.events.clear();
        self.grants.clear();
        self.refused.clear();
    }

    pub fn event(&mut self, door: u16, result: KnockResult) {
        self.events.push(DoorEvent {
            door: usize::from(door),
            result,
        });
    }

    pub fn complete(&mut self, door: u16, source: IpAddr, spec: &Arc<GrantSpec>) {
        self.event(door, KnockResult::Complete);
        self.grants.push(Grant {
            door: usize::from(door),
            source,
            spec: Arc::clone(spec),
        });
    }

    pub fn refuse(&mut self, door: u16, source: IpAddr) {
        self.event(door, KnockResult::Complete);
        self.refused.push(Refusal {
            door: usize::from(door),
            source,
        });
    }

    /// Enough room for any packet: its own doors twice (reset, then restart) and the sweep's.
    pub fn reserve_for(&mut self, max_doors_per_attempt: usize) {
        self.clear();
        self.events
            .reserve(max_doors_per_attempt * (2 + SWEEP_BUDGET));
        self.grants.reserve(max_doors_per_attempt);
        self.refused.reserve(max_doors_per_attempt);
    }
}
