//! Acceptance of valid configs and, for each rejection, the message a user sees.

use std::env;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::model::tcp_flag::{ACK, FIN, RST, SYN};
use super::*;

const FILE: &str = "test.toml";

/// A valid door to build configs around.
const SSH_DOOR: &str = r#"
[[door]]
name = "ssh"
sequence = ["7000:tcp", "8000:tcp", "9000:udp"]
open = ["22/tcp"]
"#;

fn read(toml: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(toml, Path::new(FILE))
}

/// The message for a config that must be rejected.
fn rejected(toml: &str) -> String {
    match read(toml) {
        Ok(config) => panic!("accepted, expected an error: {config:#?}"),
        Err(e) => e.to_string(),
    }
}

/// The message for one door, put after two valid ones so that it is `door[2]`.
fn rejected_door(body: &str) -> String {
    let others = "[[door]]\nname = \"a\"\nsequence = [1001]\nopen = [\"22\"]\n\
                  [[door]]\nname = \"b\"\nsequence = [1002]\nopen = [\"23\"]\n";
    rejected(&format!("{others}[[door]]\n{body}"))
}

fn assert_message(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

// ---- acceptance ----

#[test]
fn defaults_fill_everything_but_the_door() {
    let config = read(SSH_DOOR).expect("valid");
    assert_eq!(config.path, PathBuf::from(FILE));
    let daemon = &config.daemon;
    assert_eq!(daemon.queues, vec![0]);
    assert!(daemon.interfaces.is_empty());
    assert_eq!(daemon.table, "knock_nfq");
    assert_eq!(
        daemon.metrics,
        Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9469)))
    );
    assert_eq!(daemon.max_sources, 100_000);
    assert_eq!(daemon.max_grants, 65_536);
    assert_eq!(daemon.log_format, LogFormat::Text);

    let door = &config.doors[0];
    assert_eq!(door.seq_timeout, Duration::from_secs(25));
    assert_eq!(door.open_for, Duration::from_secs(30));
    assert_eq!(door.tcp_flags, None);
    assert_eq!(door.scan_policy, ScanPolicy::IgnoreOtherPorts);
    assert_eq!(door.action, Action::Open);
    assert_eq!(door.max_grants_per_second, 10);
}

#[test]
fn a_doors_grant_rate_is_a_positive_number_of_grants_per_second() {
    assert_message(
        &rejected_door(
            "name = \"c\"\nsequence = [1003]\nopen = [\"24\"]\nmax_grants_per_second = 0",
        ),
        &[
            "max_grants_per_second: expected a number of grants per second from 1 to 100000",
            "found 0",
        ],
    );
}

#[test]
fn full_config_is_read_as_written() {
    let config = read(
        r#"
        [daemon]
        queues = [0, 3]
        interfaces = ["wan0", "ppp*"]
        table = "knock_fw"
        metrics = "[::1]:9100"
        max_sources = 5000
        log_format = "json"

        [[door]]
        name = "web.lan-1"
        sequence = [7000, "8000:UDP", " 9000:tcp "]
        seq_timeout = "1m 30s"
        tcp_flags = "SYN, !ack"
        strict = true
        open = [443, "53/udp", "10.0.0.5:8080", "[2001:db8::5]:53/udp"]
        open_for = "2h"
        action = "close"
        "#,
    )
    .expect("valid");
    let daemon = &config.daemon;
    assert_eq!(daemon.queues, vec![0, 3]);
    assert_eq!(daemon.interfaces, vec!["wan0", "ppp*"]);
    assert_eq!(daemon.table, "knock_fw");
    assert_eq!(
        daemon.metrics,
        Some(SocketAddr::from((Ipv6Addr::LOCALHOST, 9100)))
    );
    assert_eq!(daemon.max_sources, 5000);
    assert_eq!(daemon.log_format, LogFormat::Json);

    let door = &config.doors[0];
    assert_eq!(door.name, "web.lan-1");
    let knock = |port, proto| KnockPort { port, proto };
    assert_eq!(
        door.sequence,
        vec![
            knock(7000, Proto::Tcp),
            knock(8000, Proto::Udp),
            knock(9000, Proto::Tcp)
        ]
    );
    assert_eq!(door.seq_timeout, Duration::from_secs(90));
    assert_eq!(
        door.tcp_flags,
        Some(TcpFlags {
            set: SYN,
            clear: ACK
        })
    );
    assert_eq!(door.scan_policy, ScanPolicy::ResetOnOtherPorts);
    let v6: Ipv6Addr = "2001:db8::5".parse().expect("address");
    assert_eq!(
        door.targets,
        vec![
            Target::Local {
                port: 443,
                proto: Proto::Tcp
            },
            Target::Local {
                port: 53,
                proto: Proto::Udp
            },
            Target::Forward {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
                port: 8080,
                proto: Proto::Tcp
            },
            Target::Forward {
                addr: IpAddr::V6(v6),
                port: 53,
                proto: Proto::Udp
            },
        ]
    );
    assert_eq!(door.open_for, Duration::from_secs(7200));
    assert_eq!(door.action, Action::Close);
}

#[test]
fn empty_metrics_disables_them() {
    let config = read(&format!("[daemon]\nmetrics = \"\"\n{SSH_DOOR}")).expect("valid");
    assert_eq!(config.daemon.metrics, None);
}

#[test]
fn knockd_tcp_flags_parse_and_print_back() {
    let flags = parse::tcp_flags("syn,!ack").expect("valid");
    assert_eq!(
        flags,
        TcpFlags {
            set: SYN,
            clear: ACK
        }
    );
    assert_eq!(flags.to_string(), "syn,!ack");
    assert!(flags.matches(SYN));
    assert!(!flags.matches(SYN | ACK));

    let flags = parse::tcp_flags("FIN,!Rst, syn").expect("valid");
    assert_eq!(
        flags,
        TcpFlags {
            set: FIN | SYN,
            clear: RST
        }
    );
    assert_eq!(flags.to_string(), "fin,syn,!rst");
    assert_eq!(parse::tcp_flags(&flags.to_string()), Ok(flags));
}

