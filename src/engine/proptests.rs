//! Properties over arbitrary packet streams: sources are independent, the table stays bounded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::tests::door;
use super::{Engine, Eviction, Grant, Knock, KnockResult, Verdict};
use crate::config::model::{Door, Proto, ScanPolicy, TcpFlags, tcp_flag};

/// Overlapping doors: a shared first port, a strict door, a flags filter, a UDP port, short and
/// long timeouts, so that every rule fires in random streams.
fn doors() -> Vec<Door> {
    let mut strict = door("strict", &[7000, 7001, 7002]);
    strict.scan_policy = ScanPolicy::ResetOnOtherPorts;
    let mut flagged = door("flagged", &[7000, 7003]);
    flagged.tcp_flags = Some(TcpFlags {
        set: tcp_flag::SYN,
        clear: tcp_flag::ACK,
    });
    let mut short = door("short", &[7001, 7000, 7003, 7002]);
    short.seq_timeout = Duration::from_secs(3);
    let mut udp = door("udp", &[7003, 7004]);
    udp.sequence[1].proto = Proto::Udp;
    vec![strict, flagged, short, udp, door("one", &[7004])]
}

/// A packet from source number `source` after `delay_ms`.
#[derive(Debug, Clone, Copy)]
struct Sent {
    source: u8,
    proto: Proto,
    port: u16,
    tcp_flags: u8,
    delay_ms: u64,
}

fn sent(sources: std::ops::Range<u8>) -> impl Strategy<Value = Sent> {
    let port = prop_oneof![7000..7005u16, Just(22u16), Just(443u16)];
    let proto = prop_oneof![4 => Just(Proto::Tcp), 1 => Just(Proto::Udp)];
    let flags = prop_oneof![4 => Just(tcp_flag::SYN), 1 => Just(tcp_flag::SYN | tcp_flag::ACK)];
    let delay = prop_oneof![4 => 0..1_500u64, 1 => 1_500..12_000u64];
    (sources, proto, port, flags, delay).prop_map(|(source, proto, port, tcp_flags, delay_ms)| {
        let tcp_flags = if proto == Proto::Udp { 0 } else { tcp_flags };
        Sent {
            source,
            proto,
            port,
            tcp_flags,
            delay_ms,
        }
    })
}

fn address(source: u8) -> IpAddr {
    match source % 2 {
        0 => IpAddr::V4(Ipv4Addr::new(198, 51, 100, source)),
        _ => IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            u16::from(source),
        )),
    }
}

/// What the target source sees, less `Expired` events: the sweep reports an expiry during
/// whichever packet comes first, which other sources' packets can change. The expiry itself
/// (and everything after it) still shows in the events and grants that follow.
type Seen = (Verdict, Vec<(usize, KnockResult)>, Vec<Grant>);

fn run(engine: &mut Engine, stream: &[Sent], target: u8) -> Vec<Seen> {
    let mut now = Instant::now();
    let mut seen = Vec::new();
    for packet in stream {
        now += Duration::from_millis(packet.delay_ms);
        let knock = Knock {
            source: address(packet.source),
            proto: packet.proto,
            port: packet.port,
            tcp_flags: packet.tcp_flags,
        };
        let outcome = engine.on_packet(now, &knock);
        if packet.source == target {
            let events = outcome
                .events
                .iter()
                .filter(|e| e.result != KnockResult::Expired);
            let events = events.map(|e| (e.door, e.result)).collect();
            seen.push((outcome.verdict, events, outcome.grants.to_vec()));
        }
    }
    seen
}

/// Interleaves `noise` into `target`, zero-delay, at the given positions: the target's own
/// timing is unchanged.
fn interleave(target: &[Sent], noise: &[(usize, Sent)]) -> Vec<Sent> {
    let mut mixed = Vec::with_capacity(target.len() + noise.len());
    for (i, &packet) in target.iter().enumerate() {
        let before = noise.iter().filter(|(at, _)| at % (target.len() + 1) == i);
        mixed.extend(before.map(|&(_, noise)| Sent {
            delay_ms: 0,
            ..noise
        }));
        mixed.push(packet);
    }
    mixed
}

