//! One test per knock rule, driven through `Engine::on_packet` as the daemon drives it.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{DoorEvent, Engine, Eviction, Knock, KnockResult, Verdict};
use crate::config::model::{
    Action, Door, KnockPort, Proto, ScanPolicy, Target, TcpFlags, tcp_flag,
};

use KnockResult::{Advance, Complete, Duplicate, Expired, Reset};

pub(super) fn door(name: &str, sequence: &[u16]) -> Door {
    let sequence = sequence
        .iter()
        .map(|&port| KnockPort {
            port,
            proto: Proto::Tcp,
        })
        .collect();
    door_with(name, sequence)
}

pub(super) fn door_with(name: &str, sequence: Vec<KnockPort>) -> Door {
    Door {
        name: name.to_owned(),
        sequence,
        seq_timeout: Duration::from_secs(10),
        tcp_flags: None,
        scan_policy: ScanPolicy::IgnoreOtherPorts,
        targets: vec![Target::Local {
            port: 22,
            proto: Proto::Tcp,
        }],
        open_for: Duration::from_secs(30),
        action: Action::Open,
        max_grants_per_second: 1000,
        origin: Default::default(),
        once: None,
        from: Vec::new(),
        interfaces: Vec::new(),
        spa: None,
    }
}

pub(super) fn syn(source: &str, port: u16) -> Knock {
    tcp(source, port, tcp_flag::SYN)
}

fn tcp(source: &str, port: u16, tcp_flags: u8) -> Knock {
    let source = source.parse().expect("test address");
    Knock {
        source,
        proto: Proto::Tcp,
        port,
        tcp_flags,
    }
}

fn udp(source: &str, port: u16) -> Knock {
    let source = source.parse().expect("test address");
    Knock {
        source,
        proto: Proto::Udp,
        port,
        tcp_flags: 0,
    }
}

/// What one packet produced, owned.
#[derive(Debug, PartialEq)]
struct Seen {
    verdict: Verdict,
    events: Vec<(usize, KnockResult)>,
    grants: Vec<Granted>,
    eviction: Eviction,
}

struct Harness {
    engine: Engine,
    start: Instant,
}

impl Harness {
    fn new(doors: Vec<Door>) -> Harness {
        Harness::bounded(doors, 1000)
    }

    fn bounded(doors: Vec<Door>, max_sources: usize) -> Harness {
        Harness {
            engine: Engine::new(doors, max_sources),
            start: Instant::now(),
        }
    }

    /// Sends `knock` at `ms` milliseconds after the start.
    fn at(&mut self, ms: u64, knock: Knock) -> Seen {
        let now = self.start + Duration::from_millis(ms);
        let outcome = self.engine.on_packet(now, &knock);
        Seen {
            verdict: outcome.verdict,
            events: outcome
                .events
                .iter()
                .map(|&DoorEvent { door, result }| (door, result))
                .collect(),
            grants: outcome
                .grants
                .iter()
                .map(|g| (g.door, g.source, g.action()))
                .collect(),
            eviction: outcome.eviction,
        }
    }

    /// Sends `knock` and returns only its events.
    fn events(&mut self, ms: u64, knock: Knock) -> Vec<(usize, KnockResult)> {
        self.at(ms, knock).events
    }
}

/// A grant as the tests compare it: door, source, action (the spec is tested on its own).
type Granted = (usize, IpAddr, Action);

fn grant(door: usize, source: &str, action: Action) -> Granted {
    let source = source.parse::<IpAddr>().expect("test address");
    (door, source, action)
}

const A: &str = "192.0.2.1";
const B: &str = "192.0.2.2";
const C: &str = "192.0.2.3";

#[test]
fn a_grant_carries_the_compiled_spec_of_its_door() {
    let ssh = door("ssh", &[7000, 8000]);
    let mut engine = Engine::new(vec![door("other", &[5000]), ssh.clone()], 16);
    let start = Instant::now();
    engine.on_packet(start, &syn(A, 7000));
    let outcome = engine.on_packet(start + Duration::from_millis(10), &syn(A, 8000));
    let [grant] = outcome.grants else {
        panic!("one grant expected, got {:?}", outcome.grants);
    };
    assert_eq!(*grant.spec, crate::engine::GrantSpec::of(&ssh));
    assert_eq!(outcome.doors[1].door, "ssh");
}

