//! The wire format against the test vectors of `docs/spa.md`, and each way the gate rejects.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::wire::{self, Key, Message, RequestedPort, WireError};
use super::{Gate, Rejection, ReplayCache, SpaOutcome};
use crate::config::{Action, Door, GrantAddress, Proto, Spa, Target};
use crate::engine::Arrival;

/// The vectors' key: bytes 0x00..=0x1f.
fn vector_key() -> Key {
    Key::new(std::array::from_fn(|i| u8::try_from(i).unwrap()))
}

const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const VECTOR_1: &str = "0100000000006955b900a0a1a2a3a4a5a6a7a8a9aaabacadaeaf0373736800\
                        c3c12a729954edfd000e4f2b8aca2c6e9a2f9c06f22bf6e0f588d17e51c58963";
const VECTOR_2: &str = "0101000000006955b900a0a1a2a3a4a5a6a7a8a9aaabacadaeaf037373680106\
                        001604cb007107b54a870f89175c47dee76f8dedf856b647d4842f85bf71c7ad\
                        5bd7f194021a81";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn message(ports: Vec<RequestedPort>, address: Option<IpAddr>) -> Message {
    Message {
        timestamp: NOW,
        nonce: std::array::from_fn(|i| 0xa0 + u8::try_from(i).unwrap()),
        door: "ssh".into(),
        ports,
        address,
    }
}

const SSH: RequestedPort = RequestedPort {
    proto: Proto::Tcp,
    port: 22,
};

#[test]
fn encoding_matches_the_documented_test_vectors() {
    assert_eq!(
        wire::encode(&message(vec![], None), &vector_key()),
        hex(VECTOR_1)
    );
    let named = Some("203.0.113.7".parse().unwrap());
    assert_eq!(
        wire::encode(&message(vec![SSH], named), &vector_key()),
        hex(VECTOR_2)
    );
}

#[test]
fn the_vectors_decode_to_their_fields_and_verify_only_with_their_key() {
    let bytes = hex(VECTOR_2);
    let parsed = wire::decode(&bytes).unwrap();
    assert_eq!(
        (parsed.timestamp, parsed.door, parsed.address),
        (NOW, "ssh", Some("203.0.113.7".parse().unwrap()))
    );
    assert_eq!(parsed.ports().collect::<Vec<_>>(), [SSH]);
    assert!(vector_key().verify(parsed.signed, &parsed.tag));
    assert!(!Key::new([7; 32]).verify(parsed.signed, &parsed.tag));
}

#[test]
fn malformed_datagrams_are_errors_never_panics() {
    let good = hex(VECTOR_1);
    assert_eq!(wire::decode(&good[..10]), Err(WireError::Length));
    assert_eq!(wire::decode(&[]), Err(WireError::Length));
    let mut longer = good.clone();
    longer.insert(40, 0);
    assert_eq!(wire::decode(&longer), Err(WireError::Length));
    let mut version = good.clone();
    version[0] = 2;
    assert_eq!(wire::decode(&version), Err(WireError::Version));
    let mut flags = good.clone();
    flags[1] = 0x80;
    assert_eq!(wire::decode(&flags), Err(WireError::Flags));
    // Every prefix of every length is handled.
    let full = hex(VECTOR_2);
    for end in 0..full.len() {
        assert!(wire::decode(&full[..end]).is_err());
    }
}

fn spa_door(grant_address: GrantAddress) -> Door {
    Door {
        name: "ssh".into(),
        sequence: Vec::new(),
        seq_timeout: Duration::from_secs(25),
        tcp_flags: None,
        scan_policy: Default::default(),
        targets: vec![
            Target::Local {
                port: 22,
                proto: Proto::Tcp,
            },
            Target::Local {
                port: 443,
                proto: Proto::Tcp,
            },
        ],
        open_for: Duration::from_secs(30),
        action: Action::Open,
        max_grants_per_second: 2,
        origin: Default::default(),
        once: None,
        from: Vec::new(),
        interfaces: Vec::new(),
        spa: Some(Spa {
            port: 62201,
            key_file: "/etc/knock-nfq/ssh.key".into(),
            key: vector_key(),
            max_age: Duration::from_secs(30),
            grant_address,
        }),
    }
}

