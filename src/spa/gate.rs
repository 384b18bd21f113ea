//! The decision for one datagram to an SPA port. Pure: the wall clock (message ages) and the
//! monotonic clock (grant rate) are passed in, and an accepted message's nonce is recorded in
//! the [`ReplayCache`], which the caller saves before it commits the grant.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::replay::{Refused, ReplayCache};
use super::wire::{self, Parsed};
use crate::config::model::{Door, GrantAddress, Spa};
use crate::engine::rate::GrantBucket;
use crate::engine::{Arrival, DoorId, Grant, GrantSpec};

/// How far ahead of the daemon's clock a message's timestamp may be.
pub const FUTURE_SKEW: Duration = Duration::from_secs(5);

/// Why a datagram opened nothing. Each is counted; none is logged per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Not a well-formed version 1 message.
    Malformed,
    /// It names no SPA door listening on this port.
    UnknownDoor,
    /// The MAC does not match: a tampered message or the wrong key.
    BadMac,
    /// Older than the door's `max_age`.
    Stale,
    /// Dated more than the allowed skew (5 s) ahead.
    Future,
    /// A requested port is not one of the door's targets.
    PortNotAllowed,
    /// The sender is not in the door's `from`, or it arrived on an interface the door's
    /// `interfaces` do not name.
    SourceNotAllowed,
    /// It names an address to grant, and the door does not allow that (or the address is
    /// loopback, multicast or unspecified).
    AddressNotAllowed,
    /// Its nonce was used before.
    Replayed,
    /// The replay cache is full of live nonces.
    CacheFull,
    /// The replay cache could not be saved, so the grant was not made.
    NotPersisted,
    /// Valid, but the door is over its `max_grants_per_second`.
    RateLimited,
}

impl Rejection {
    pub const ALL: [Rejection; 12] = [
        Rejection::Malformed,
        Rejection::UnknownDoor,
        Rejection::BadMac,
        Rejection::Stale,
        Rejection::Future,
        Rejection::PortNotAllowed,
        Rejection::SourceNotAllowed,
        Rejection::AddressNotAllowed,
        Rejection::Replayed,
        Rejection::CacheFull,
        Rejection::NotPersisted,
        Rejection::RateLimited,
    ];

    /// The `reason` label of `knock_nfq_spa_rejected_total`.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::UnknownDoor => "unknown_door",
            Rejection::BadMac => "bad_mac",
            Rejection::Stale => "stale",
            Rejection::Future => "future",
            Rejection::PortNotAllowed => "port_not_allowed",
            Rejection::SourceNotAllowed => "source_not_allowed",
            Rejection::AddressNotAllowed => "address_not_allowed",
            Rejection::Replayed => "replayed",
            Rejection::CacheFull => "cache_full",
            Rejection::NotPersisted => "not_persisted",
            Rejection::RateLimited => "rate_limited",
        }
    }
}

/// The nonce a granted message used, and until when (Unix seconds) a replay of it could be
/// accepted: what a fleet claims so that no other gateway accepts it either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceUse {
    pub nonce: [u8; wire::NONCE_LEN],
    pub expires: u64,
}

/// What one datagram did. The packet itself is always dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpaOutcome {
    /// Commit this grant (after saving the replay cache); the nonce it used up.
    Granted(Grant, NonceUse),
    /// `door` is known once the message named a door listening on its port.
    Rejected {
        door: Option<DoorId>,
        reason: Rejection,
    },
}

#[derive(Debug)]
struct SpaDoor {
    id: DoorId,
    /// The door (its name, `from` and `interfaces`) and its `spa` table.
    door: Door,
    spa: Spa,
    spec: Arc<GrantSpec>,
    bucket: GrantBucket,
    /// Expiries of the nonces this door took, soonest first: at most `share` live at once, so
    /// one door's key holders cannot fill the cache that every SPA door shares.
    taken: BinaryHeap<Reverse<u64>>,
    share: usize,
}