#[test]
fn summary_is_one_line_in_config_syntax() {
    let config = read(
        r#"
        [[door]]
        name = "ssh"
        sequence = ["7000:tcp", "8000:tcp", "9000:udp"]
        seq_timeout = "15s"
        tcp_flags = "syn,!ack"
        open = ["22/tcp", "10.0.0.5:8080/tcp", "[2001:db8::5]:53/udp"]
        [[door]]
        name = "close"
        sequence = [9000]
        strict = true
        open = ["22"]
        action = "close"
        "#,
    )
    .expect("valid");
    assert_eq!(
        config.doors[0].summary(),
        "ssh: 7000:tcp 8000:tcp 9000:udp within 15s, flags syn,!ack -> \
         open 22/tcp, 10.0.0.5:8080/tcp, [2001:db8::5]:53/udp for 30s"
    );
    assert_eq!(
        config.doors[1].summary(),
        "close: 9000:tcp within 25s, strict -> close 22/tcp"
    );
}

#[test]
fn example_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/knock-nfq.example.toml");
    let text = fs::read_to_string(&path).expect("example file");
    let config = Config::from_toml_str(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.daemon.interfaces, vec!["wan0"]);
    assert_eq!(config.daemon.table, "knock_nfq");
    let names: Vec<&str> = config.doors.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["openSSH", "closeSSH", "wireguard", "lan-web"]);
    let summaries: Vec<String> = config.doors.iter().map(Door::summary).collect();
    assert_eq!(
        summaries[0],
        "openSSH: 7000:tcp 9000:tcp 8000:tcp within 15s, flags syn,!ack, strict -> open 22/tcp \
         for 30s"
    );
    assert_eq!(
        summaries[1],
        "closeSSH: 8000:tcp 9000:tcp 7000:tcp within 15s, flags syn,!ack, strict -> close 22/tcp"
    );
    let scannable: Vec<&str> = config
        .doors
        .iter()
        .filter(|d| d.scan_risk().is_some())
        .map(|d| d.name.as_str())
        .collect();
    assert!(scannable.is_empty(), "a port scan opens {scannable:?}");
    assert!(
        config.doors[2]
            .sequence
            .iter()
            .any(|k| k.proto == Proto::Udp)
    );
    assert!(
        config.doors[3]
            .targets
            .iter()
            .any(|t| matches!(t, Target::Forward { .. }))
    );
}

#[test]
fn example_file_shows_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/knock-nfq.example.toml");
    let text = fs::read_to_string(path).expect("example file");
    let keys = build::DAEMON_KEYS.iter().chain(build::DOOR_KEYS);
    // An SPA door needs a key file, so the example shows it commented out.
    let commented = [
        "spa",
        "spa_allow_address",
        "totp",
        "one_time_sequences",
        "from",
    ];
    for key in keys {
        let shown = match commented.contains(key) {
            true => format!("\n#{key} = "),
            false => format!("\n{key} = "),
        };
        assert!(text.contains(&shown), "the example doesn't show {key}");
    }
    // The cluster needs etcd and its TLS files: shown commented out.
    assert!(text.contains("\n#[cluster]\n"));
    for key in cluster::CLUSTER_KEYS {
        let shown = format!("\n#{key} = ");
        assert!(
            text.contains(&shown),
            "the example doesn't show cluster.{key}"
        );
    }
}

#[test]
fn string_syntaxes_at_their_edges() {
    assert_eq!(parse::knock("+22"), None, "digits only");
    assert_eq!(parse::knock("22:"), None);
    assert_eq!(
        parse::knock("65535:UDP").map(|k| k.to_string()).as_deref(),
        Some("65535:udp")
    );
    assert_eq!(parse::target("[::1]"), Err(parse::TargetError::Syntax));
    assert_eq!(
        parse::target("[::1]:22"),
        Err(parse::TargetError::NotForwardable)
    );
    assert_eq!(
        parse::target("::ffff:10.0.0.1:22"),
        Err(parse::TargetError::BareIpv6)
    );
    assert_eq!(
        parse::target(" 192.0.2.10:8080/UDP ")
            .map(|t| t.to_string())
            .as_deref(),
        Ok("192.0.2.10:8080/udp")
    );
    assert!(parse::tcp_flags("").is_err());
    assert!(parse::tcp_flags("syn,,ack").is_err());
    assert!(parse::interface_name("*"), "nftables' match-all wildcard");
    assert!(!parse::interface_name("a*b"));
    assert!(parse::table_name("knock_nfq") && !parse::table_name("9table"));
}

// ---- reading and syntax ----

#[test]
fn missing_file_says_cannot_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.toml");
    let message = Config::load(&path).expect_err("missing").to_string();
    let expected = format!("{}: cannot read: No such file or directory", path.display());
    assert_eq!(message, expected);
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    let message = rejected("[daemon]\nqueues = [0,,1]\n");
    assert_message(&message, &["test.toml:2:", ": invalid TOML: "]);
    let message = rejected("[daemon]\ntable = \"a\"\ntable = \"b\"\n");
    assert_message(
        &message,
        &["test.toml:3:1: invalid TOML: ", "duplicate key"],
    );
}

// ---- structure: unknown keys, wrong types, missing keys ----

#[test]
fn unknown_key_at_top_level() {
    let message = rejected(&format!("[[doors]]\nname = \"x\"\n{SSH_DOOR}"));
    assert_eq!(
        message,
        "test.toml: doors: unknown key; expected one of daemon, door, blocklist, cluster"
    );
}

#[test]
fn unknown_key_in_daemon() {
    let message = rejected(&format!("[daemon]\nqueue = [0]\n{SSH_DOOR}"));
    assert_eq!(
        message,
        "test.toml: daemon.queue: unknown key; expected one of queues, interfaces, table, \
         metrics, max_sources, max_grants, log_format, state_dir"
    );
}

#[test]
fn unknown_key_is_shown_as_toml_would_need_it() {
    let message = rejected(&format!("[daemon]\n\"max sources\" = 5\n{SSH_DOOR}"));
    assert_message(
        &message,
        &["test.toml: daemon.\"max sources\": unknown key; expected one of"],
    );
}

#[test]
fn unknown_key_in_door() {
    let message = rejected("[[door]]\nname = \"ssh\"\nsequence = [7000]\nopne = [\"22\"]\n");
    assert_eq!(
        message,
        "test.toml: door[0].opne: unknown key; expected one of name, sequence, seq_timeout, \
         tcp_flags, strict, open, open_for, action, max_grants_per_second, spa, \
         spa_allow_address, totp, one_time_sequences, from, interfaces"
    );
}

#[test]
fn wrong_type_in_third_door_names_that_door() {
    let message =
        rejected_door("name = \"c\"\nsequence = [7000]\nopen = [\"22\"]\nstrict = \"yes\"");
    assert_eq!(
        message,
        "test.toml: door[2] (\"c\").strict: expected true or false, found \"yes\""
    );
    let message = rejected_door("name = \"c\"\nsequence = \"7000,8000\"\nopen = [\"22\"]");
    assert_message(
        &message,
        &[
            "door[2] (\"c\").sequence: expected an array of 1 to 32 knocks",
            "found \"7000,8000\"",
        ],
    );
}

