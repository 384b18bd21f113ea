//! The fuzz targets' bodies, shared by the cargo-fuzz binaries and by tests/fuzz_corpus.rs.
//! Each must never panic, whatever the bytes; where the code promises more, it is asserted.

#![allow(dead_code, reason = "each binary calls one target")]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use knock_nfq::config::Config;
use knock_nfq::engine::Arrival;
use knock_nfq::engine::Engine;
use knock_nfq::spa::{self, Gate, Key, Message, ReplayCache, SpaOutcome};

/// The door the packet path and SPA targets run against.
const CONFIG: &str = r#"
[[door]]
name = "ssh"
sequence = ["7000:tcp", "8000:tcp", "9000:udp"]
tcp_flags = "syn,!ack"
open = ["22/tcp", "198.51.100.10:80/tcp"]
"#;

fn doors() -> Vec<knock_nfq::config::Door> {
    Config::from_toml_str(CONFIG, Path::new("fuzz.toml"))
        .expect("the fuzz config is valid")
        .doors
}

/// Decoding never panics; a decoded message re-encodes to the same signed bytes; the gate
/// (with the door's key) rejects or grants without panicking.
pub fn spa_decode(data: &[u8]) {
    let key = Key::new([0x42; 32]);
    if let Ok(parsed) = spa::decode(data) {
        let message = Message {
            timestamp: parsed.timestamp,
            nonce: parsed.nonce,
            door: parsed.door.to_owned(),
            ports: parsed.ports().collect(),
            address: parsed.address,
        };
        let encoded = spa::encode(&message, &key);
        assert_eq!(&encoded[..parsed.signed.len()], parsed.signed);
        assert!(key.verify(parsed.signed, &key.sign(parsed.signed)));
    }
    let mut door = doors().remove(0);
    door.sequence.clear();
    door.spa = Some(knock_nfq::config::Spa {
        port: 62201,
        key_file: "/fuzz.key".into(),
        key,
        max_age: Duration::from_secs(30),
        grant_address: knock_nfq::config::GrantAddress::NamedOrSender,
    });
    let start = Instant::now();
    let mut gate = Gate::new(&[door], ReplayCache::new(4), start);
    let source = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    for _ in 0..2 {
        let outcome = gate.on_datagram(
            (start, Duration::from_secs(1_767_225_600)),
            (source, Arrival::On("wan0")),
            62201,
            data,
        );
        assert!(
            !matches!(outcome, SpaOutcome::Granted(..)),
            "no forged message is granted"
        );
    }
}

/// Raw bytes as a queued packet: parsed, stepped through the engine several times (time
/// moving on), and its UDP payload read, as the worker does.
pub fn packet_path(data: &[u8]) {
    let _ = knock_nfq::packet::udp_payload(data);
    let Ok(packet) = knock_nfq::packet::parse(data) else {
        return;
    };
    let mut engine = Engine::new(doors(), 16);
    let start = Instant::now();
    for step in 0..4u64 {
        let _ = engine.on_packet(start + Duration::from_millis(step * 700), &packet.knock);
    }
    assert!(engine.tracked_sources() <= 16);
}

/// Any text as a config: a value or an error, never a panic; an error names the file.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = Config::from_toml_str(text, Path::new("fuzz.toml")) {
        assert!(err.to_string().contains("fuzz.toml"), "{err}");
    }
}

/// Any text as a knockd.conf: an import or an error; what it translates is a loadable config.
pub fn import_knockd(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(import) = knock_nfq::import::import_str(&text, Path::new("knockd.conf")) else {
        return;
    };
    // A one-time door's file is read where the daemon runs, usually not where it is imported.
    if import.translated == 0 || import.toml.contains("\none_time_sequences = ") {
        return;
    }
    if let Err(err) = Config::from_toml_str(&import.toml, Path::new("imported.toml")) {
        panic!(
            "the import of a knockd.conf does not load: {err}\n{}",
            import.toml
        );
    }
}
