use std::path::PathBuf;
use std::time::Duration;

use super::{OnceState, Refusal, one_time, totp};
use crate::config::Config;
use crate::config::model::{KnockPort, OnceUse, Proto};
use crate::spa::Key;

/// The vectors' secret: bytes 0x00..=0x1f (as in docs/replay.md).
fn secret() -> Key {
    Key::new(std::array::from_fn(|i| u8::try_from(i).unwrap()))
}

fn tcp(ports: &[u16]) -> Vec<KnockPort> {
    ports
        .iter()
        .map(|&port| KnockPort {
            port,
            proto: Proto::Tcp,
        })
        .collect()
}

/// 2026-01-01T00:00:00Z with 30 s steps: T = 58907520.
const T: u64 = 1_767_225_600 / 30;

#[test]
fn totp_sequences_match_the_documented_vectors() {
    let range = (20000, 29999);
    assert_eq!(
        totp::sequence(&secret(), T, 4, range),
        tcp(&[23850, 26166, 22475, 27812])
    );
    assert_eq!(
        totp::sequence(&secret(), T + 1, 4, range),
        tcp(&[29561, 29073, 21016, 29255])
    );
    let long = totp::sequence(&secret(), T, 16, (20000, 20099));
    assert_eq!(
        long,
        tcp(&[
            20050, 20066, 20075, 20012, 20069, 20032, 20003, 20097, 20087, 20004, 20038, 20031,
            20007, 20092, 20070, 20089
        ])
    );
}

#[test]
fn totp_ports_are_distinct_and_in_range_even_when_the_range_is_small() {
    for step in 0..200 {
        let ports = totp::sequence(&secret(), step, 16, (40000, 40099));
        assert_eq!(ports.len(), 16);
        for (i, p) in ports.iter().enumerate() {
            assert!((40000..=40099).contains(&p.port));
            assert!(!ports[..i].contains(p), "step {step}: {ports:?}");
        }
    }
}

#[test]
fn one_time_files_read_like_knockd_and_a_used_line_is_commented_out() {
    let text = "# my list\n7000,8000:udp,9000\n\n  1111 2222:tcp\n#7001,7002\n";
    let lines = one_time::parse(text, 16).unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].number, 2);
    assert_eq!(
        lines[0].sequence,
        vec![
            KnockPort {
                port: 7000,
                proto: Proto::Tcp
            },
            KnockPort {
                port: 8000,
                proto: Proto::Udp
            },
            KnockPort {
                port: 9000,
                proto: Proto::Tcp
            },
        ]
    );
    assert_eq!(lines[1].number, 4);
    assert_eq!(lines[1].sequence, tcp(&[1111, 2222]));

    let bad = one_time::parse("7000,8000\n7000,70000\n", 16).unwrap_err();
    assert_eq!(bad.number, 2);
    assert!(
        !bad.problem.contains("7000"),
        "a line's knocks are never shown"
    );
    let repeated = one_time::parse("7000,8000\n#7001\n7000,8000:tcp\n", 16).unwrap_err();
    assert_eq!(
        (repeated.number, repeated.problem.as_str()),
        (3, "the same sequence as line 1")
    );
    let reused = one_time::parse("#7001,7002\n7001,7002\n", 16).unwrap_err();
    assert_eq!(
        (reused.number, reused.problem.as_str()),
        (2, "the same sequence as line 1")
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ssh.seq");
    std::fs::write(&file, text).unwrap();
    one_time::mark_used(&file, 2, &lines[0].sequence).unwrap();
    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        after,
        "# my list\n#7000,8000:udp,9000\n\n  1111 2222:tcp\n#7001,7002\n"
    );
    assert!(
        one_time::mark_used(&file, 2, &lines[0].sequence).is_err(),
        "already used"
    );
    assert_eq!(one_time::parse(&after, 16).unwrap()[0].number, 4);

    // Edited while the daemon runs (a line inserted above): the used sequence is found where
    // it now is, never another line commented out in its place.
    std::fs::write(&file, "5555\n1111,2222\n").unwrap();
    one_time::mark_used(&file, 4, &lines[1].sequence).unwrap();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "5555\n#1111,2222\n"
    );
}

fn config(state_dir: &std::path::Path, door: &str) -> Config {
    let toml = format!(
        "[daemon]\nstate_dir = \"{}\"\n{door}\nopen = [\"22/tcp\"]\n",
        state_dir.display()
    );
    Config::from_toml_str(&toml, std::path::Path::new("test.toml")).unwrap()
}

