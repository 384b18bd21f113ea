//! SPA cost per datagram on the packet path, without I/O: decoding and the HMAC-SHA256 check,
//! and the gate's whole decision for what a flood sends (garbage, forged MACs, replays of one
//! captured datagram) and for an accepted message. Run: `cargo bench --bench spa`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use knock_nfq::config::model::{Action, Door, GrantAddress, Proto, Spa, Target};
use knock_nfq::engine::Arrival;
use knock_nfq::spa::{Gate, Key, Message, ReplayCache, RequestedPort, SpaOutcome, decode, encode};

const PORT: u16 = 62201;
const SENDER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

fn door() -> Door {
    Door {
        name: "ssh".into(),
        sequence: Vec::new(),
        seq_timeout: Duration::from_secs(25),
        tcp_flags: None,
        scan_policy: Default::default(),
        targets: vec![Target::Local {
            port: 22,
            proto: Proto::Tcp,
        }],
        open_for: Duration::from_secs(30),
        action: Action::Open,
        max_grants_per_second: u32::MAX,
        origin: Default::default(),
        once: None,
        from: Vec::new(),
        interfaces: Vec::new(),
        spa: Some(Spa {
            port: PORT,
            key_file: "/etc/knock-nfq/ssh.key".into(),
            key: Key::new([7; 32]),
            max_age: Duration::from_secs(30),
            grant_address: GrantAddress::Sender,
        }),
    }
}

/// A datagram stamped at the gate's fixed `now`, however long the run has taken since.
fn datagram(nonce: u128, key: &Key, timestamp: u64) -> Vec<u8> {
    let message = Message {
        timestamp,
        nonce: nonce.to_be_bytes(),
        door: "ssh".into(),
        ports: vec![RequestedPort {
            proto: Proto::Tcp,
            port: 22,
        }],
        address: None,
    };
    encode(&message, key)
}

fn main() {
    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let doors = [door()];
    let key = Key::new([7; 32]);
    let start = Instant::now();
    let now = (start, knock_nfq::clock::unix_now());
    let stamp = now.1.as_secs();
    let valid = datagram(1, &key, stamp);
    let forged = datagram(2, &Key::new([8; 32]), stamp);
    let garbage = vec![0xa5; valid.len()];

    let mut group = criterion.benchmark_group("spa");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode and verify", |b| {
        b.iter(|| {
            let parsed = decode(black_box(&valid)).expect("valid");
            assert!(key.verify(parsed.signed, &parsed.tag));
        });
    });
    let mut gate = Gate::new(&doors, ReplayCache::new(1 << 22), start);
    for (name, bytes) in [("gate: garbage", &garbage), ("gate: forged MAC", &forged)] {
        group.bench_function(name, |b| {
            b.iter(|| gate.on_datagram(now, (SENDER, Arrival::Unknown), PORT, black_box(bytes)));
        });
    }
    assert!(matches!(
        gate.on_datagram(now, (SENDER, Arrival::Unknown), PORT, &valid),
        SpaOutcome::Granted(..)
    ));
    group.bench_function("gate: replayed", |b| {
        b.iter(|| gate.on_datagram(now, (SENDER, Arrival::Unknown), PORT, black_box(&valid)));
    });
    // Fresh nonces, encoded outside the timed loop; the cache is large enough for all of them.
    let mut next = 1_000u128;
    group.bench_function("gate: accepted", |b| {
        b.iter_batched(
            || {
                next += 1;
                datagram(next, &key, stamp)
            },
            |bytes| {
                let outcome = gate.on_datagram(now, (SENDER, Arrival::Unknown), PORT, &bytes);
                assert!(matches!(outcome, SpaOutcome::Granted(..)), "{outcome:?}");
            },
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();
    criterion.final_summary();
}
