//! What one tracked door does with one packet: the knock rules of `engine/mod.rs`, as a pure
//! function.

use super::DUPLICATE_WINDOW;
use super::plan::{DoorPlan, PortKind};
use super::table::{LastKnock, Tracked};
use crate::config::model::{Door, KnockPort, Proto, ScanPolicy};

/// A packet as the rules see it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Packet {
    pub port: KnockPort,
    pub tcp_flags: u8,
    pub kind: PortKind,
    pub now_ms: u64,
}

/// Whether the packet repeats the source's last accepted knock within [`DUPLICATE_WINDOW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    Duplicate,
    Fresh,
}

impl Repeat {
    pub fn of(packet: &Packet, started_ms: u64, last: LastKnock) -> Repeat {
        let window_ms = super::plan::millis(DUPLICATE_WINDOW);
        let same_port = last.port == packet.port.port && last.proto == packet.port.proto;
        let last_ms = started_ms.saturating_add(u64::from(last.after_start_ms));
        if same_port && packet.now_ms.saturating_sub(last_ms) <= window_ms {
            Repeat::Duplicate
        } else {
            Repeat::Fresh
        }
    }
}

/// One tracked door's reaction to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Not for this door (tcp flags, or a non-knock port on a non-strict door); state unchanged.
    Ignore,
    Advance(Tracked),
    Complete,
    Duplicate,
    Reset,
    Expired,
}

/// `age_ms`: time since the attempt's first knock.
pub(super) fn step(
    plan: &DoorPlan,
    tracked: Tracked,
    age_ms: u64,
    packet: &Packet,
    repeat: Repeat,
) -> Step {
    let door = plan.door(tracked.door);
    if age_ms >= plan.timeout_ms(tracked.door) {
        return Step::Expired;
    }
    if !accepts_flags(door, packet) {
        return Step::Ignore;
    }
    if packet.kind == PortKind::Other && door.scan_policy == ScanPolicy::IgnoreOtherPorts {
        return Step::Ignore;
    }
    let stage = usize::from(tracked.stage);
    if door.sequence.get(stage) == Some(&packet.port) {
        if stage + 1 == door.sequence.len() {
            return Step::Complete;
        }
        return Step::Advance(Tracked {
            stage: tracked.stage + 1,
            ..tracked
        });
    }
    match repeat {
        Repeat::Duplicate => Step::Duplicate,
        Repeat::Fresh => Step::Reset,
    }
}

/// UDP knocks ignore `tcp_flags`; a TCP knock whose flags fail the filter is ignored by the door.
pub(super) fn accepts_flags(door: &Door, packet: &Packet) -> bool {
    match (packet.port.proto, door.tcp_flags) {
        (Proto::Tcp, Some(filter)) => filter.matches(packet.tcp_flags),
        _ => true,
    }
}