#[test]
fn wrong_type_in_daemon() {
    let message = rejected(&format!("[daemon]\nqueues = \"0\"\n{SSH_DOOR}"));
    assert_message(
        &message,
        &[
            "test.toml: daemon.queues: expected a non-empty array of NFQUEUE numbers",
            "found \"0\"",
        ],
    );
    let message = rejected(&format!("daemon = 5\n{SSH_DOOR}"));
    assert_eq!(
        message,
        "test.toml: daemon: expected a [daemon] table, found 5"
    );
    let message = rejected("[door]\nname = \"ssh\"\n");
    assert_eq!(
        message,
        "test.toml: door: expected one or more [[door]] tables, found a table"
    );
}

#[test]
fn door_without_name_or_sequence() {
    let message = rejected("[[door]]\nsequence = [7000]\nopen = [\"22\"]\n");
    assert_message(
        &message,
        &["test.toml: door[0].name: missing; expected a door name"],
    );
    let message = rejected("[[door]]\nname = \"ssh\"\nopen = [\"22\"]\n");
    assert_message(
        &message,
        &["test.toml: door[0] (\"ssh\").sequence: missing; expected an array of 1 to 32 knocks"],
    );
}

#[test]
fn no_door_at_all() {
    assert_eq!(
        rejected("[daemon]\n"),
        "test.toml: door: missing; expected one or more [[door]] tables"
    );
    assert_eq!(
        rejected("door = []\n"),
        "test.toml: door: expected one or more [[door]] tables, found an empty array"
    );
}

// ---- [daemon] values ----

#[test]
fn queues_must_be_nonempty_unique_u16() {
    let daemon = |queues: &str| rejected(&format!("[daemon]\nqueues = {queues}\n{SSH_DOOR}"));
    assert_message(
        &daemon("[]"),
        &[
            "daemon.queues: expected a non-empty array",
            "found an empty array",
        ],
    );
    assert_eq!(
        daemon("[0, 70000]"),
        "test.toml: daemon.queues[1]: expected an NFQUEUE number 0-65535, found 70000"
    );
    assert_eq!(
        daemon("[1, 2, 1]"),
        "test.toml: daemon.queues[2]: expected each queue number once, found 1, also at daemon.queues[0]"
    );
}

