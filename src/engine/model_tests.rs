//! Model test: the engine and a plain `HashMap` model of the knock rules (the module docs) take
//! the same random packets and reloads and must agree, after each one, on the outcome and on
//! every source's attempt as the engine's index finds it and its slab's age list orders it.
//!
//! Few sources, a bound below their number and delays in half seconds, give or take a
//! millisecond (so ages land on, just before and just after timeouts, the duplicate window and
//! the grant period), make evictions, restarts, expiries and boundary cases common.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::table::{EVICTION_SCAN, SourceKey, source_key};
use super::tests::door;
use super::{DUPLICATE_WINDOW, Engine, Eviction, Knock, KnockResult, SWEEP_BUDGET, Verdict};
use crate::config::model::{Door, KnockPort, Proto, ScanPolicy, TcpFlags, tcp_flag};

/// Sources 0 to 4 are distinct; 5 is source 0 as an IPv4-mapped IPv6 address, the same key.
const SOURCES: u8 = 6;

fn address(source: u8) -> IpAddr {
    let v4 = Ipv4Addr::new(198, 51, 100, source);
    match source {
        0..4 => IpAddr::V4(v4),
        4 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 4)),
        _ => IpAddr::V6(Ipv4Addr::new(198, 51, 100, 0).to_ipv6_mapped()),
    }
}

fn strict(mut door: Door) -> Door {
    door.scan_policy = ScanPolicy::ResetOnOtherPorts;
    door
}

fn short(secs: u64) -> Door {
    let mut door = door("short", &[7001, 7000, 7003, 7002]);
    door.seq_timeout = Duration::from_secs(secs);
    door
}

fn web() -> Door {
    let mut door = door("web", &[7000, 7003]);
    door.tcp_flags = Some(TcpFlags {
        set: tcp_flag::SYN,
        clear: tcp_flag::ACK,
    });
    door
}

fn udp() -> Door {
    let mut door = door("udp", &[7003, 7004]);
    door.sequence[1].proto = Proto::Udp;
    door
}

/// A one-port door limited to one grant a second.
fn one() -> Door {
    let mut door = door("one", &[7004]);
    door.max_grants_per_second = 1;
    door
}

const CONFIGS: usize = 4;

/// The configurations a reload switches between: the same doors at other ids (kept), doors
/// whose timeout or flags changed (dropped), a changed scan policy (kept), five doors sharing a
/// first port (the overflow array), and one without strict doors (other ports ignored).
fn config(which: usize) -> Vec<Door> {
    let ssh = || door("ssh", &[7000, 7001, 7002]);
    let repeat = || door("repeat", &[7002, 7002, 7001]);
    match which {
        0 => vec![strict(ssh()), web(), short(3), udp(), one()],
        1 => vec![one(), udp(), ssh(), short(5), repeat()],
        2 => vec![
            web(),
            strict(ssh()),
            repeat(),
            short(3),
            door("f1", &[7000, 7004]),
            door("f2", &[7000, 7002, 7001]),
            door("f3", &[7000, 7000, 7003]),
        ],
        _ => vec![repeat(), door("web", &[7000, 7003]), udp()],
    }
}

#[derive(Debug, Clone)]
enum Op {
    Knock { delay_ms: u64, knock: Knock },
    Reload { config: usize, max_sources: usize },
}

fn knock() -> impl Strategy<Value = Op> {
    let port = prop_oneof![7000..7005u16, Just(22u16)];
    let proto = prop_oneof![4 => Just(Proto::Tcp), 1 => Just(Proto::Udp)];
    let flags = prop_oneof![4 => Just(tcp_flag::SYN), 1 => Just(tcp_flag::SYN | tcp_flag::ACK)];
    let delay = prop_oneof![
        3 => Just(0u64),
        6 => (1..6u64).prop_map(|n| n * 500),
        1 => Just(1u64),
        1 => (1..6u64).prop_map(|n| n * 500 - 1),
        1 => (6..25u64).prop_map(|n| n * 500),
    ];
    (0..SOURCES, proto, port, flags, delay).prop_map(|(source, proto, port, flags, delay_ms)| {
        let tcp_flags = if proto == Proto::Udp { 0 } else { flags };
        let knock = Knock {
            source: address(source),
            proto,
            port,
            tcp_flags,
        };
        Op::Knock { delay_ms, knock }
    })
}