fn private_file(dir: &std::path::Path, name: &str, contents: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Door `ssh` with the vectors' secret, 30 s steps, ports 20000-29999, skew 1.
fn totp_config(dir: &std::path::Path) -> Config {
    let secret_file = private_file(
        dir,
        "ssh.totp",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    );
    let door = format!(
        "[[door]]\nname = \"ssh\"\ntotp = {{ secret_file = \"{}\", ports = \"20000-29999\" }}",
        secret_file.display()
    );
    config(dir, &door)
}

#[test]
fn a_totp_door_offers_each_unused_step_of_its_window_and_a_step_grants_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = totp_config(dir.path());
    let now = Duration::from_secs(T * 30 + 7);
    let mut once = OnceState::open(&config).unwrap();
    let doors = once.expand(&config.doors, now);
    let steps: Vec<_> = doors.iter().map(|d| d.once).collect();
    assert_eq!(steps, [T - 1, T, T + 1].map(|s| Some(OnceUse::TotpStep(s))));
    assert_eq!(doors[1].sequence, tcp(&[23850, 26166, 22475, 27812]));

    let door = &config.doors[0];
    once.consume(&door.origin, OnceUse::TotpStep(T), now)
        .unwrap();
    assert!(matches!(
        once.consume(&door.origin, OnceUse::TotpStep(T), now),
        Err(Refusal::Used)
    ));
    assert!(matches!(
        once.consume(&door.origin, OnceUse::TotpStep(T - 1), now),
        Err(Refusal::Used)
    ));
    let after: Vec<_> = once
        .expand(&config.doors, now)
        .iter()
        .map(|d| d.once)
        .collect();
    assert_eq!(after, [Some(OnceUse::TotpStep(T + 1))]);

    // A step outside the window at the time of the use is refused, used or not.
    let later = now + Duration::from_secs(5 * 30);
    assert!(matches!(
        once.consume(&door.origin, OnceUse::TotpStep(T + 1), later),
        Err(Refusal::Used)
    ));

    // With every step of the window used, the door stays, opened by nothing: its targets
    // must stay protected in the kernel.
    once.consume(&door.origin, OnceUse::TotpStep(T + 1), now)
        .unwrap();
    let spent = once.expand(&config.doors, now);
    assert_eq!(spent.len(), 1);
    assert!(spent[0].sequence.is_empty() && spent[0].once.is_none());
    assert_eq!(spent[0].targets, door.targets);

    // A restart remembers, and so does a renamed door with the same secret.
    let reopened = OnceState::open(&config).unwrap();
    assert!(reopened.expand(&config.doors, now)[0].once.is_none());
    let mut renamed = config.doors.clone();
    renamed[0].name = "renamed".into();
    assert!(reopened.expand(&renamed, now)[0].once.is_none());
}

#[test]
fn a_one_time_door_offers_its_first_unused_line_until_none_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let file = private_file(dir.path(), "ssh.seq", "7000,8000\n7001,8001\n");
    let config = config(
        dir.path(),
        &format!(
            "[[door]]\nname = \"ssh\"\none_time_sequences = \"{}\"",
            file.display()
        ),
    );
    let now = Duration::ZERO;
    let mut once = OnceState::open(&config).unwrap();
    let door = &config.doors[0];
    let first = once.expand(&config.doors, Duration::ZERO).remove(0);
    assert_eq!(first.sequence, tcp(&[7000, 8000]));
    assert_eq!(first.once, Some(OnceUse::OneTimeLine(1)));
    once.consume(&door.origin, OnceUse::OneTimeLine(1), now)
        .unwrap();
    assert!(matches!(
        once.consume(&door.origin, OnceUse::OneTimeLine(1), now),
        Err(Refusal::Used)
    ));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "#7000,8000\n7001,8001\n"
    );
    let second = once.expand(&config.doors, Duration::ZERO).remove(0);
    assert_eq!(second.sequence, tcp(&[7001, 8001]));
    assert_eq!(once.lines_left(&config.doors), [("ssh", 1)]);
    once.consume(&door.origin, OnceUse::OneTimeLine(2), now)
        .unwrap();
    let exhausted = once.expand(&config.doors, Duration::ZERO).remove(0);
    assert!(exhausted.sequence.is_empty() && exhausted.once.is_none());
    assert_eq!(once.lines_left(&config.doors), [("ssh", 0)]);

    // The operator writes a new list and reloads: its lines are new, at the same numbers.
    std::fs::write(&file, "7002,8002\n").unwrap();
    let reloaded = self::config(
        dir.path(),
        &format!(
            "[[door]]\nname = \"ssh\"\none_time_sequences = \"{}\"",
            file.display()
        ),
    );
    let fresh = once.expand(&reloaded.doors, Duration::ZERO).remove(0);
    assert_eq!(fresh.sequence, tcp(&[7002, 8002]));
}

#[test]
fn a_corrupt_used_steps_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(super::TOTP_FILE), "garbage").unwrap();
    let config = totp_config(dir.path());
    let err = OnceState::open(&config).unwrap_err().to_string();
    assert!(err.contains("totp-used") && err.contains("line 1"), "{err}");
}