#[test]
fn each_expected_port_advances_and_the_last_completes_with_a_grant() {
    let mut h = Harness::new(vec![
        door("other", &[5000, 5001]),
        door("ssh", &[7000, 8000, 9000]),
    ]);
    assert_eq!(h.events(0, syn(A, 7000)), [(1, Advance)]);
    assert_eq!(h.events(100, syn(A, 8000)), [(1, Advance)]);
    let last = h.at(200, syn(A, 9000));
    assert_eq!(last.events, [(1, Complete)]);
    assert_eq!(last.grants, [grant(1, A, Action::Open)]);
    assert_eq!(
        h.engine.tracked_sources(),
        0,
        "a completed attempt takes no space"
    );
}

#[test]
fn knock_ports_are_dropped_and_other_ports_accepted() {
    let mut h = Harness::new(vec![door_with(
        "mixed",
        vec![
            KnockPort {
                port: 7000,
                proto: Proto::Tcp,
            },
            KnockPort {
                port: 8000,
                proto: Proto::Udp,
            },
        ],
    )]);
    assert_eq!(h.at(0, syn(A, 7000)).verdict, Verdict::Drop);
    assert_eq!(
        h.at(0, udp(B, 8000)).verdict,
        Verdict::Drop,
        "not a first port: still a knock port"
    );
    // Not knocks, and without a strict door nothing else should be queued: fail closed.
    assert_eq!(
        h.at(0, syn(B, 8000)).verdict,
        Verdict::Drop,
        "8000 is a knock port for udp only"
    );
    assert_eq!(h.at(0, udp(B, 7000)).verdict, Verdict::Drop);
    let other = h.at(0, syn(B, 22));
    assert_eq!((other.verdict, other.events.len()), (Verdict::Drop, 0));
}

#[test]
fn a_packet_that_is_not_a_first_port_starts_nothing() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    assert_eq!(h.events(0, syn(A, 8000)), []);
    assert_eq!(h.events(0, syn(A, 9000)), []);
    assert_eq!(h.engine.tracked_sources(), 0);
}

#[test]
fn a_wrong_knock_port_resets_the_attempt() {
    let mut h = Harness::new(vec![
        door("ssh", &[7000, 8000, 9000]),
        door("web", &[6000, 6001]),
    ]);
    h.at(0, syn(A, 7000));
    assert_eq!(h.events(100, syn(A, 6001)), [(0, Reset)]);
    assert_eq!(h.events(200, syn(A, 8000)), [], "the attempt is gone");
    assert_eq!(h.events(300, syn(A, 9000)), []);
    assert_eq!(h.engine.tracked_sources(), 0);
}

#[test]
fn a_wrong_knock_on_a_first_port_restarts_the_attempt() {
    let mut h = Harness::new(vec![
        door("ssh", &[7000, 8000, 9000]),
        door("web", &[6000, 6001]),
    ]);
    h.at(0, syn(A, 7000));
    h.at(100, syn(A, 8000));
    // The user re-runs the client: knockd would drop this first knock; here it restarts.
    assert_eq!(h.events(200, syn(A, 7000)), [(0, Reset), (0, Advance)]);
    assert_eq!(h.events(300, syn(A, 8000)), [(0, Advance)]);
    assert_eq!(h.at(400, syn(A, 9000)).grants, [grant(0, A, Action::Open)]);
    // A first port of another door also restarts.
    h.at(500, syn(A, 7000));
    assert_eq!(h.events(600, syn(A, 6000)), [(0, Reset), (1, Advance)]);
    assert_eq!(h.at(700, syn(A, 6001)).grants, [grant(1, A, Action::Open)]);
}