fn op() -> impl Strategy<Value = Op> {
    let reload = (0..CONFIGS, 0..5usize).prop_map(|(config, max_sources)| Op::Reload {
        config,
        max_sources,
    });
    prop_oneof![12 => knock(), 1 => reload]
}

/// One packet's outcome, owned: grants and refusals as (door, source).
#[derive(Debug, PartialEq)]
struct Seen {
    verdict: Verdict,
    events: Vec<(usize, KnockResult)>,
    grants: Vec<(usize, IpAddr)>,
    refused: Vec<(usize, IpAddr)>,
    eviction: Eviction,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            verdict: Verdict::Accept,
            events: Vec::new(),
            grants: Vec::new(),
            refused: Vec::new(),
            eviction: Eviction::None,
        }
    }
}

/// An attempt's start (engine milliseconds) and its tracked doors as (door id, next stage).
type Progress = (u64, Vec<(usize, usize)>);

#[derive(Debug, Clone)]
struct Attempt {
    /// Creation order: the oldest attempt has the lowest.
    rank: u64,
    started_ms: u64,
    /// The last knock that advanced a door, and when.
    last: (KnockPort, u64),
    doors: Vec<(usize, usize)>,
}

/// The knock rules, written for clarity: linear scans, no index, no slab.
struct Model {
    doors: Vec<Door>,
    max_sources: usize,
    /// By source address, IPv4-mapped IPv6 addresses as IPv4.
    attempts: HashMap<IpAddr, Attempt>,
    created: u64,
    /// The first packet's time: the engine counts milliseconds from it.
    epoch_ms: Option<u64>,
    rate: GrantRate,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).expect("short durations")
}

fn port_of(knock: &Knock) -> KnockPort {
    KnockPort {
        port: knock.port,
        proto: knock.proto,
    }
}

fn accepts_flags(door: &Door, knock: &Knock) -> bool {
    knock.proto == Proto::Udp || door.tcp_flags.is_none_or(|f| f.matches(knock.tcp_flags))
}

/// Each door's last grant, for the door limited to one a second. Other doors allow 1000 a
/// second with a burst of as many, more than a test run completes.
struct GrantRate {
    last_grant: Vec<Option<u64>>,
}

impl GrantRate {
    fn new(doors: &[Door]) -> GrantRate {
        GrantRate {
            last_grant: vec![None; doors.len()],
        }
    }

    /// A completed door: a grant, or a refusal if the door's grant rate is spent.
    fn complete(&mut self, (id, door): (usize, &Door), source: IpAddr, now: u64, seen: &mut Seen) {
        let last = &mut self.last_grant[id];
        let granted = match door.max_grants_per_second {
            1 => last.is_none_or(|at| now - at >= 1000),
            _ => true,
        };
        seen.events.push((id, KnockResult::Complete));
        if granted {
            *last = Some(now);
            seen.grants.push((id, source));
        } else {
            seen.refused.push((id, source));
        }
    }
}

impl Model {
    fn new(doors: Vec<Door>, max_sources: usize) -> Model {
        Model {
            rate: GrantRate::new(&doors),
            doors,
            max_sources: max_sources.max(1),
            attempts: HashMap::new(),
            created: 0,
            epoch_ms: None,
        }
    }

    fn knock(&mut self, at_ms: u64, knock: &Knock) -> Seen {
        let now = at_ms - *self.epoch_ms.get_or_insert(at_ms);
        let mut seen = Seen::new();
        self.sweep(now, &mut seen);
        let port = port_of(knock);
        let is_knock = self.is_knock_port(port);
        let any_strict = self
            .doors
            .iter()
            .any(|door| door.scan_policy == ScanPolicy::ResetOnOtherPorts);
        // Only a strict door makes the kernel queue other ports: any other packet fails closed.
        if is_knock || !any_strict {
            seen.verdict = Verdict::Drop;
        }
        if is_knock || any_strict {
            let source = knock.source.to_canonical();
            let unused = match self.attempts.remove(&source) {
                Some(attempt) => self.continue_attempt(attempt, now, knock, &mut seen),
                None => true,
            };
            if unused {
                self.start(now, knock, &mut seen);
            }
        }
        seen
    }