proptest! {
    #[test]
    fn other_sources_never_change_a_source_outcomes(
        target in proptest::collection::vec(sent(0..1), 1..60),
        noise in proptest::collection::vec((0..64usize, sent(1..40)), 0..120),
    ) {
        let alone = run(&mut Engine::new(doors(), 1000), &target, 0);
        let mixed = run(&mut Engine::new(doors(), 1000), &interleave(&target, &noise), 0);
        prop_assert_eq!(alone, mixed);
    }

    #[test]
    fn tracked_sources_never_exceed_the_bound(
        stream in proptest::collection::vec(sent(0..24), 1..300),
        max_sources in 1..10usize,
    ) {
        let mut engine = Engine::new(doors(), max_sources);
        let mut now = Instant::now();
        for packet in &stream {
            now += Duration::from_millis(packet.delay_ms);
            let knock = Knock {
                source: address(packet.source),
                proto: packet.proto,
                port: packet.port,
                tcp_flags: packet.tcp_flags,
            };
            let evicted = engine.on_packet(now, &knock).eviction;
            prop_assert!(engine.tracked_sources() <= max_sources);
            if evicted == Eviction::Evicted {
                prop_assert_eq!(engine.tracked_sources(), max_sources);
            }
        }
    }
}

mod table {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::super::Eviction;
    use super::super::table::{EVICTION_SCAN, LastKnock, SourceTable, Tracked};
    use crate::config::model::Proto;

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Insert(u128),
        Remove(u128),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..30u128).prop_map(Op::Insert),
            (0..30u128).prop_map(Op::Remove)
        ]
    }

    /// The doors stored for `key`: 1 to 6, so the overflow array is used too.
    fn doors_of(key: u128) -> Vec<Tracked> {
        let count = u16::try_from(key % 6 + 1).expect("small");
        (0..count)
            .map(|door| Tracked {
                door,
                stage: u8::try_from(key % 200).expect("small"),
            })
            .collect()
    }

    proptest! {
        /// The slab, free list, index and age list agree with a plain queue of keys.
        #[test]
        fn table_matches_a_fifo_model(ops in proptest::collection::vec(op(), 1..200), max in 1..12usize) {
            let mut table = SourceTable::new(max, 6);
            let mut model: VecDeque<u128> = VecDeque::new();
            let last = LastKnock { after_start_ms: 0, port: 1, proto: Proto::Tcp };
            let mut loaded = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(key) if !model.contains(&key) => {
                        let eviction = table.insert(key, table.hash(key), 0, last, &doors_of(key));
                        let expected = if model.len() == max {
                            // The oldest with a single knock (stage 1) among the few oldest.
                            let single = model.iter().take(EVICTION_SCAN).position(|&k| k % 200 <= 1);
                            model.remove(single.unwrap_or(0));
                            Eviction::Evicted
                        } else {
                            Eviction::None
                        };
                        prop_assert_eq!(eviction, expected);
                        model.push_back(key);
                    }
                    Op::Insert(_) => {}
                    Op::Remove(key) => {
                        if let Some(slot) = table.find(key, table.hash(key)) {
                            table.remove(slot);
                        }
                        model.retain(|&k| k != key);
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                let order: Vec<u128> = table.oldest_first().map(|slot| table.get(slot).key).collect();
                prop_assert_eq!(&order, &Vec::from(model.clone()));
                for &key in &model {
                    let slot = table.find(key, table.hash(key));
                    prop_assert!(slot.is_some());
                    table.load_doors(slot.unwrap_or_default(), &mut loaded);
                    prop_assert_eq!(&loaded, &doors_of(key));
                }
            }
        }
    }
}

mod index {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::index::{SlotIndex, SourceHash};

    proptest! {
        /// Heavy collisions (8 distinct hashes) and wrap-around: every live slot stays findable
        /// under its hash after any sequence of inserts and backward-shift removals.
        #[test]
        fn index_finds_exactly_the_live_slots(ops in proptest::collection::vec((0..24u32, 0..8u32), 1..300)) {
            let mut index = SlotIndex::with_capacity(12);
            let mut live: BTreeMap<u32, SourceHash> = BTreeMap::new();
            for (slot, hash) in ops {
                if let Some(filed) = live.remove(&slot) {
                    index.remove(filed, slot);
                } else if live.len() < index.capacity() {
                    let hash = SourceHash(hash.wrapping_mul(0x9e37_79b9) | hash);
                    index.insert(hash, slot);
                    live.insert(slot, hash);
                }
                for candidate in 0..24u32 {
                    let hash = live.get(&candidate).copied().unwrap_or(SourceHash(candidate));
                    let found = index.find(hash, |s| s == candidate);
                    prop_assert_eq!(found.is_some(), live.contains_key(&candidate));
                }
            }
        }
    }
}

#[test]
fn an_attempt_record_is_one_cache_line() {
    assert_eq!(std::mem::size_of::<super::table::Attempt>(), 64);
}