#[test]
fn tcp_packets_with_mismatching_flags_are_ignored() {
    let mut guarded = door("ssh", &[7000, 8000, 9000]);
    guarded.tcp_flags = Some(TcpFlags {
        set: tcp_flag::SYN,
        clear: tcp_flag::ACK,
    });
    let mut h = Harness::new(vec![guarded]);
    let syn_ack = tcp_flag::SYN | tcp_flag::ACK;
    assert_eq!(
        h.events(0, tcp(A, 7000, syn_ack)),
        [],
        "no start on mismatching flags"
    );
    assert_eq!(h.engine.tracked_sources(), 0);
    h.at(100, syn(A, 7000));
    assert_eq!(
        h.events(200, tcp(A, 9000, tcp_flag::ACK)),
        [],
        "ignored, not a wrong knock"
    );
    assert_eq!(
        h.events(300, tcp(A, 8000, tcp_flag::FIN)),
        [],
        "ignored, no advance"
    );
    assert_eq!(h.events(400, syn(A, 8000)), [(0, Advance)]);
    assert_eq!(h.events(500, syn(A, 9000)), [(0, Complete)]);
}

#[test]
fn udp_knocks_ignore_tcp_flags() {
    let udp_port = |port| KnockPort {
        port,
        proto: Proto::Udp,
    };
    let mut guarded = door_with("udp", vec![udp_port(7000), udp_port(8000)]);
    guarded.tcp_flags = Some(TcpFlags {
        set: tcp_flag::SYN,
        clear: 0,
    });
    let mut h = Harness::new(vec![guarded]);
    assert_eq!(h.events(0, udp(A, 7000)), [(0, Advance)]);
    assert_eq!(h.events(100, udp(A, 8000)), [(0, Complete)]);
}

#[test]
fn seq_timeout_counts_from_the_first_knock_not_the_last() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    h.at(0, syn(A, 7000));
    h.at(6_000, syn(A, 8000));
    // 6 s after the last knock but 12 s after the first: expired, and not a first port.
    assert_eq!(h.events(12_000, syn(A, 9000)), [(0, Expired)]);
    assert_eq!(h.engine.tracked_sources(), 0);
    h.at(20_000, syn(A, 7000));
    h.at(25_000, syn(A, 8000));
    assert_eq!(
        h.events(29_999, syn(A, 9000)),
        [(0, Complete)],
        "just inside the timeout"
    );
}

#[test]
fn after_expiry_the_packet_may_start_a_new_attempt() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    h.at(0, syn(A, 7000));
    assert_eq!(h.events(10_000, syn(A, 7000)), [(0, Expired), (0, Advance)]);
    h.at(10_100, syn(A, 8000));
    assert_eq!(h.events(10_200, syn(A, 9000)), [(0, Complete)]);
}

#[test]
fn expiry_is_per_door_and_survivors_see_the_packet() {
    let mut short = door("short", &[7000, 8000, 9000]);
    short.seq_timeout = Duration::from_secs(2);
    let long = door("long", &[7000, 8000, 6000]);
    let mut h = Harness::new(vec![short, long]);
    assert_eq!(h.events(0, syn(A, 7000)), [(0, Advance), (1, Advance)]);
    assert_eq!(h.events(5_000, syn(A, 8000)), [(0, Expired), (1, Advance)]);
    assert_eq!(h.events(5_100, syn(A, 6000)), [(1, Complete)]);
}

#[test]
fn the_sweep_expires_stale_attempts_of_silent_sources() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    h.at(0, syn(A, 7000));
    h.at(1_000, syn(B, 7000));
    assert_eq!(h.engine.tracked_sources(), 2);
    // C's packet to an unrelated port sweeps A and B, which never knock again.
    let seen = h.at(11_000, syn(C, 22));
    assert_eq!(seen.events, [(0, Expired), (0, Expired)]);
    assert_eq!(h.engine.tracked_sources(), 0);
}

#[test]
fn the_sweep_keeps_attempts_within_their_timeout() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    h.at(0, syn(A, 7000));
    h.at(5_000, syn(B, 7000));
    assert_eq!(h.events(12_000, syn(C, 22)), [(0, Expired)], "A only");
    assert_eq!(h.engine.tracked_sources(), 1);
    assert_eq!(h.events(12_100, syn(B, 8000)), [(0, Advance)]);
}