impl SpaDoor {
    /// Whether the door may take one more nonce at `now` (Unix seconds).
    fn has_room(&mut self, now: u64) -> bool {
        while self
            .taken
            .peek()
            .is_some_and(|Reverse(expiry)| *expiry <= now)
        {
            self.taken.pop();
        }
        self.taken.len() < self.share
    }
}

/// Every SPA door, and the nonces already used.
#[derive(Debug)]
pub struct Gate {
    doors: Vec<SpaDoor>,
    replay: ReplayCache,
    epoch: Instant,
}

impl Gate {
    /// The SPA doors among `doors` (ids are indices into `doors`, as the engine's).
    pub fn new(doors: &[Door], replay: ReplayCache, now: Instant) -> Gate {
        let mut gate = Gate {
            doors: Vec::new(),
            replay,
            epoch: now,
        };
        gate.replace_doors(doors);
        gate
    }

    /// A reload: the new doors, with full grant buckets; the used nonces are kept, and so is
    /// each door's count of them (by name).
    pub fn replace_doors(&mut self, doors: &[Door]) {
        let mut old = std::mem::take(&mut self.doors);
        self.doors = doors
            .iter()
            .enumerate()
            .filter_map(|(id, door)| {
                let spa = door.spa.as_ref()?;
                let taken = old
                    .iter_mut()
                    .find(|o| o.door.name == door.name)
                    .map(|o| std::mem::take(&mut o.taken))
                    .unwrap_or_default();
                Some(SpaDoor {
                    id,
                    door: door.clone(),
                    spa: spa.clone(),
                    spec: Arc::new(GrantSpec::of(door)),
                    bucket: GrantBucket::new(door.max_grants_per_second),
                    taken,
                    share: door_share(door),
                })
            })
            .collect();
        self.replay.set_capacity(replay_capacity(doors));
    }

    /// The UDP ports SPA doors listen on: a datagram to one is judged by [`Gate::on_datagram`].
    pub fn ports(doors: &[Door]) -> Vec<u16> {
        let mut ports: Vec<u16> = doors
            .iter()
            .filter_map(|d| Some(d.spa.as_ref()?.port))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The name of SPA door `id`, for metric labels.
    pub fn door_name(&self, id: DoorId) -> Option<&str> {
        let door = self.doors.iter().find(|door| door.id == id)?;
        Some(&door.door.name)
    }

    pub fn replay_cache(&self) -> &ReplayCache {
        &self.replay
    }

    /// Judges a datagram from `source` to UDP `port`. `unix_now` is the wall clock (message
    /// timestamps), `now` the monotonic one (the grant rate).
    pub fn on_datagram(
        &mut self,
        (now, unix_now): (Instant, Duration),
        (source, arrival): (IpAddr, Arrival),
        port: u16,
        payload: &[u8],
    ) -> SpaOutcome {
        let Ok(message) = wire::decode(payload) else {
            return rejected(None, Rejection::Malformed);
        };
        let Some(index) = self
            .doors
            .iter()
            .position(|d| d.spa.port == port && d.door.name == message.door)
        else {
            return rejected(None, Rejection::UnknownDoor);
        };
        let door = &self.doors[index];
        let id = Some(door.id);
        if !door.spa.key.verify(message.signed, &message.tag) {
            return rejected(id, Rejection::BadMac);
        }
        if let Err(reason) = check_age(&message, door.spa.max_age, unix_now) {
            return rejected(id, reason);
        }
        if !door.door.admits(source) || !door.door.arrives_on(arrival) {
            return rejected(id, Rejection::SourceNotAllowed);
        }
        let grantee = match grantee(&message, door.spa.grant_address, source) {
            Ok(grantee) => grantee,
            Err(reason) => return rejected(id, reason),
        };
        if !message.ports().all(|p| offers(&door.spec, p)) {
            return rejected(id, Rejection::PortNotAllowed);
        }
        let expires = message.timestamp + door.spa.max_age.as_secs() + FUTURE_SKEW.as_secs();
        if self.replay.contains(&message.nonce) {
            return rejected(id, Rejection::Replayed);
        }
        if !self.doors[index].has_room(unix_now.as_secs()) {
            return rejected(id, Rejection::CacheFull);
        }
        if let Err(refused) = self.replay.take(message.nonce, expires, unix_now.as_secs()) {
            return rejected(
                id,
                match refused {
                    Refused::Replayed => Rejection::Replayed,
                    Refused::Full => Rejection::CacheFull,
                },
            );
        }
        let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis());
        let door = &mut self.doors[index];
        door.taken.push(Reverse(expires));
        if !door.bucket.take(now_ms.unwrap_or(u64::MAX)) {
            return rejected(id, Rejection::RateLimited);
        }
        SpaOutcome::Granted(
            Grant {
                door: door.id,
                source: grantee,
                spec: requested_spec(&message, &door.spec),
            },
            NonceUse {
                nonce: message.nonce,
                expires,
            },
        )
    }
}