    /// Expires the oldest attempts, at most `SWEEP_BUDGET`, once past every door's timeout.
    fn sweep(&mut self, now: u64, seen: &mut Seen) {
        let max_timeout = self.doors.iter().map(|d| millis(d.seq_timeout)).max();
        for _ in 0..SWEEP_BUDGET {
            let oldest = self.attempts.iter().min_by_key(|(_, attempt)| attempt.rank);
            let Some((&source, attempt)) = oldest else {
                return;
            };
            if now - attempt.started_ms < max_timeout.unwrap_or(0) {
                return;
            }
            for (door, _) in self.attempts.remove(&source).expect("just found").doors {
                seen.events.push((door, KnockResult::Expired));
            }
        }
    }

    /// Whether the packet is unused: no door is left and none advanced.
    fn continue_attempt(
        &mut self,
        mut attempt: Attempt,
        now: u64,
        knock: &Knock,
        seen: &mut Seen,
    ) -> bool {
        let port = port_of(knock);
        let is_knock = self.is_knock_port(port);
        let (last_port, last_ms) = attempt.last;
        let repeat = last_port == port && now - last_ms <= millis(DUPLICATE_WINDOW);
        let mut advanced = false;
        let mut kept = Vec::new();
        for (id, stage) in attempt.doors {
            let door = &self.doors[id];
            let ignores_port = !is_knock && door.scan_policy == ScanPolicy::IgnoreOtherPorts;
            if now - attempt.started_ms >= millis(door.seq_timeout) {
                seen.events.push((id, KnockResult::Expired));
            } else if !accepts_flags(door, knock) || ignores_port {
                kept.push((id, stage));
            } else if door.sequence[stage] == port {
                advanced = true;
                if stage + 1 == door.sequence.len() {
                    self.rate.complete((id, door), knock.source, now, seen);
                } else {
                    seen.events.push((id, KnockResult::Advance));
                    kept.push((id, stage + 1));
                }
            } else if repeat {
                seen.events.push((id, KnockResult::Duplicate));
                kept.push((id, stage));
            } else {
                seen.events.push((id, KnockResult::Reset));
            }
        }
        if kept.is_empty() {
            return !advanced;
        }
        if advanced {
            attempt.last = (port, now);
        }
        attempt.doors = kept;
        self.attempts.insert(knock.source.to_canonical(), attempt);
        false
    }

    fn start(&mut self, now: u64, knock: &Knock, seen: &mut Seen) {
        let port = port_of(knock);
        let mut doors = Vec::new();
        for (id, door) in self.doors.iter().enumerate() {
            if door.sequence.first() != Some(&port) || !accepts_flags(door, knock) {
                continue;
            }
            if door.sequence.len() == 1 {
                self.rate.complete((id, door), knock.source, now, seen);
            } else {
                seen.events.push((id, KnockResult::Advance));
                doors.push((id, 1));
            }
        }
        if doors.is_empty() {
            return;
        }
        if self.attempts.len() == self.max_sources {
            let order = self.age_order();
            let victim = eviction_victim(order.iter().map(|source| &self.attempts[source]));
            self.attempts.remove(&order[victim]);
            seen.eviction = Eviction::Evicted;
        }
        let attempt = Attempt {
            rank: self.created,
            started_ms: now,
            last: (port, now),
            doors,
        };
        self.created += 1;
        self.attempts.insert(knock.source.to_canonical(), attempt);
    }

    /// Keeps the doors whose name, sequence, flags and timeout are unchanged, under their new
    /// ids, then the newest `max_sources` attempts that still track a door.
    fn reload(&mut self, doors: Vec<Door>, max_sources: usize) {
        let same = |old: &Door, new: &Door| {
            (&old.name, &old.sequence, old.tcp_flags, old.seq_timeout)
                == (&new.name, &new.sequence, new.tcp_flags, new.seq_timeout)
                && (&old.from, &old.interfaces) == (&new.from, &new.interfaces)
        };
        let new_id = |old: usize| doors.iter().position(|new| same(&self.doors[old], new));
        let mut kept: Vec<(IpAddr, Attempt)> = self
            .attempts
            .iter()
            .filter_map(|(&source, attempt)| {
                let doors = attempt.doors.iter();
                let doors: Vec<_> = doors
                    .filter_map(|&(id, stage)| Some((new_id(id)?, stage)))
                    .collect();
                let attempt = Attempt {
                    doors,
                    ..attempt.clone()
                };
                (!attempt.doors.is_empty()).then_some((source, attempt))
            })
            .collect();
        kept.sort_by_key(|(_, attempt)| attempt.rank);
        let max_sources = max_sources.max(1);
        // Re-inserted oldest first into a table of the new size, which evicts as a full one does.
        let mut table: Vec<(IpAddr, Attempt)> = Vec::new();
        for entry in kept {
            if table.len() == max_sources {
                let victim = eviction_victim(table.iter().map(|(_, attempt)| attempt));
                table.remove(victim);
            }
            table.push(entry);
        }
        self.attempts = table.into_iter().collect();
        // An unchanged door with the same rate keeps its last grant.
        let mut rate = GrantRate::new(&doors);
        for old in 0..self.doors.len() {
            if let Some(new) = new_id(old)
                && self.doors[old].max_grants_per_second == doors[new].max_grants_per_second
            {
                rate.last_grant[new] = self.rate.last_grant[old];
            }
        }
        self.rate = rate;
        self.doors = doors;
        self.max_sources = max_sources;
    }