#[test]
fn doors_sharing_a_first_port_are_tracked_and_complete_independently() {
    let mut h = Harness::new(vec![
        door("short", &[7000, 8000]),
        door("long", &[7000, 8000, 9000]),
    ]);
    assert_eq!(h.events(0, syn(A, 7000)), [(0, Advance), (1, Advance)]);
    let second = h.at(100, syn(A, 8000));
    assert_eq!(second.events, [(0, Complete), (1, Advance)]);
    assert_eq!(second.grants, [grant(0, A, Action::Open)]);
    let third = h.at(200, syn(A, 9000));
    assert_eq!(third.events, [(1, Complete)]);
    assert_eq!(third.grants, [grant(1, A, Action::Open)]);
}

#[test]
fn a_knock_expected_by_one_shared_door_resets_the_other() {
    let mut h = Harness::new(vec![
        door("a", &[7000, 8000, 9000]),
        door("b", &[7000, 6000]),
    ]);
    h.at(0, syn(A, 7000));
    let seen = h.at(100, syn(A, 6000));
    assert_eq!(seen.events, [(0, Reset), (1, Complete)]);
    assert_eq!(seen.grants, [grant(1, A, Action::Open)]);
    assert_eq!(h.events(200, syn(A, 8000)), []);
}

#[test]
fn more_doors_than_fit_inline_share_a_first_port() {
    // Door i is 7000, 7001, ..., 7000 + i + 1: each knock completes one more door.
    let doors: Vec<Door> = (0..7u16)
        .map(|i| door(&format!("d{i}"), &(7000..=7001 + i).collect::<Vec<_>>()))
        .collect();
    let mut h = Harness::new(doors);
    assert_eq!(h.events(0, syn(A, 7000)).len(), 7);
    for i in 0..7u16 {
        let seen = h.at(u64::from(i + 1) * 100, syn(A, 7001 + i));
        let door = usize::from(i);
        assert_eq!(seen.events[0], (door, Complete));
        assert_eq!(seen.events.len(), 7 - door);
        assert!(
            seen.events[1..]
                .iter()
                .all(|&(_, result)| result == Advance)
        );
        assert_eq!(seen.grants, [grant(door, A, Action::Open)]);
    }
    assert_eq!(h.engine.tracked_sources(), 0);
}

#[test]
fn a_retransmitted_knock_within_the_window_is_a_duplicate() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    h.at(0, syn(A, 7000));
    h.at(100, syn(A, 8000));
    // Linux retransmits an unanswered SYN after its 1 s initial RTO.
    assert_eq!(h.events(1_100, syn(A, 8000)), [(0, Duplicate)]);
    assert_eq!(
        h.events(2_100, syn(A, 8000)),
        [(0, Duplicate)],
        "window counts from the accepted knock"
    );
    assert_eq!(h.events(2_200, syn(A, 9000)), [(0, Complete)]);
}

#[test]
fn a_repeat_outside_the_window_is_a_wrong_knock() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    h.at(0, syn(A, 7000));
    h.at(100, syn(A, 8000));
    assert_eq!(h.events(2_101, syn(A, 8000)), [(0, Reset)]);
    assert_eq!(h.events(2_200, syn(A, 9000)), []);
}

#[test]
fn a_repeated_first_knock_within_the_window_is_a_duplicate() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    h.at(0, syn(A, 7000));
    assert_eq!(h.events(1_000, syn(A, 7000)), [(0, Duplicate)]);
    h.at(1_100, syn(A, 8000));
    assert_eq!(h.events(1_200, syn(A, 9000)), [(0, Complete)]);
}

#[test]
fn a_repeat_of_an_older_knock_is_a_wrong_knock() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    h.at(0, syn(A, 7000));
    h.at(100, syn(A, 8000));
    assert_eq!(h.events(200, syn(A, 7000)), [(0, Reset), (0, Advance)]);
}