fn rejected(door: Option<DoorId>, reason: Rejection) -> SpaOutcome {
    SpaOutcome::Rejected { door, reason }
}

/// Nonces live for `max_age` plus the skew; at most the door's grant rate of them are taken
/// per second while it lasts (a valid message beyond the rate still uses its nonce, so this
/// is per second of key holders' sending, with room for twice the rate).
fn door_share(door: &Door) -> usize {
    let Some(spa) = door.spa.as_ref() else {
        return 0;
    };
    let window = spa.max_age.as_secs() + FUTURE_SKEW.as_secs();
    let rate = u64::from(door.max_grants_per_second) * 2;
    usize::try_from(window.saturating_mul(rate)).unwrap_or(usize::MAX)
}

/// The shared cache holds every door's share, twice: the nonces a restart read back from
/// the file belong to no door's count until they expire, so the doors' shares alone must
/// never fill it.
fn replay_capacity(doors: &[Door]) -> usize {
    doors
        .iter()
        .map(door_share)
        .fold(0, usize::saturating_add)
        .saturating_mul(2)
}

fn check_age(message: &Parsed, max_age: Duration, unix_now: Duration) -> Result<(), Rejection> {
    let now = unix_now.as_secs();
    if message.timestamp > now.saturating_add(FUTURE_SKEW.as_secs()) {
        return Err(Rejection::Future);
    }
    if now.saturating_sub(message.timestamp) > max_age.as_secs() {
        return Err(Rejection::Stale);
    }
    Ok(())
}

/// The sender, or the address the message names where the door allows it.
fn grantee(message: &Parsed, mode: GrantAddress, source: IpAddr) -> Result<IpAddr, Rejection> {
    match (message.address, mode) {
        (None, _) => Ok(source),
        (Some(named), GrantAddress::NamedOrSender) if routable(named) => Ok(named),
        (Some(_), _) => Err(Rejection::AddressNotAllowed),
    }
}

fn routable(addr: IpAddr) -> bool {
    !(addr.is_loopback() || addr.is_multicast() || addr.is_unspecified())
}

fn offers(spec: &GrantSpec, port: wire::RequestedPort) -> bool {
    spec.targets
        .iter()
        .any(|t| t.proto() == port.proto && t.port() == port.port)
}

/// The door's grant, narrowed to the requested ports (all checked to be among its targets).
/// Built only for a message that is granted: a replay flood allocates nothing.
fn requested_spec(message: &Parsed, spec: &Arc<GrantSpec>) -> Arc<GrantSpec> {
    if message.ports().next().is_none() {
        return Arc::clone(spec);
    }
    Arc::new(spec.narrowed(|t| {
        message
            .ports()
            .any(|p| t.proto() == p.proto && t.port() == p.port)
    }))
}
