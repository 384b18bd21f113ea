//! Sequences that grant once, with real knocks: a TOTP door (our client derives the sequence;
//! tests/netns/craft.py derives it again from docs/replay.md) and a knockd one-time sequence
//! file (Debian's `knock` as the client), over IPv4 and IPv6 and across a daemon crash.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::harness::*;
use crate::require_netns;
use crate::{CLIENT4, CLIENT6, GW_SSH4, GW_SSH6, OTHER4, assert_closed, assert_open};

const STEP: u64 = 30;
const LENGTH: &str = "3";
const RANGE: (&str, &str) = ("20000", "29999");

fn private_file(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn config(dir: &Path, door: &str) -> String {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    format!(
        r#"[daemon]
queues = [0]
interfaces = ["wan0"]
metrics = "127.0.0.1:9469"
state_dir = "{}"

[[door]]
name = "once"
{door}
seq_timeout = "5s"
open = {TARGETS}
open_for = "30s"
"#,
        state.display()
    )
}

fn grants(daemon: &Daemon, t: &Topology) -> f64 {
    daemon.metrics(&t.gw).value(
        "knock_nfq_grants_total",
        &[r#"door="once""#, r#"action="open""#],
    )
}

fn revoke_all(t: &Topology) {
    for set in ["allow4", "allow6", "allow_fwd4", "allow_fwd6"] {
        t.gw.exec("nft", &["flush", "set", "inet", "knock_nfq", set]);
    }
}

// ---- TOTP ----

/// (step, ports) from craft.py: now, or at `step`.
fn totp_ports(t: &Topology, secret: &Path, step: Option<u64>) -> (u64, Vec<String>) {
    let secret = secret.to_str().expect("utf-8");
    let step_arg = step.map(|s| format!("at={s}"));
    let mut args = vec!["totp", "-", secret, "30", LENGTH, RANGE.0, RANGE.1];
    args.extend(step_arg.as_deref());
    let out = craft(t, &args);
    let mut fields = out.split_whitespace().map(str::to_owned);
    let step = fields.next().expect("a step").parse().expect("a number");
    (step, fields.collect())
}

/// Sleeps past a step boundary that is less than 5 s away, so one try stays within a step.
fn away_from_a_step_boundary() {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let into_step = now % STEP;
    if into_step > STEP - 5 {
        std::thread::sleep(Duration::from_secs(STEP - into_step + 1));
    }
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn a_totp_step_opens_once_an_old_step_never_and_the_next_step_within_the_skew() {
    require_netns!();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("ssh.totp");
    let out = std::process::Command::new(daemon::BINARY)
        .args(["keygen", "--output"])
        .arg(&secret)
        .output()
        .expect("keygen");
    assert!(out.status.success(), "{out:?}");
    let door = format!(
        "totp = {{ secret_file = \"{}\", step = \"{STEP}s\", length = {LENGTH}, ports = \"{}-{}\", skew = 1 }}",
        secret.display(),
        RANGE.0,
        RANGE.1
    );
    let t = Topology::new();
    let daemon = Daemon::start(&t.gw, &config(dir.path(), &door));
    let config_path = daemon.config_path.to_str().expect("utf-8").to_owned();
    assert_closed(&t, CLIENT4, &[GW_SSH4]);

    away_from_a_step_boundary();
    let (now, expected) = totp_ports(&t, &secret, None);
    let printed = t
        .client
        .command(daemon::BINARY)
        .args([
            "knock",
            "-v",
            "--config",
            &config_path,
            "--door",
            "once",
            GW4,
        ])
        .output()
        .expect("knock-nfq knock");
    assert!(printed.status.success(), "{printed:?}");
    let knocked: Vec<String> = String::from_utf8_lossy(&printed.stdout)
        .lines()
        .filter_map(|l| l.rsplit(':').next().map(str::to_owned))
        .collect();
    assert_eq!(
        knocked, expected,
        "our client and craft.py derive the same ports"
    );
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    assert_eq!(grants(&daemon, &t), 1.0);

    // The same step again, from the same source and another: nothing opens.
    revoke_all(&t);
    let ports: Vec<&str> = expected.iter().map(String::as_str).collect();
    t.knock(GW4, &ports);
    knock_from(&t, OTHER4, GW4, &ports);
    assert_closed(&t, CLIENT4, &[GW_SSH4]);
    assert_closed(&t, OTHER4, &[GW_SSH4]);

    // Two steps back is outside the skew of 1.
    let (_, old) = totp_ports(&t, &secret, Some(now - 2));
    t.knock(GW4, &old.iter().map(String::as_str).collect::<Vec<_>>());
    assert_closed(&t, CLIENT4, &[GW_SSH4]);
    assert_eq!(grants(&daemon, &t), 1.0);

    // The next step is within the skew, and unused: it opens, once.
    let (_, next) = totp_ports(&t, &secret, Some(now + 1));
    let next: Vec<&str> = next.iter().map(String::as_str).collect();
    t.knock(GW4, &next);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    assert_eq!(grants(&daemon, &t), 2.0);
    revoke_all(&t);
    t.knock(GW4, &next);
    assert_eq!(
        t.reaches(CLIENT4, GW_SSH4),
        None,
        "a used step opened again; log:\n{}",
        daemon.log()
    );
    assert_eq!(grants(&daemon, &t), 2.0);
}

// ---- one-time sequence files ----

const LINES: [&[&str]; 3] = [
    &["7100", "7200", "7300:udp"],
    &["7400:udp", "7500", "7600"],
    &["7700", "7800", "7900"],
];

fn sequence_file(dir: &Path) -> PathBuf {
    let file = dir.join("state").join("ssh.seq");
    std::fs::create_dir_all(file.parent().expect("a parent")).expect("dir");
    let lines: Vec<String> = LINES.iter().map(|l| l.join(",")).collect();
    private_file(
        &file,
        &format!("# knockd one-time sequences\n{}\n", lines.join("\n")),
    );
    file
}

fn left(daemon: &Daemon, t: &Topology) -> f64 {
    daemon
        .metrics(&t.gw)
        .value("knock_nfq_one_time_sequences_left", &[r#"door="once""#])
}

/// Waits until the daemon offers the next line (its engine doors move on within 200 ms of a
/// use), which the lines-left metric follows.
fn wait_for_left(daemon: &Daemon, t: &Topology, lines: f64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while left(daemon, t) != lines {
        assert!(
            Instant::now() < deadline,
            "never {lines} lines left; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn a_one_time_sequence_opens_once_also_over_ipv6_and_after_a_crash() {
    require_netns!();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = sequence_file(dir.path());
    let door = format!("one_time_sequences = \"{}\"", file.display());
    let t = Topology::new();
    let mut daemon = Daemon::start(&t.gw, &config(dir.path(), &door));
    assert_eq!(left(&daemon, &t), 3.0);

    t.knock(GW4, LINES[0]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.contains("\n#7100,7200,7300:udp\n"), "{text}");
    wait_for_left(&daemon, &t, 2.0);

    revoke_all(&t);
    t.knock(GW4, LINES[0]);
    assert_closed(&t, CLIENT4, &[GW_SSH4]);

    // The next line, over IPv6 (knockd breaks IPv6 after the first use).
    t.knock(GW6, LINES[1]);
    assert_open(&t, CLIENT6, GW_SSH6, "gw");
    wait_for_left(&daemon, &t, 1.0);
    assert_eq!(grants(&daemon, &t), 2.0);

    // A crash revives no line.
    daemon.kill9();
    daemon.restart(&t.gw);
    revoke_all(&t);
    assert_eq!(left(&daemon, &t), 1.0);
    t.knock(GW6, LINES[1]);
    t.knock(GW4, LINES[0]);
    assert_closed(&t, CLIENT6, &[GW_SSH6]);
    assert_closed(&t, CLIENT4, &[GW_SSH4]);

    // The last line opens; then the door is used up, which the log and the metric say.
    t.knock(GW4, LINES[2]);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    wait_for_left(&daemon, &t, 0.0);
    assert!(
        daemon.log().contains("one-time sequences are used up"),
        "{}",
        daemon.log()
    );
    assert_eq!(grants(&daemon, &t), 1.0, "counters restart with the daemon");
}