#[test]
fn interface_names_are_checked() {
    let daemon = |ifs: &str| rejected(&format!("[daemon]\ninterfaces = {ifs}\n{SSH_DOOR}"));
    let expected = "expected an interface name of 1-15 bytes without whitespace, '/' or ':'";
    assert_message(
        &daemon(r#"["eth 0"]"#),
        &["daemon.interfaces[0]: ", expected, "found \"eth 0\""],
    );
    assert_message(
        &daemon(r#"["wan0", "averyveryverylongname"]"#),
        &["daemon.interfaces[1]: ", expected],
    );
    assert_message(&daemon(r#"["a/b"]"#), &[expected]);
    assert_message(&daemon(r#"[""]"#), &[expected, "found \"\""]);
    assert_message(&daemon(r#"["ppp**"]"#), &[expected, "found \"ppp**\""]);
    let overlap = "expected interfaces that don't overlap";
    assert_message(
        &daemon(r#"["wan0", "wan0"]"#),
        &["daemon.interfaces[1]: ", overlap],
    );
    assert_eq!(
        daemon(r#"["wan0", "ppp0", "ppp*"]"#),
        "test.toml: daemon.interfaces[2]: expected interfaces that don't overlap (\"ppp*\" \
         covers every name starting with ppp), found \"ppp*\", which overlaps daemon.interfaces[1]"
    );
}

#[test]
fn table_metrics_max_sources_log_format_are_checked() {
    let daemon = |line: &str| rejected(&format!("[daemon]\n{line}\n{SSH_DOOR}"));
    assert_message(
        &daemon("table = \"\""),
        &[
            "daemon.table: expected an nftables table name",
            "found \"\"",
        ],
    );
    assert_message(
        &daemon("metrics = \"localhost:9469\""),
        &[
            "daemon.metrics: expected a listen address",
            "found \"localhost:9469\"",
        ],
    );
    for bad in ["0", "1000001"] {
        assert_eq!(
            daemon(&format!("max_sources = {bad}")),
            format!(
                "test.toml: daemon.max_sources: expected a number of sources from 1 to 1000000, \
                 found {bad}"
            )
        );
    }
    assert_message(
        &daemon("max_grants = 0"),
        &[
            "daemon.max_grants: expected the `size` of the ruleset's grant sets",
            "found 0",
        ],
    );
    assert_eq!(
        daemon("log_format = \"xml\""),
        "test.toml: daemon.log_format: expected \"text\" or \"json\", found \"xml\""
    );
}

// ---- [[door]] values ----

#[test]
fn knock_port_out_of_range() {
    let message =
        rejected_door("name = \"c\"\nsequence = [\"7000:tcp\", \"70000:tcp\"]\nopen = [\"22\"]");
    assert_eq!(
        message,
        "test.toml: door[2] (\"c\").sequence[1]: expected PORT[:tcp|udp] with PORT 1-65535, found \"70000:tcp\""
    );
    let message = rejected_door("name = \"c\"\nsequence = [0]\nopen = [\"22\"]");
    assert_eq!(
        message,
        "test.toml: door[2] (\"c\").sequence[0]: expected PORT[:tcp|udp] with PORT 1-65535, found 0"
    );
}

#[test]
fn knock_protocol_must_be_tcp_or_udp() {
    let message = rejected_door("name = \"c\"\nsequence = [\"7000:icmp\"]\nopen = [\"22\"]");
    assert_eq!(
        message,
        "test.toml: door[2] (\"c\").sequence[0]: expected PORT[:tcp|udp] with PORT 1-65535, found \"7000:icmp\""
    );
}

#[test]
fn sequence_length_is_bounded() {
    let message = rejected_door("name = \"c\"\nsequence = []\nopen = [\"22\"]");
    assert_message(
        &message,
        &[
            "door[2] (\"c\").sequence: expected an array of 1 to 32 knocks",
            "found an empty array",
        ],
    );
    let ports: Vec<String> = (1000..1033).map(|p| p.to_string()).collect();
    let message = rejected_door(&format!(
        "name = \"c\"\nsequence = [{}]\nopen = [\"22\"]",
        ports.join(",")
    ));
    assert_message(
        &message,
        &[
            "door[2] (\"c\").sequence: expected an array of 1 to 32 knocks",
            "found an array of 33 knocks",
        ],
    );
}

#[test]
fn door_names_are_checked_and_unique() {
    let message = rejected_door("name = \"my door\"\nsequence = [7000]\nopen = [\"22\"]");
    assert_eq!(
        message,
        "test.toml: door[2].name: expected a door name of 1-64 characters from A-Z a-z 0-9 _ . -, found \"my door\""
    );
    let message = rejected_door("name = \"a\"\nsequence = [7000]\nopen = [\"22\"]");
    assert_eq!(
        message,
        "test.toml: door[2] (\"a\").name: expected a name no other door has, found \"a\", also the name of door[0] (\"a\")"
    );
}

#[test]
fn every_door_needs_targets_including_close_doors() {
    let message = rejected_door("name = \"c\"\nsequence = [7000]\naction = \"close\"");
    assert_message(
        &message,
        &["test.toml: door[2] (\"c\").open: missing; expected a non-empty array of targets"],
    );
    let message = rejected_door("name = \"c\"\nsequence = [7000]\nopen = []\naction = \"close\"");
    assert_message(
        &message,
        &[
            "door[2] (\"c\").open: expected a non-empty array of targets",
            "found an empty array",
        ],
    );
}

#[test]
fn target_syntax_is_checked() {
    let door = |target: &str| {
        rejected_door(&format!(
            "name = \"c\"\nsequence = [7000]\nopen = [\"22\", {target:?}]"
        ))
    };
    let expected = "expected PORT[/tcp|udp] on this host, or ADDR:PORT[/tcp|udp] or [IPV6]:PORT[/tcp|udp] behind it, with PORT 1-65535";
    assert_eq!(
        door("10.0.0.5/tcp"),
        format!("test.toml: door[2] (\"c\").open[1]: {expected}, found \"10.0.0.5/tcp\"")
    );
    assert_message(&door("22/sctp"), &[expected, "found \"22/sctp\""]);
    assert_message(&door("0/tcp"), &[expected, "found \"0/tcp\""]);
    assert_message(&door("10.0.0.5:65536"), &[expected]);
    assert_message(
        &door("2001:db8::5:8080/tcp"),
        &["open[1]: ", expected, "(put an IPv6 address in brackets"],
    );
    assert_message(&door("127.0.0.1:22/tcp"), &["open[1]: ", "never forwarded"]);
    assert_message(
        &door("22/tcp"),
        &[
            "open[1]: expected each target once",
            "also at door[2] (\"c\").open[0]",
        ],
    );
}

#[test]
fn tcp_flags_syntax_is_checked() {
    let message =
        rejected_door("name = \"c\"\nsequence = [7000]\ntcp_flags = \"syn,foo\"\nopen = [\"22\"]");
    assert_eq!(
        message,
        "test.toml: door[2] (\"c\").tcp_flags: expected a comma list of fin, syn, rst, psh, ack, urg, \
         each optionally prefixed with '!', such as \"syn,!ack\", found \"syn,foo\""
    );
}

#[test]
fn tcp_flags_both_required_and_forbidden() {
    let message =
        rejected_door("name = \"c\"\nsequence = [7000]\ntcp_flags = \"syn,!syn\"\nopen = [\"22\"]");
    assert_eq!(
        message,
        "test.toml: door[2] (\"c\").tcp_flags: expected each flag either required or forbidden, not both, \
         found \"syn,!syn\" (syn is both, so no packet could match)"
    );
}

#[test]
fn tcp_flags_need_a_tcp_knock() {
    let message = rejected_door(
        "name = \"c\"\nsequence = [\"53:udp\"]\ntcp_flags = \"syn\"\nopen = [\"22\"]",
    );
    assert_eq!(
        message,
        "test.toml: door[2] (\"c\").tcp_flags: expected tcp_flags only on a door with at least one TCP knock, \
         found \"syn\" on a door whose knocks are all UDP"
    );
}

#[test]
fn knock_on_a_protected_port_could_never_arrive() {
    // Door "b" opens 23/tcp locally; knocking on 23:tcp would be dropped by the kernel.
    let message = rejected_door("name = \"c\"\nsequence = [7000, \"23:tcp\"]\nopen = [\"22\"]");
    assert_message(
        &message,
        &[
            "test.toml: door[2] (\"c\").sequence[1]: expected a knock port that no door opens on this host",
            "so this knock could never arrive",
            "found \"23:tcp\", which door[1] (\"b\") opens on this host",
        ],
    );
    // Another protocol, or the same port behind the gateway, is no conflict.
    let ok = "[[door]]\nname = \"c\"\nsequence = [\"22:udp\", 8080]\nopen = [\"22/tcp\", \"192.0.2.1:8080\"]\n";
    read(ok).expect("no conflict");
}

#[test]
fn durations_need_a_unit() {
    let door = |line: &str| {
        rejected_door(&format!(
            "name = \"c\"\nsequence = [7000]\nopen = [\"22\"]\n{line}"
        ))
    };
    assert_eq!(
        door("seq_timeout = 15"),
        "test.toml: door[2] (\"c\").seq_timeout: expected a duration longer than 0, such as \"15s\", \"10m\" or \
         \"1h 30m\", found 15 (a number without a unit; write \"15s\" for seconds)"
    );
    assert_message(
        &door("open_for = \"30\""),
        &[
            "door[2] (\"c\").open_for: ",
            "found \"30\" (a number without a unit; write \"30s\"",
        ],
    );
    assert_message(
        &door("seq_timeout = \"soon\""),
        &["seq_timeout: expected a duration", "found \"soon\""],
    );
}

#[test]
fn durations_are_bounded() {
    let door = |line: &str| {
        rejected_door(&format!(
            "name = \"c\"\nsequence = [7000]\nopen = [\"22\"]\n{line}"
        ))
    };
    assert_message(
        &door("seq_timeout = \"0s\""),
        &[
            "seq_timeout: expected a duration longer than 0",
            "found \"0s\"",
        ],
    );
    assert_message(
        &door("open_for = \"0s\""),
        &[
            "open_for: expected a duration from 1ms to 24h",
            "found \"0s\"",
        ],
    );
    assert_message(
        &door("open_for = \"25h\""),
        &[
            "open_for: expected a duration from 1ms to 24h",
            "found \"25h\"",
        ],
    );
    let ok = format!("{SSH_DOOR}open_for = \"24h\"\nseq_timeout = \"1ms\"\n");
    read(&ok).expect("bounds are inclusive");
}

#[test]
fn action_is_open_or_close() {
    let message =
        rejected_door("name = \"c\"\nsequence = [7000]\nopen = [\"22\"]\naction = \"toggle\"");
    assert_eq!(
        message,
        "test.toml: door[2] (\"c\").action: expected \"open\" or \"close\", found \"toggle\""
    );
}

// ---- environment overrides ----
//
// Environment variables are process-wide: setting them here would race with the other tests'
// threads. Each test below runs itself again in a child process that has the variables.

/// Marks the child; outside the `KNOCK_NFQ_` prefix so the loader doesn't see it as a key.
const CHILD_MARK: &str = "KNOCKNFQ_CONFIG_TEST_CHILD";

/// In the parent, runs test `name` in a child with `vars` and returns false; in the child,
/// returns true: the caller then does the checks.
fn in_child_with_env(name: &str, vars: &[(&str, &str)]) -> bool {
    if env::var_os(CHILD_MARK).is_some() {
        return true;
    }
    let exe = env::current_exe().expect("test binary");
    let mut child = Command::new(exe);
    child.args(["--exact", &format!("config::tests::{name}"), "--nocapture"]);
    for (key, _) in env::vars_os() {
        if key
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with(ENV_PREFIX)
        {
            child.env_remove(key);
        }
    }
    let output = child
        .env(CHILD_MARK, "1")
        .envs(vars.iter().copied())
        .output()
        .expect("child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    false
}

/// A config file for the child to load.
fn temp_config(toml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("knock-nfq.toml");
    fs::write(&path, toml).expect("write config");
    (dir, path)
}

#[test]
fn env_overrides_the_file() {
    let vars = [
        ("KNOCK_NFQ_DAEMON__MAX_SOURCES", "5000"),
        ("KNOCK_NFQ_DAEMON__QUEUES", "[1, 2]"),
        ("KNOCK_NFQ_DAEMON__LOG_FORMAT", "json"),
    ];
    if !in_child_with_env("env_overrides_the_file", &vars) {
        return;
    }
    let (_dir, path) = temp_config(&format!(
        "[daemon]\nmax_sources = 10\ntable = \"t\"\n{SSH_DOOR}"
    ));
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.daemon.max_sources, 5000);
    assert_eq!(config.daemon.queues, vec![1, 2]);
    assert_eq!(config.daemon.log_format, LogFormat::Json);
    assert_eq!(
        config.daemon.table, "t",
        "keys not in the environment come from the file"
    );
}

#[test]
fn env_value_errors_name_the_variable() {
    if !in_child_with_env(
        "env_value_errors_name_the_variable",
        &[("KNOCK_NFQ_DAEMON__MAX_SOURCES", "0")],
    ) {
        return;
    }
    let (_dir, path) = temp_config(SSH_DOOR);
    let message = Config::load(&path).expect_err("invalid").to_string();
    assert_eq!(
        message,
        "KNOCK_NFQ_DAEMON__MAX_SOURCES: daemon.max_sources: expected a number of sources from 1 to 1000000, found 0"
    );
}

#[test]
fn env_unknown_key_names_the_variable() {
    if !in_child_with_env(
        "env_unknown_key_names_the_variable",
        &[("KNOCK_NFQ_DAEMON__MAX_SOURCE", "5")],
    ) {
        return;
    }
    let (_dir, path) = temp_config(&format!("[daemon]\nqueues = [0]\n{SSH_DOOR}"));
    let message = Config::load(&path).expect_err("unknown").to_string();
    assert_message(
        &message,
        &["KNOCK_NFQ_DAEMON__MAX_SOURCE: daemon.max_source: unknown key; expected one of queues"],
    );
}

#[test]
fn more_doors_than_one_batch_holds_are_rejected() {
    let door = |i: usize| {
        format!(
            "[[door]]\nname = \"d{i}\"\nsequence = [\"{}\"]\nopen = [\"22/tcp\"]\n",
            10_000 + i
        )
    };
    let toml: String = (0..=MAX_DOORS).map(door).collect();
    assert_message(
        &rejected(&toml),
        &["test.toml: door: expected at most 64 [[door]] tables, found 65 doors"],
    );
    let toml: String = (0..MAX_DOORS).map(door).collect();
    assert_eq!(read(&toml).unwrap().doors.len(), MAX_DOORS);
}

#[test]
fn more_targets_than_a_door_may_open_are_rejected() {
    let targets: Vec<String> = (0..=MAX_TARGETS)
        .map(|i| format!("\"{}/tcp\"", 20 + i))
        .collect();
    let message = rejected_door(&format!(
        "name = \"ssh\"\nsequence = [\"7000\"]\nopen = [{}]\n",
        targets.join(", ")
    ));
    assert_message(
        &message,
        &["door[2] (\"ssh\").open: expected at most 16 targets, found 17 targets"],
    );
}

// ---- SPA doors ----

/// A key file with `mode` in a directory of its own, and the door that reads it.
fn spa_config(mode: u32, contents: &str, extra: &str) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ssh.key");
    fs::write(&key, contents).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(mode)).unwrap();
    let toml = format!(
        "[[door]]\nname = \"ssh\"\nspa = {{ port = \"62201/udp\", key_file = {:?} }}\n\
         open = [\"22/tcp\"]\n{extra}",
        key.display().to_string()
    );
    (dir, toml)
}

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";

#[test]
fn an_spa_door_reads_its_key_and_never_shows_it() {
    let (_dir, toml) = spa_config(0o600, KEY, "spa_allow_address = true\n");
    let config = read(&toml).unwrap_or_else(|e| panic!("{e}"));
    let spa = config.doors[0].spa.as_ref().expect("an SPA door");
    assert_eq!(spa.port, 62201);
    assert_eq!(spa.max_age, Duration::from_secs(30));
    assert_eq!(spa.grant_address, GrantAddress::NamedOrSender);
    assert_eq!(
        spa.key,
        crate::spa::Key::new(std::array::from_fn(|i| u8::try_from(i).unwrap()))
    );
    assert!(config.doors[0].sequence.is_empty());
    let shown = format!("{config:?}{}", config.doors[0].summary());
    assert!(
        !shown.contains("AAECAwQF") && !shown.contains("[0, 1, 2, 3"),
        "{shown}"
    );
    assert!(
        config.doors[0]
            .summary()
            .starts_with("ssh: SPA on 62201/udp, key ")
    );
}

#[test]
fn a_key_file_others_may_read_is_refused_naming_the_file_mode_and_fix() {
    let (dir, toml) = spa_config(0o640, KEY, "");
    let key = dir.path().join("ssh.key").display().to_string();
    assert_message(
        &rejected(&toml),
        &[&key, "mode 0640", &format!("chmod 600 {key}")],
    );
}

#[test]
fn a_key_file_without_a_key_is_refused_without_showing_its_contents() {
    let (_dir, toml) = spa_config(0o600, "hunter2-not-a-key\n", "");
    let message = rejected(&toml);
    assert_message(
        &message,
        &["door[0] (\"ssh\").spa.key_file", "base64 key of 32 bytes"],
    );
    assert!(!message.contains("hunter2"), "{message}");
    let (dir, toml) = spa_config(0o600, KEY, "");
    fs::remove_file(dir.path().join("ssh.key")).unwrap();
    assert_message(&rejected(&toml), &["spa.key_file", "cannot read it"]);
}

#[test]
fn an_spa_door_has_no_sequence_keys_and_listens_on_udp_only() {
    let (_dir, toml) = spa_config(0o600, KEY, "sequence = [7000]\n");
    assert_message(
        &rejected(&toml),
        &["sequence", "no sequence keys on a door opened by spa"],
    );
    let (_dir, toml) = spa_config(0o600, KEY, "");
    let tcp = toml.replace("62201/udp", "62201/tcp");
    assert_message(&rejected(&tcp), &["spa.port", "a UDP port"]);
    let (_dir, toml) = spa_config(0o600, KEY, "");
    let clash =
        format!("{toml}[[door]]\nname = \"b\"\nsequence = [\"62201:udp\"]\nopen = [\"23\"]\n");
    assert_message(&rejected(&clash), &["spa.port", "a knock of door[1]"]);
    assert_message(
        &rejected_door(
            "name = \"c\"\nsequence = [1003]\nspa_allow_address = true\nopen = [\"24\"]",
        ),
        &["spa_allow_address only on a door with a spa table"],
    );
}

// ---- TOTP and one-time doors ----

/// A private file with `contents` and a door using it through `key = {}` (the path).
fn once_config(contents: &str, door: &str) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    fs::write(&file, contents).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let door = door.replace("{}", &file.display().to_string());
    let toml = format!("[[door]]\nname = \"ssh\"\n{door}\nopen = [\"22/tcp\"]\n");
    (dir, toml)
}

#[test]
fn a_totp_door_reads_its_secret_never_shows_it_and_checks_its_range() {
    let totp = "totp = { secret_file = \"{}\", ports = \"20000-29999\", length = 5, skew = 2 }";
    let (_dir, toml) = once_config(KEY, totp);
    let config = read(&toml).unwrap_or_else(|e| panic!("{e}"));
    let SequenceOrigin::Totp(t) = &config.doors[0].origin else {
        panic!("a TOTP door");
    };
    assert_eq!((t.ports, t.length, t.skew), ((20000, 29999), 5, 2));
    assert_eq!(t.step, Duration::from_secs(30));
    let summary = config.doors[0].summary();
    assert!(
        summary.starts_with("ssh: TOTP (5 tcp ports of 20000-29999 every 30s, ±2 steps"),
        "{summary}"
    );
    assert!(!format!("{config:?}{summary}").contains("AAECAwQF"));

    let (_dir, small) = once_config(KEY, &totp.replace("20000-29999", "20000-20050"));
    assert_message(
        &rejected(&small),
        &["door[0] (\"ssh\").totp.ports", "at least 100 ports"],
    );
    let (_dir, both) = once_config(KEY, &format!("{totp}\nsequence = [7000]"));
    assert_message(
        &rejected(&both),
        &["one of sequence, totp and one_time_sequences"],
    );
    let (_dir, clash) = once_config(KEY, &totp.replace("20000-29999", "1-1000"));
    assert_message(
        &rejected(&clash),
        &["door[0] (\"ssh\").totp", "22:tcp", "opens or listens on"],
    );
}

#[test]
fn a_one_time_file_is_read_like_knockd_and_a_bad_line_is_named() {
    let door = "one_time_sequences = \"{}\"";
    let (_dir, toml) = once_config("# used\n#1,2\n7000,8000:udp\n9000\n", door);
    let config = read(&toml).unwrap_or_else(|e| panic!("{e}"));
    let SequenceOrigin::OneTime(one) = &config.doors[0].origin else {
        panic!("a one-time door");
    };
    assert_eq!(
        one.lines.iter().map(|l| l.number).collect::<Vec<_>>(),
        [3, 4]
    );
    let (_dir, bad) = once_config("7000,8000\n7000,x\n", door);
    assert_message(
        &rejected(&bad),
        &[
            "door[0] (\"ssh\").one_time_sequences",
            "whose line 2 is not PORT[:tcp|udp] knocks",
        ],
    );
}

#[test]
fn totp_windows_count_against_the_knock_port_budget() {
    let totp = |name: &str, first: u32| {
        format!(
            "[[door]]\nname = \"{name}\"\ntotp = {{ secret_file = \"{{}}\", ports = \"{first}-{}\", \
             length = 16, skew = 5 }}\nopen = [\"22/tcp\"]\n",
            first + 999
        )
    };
    // 16 x 11 = 176 ports per door: eleven fit in 2048, twelve do not.
    let doors: String = (0..12u32)
        .map(|i| totp(&format!("t{i}"), 20000 + i * 1000))
        .collect();
    let (dir, _) = once_config(KEY, "");
    let twelve = doors.replace("{}", &dir.path().join("secret").display().to_string());
    assert_message(
        &rejected(&twelve),
        &[
            "door[11] (\"t11\").totp",
            "at most 2048 knock ports",
            "to 2112",
        ],
    );
    let eleven = twelve
        .split("[[door]]")
        .take(12)
        .collect::<Vec<_>>()
        .join("[[door]]");
    read(&eleven).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn from_takes_networks_and_addresses_and_names_a_typo() {
    let config = read(
        "[[door]]\nname = \"ssh\"\nsequence = [7000]\nopen = [\"22\"]\n\
         from = [\"203.0.113.0/24\", \"2001:db8::7\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let door = &config.doors[0];
    assert!(door.admits("203.0.113.99".parse().unwrap()));
    assert!(door.admits("2001:db8::7".parse().unwrap()));
    assert!(!door.admits("198.51.100.1".parse().unwrap()));
    assert!(!door.admits("2001:db8::8".parse().unwrap()));
    assert!(
        door.summary()
            .contains(", from 203.0.113.0/24 2001:db8::7/128")
    );
    assert_message(
        &rejected_door(
            "name = \"x\"\nsequence = [7000]\nopen = [\"22\"]\nfrom = [\"203.0.113.7/24\"]",
        ),
        &[
            "door[2] (\"x\").from[0]",
            "host bits set; the network is 203.0.113.0/24",
        ],
    );
    assert_message(
        &rejected_door("name = \"x\"\nsequence = [7000]\nopen = [\"22\"]\nfrom = []"),
        &[
            "door[2] (\"x\").from",
            "a non-empty array of source networks",
        ],
    );
}

#[test]
fn a_totp_door_is_a_scan_risk_unless_strict_and_a_one_time_line_in_order_is_named() {
    let totp = "totp = { secret_file = \"{}\", ports = \"20000-29999\" }";
    let (_dir, toml) = once_config(KEY, totp);
    let door = &read(&toml).unwrap().doors[0];
    assert_eq!(door.scan_risk(), Some(ScanRisk::RotatingNotStrict));
    let (_dir, strict) = once_config(KEY, &format!("{totp}\nstrict = true"));
    assert_eq!(read(&strict).unwrap().doors[0].scan_risk(), None);
    let (_dir, lines) = once_config(
        "7000,9000,8000\n7001,7002,7003\n",
        "one_time_sequences = \"{}\"",
    );
    assert_eq!(
        read(&lines).unwrap().doors[0].scan_risk(),
        Some(ScanRisk::OneTimeLine(2))
    );
}

#[test]
fn door_interfaces_take_names_and_wildcards_and_match_by_name() {
    use crate::engine::Arrival;
    let config = read(
        "[[door]]\nname = \"ssh\"\nsequence = [7000]\nopen = [\"22\"]\n\
         interfaces = [\"wan0\", \"ppp*\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let door = &config.doors[0];
    assert!(door.arrives_on(Arrival::On("wan0")));
    assert!(door.arrives_on(Arrival::On("ppp3")));
    assert!(!door.arrives_on(Arrival::On("wan1")));
    assert!(
        !door.arrives_on(Arrival::Unknown),
        "an unknown interface never matches"
    );
    assert!(door.summary().contains(", on wan0 ppp*"));
    assert_message(
        &rejected_door("name = \"x\"\nsequence = [7000]\nopen = [\"22\"]\ninterfaces = []"),
        &[
            "door[2] (\"x\").interfaces",
            "a non-empty array of interfaces",
        ],
    );
}

#[test]
fn a_one_time_file_that_is_a_symlink_is_refused() {
    let (dir, _) = once_config("7000,8000\n", "");
    let link = dir.path().join("link.seq");
    std::os::unix::fs::symlink(dir.path().join("secret"), &link).unwrap();
    let toml = format!(
        "[[door]]\nname = \"ssh\"\none_time_sequences = {:?}\nopen = [\"22/tcp\"]\n",
        link.display().to_string()
    );
    assert_message(
        &rejected(&toml),
        &[
            "door[0] (\"ssh\").one_time_sequences",
            "a symlink (name the file itself)",
        ],
    );
}

#[test]
fn a_blocklist_takes_trap_ports_no_door_uses() {
    let base = format!("{SSH_DOOR}\n[blocklist]\n");
    let config = read(&format!(
        "{base}trap_ports = [\"23/tcp\", \"3389\"]\nban_for = \"16h\"\nnever = [\"192.0.2.0/24\"]\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let blocklist = &config.blocklist;
    assert_eq!(blocklist.ban_for, Duration::from_secs(16 * 3600));
    assert!(blocklist.is_trap(KnockPort {
        port: 3389,
        proto: Proto::Tcp
    }));
    assert!(blocklist.never_bans("192.0.2.9".parse().unwrap()));
    assert_message(
        &rejected(&format!("{base}trap_ports = [\"22/tcp\"]\n")),
        &[
            "blocklist.trap_ports[0]",
            "a port no door knocks on, opens on this host",
        ],
    );
    assert_message(
        &rejected(&format!("{base}trap = [\"23/tcp\"]\n")),
        &[
            "blocklist.trap: unknown key; expected one of trap_ports, ban_for, never, ipv6_prefix, scan",
        ],
    );
    assert_message(
        &rejected(&format!(
            "{base}trap_ports = [\"23/tcp\"]\nipv6_prefix = 8\n"
        )),
        &["blocklist.ipv6_prefix", "a prefix length from 16 to 128"],
    );
}

#[test]
fn a_scan_ban_needs_all_three_keys_in_range() {
    let base = format!("{SSH_DOOR}\n[blocklist]\n");
    let config = read(&format!(
        "{base}scan = {{ distinct_ports = 8, within = \"5s\", ban_for = \"10m\" }}\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.blocklist.scan,
        Some(crate::config::ScanBan {
            distinct_ports: 8,
            within: Duration::from_secs(5),
            ban_for: Duration::from_secs(600),
        })
    );
    assert!(config.blocklist.trap_ports.is_empty());
    assert_eq!(read(SSH_DOOR).unwrap().blocklist.scan, None);
    let cases: [(&str, &[&str]); 6] = [
        (
            "distinct_ports = 8, within = \"5s\"",
            &["blocklist.scan.ban_for: missing; expected a duration"],
        ),
        (
            "within = \"5s\", ban_for = \"1m\"",
            &["blocklist.scan.distinct_ports: missing", "from 2 to 64"],
        ),
        (
            "distinct_ports = 65, within = \"5s\", ban_for = \"1m\"",
            &["blocklist.scan.distinct_ports", "from 2 to 64", "found 65"],
        ),
        (
            "distinct_ports = 8, within = \"11m\", ban_for = \"1m\"",
            &["blocklist.scan.within", "from 1s to 10m"],
        ),
        (
            "distinct_ports = 8, within = 5, ban_for = \"1m\"",
            &["blocklist.scan.within", "write \"5s\" for seconds"],
        ),
        (
            "distinct_ports = 8, within = \"5s\", ban_for = \"1m\", ports = 3",
            &["blocklist.scan.ports: unknown key; expected one of distinct_ports, within, ban_for"],
        ),
    ];
    for (scan, expected) in cases {
        assert_message(&rejected(&format!("{base}scan = {{ {scan} }}\n")), expected);
    }
}

#[test]
fn an_ipv6_ban_covers_its_network_unless_that_covers_a_never_source() {
    let config = |extra: &str| {
        let text = format!("{SSH_DOOR}\n[blocklist]\ntrap_ports = [\"23/tcp\"]\n{extra}");
        read(&text).unwrap_or_else(|e| panic!("{e}")).blocklist
    };
    let addr = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
    let default = config("");
    assert_eq!(
        default.ban_scope(addr("2001:db8:1::3")),
        net("2001:db8:1::/64")
    );
    assert_eq!(default.ban_scope(addr("192.0.2.3")), net("192.0.2.3/32"));
    let wide = config("ipv6_prefix = 48\n");
    assert_eq!(
        wide.ban_scope(addr("2001:db8:1:2::3")),
        net("2001:db8:1::/48")
    );
    let spared = config("never = [\"2001:db8:1::2/128\"]\n");
    assert_eq!(
        spared.ban_scope(addr("2001:db8:1::3")),
        net("2001:db8:1::3/128")
    );
    assert_eq!(
        spared.ban_scope(addr("2001:db8:2::3")),
        net("2001:db8:2::/64")
    );
}

// ---- [cluster] ----

const CLUSTER: &str = "[cluster]\nbackend = \"etcd\"\nnode = \"gw1\"\n";

#[test]
fn without_a_cluster_section_the_gateway_works_alone() {
    assert_eq!(read(SSH_DOOR).unwrap().cluster, None);
}

#[test]
fn a_cluster_section_reads_endpoints_prefix_and_node_with_the_default_prefix() {
    let toml = format!(
        "{SSH_DOOR}{CLUSTER}endpoints = [\"http://10.0.0.5:2379\", \"http://[fd00::6]:2379\"]\n"
    );
    let cluster = read(&toml)
        .unwrap_or_else(|e| panic!("{e}"))
        .cluster
        .unwrap();
    assert_eq!(cluster.backend, ClusterBackend::Etcd);
    assert_eq!(
        cluster.endpoints,
        ["http://10.0.0.5:2379", "http://[fd00::6]:2379"]
    );
    assert_eq!(cluster.prefix, "/knock-nfq/");
    assert_eq!(cluster.node, "gw1");
    assert_eq!(cluster.tls, None);
    assert_eq!(
        cluster.summary(),
        "cluster: etcd http://10.0.0.5:2379 http://[fd00::6]:2379 as gw1 under /knock-nfq/, no TLS"
    );
}

#[test]
fn cluster_mistakes_name_the_key_and_what_was_expected() {
    let endpoints = "endpoints = [\"http://10.0.0.5:2379\"]\n";
    for (extra, expected) in [
        (
            "endpoints = [\"10.0.0.5:2379\"]\n".to_owned(),
            "test.toml: cluster.endpoints[0]: expected an etcd client URL http://HOST:PORT or \
             https://HOST:PORT, found \"10.0.0.5:2379\"",
        ),
        (
            format!("{endpoints}prefix = \"knock\"\n"),
            "test.toml: cluster.prefix: expected a key prefix that starts and ends with '/'",
        ),
        (
            "endpoints = []\n".to_owned(),
            "test.toml: cluster.endpoints: expected a non-empty array of etcd client URLs",
        ),
        (
            format!("{endpoints}ttl = 3\n"),
            "test.toml: cluster.ttl: unknown key; expected one of backend, endpoints",
        ),
    ] {
        let message = rejected(&format!("{SSH_DOOR}{CLUSTER}{extra}"));
        assert!(message.starts_with(expected), "{message}");
    }
    let message = rejected(&format!(
        "{SSH_DOOR}[cluster]\nbackend = \"consul\"\nnode = \"a\"\n{endpoints}"
    ));
    assert_eq!(
        message,
        "test.toml: cluster.backend: expected \"etcd\", found \"consul\""
    );
    let message = rejected(&format!(
        "{SSH_DOOR}[cluster]\nbackend = \"etcd\"\n{endpoints}"
    ));
    assert!(
        message.starts_with("test.toml: cluster.node: missing; expected this gateway's name"),
        "{message}"
    );
}

/// PEM files in a directory of their own (contents are not parsed at load), the key with `mode`.
fn tls_files(key_mode: u32) -> (tempfile::TempDir, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    for name in ["ca.pem", "gw1.pem", "gw1.key"] {
        fs::write(dir.path().join(name), "-----BEGIN X-----\n").unwrap();
    }
    fs::set_permissions(
        dir.path().join("gw1.key"),
        fs::Permissions::from_mode(key_mode),
    )
    .unwrap();
    let toml = format!(
        "ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
        path("ca.pem"),
        path("gw1.pem"),
        path("gw1.key")
    );
    (dir, toml)
}

#[test]
fn a_tls_key_others_may_read_is_refused_naming_the_file_its_mode_and_the_fix() {
    let https = "endpoints = [\"https://10.0.0.5:2379\"]\n";
    let (dir, files) = tls_files(0o600);
    let cluster = read(&format!("{SSH_DOOR}{CLUSTER}{https}{files}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .cluster
        .unwrap();
    let tls = cluster.tls.as_ref().expect("TLS files");
    assert_eq!(tls.ca.as_ref().unwrap().path, dir.path().join("ca.pem"));
    assert!(
        !format!("{cluster:?}").contains("BEGIN"),
        "contents are never shown"
    );
    assert!(cluster.summary().ends_with(&format!(
        "TLS (CA {0}/ca.pem, client cert {0}/gw1.pem, key {0}/gw1.key)",
        dir.path().display()
    )));

    for mode in [0o640, 0o604] {
        let (dir, files) = tls_files(mode);
        let message = rejected(&format!("{SSH_DOOR}{CLUSTER}{https}{files}"));
        let key = dir.path().join("gw1.key").display().to_string();
        assert!(message.starts_with(&key), "{message}");
        assert_message(
            &message,
            &[&format!("mode {mode:04o}"), &format!("chmod 600 {key}")],
        );
    }

    let (_dir, files) = tls_files(0o600);
    let message = rejected(&format!(
        "{SSH_DOOR}{CLUSTER}endpoints = [\"http://10.0.0.5:2379\"]\n{files}"
    ));
    assert!(
        message.starts_with("test.toml: cluster.endpoints: expected https:// endpoints"),
        "{message}"
    );
    let cert = dir.path().join("gw1.pem");
    let message = rejected(&format!(
        "{SSH_DOOR}{CLUSTER}{https}cert_file = {:?}\n",
        cert.display().to_string()
    ));
    assert!(
        message
            .starts_with("test.toml: cluster.cert_file: expected cert_file and key_file together"),
        "{message}"
    );
}