#[test]
fn a_sequence_repeating_a_port_advances_on_the_repeat() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 7000, 8000])]);
    assert_eq!(h.events(0, syn(A, 7000)), [(0, Advance)]);
    assert_eq!(h.events(100, syn(A, 7000)), [(0, Advance)]);
    assert_eq!(h.events(200, syn(A, 7000)), [(0, Duplicate)]);
    assert_eq!(h.events(300, syn(A, 8000)), [(0, Complete)]);
}

#[test]
fn a_strict_door_resets_on_any_other_port() {
    let mut strict = door("strict", &[7000, 8000, 9000]);
    strict.scan_policy = ScanPolicy::ResetOnOtherPorts;
    let mut h = Harness::new(vec![strict, door("lax", &[7000, 8000, 6000])]);
    h.at(0, syn(A, 7000));
    let scan = h.at(100, syn(A, 443));
    assert_eq!(scan.verdict, Verdict::Accept);
    assert_eq!(
        scan.events,
        [(0, Reset)],
        "the non-strict door ignores port 443"
    );
    assert_eq!(h.events(200, syn(A, 8000)), [(1, Advance)]);
    assert_eq!(h.events(300, syn(A, 6000)), [(1, Complete)]);
}

#[test]
fn non_strict_doors_ignore_other_ports() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    h.at(0, syn(A, 7000));
    for port in [22, 80, 443, 7001] {
        assert_eq!(h.events(100, syn(A, port)), []);
        assert_eq!(
            h.events(100, udp(A, 7000)),
            [],
            "udp 7000 is not a knock port"
        );
    }
    h.at(200, syn(A, 8000));
    assert_eq!(h.events(300, syn(A, 9000)), [(0, Complete)]);
}

#[test]
fn a_full_table_evicts_a_one_knock_attempt_before_one_that_progressed() {
    let mut h = Harness::bounded(vec![door("ssh", &[7000, 8000, 9000])], 2);
    assert_eq!(h.at(0, syn(A, 7000)).eviction, Eviction::None);
    assert_eq!(h.at(100, syn(B, 7000)).eviction, Eviction::None);
    assert_eq!(
        h.at(200, syn(B, 8000)).eviction,
        Eviction::None,
        "B already tracked"
    );
    assert_eq!(h.at(300, syn(C, 7000)).eviction, Eviction::Evicted);
    assert_eq!(h.engine.tracked_sources(), 2);
    // A, the oldest, had one knock: its progress is lost and it must restart.
    assert_eq!(h.events(400, syn(A, 8000)), []);
    assert_eq!(
        h.at(500, syn(A, 7000)).eviction,
        Eviction::Evicted,
        "C had one knock; B, older, is two knocks in"
    );
    assert_eq!(h.events(600, syn(B, 9000)), [(0, Complete)], "B was kept");
    assert_eq!(h.events(700, syn(C, 8000)), [], "C was evicted");
}

#[test]
fn a_full_table_of_progressed_attempts_evicts_the_oldest() {
    let mut h = Harness::bounded(vec![door("ssh", &[7000, 8000, 9000])], 2);
    h.at(0, syn(A, 7000));
    h.at(100, syn(B, 7000));
    h.at(200, syn(A, 8000));
    h.at(300, syn(B, 8000));
    assert_eq!(h.at(400, syn(C, 7000)).eviction, Eviction::Evicted);
    assert_eq!(
        h.events(500, syn(A, 9000)),
        [],
        "A, the oldest, was evicted"
    );
    assert_eq!(h.events(600, syn(B, 9000)), [(0, Complete)]);
}

#[test]
fn a_restarted_attempt_counts_as_new_for_eviction() {
    let mut h = Harness::bounded(vec![door("ssh", &[7000, 8000, 9000])], 2);
    h.at(0, syn(A, 7000));
    h.at(100, syn(B, 7000));
    // Past the duplicate window, a repeated first knock restarts: A is now newer than B.
    assert_eq!(h.events(3_000, syn(A, 7000)), [(0, Reset), (0, Advance)]);
    assert_eq!(h.at(3_100, syn(C, 7000)).eviction, Eviction::Evicted);
    assert_eq!(h.events(3_200, syn(A, 8000)), [(0, Advance)]);
    assert_eq!(h.events(3_300, syn(B, 8000)), []);
}