struct Fixture {
    gate: Gate,
    start: Instant,
}

const SENDER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

impl Fixture {
    fn new(mode: GrantAddress) -> Fixture {
        let start = Instant::now();
        let gate = Gate::new(&[spa_door(mode)], ReplayCache::new(1), start);
        Fixture { gate, start }
    }

    fn send(&mut self, datagram: &[u8], unix_now: u64) -> SpaOutcome {
        let clock = (self.start, Duration::from_secs(unix_now));
        self.gate
            .on_datagram(clock, (SENDER, Arrival::Unknown), 62201, datagram)
    }
}

fn signed(message: &Message) -> Vec<u8> {
    wire::encode(message, &vector_key())
}

fn with_nonce(n: u8) -> Message {
    Message {
        nonce: [n; 16],
        ..message(vec![], None)
    }
}

fn rejected(reason: Rejection) -> SpaOutcome {
    SpaOutcome::Rejected {
        door: Some(0),
        reason,
    }
}

#[test]
fn a_valid_message_grants_the_sender_once_and_its_replay_is_rejected() {
    let mut fixture = Fixture::new(GrantAddress::Sender);
    let datagram = signed(&with_nonce(1));
    let SpaOutcome::Granted(grant, _) = fixture.send(&datagram, NOW + 3) else {
        panic!("not granted");
    };
    assert_eq!((grant.door, grant.source), (0, SENDER));
    assert_eq!(grant.spec.targets.len(), 2);
    assert_eq!(
        fixture.send(&datagram, NOW + 4),
        rejected(Rejection::Replayed)
    );
}

#[test]
fn tampered_stale_and_future_messages_are_rejected_each_with_its_reason() {
    let mut fixture = Fixture::new(GrantAddress::Sender);
    let mut tampered = signed(&with_nonce(2));
    tampered[5] ^= 1;
    assert_eq!(fixture.send(&tampered, NOW), rejected(Rejection::BadMac));
    let wrong_key = wire::encode(&with_nonce(3), &Key::new([9; 32]));
    assert_eq!(fixture.send(&wrong_key, NOW), rejected(Rejection::BadMac));
    assert_eq!(
        fixture.send(&signed(&with_nonce(4)), NOW + 31),
        rejected(Rejection::Stale)
    );
    assert_eq!(
        fixture.send(&signed(&with_nonce(5)), NOW - 6),
        rejected(Rejection::Future)
    );
    let unknown = Message {
        door: "web".into(),
        ..with_nonce(6)
    };
    assert_eq!(
        fixture.send(&signed(&unknown), NOW),
        SpaOutcome::Rejected {
            door: None,
            reason: Rejection::UnknownDoor
        }
    );
    assert_eq!(
        fixture.send(b"\x00", NOW),
        SpaOutcome::Rejected {
            door: None,
            reason: Rejection::Malformed
        }
    );
    // None of those used its nonce: the genuine message still opens.
    assert!(matches!(
        fixture.send(&signed(&with_nonce(4)), NOW),
        SpaOutcome::Granted(..)
    ));
}

#[test]
fn requested_ports_narrow_the_grant_and_others_are_refused() {
    let mut fixture = Fixture::new(GrantAddress::Sender);
    let ssh_only = Message {
        ports: vec![SSH],
        ..with_nonce(7)
    };
    let SpaOutcome::Granted(grant, _) = fixture.send(&signed(&ssh_only), NOW) else {
        panic!("not granted");
    };
    assert_eq!(
        grant.spec.targets,
        [Target::Local {
            port: 22,
            proto: Proto::Tcp
        }]
    );
    let other = Message {
        ports: vec![RequestedPort {
            proto: Proto::Udp,
            port: 22,
        }],
        ..with_nonce(8)
    };
    assert_eq!(
        fixture.send(&signed(&other), NOW),
        rejected(Rejection::PortNotAllowed)
    );
}