    fn is_knock_port(&self, port: KnockPort) -> bool {
        self.doors.iter().any(|door| door.sequence.contains(&port))
    }

    fn age_order(&self) -> Vec<IpAddr> {
        let mut sources: Vec<_> = self.attempts.iter().collect();
        sources.sort_by_key(|(_, attempt)| attempt.rank);
        sources.into_iter().map(|(&source, _)| source).collect()
    }

    fn progress(&self, source: IpAddr) -> Option<Progress> {
        let attempt = self.attempts.get(&source.to_canonical())?;
        Some((attempt.started_ms, attempt.doors.clone()))
    }
}

fn engine_sees(engine: &mut Engine, now: Instant, knock: &Knock) -> Seen {
    let outcome = engine.on_packet(now, knock);
    Seen {
        verdict: outcome.verdict,
        events: outcome.events.iter().map(|e| (e.door, e.result)).collect(),
        grants: outcome.grants.iter().map(|g| (g.door, g.source)).collect(),
        refused: outcome.refused.iter().map(|r| (r.door, r.source)).collect(),
        eviction: outcome.eviction,
    }
}

/// The source's attempt as the engine's index finds it.
fn engine_progress(engine: &Engine, source: IpAddr) -> Option<Progress> {
    let table = &engine.table;
    let key = source_key(source);
    let slot = table.find(key, table.hash(key))?;
    let mut doors = Vec::new();
    table.load_doors(slot, &mut doors);
    let doors = doors
        .iter()
        .map(|t| (usize::from(t.door), usize::from(t.stage)));
    Some((table.get(slot).started_ms, doors.collect()))
}

/// Which of the attempts (oldest first) a full table evicts: the first with a single knock
/// among the `EVICTION_SCAN` oldest, else the oldest.
fn eviction_victim<'a>(oldest_first: impl Iterator<Item = &'a Attempt>) -> usize {
    oldest_first
        .take(EVICTION_SCAN)
        .position(|attempt| attempt.doors.iter().all(|&(_, stage)| stage <= 1))
        .unwrap_or(0)
}

/// The engine's attempts, oldest first, as its age list links them.
fn engine_age_order(engine: &Engine) -> Vec<SourceKey> {
    let table = &engine.table;
    table
        .oldest_first()
        .map(|slot| table.get(slot).key)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_engine_agrees_with_a_hashmap_model(
        first in 0..CONFIGS,
        max_sources in 0..5usize,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut engine = Engine::new(config(first), max_sources);
        let mut model = Model::new(config(first), max_sources);
        let start = Instant::now();
        let mut now_ms = 0;
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Knock { delay_ms, knock } => {
                    now_ms += delay_ms;
                    let now = start + Duration::from_millis(now_ms);
                    let seen = engine_sees(&mut engine, now, knock);
                    prop_assert_eq!(seen, model.knock(now_ms, knock), "op {}: {:?}", i, op);
                }
                &Op::Reload { config: which, max_sources } => {
                    engine.replace_doors(config(which), max_sources);
                    model.reload(config(which), max_sources);
                }
            }
            prop_assert!(engine.tracked_sources() <= model.max_sources);
            prop_assert_eq!(engine.tracked_sources(), model.attempts.len());
            let order: Vec<_> = model.age_order().into_iter().map(source_key).collect();
            prop_assert_eq!(engine_age_order(&engine), order, "op {}: {:?}", i, op);
            for source in (0..SOURCES).map(address) {
                let progress = model.progress(source);
                prop_assert_eq!(engine_progress(&engine, source), progress, "op {}: {}", i, source);
            }
        }
    }
}