#[test]
fn ipv6_sources_knock_like_ipv4_and_independently() {
    let v6 = "2001:db8::1";
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    h.at(0, syn(v6, 7000));
    h.at(0, syn("2001:db8::2", 7000));
    h.at(0, syn(A, 7000));
    assert_eq!(h.engine.tracked_sources(), 3);
    h.at(100, syn(v6, 8000));
    assert_eq!(h.events(150, syn("2001:db8::2", 9000)), [(0, Reset)]);
    assert_eq!(
        h.at(200, syn(v6, 9000)).grants,
        [grant(0, v6, Action::Open)]
    );
}

#[test]
fn a_close_door_grants_close() {
    let mut close = door("close-ssh", &[9000, 8000, 7000]);
    close.action = Action::Close;
    let mut h = Harness::new(vec![door("open-ssh", &[7000, 8000, 9000]), close]);
    h.at(0, syn(A, 9000));
    h.at(100, syn(A, 8000));
    assert_eq!(h.at(200, syn(A, 7000)).grants, [grant(1, A, Action::Close)]);
}

#[test]
fn a_one_port_door_completes_on_its_only_knock() {
    let mut h = Harness::new(vec![door("single", &[7000])]);
    let seen = h.at(0, syn(A, 7000));
    assert_eq!(seen.events, [(0, Complete)]);
    assert_eq!(seen.grants, [grant(0, A, Action::Open)]);
    assert_eq!(h.engine.tracked_sources(), 0);
}

#[test]
fn reload_keeps_attempts_of_unchanged_doors_under_their_new_ids() {
    let mut h = Harness::new(vec![
        door("ssh", &[7000, 8000, 9000]),
        door("web", &[6000, 6001, 6002]),
    ]);
    h.at(0, syn(A, 7000));
    h.at(100, syn(A, 8000));
    h.at(0, syn(B, 6000));
    let mut web = door("web", &[6000, 6005, 6002]);
    web.scan_policy = ScanPolicy::ResetOnOtherPorts;
    let mut ssh = door("ssh", &[7000, 8000, 9000]);
    ssh.open_for = Duration::from_secs(600); // not part of an attempt's identity
    h.engine
        .replace_doors(vec![door("new", &[5000, 5001]), web, ssh], 1000);
    assert_eq!(
        h.engine.tracked_sources(),
        1,
        "B's web door changed: dropped"
    );
    assert_eq!(h.at(200, syn(A, 9000)).grants, [grant(2, A, Action::Open)]);
    assert_eq!(h.events(300, syn(B, 6005)), []);
}

#[test]
fn reload_drops_doors_whose_timeout_or_flags_changed() {
    let mut h = Harness::new(vec![
        door("a", &[7000, 8000, 9000]),
        door("b", &[7000, 8000, 6000]),
    ]);
    h.at(0, syn(A, 7000));
    let mut a = door("a", &[7000, 8000, 9000]);
    a.seq_timeout = Duration::from_secs(20);
    let mut b = door("b", &[7000, 8000, 6000]);
    b.tcp_flags = Some(TcpFlags {
        set: tcp_flag::SYN,
        clear: 0,
    });
    h.engine.replace_doors(vec![a, b], 1000);
    assert_eq!(h.engine.tracked_sources(), 0);
}

#[test]
fn reload_to_a_smaller_bound_keeps_the_newest_attempts() {
    let mut h = Harness::new(vec![door("ssh", &[7000, 8000, 9000])]);
    h.at(0, syn(A, 7000));
    h.at(100, syn(B, 7000));
    h.at(200, syn(C, 7000));
    h.engine
        .replace_doors(vec![door("ssh", &[7000, 8000, 9000])], 2);
    assert_eq!(h.engine.tracked_sources(), 2);
    assert_eq!(h.events(300, syn(A, 8000)), []);
    assert_eq!(h.events(300, syn(B, 8000)), [(0, Advance)]);
    assert_eq!(h.at(400, syn(A, 7000)).eviction, Eviction::Evicted);
}