#[test]
fn a_named_address_is_granted_only_where_the_door_allows_it() {
    let named: IpAddr = "203.0.113.7".parse().unwrap();
    let naming = |n| Message {
        address: Some(named),
        ..with_nonce(n)
    };
    let mut strict = Fixture::new(GrantAddress::Sender);
    assert_eq!(
        strict.send(&signed(&naming(9)), NOW),
        rejected(Rejection::AddressNotAllowed)
    );
    let mut nat = Fixture::new(GrantAddress::NamedOrSender);
    let SpaOutcome::Granted(grant, _) = nat.send(&signed(&naming(10)), NOW) else {
        panic!("not granted");
    };
    assert_eq!(grant.source, named);
    let loopback = Message {
        address: Some("127.0.0.1".parse().unwrap()),
        ..with_nonce(11)
    };
    assert_eq!(
        nat.send(&signed(&loopback), NOW),
        rejected(Rejection::AddressNotAllowed)
    );
}

#[test]
fn beyond_the_grant_rate_valid_messages_are_refused_and_a_full_cache_rejects() {
    let mut fixture = Fixture::new(GrantAddress::Sender);
    // max_grants_per_second = 2: a burst of two.
    for n in 20..22 {
        assert!(matches!(
            fixture.send(&signed(&with_nonce(n)), NOW),
            SpaOutcome::Granted(..)
        ));
    }
    assert_eq!(
        fixture.send(&signed(&with_nonce(22)), NOW),
        rejected(Rejection::RateLimited)
    );
    // The capacity is (30 s + 5 s) x 2 x 2 = 140 nonces live at once.
    let mut outcomes = Vec::new();
    for n in 0..200u32 {
        let mut m = with_nonce(0);
        m.nonce[..4].copy_from_slice(&n.to_be_bytes());
        m.nonce[15] = 0xff;
        outcomes.push(fixture.send(&signed(&m), NOW));
    }
    let full = outcomes
        .iter()
        .filter(|o| **o == rejected(Rejection::CacheFull))
        .count();
    assert_eq!(full, 200 - (140 - 3));
}

#[test]
fn one_door_filling_its_share_of_the_cache_leaves_another_door_open() {
    let start = Instant::now();
    let mut other = spa_door(GrantAddress::Sender);
    other.name = "web".into();
    other.spa.as_mut().unwrap().port = 62202;
    let mut gate = Gate::new(
        &[spa_door(GrantAddress::Sender), other],
        ReplayCache::new(1),
        start,
    );
    let clock = (start, Duration::from_secs(NOW));
    let fresh = |door: &str, n: u32| {
        let mut m = with_nonce(0);
        m.door = door.into();
        m.nonce[..4].copy_from_slice(&n.to_be_bytes());
        signed(&m)
    };
    // Door ssh's share is (30 s + 5 s) x 2 x 2 = 140 nonces; then it is full, door web is not.
    for n in 0..140 {
        let outcome = gate.on_datagram(clock, (SENDER, Arrival::Unknown), 62201, &fresh("ssh", n));
        assert_ne!(outcome, rejected(Rejection::CacheFull), "nonce {n}");
    }
    assert_eq!(
        gate.on_datagram(clock, (SENDER, Arrival::Unknown), 62201, &fresh("ssh", 140)),
        rejected(Rejection::CacheFull)
    );
    assert!(matches!(
        gate.on_datagram(
            clock,
            (SENDER, Arrival::Unknown),
            62202,
            &fresh("web", 1000)
        ),
        SpaOutcome::Granted(..)
    ));
}

#[test]
fn a_door_with_from_rejects_other_senders_after_the_mac() {
    let start = Instant::now();
    let mut door = spa_door(GrantAddress::Sender);
    door.from = vec!["198.51.100.0/24".parse().unwrap()];
    let mut gate = Gate::new(&[door], ReplayCache::new(1), start);
    let clock = (start, Duration::from_secs(NOW));
    let datagram = signed(&with_nonce(5));
    assert_eq!(
        gate.on_datagram(clock, (SENDER, Arrival::Unknown), 62201, &datagram),
        rejected(Rejection::SourceNotAllowed)
    );
    let inside: IpAddr = "198.51.100.9".parse().unwrap();
    assert!(matches!(
        gate.on_datagram(clock, (inside, Arrival::Unknown), 62201, &datagram),
        SpaOutcome::Granted(..)
    ));
}