#[test]
fn doors_returns_the_configured_doors() {
    let doors = vec![door("ssh", &[7000, 8000, 9000])];
    let engine = Engine::new(doors.clone(), 10);
    assert_eq!(engine.doors(), doors.as_slice());
}

#[test]
fn completions_beyond_the_grant_rate_are_refused_but_still_complete() {
    let mut limited = door("ssh", &[7000]);
    limited.max_grants_per_second = 2;
    let mut engine = Engine::new(vec![limited], 16);
    let start = Instant::now();
    let mut complete = |ms: u64, source: &str| {
        let outcome = engine.on_packet(start + Duration::from_millis(ms), &syn(source, 7000));
        let events: Vec<_> = outcome.events.iter().map(|e| e.result).collect();
        assert_eq!(events, [Complete], "{source} completes either way");
        (outcome.grants.len(), outcome.refused.to_vec())
    };
    assert_eq!(complete(0, A), (1, vec![]));
    assert_eq!(complete(0, B), (1, vec![]));
    let source = C.parse().unwrap();
    assert_eq!(
        complete(0, C),
        (0, vec![super::Refusal { door: 0, source }])
    );
    // Half a second refills one grant at 2 per second.
    assert_eq!(complete(500, C), (1, vec![]));
}

#[test]
fn a_door_with_from_starts_only_for_its_sources() {
    let mut only_b = door("ssh", &[7000, 8000]);
    only_b.from = vec!["192.0.2.2/32".parse().unwrap()];
    let mut h = Harness::new(vec![only_b]);
    assert_eq!(h.events(0, syn(A, 7000)), []);
    assert_eq!(h.at(10, syn(A, 8000)).grants, []);
    assert_eq!(
        h.engine.tracked_sources(),
        0,
        "nothing kept for an outsider"
    );
    assert_eq!(h.events(20, syn(B, 7000)), [(0, Advance)]);
    assert_eq!(h.at(30, syn(B, 8000)).grants, [grant(0, B, Action::Open)]);
}

#[test]
fn a_door_with_interfaces_counts_only_knocks_arriving_there() {
    use super::Arrival;
    let mut wan_only = door("ssh", &[7000, 8000]);
    wan_only.interfaces = vec!["wan0".into()];
    let mut engine = Engine::new(vec![wan_only], 16);
    let start = Instant::now();
    let lan = Arrival::On("lan0");
    engine.on_packet_via(start, &syn(A, 7000), lan);
    assert!(
        engine
            .on_packet_via(start, &syn(A, 8000), lan)
            .grants
            .is_empty()
    );
    let wan = Arrival::On("wan0");
    engine.on_packet_via(start, &syn(B, 7000), wan);
    // Started on wan0: a later knock arriving on lan0 counts neither way.
    assert!(
        engine
            .on_packet_via(start, &syn(B, 8000), lan)
            .grants
            .is_empty()
    );
    let outcome = engine.on_packet_via(start, &syn(B, 8000), wan);
    assert_eq!(outcome.grants.len(), 1);
}

#[test]
fn a_reload_keeps_an_unchanged_doors_spent_grant_rate() {
    let mut limited = door("ssh", &[7000]);
    limited.max_grants_per_second = 1;
    let mut engine = Engine::new(vec![limited.clone()], 16);
    let start = Instant::now();
    assert_eq!(engine.on_packet(start, &syn(A, 7000)).grants.len(), 1);
    engine.replace_doors(vec![door("other", &[5000]), limited.clone()], 16);
    let spent = engine.on_packet(start, &syn(B, 7000));
    assert_eq!((spent.grants.len(), spent.refused.len()), (0, 1));
    // A changed rate is a new bucket.
    limited.max_grants_per_second = 5;
    engine.replace_doors(vec![limited], 16);
    assert_eq!(engine.on_packet(start, &syn(C, 7000)).grants.len(), 1);
}
