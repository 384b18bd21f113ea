//! knockd.conf parsing (knockd's own rules, and its refusals as errors with the line) and the
//! translation of single doors. The real-world files are in tests/import_knockd.rs.

use std::path::Path;
use std::time::Duration;

use super::knockd::{KnockdDoor, Logging, TotpKey, parse};
use super::translate::{Interfaces, Note, Outcome, Severity, translate};
use super::*;
use crate::config::{Action, Config, KnockPort, Proto, Target};

const PATH: &str = "/etc/knockd.conf";

fn conf(text: &str) -> KnockdConf {
    parse(text, Path::new(PATH)).unwrap_or_else(|e| panic!("{e}"))
}

fn syntax_error(text: &str) -> String {
    parse(text, Path::new(PATH)).unwrap_err().to_string()
}

fn tcp(port: u16) -> KnockPort {
    KnockPort {
        port,
        proto: Proto::Tcp,
    }
}

fn udp(port: u16) -> KnockPort {
    KnockPort {
        port,
        proto: Proto::Udp,
    }
}

/// The only door of a one-door file, translated.
fn one_door(body: &str) -> translate::DoorPart {
    let mut t = translate(conf(&format!("[door]\n{body}")));
    assert_eq!(t.doors.len(), 1);
    t.doors.remove(0)
}

fn warnings_of(part: &translate::DoorPart) -> Vec<&str> {
    part.notes
        .iter()
        .filter(|n| n.severity == Severity::Warning)
        .map(|n| n.text.as_str())
        .collect()
}

#[test]
fn keys_are_case_insensitive_and_usesyslog_is_a_flag() {
    let conf = conf(
        "# comment\n[options]\n  UseSyslog\n  LOGFILE = /var/log/knockd.log\n  interface=eth1\n\
         [openSSH]\n  SEQUENCE = 7000, 8000:UDP ,9000:tcp\n  Seq_Timeout = 5\n  TCPFlags = syn\n\
         \tCommand = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n",
    );
    assert_eq!(conf.options.interface.as_deref(), Some("eth1"));
    assert_eq!(
        conf.options.logging,
        [
            Logging::UseSyslog,
            Logging::LogFile("/var/log/knockd.log".into())
        ]
    );
    let door = &conf.doors[0];
    assert_eq!(door.name, "openSSH");
    assert_eq!(door.line, 6);
    assert_eq!(door.sequence, Some(vec![tcp(7000), udp(8000), tcp(9000)]));
    assert_eq!(door.seq_timeout, Some(5));
    assert_eq!(door.tcp_flags.as_deref(), Some("syn"));
    assert_eq!(
        door.start_command.as_deref(),
        Some("/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT")
    );
    assert_eq!(door.source.len(), 4);
    assert_eq!(door.source[0].number, 7);
}

#[test]
fn every_knockd_door_key_is_read() {
    let conf = conf(
        "[d]\none_time_sequences = /etc/knockd/seq\ntimeout = 9\nstart_command = a\n\
         command_6 = b\nstop_command = c\nstop_command_6 = d\ncmd_timeout = 7\n\
         target = 192.0.2.9\nkey = JBSWY3DPEHPK3PXP\n",
    );
    let door = &conf.doors[0];
    assert_eq!(
        door,
        &KnockdDoor {
            name: "d".into(),
            line: 1,
            sequence: None,
            one_time_sequences: Some("/etc/knockd/seq".into()),
            seq_timeout: Some(9),
            tcp_flags: None,
            start_command: Some("a".into()),
            start_command6: Some("b".into()),
            stop_command: Some("c".into()),
            stop_command6: Some("d".into()),
            cmd_timeout: Some(7),
            target: Some("192.0.2.9".into()),
            totp: Some(TotpKey),
            source: door.source.clone(),
        }
    );
    // The TOTP secret is not copied into the output's comments.
    assert_eq!(
        door.source.last().unwrap().text,
        "key = (secret, not copied)"
    );
}

#[test]
fn what_knockd_refuses_is_an_error_with_the_line() {
    let cases = [
        (
            "sequence = 1\n",
            "/etc/knockd.conf:1: not a valid knockd.conf: a directive before any [section]",
        ),
        (
            "[options]\n\n[ ]\n",
            "/etc/knockd.conf:3: not a valid knockd.conf: an empty section name \"[]\"",
        ),
        (
            "[options]\nInterfaces = eth0\n",
            "/etc/knockd.conf:2: not a valid knockd.conf: unknown [options] key \"INTERFACES\"; \
             knockd knows UseSyslog, LogFile, PidFile, Interface",
        ),
        (
            "[ssh]\nsequence = 7000\nports = 22\n",
            "/etc/knockd.conf:3: not a valid knockd.conf: unknown key \"PORTS\" in [ssh]; knockd \
             knows Sequence, One_Time_Sequences, Seq_Timeout, TCPFlags, Command, \
             Start_Command, Start_Command_6, Stop_Command, Stop_Command_6, Cmd_Timeout, \
             Target, Key",
        ),
        (
            "[ssh]\nsequence = 7000\nInterface = wan0\n",
            "/etc/knockd.conf:3: not a valid knockd.conf: Interface in [ssh]: knockd takes \
             Interface only in [options] (one interface for every door) and refuses it here; \
             move it to [options], or after the import give the knock-nfq door interfaces = \
             [\"wan0\"]",
        ),
        (
            "[ssh]\nsequence = 7000,70000\n",
            "/etc/knockd.conf:2: not a valid knockd.conf: sequence: \"70000\" is not \
             PORT[:tcp|udp] with PORT 1-65535",
        ),
        (
            "[ssh]\nsequence = 7000:icmp\n",
            "/etc/knockd.conf:2: not a valid knockd.conf: sequence: \"7000:icmp\" is not \
             PORT[:tcp|udp] with PORT 1-65535",
        ),
        (
            "[ssh]\nsequence = 7000,,8000\n",
            "/etc/knockd.conf:2: not a valid knockd.conf: sequence: \"\" is not PORT[:tcp|udp] \
             with PORT 1-65535",
        ),
        (
            "[ssh]\nseq_timeout = 5s\n",
            "/etc/knockd.conf:2: not a valid knockd.conf: expected a number of seconds, found \
             \"5s\"",
        ),
        (
            "[ssh]\nsequence 7000\n",
            "/etc/knockd.conf:2: not a valid knockd.conf: expected KEY = VALUE (or UseSyslog), \
             found \"sequence 7000\"",
        ),
    ];
    for (text, message) in cases {
        assert_eq!(syntax_error(text), message, "{text}");
    }
}

#[test]
fn the_start_stop_pattern_is_an_open_door_with_cmd_timeout_as_its_lifetime() {
    let part = one_door(
        "sequence = 2222:udp,4444:udp,3333:tcp\nseq_timeout = 15\ntcpflags = syn\n\
         start_command = /sbin/iptables -A INPUT -s %IP% -p tcp --dport ssh -j ACCEPT\n\
         cmd_timeout = 10\nstop_command = /sbin/iptables -D INPUT -s %IP% -p tcp --dport ssh -j ACCEPT\n",
    );
    assert_eq!(part.outcome, Outcome::Translated);
    assert_eq!(
        part.draft.sequence,
        Some(vec![udp(2222), udp(4444), tcp(3333)])
    );
    assert_eq!(part.draft.seq_timeout, Duration::from_secs(15));
    assert_eq!(part.draft.tcp_flags.as_deref(), Some("syn"));
    assert_eq!(
        part.draft.targets,
        [Target::Local {
            port: 22,
            proto: Proto::Tcp
        }]
    );
    assert_eq!(part.draft.open_for, Some(Duration::from_secs(10)));
    assert_eq!(part.draft.action, Action::Open);
    assert!(warnings_of(&part).is_empty(), "{:?}", part.notes);
}

#[test]
fn lifetimes_follow_knockd() {
    let open_for = |body: &str| one_door(&format!("sequence = 1\n{body}")).draft.open_for;
    let add = "/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT";
    let del = "/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT";
    // knockd's default cmd_timeout is 10 s.
    assert_eq!(
        open_for(&format!("command = {add}\nstop_command = {del}\n")),
        Some(Duration::from_secs(10))
    );
    // No stop command: knockd's rule stayed; ours gets the stand-in lifetime.
    assert_eq!(
        open_for(&format!("command = {add}\ncmd_timeout = 5\n")),
        Some(translate::UNTIMED_OPEN_FOR)
    );
    // The kernel's timeout of an nft element.
    assert_eq!(
        open_for("command = nft add element inet t s { %IP% . tcp . 22 timeout 45s }\n"),
        Some(Duration::from_secs(45))
    );
    // At most 24 h.
    assert_eq!(
        open_for(&format!(
            "command = {add}\ncmd_timeout = 200000\nstop_command = {del}\n"
        )),
        Some(Duration::from_secs(24 * 3600))
    );
}

#[test]
fn a_delete_command_is_a_close_door() {
    let part = one_door(
        "sequence = 9000,8000,7000\ncommand = /sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n",
    );
    assert_eq!(part.outcome, Outcome::Translated);
    assert_eq!(part.draft.action, Action::Close);
    assert_eq!(part.draft.open_for, None);
}

#[test]
fn ipv6_commands_must_open_the_same_targets_or_their_forwarded_twins() {
    let same = one_door(
        "sequence = 1\nstart_command = iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\n\
         start_command_6 = ip6tables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\n",
    );
    assert_eq!(same.outcome, Outcome::Translated);
    assert_eq!(same.draft.targets.len(), 1);

    let twins = one_door(
        "sequence = 1\nstart_command = iptables -A FORWARD -s %IP% -d 198.51.100.10 -p tcp --dport 80 -j ACCEPT\n\
         start_command_6 = ip6tables -A FORWARD -s %IP% -d 2001:db8:2::10 -p tcp --dport 80 -j ACCEPT\n",
    );
    assert_eq!(twins.outcome, Outcome::Translated);
    assert_eq!(twins.draft.targets.len(), 2);

    let different = one_door(
        "sequence = 1\nstart_command = iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\n\
         start_command_6 = ip6tables -A INPUT -s %IP% -p tcp --dport 587 -j ACCEPT\n",
    );
    assert_eq!(
        different.outcome,
        Outcome::NotTranslated(
            "its start_command_6 opens [\"587/tcp\"] while its command opens [\"25/tcp\"], and a \
             knock-nfq door opens the same targets for both families; split it into two doors \
             by hand"
                .into()
        )
    );

    let nothing_for_v6 = one_door(
        "sequence = 1\nstart_command = iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\n\
         start_command_6 =\n",
    );
    assert_eq!(nothing_for_v6.outcome, Outcome::Translated);
    assert_eq!(
        warnings_of(&nothing_for_v6)[0],
        "start_command_6 is empty, so knockd did nothing for IPv6 knockers; knock-nfq opens the \
         same targets for IPv4 and IPv6 knockers"
    );
}

#[test]
fn one_time_sequences_become_a_one_time_door_with_a_note_to_move_the_file() {
    let grant = "command = nft add element inet t s { %IP% . tcp . 22 timeout 30s }\n";
    let part = one_door(&format!(
        "sequence = 1,2\none_time_sequences = /etc/knockd/ssh.seq\n{grant}"
    ));
    assert_eq!(part.outcome, Outcome::Translated);
    assert_eq!(part.draft.sequence, None);
    assert_eq!(
        part.draft.one_time_sequences.as_deref(),
        Some("/etc/knockd/ssh.seq")
    );
    let toml = crate::import::render::door_toml(&part.draft);
    assert!(
        toml.contains("one_time_sequences = \"/etc/knockd/ssh.seq\"\n"),
        "{toml}"
    );
    assert!(!toml.contains("sequence = ["), "{toml}");
    let warnings = warnings_of(&part);
    assert!(
        warnings.contains(&"Sequence was dropped: knockd takes the one-time sequences instead"),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("move the file there, mode 0600")),
        "{warnings:?}"
    );
}

#[test]
fn doors_without_a_usable_sequence_or_command_stay_comments() {
    let reason = |body: &str| match one_door(body).outcome {
        Outcome::NotTranslated(reason) => reason,
        Outcome::Translated => panic!("translated: {body}"),
    };
    assert_eq!(
        reason("one_time_sequences = smtp.seq\ncommand = true\n"),
        "one_time_sequences = smtp.seq is not an absolute path (knockd resolves it from its \
         working directory); write the full path"
    );
    assert_eq!(
        reason("key = SECRET\n"),
        "its sequence comes from a TOTP Key, whose derivation differs from knock-nfq's totp \
         (docs/replay.md)"
    );
    assert_eq!(
        reason("seq_timeout = 5\n"),
        "it has no sequence (knockd refuses such a door too)"
    );
    assert_eq!(
        reason("sequence = 1\n"),
        "it has no command, so knockd only logged the knock"
    );
}

#[test]
fn flags_on_an_all_udp_door_are_dropped_and_ack_flags_are_flagged() {
    let all_udp = one_door(
        "sequence = 1:udp,2:udp\ntcpflags = syn\ncommand = iptables -A INPUT -s %IP% -p udp --dport 53 -j ACCEPT\n",
    );
    assert_eq!(all_udp.outcome, Outcome::Translated);
    assert_eq!(all_udp.draft.tcp_flags, None);
    assert_eq!(
        all_udp.notes[0],
        Note {
            severity: Severity::Info,
            text: "tcpflags = syn was dropped: every knock of this door is UDP, which has no flags"
                .into()
        }
    );

    let ack = one_door(
        "sequence = 1,2:udp\ntcpflags = SYN,ACK\ncommand = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n",
    );
    assert_eq!(ack.draft.tcp_flags.as_deref(), Some("syn,ack"));
    assert!(warnings_of(&ack)[0].starts_with("tcpflags = syn,ack requires ACK"));
}

#[test]
fn names_are_made_valid_and_unique() {
    let t = translate(conf(
        "[open SSH]\nsequence = 1\ncommand = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\
         [open-SSH]\nsequence = 2\ncommand = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n",
    ));
    let names: Vec<&str> = t.doors.iter().map(|d| d.draft.name.as_str()).collect();
    assert_eq!(names, ["open-SSH", "open-SSH-2"]);
    assert!(t.doors.iter().all(|d| d.outcome == Outcome::Translated));
}

#[test]
fn a_door_the_config_parser_refuses_becomes_a_comment_with_its_reason() {
    let t = translate(conf(
        "[ssh]\nsequence = 7000\ncommand = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\
         [bad]\nsequence = 22,23\ncommand = iptables -A INPUT -s %IP% -p tcp --dport 8022 -j ACCEPT\n",
    ));
    assert_eq!(t.doors[0].outcome, Outcome::Translated);
    assert_eq!(
        t.doors[1].outcome,
        Outcome::NotTranslated(
            "the config parser refuses its translation: sequence[0]: expected a knock port that \
             no door opens on this host (the kernel drops packets to those ports before the \
             daemon sees them, so this knock could never arrive), found \"22:tcp\", which \
             door[0] (\"ssh\") opens on this host"
                .into()
        )
    );
}

#[test]
fn an_interface_the_config_refuses_becomes_the_default_with_a_warning() {
    let import = import_str(
        "[options]\nInterface = eth0  # wan\n[ssh]\nsequence = 7000\n\
         command = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n",
        Path::new(PATH),
    )
    .unwrap();
    assert!(
        import.toml.contains("\ninterfaces = []\n"),
        "{}",
        import.toml
    );
    assert!(
        import.warnings[0].starts_with("[options]: Interface = eth0  # wan not translated ("),
        "{:?}",
        import.warnings
    );
    let t = translate(conf("[options]\nInterface = ppp0\n"));
    assert_eq!(t.interfaces, Interfaces::Named("ppp0".into()));
}

#[test]
fn the_output_is_a_valid_config_whose_doors_are_the_translated_ones() {
    let import = import_str(
        "[options]\nInterface = wan0\nUseSyslog\n\
         [open]\nsequence = 7000,8000,9000:udp\ntcpflags = syn,!ack\n\
         command = nft add element inet knock_nfq allow4 { %IP% . tcp . 22 timeout 30s }\n\
         [close]\nsequence = 9000:udp,8000,7000\n\
         command = nft delete element inet knock_nfq allow4 { %IP% . tcp . 22 }\n\
         [helper]\nsequence = 1,2,3\ncommand = /usr/local/bin/open-door %IP%\n",
        Path::new(PATH),
    )
    .unwrap();
    assert_eq!((import.translated, import.doors), (2, 3));
    let config = Config::from_toml_str(&import.toml, Path::new("out.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{}", import.toml));
    assert_eq!(config.daemon.interfaces, ["wan0"]);
    let summaries: Vec<String> = config
        .doors
        .iter()
        .map(crate::config::Door::summary)
        .collect();
    assert_eq!(
        summaries,
        [
            "open: 7000:tcp 8000:tcp 9000:udp within 25s, flags syn,!ack -> open 22/tcp for 30s",
            "close: 9000:udp 8000:tcp 7000:tcp within 25s -> close 22/tcp",
        ]
    );
    assert!(import.toml.starts_with(
        "# knock-nfq configuration generated by `knock-nfq import-knockd` from /etc/knockd.conf.\n"
    ));
    assert!(
        import
            .toml
            .contains("\n# NOT TRANSLATED: [helper], /etc/knockd.conf line 11: its command"),
        "{}",
        import.toml
    );
    assert!(import.toml.contains("\n# name = \"helper\"\n"));
    assert_eq!(
        import.warnings,
        [
            format!("[open]: {SCAN_OPENS_IT}"),
            "[helper]: not translated, left as a comment: its command \"/usr/local/bin/open-door \
             %IP%\" runs /usr/local/bin/open-door, and knock-nfq runs no commands: it only opens \
             ports it is told about with open = [...]"
                .to_owned(),
        ]
    );
}

const SCAN_OPENS_IT: &str = "its ports are in increasing order and it is not strict, so a port \
    scan in increasing order opens it; knock in a mixed order (e.g. 7000, 9000, 8000) and set \
    strict = true (knockd's door opened to the same scan; a new order means a new knock command \
    for your users)";

#[test]
fn an_open_door_a_port_scan_in_order_opens_is_warned_about() {
    let grant = "command = nft add element inet t s { %IP% . tcp . 22 timeout 30s }\n";
    let increasing = one_door(&format!("sequence = 7000,8000:udp,9000\n{grant}"));
    assert_eq!(warnings_of(&increasing), [SCAN_OPENS_IT]);
    let decreasing = one_door(&format!("sequence = 9000,8000\n{grant}"));
    assert_eq!(
        warnings_of(&decreasing),
        [SCAN_OPENS_IT.replace("increasing", "decreasing")]
    );
    let single = one_door(&format!("sequence = 7000\n{grant}"));
    assert_eq!(warnings_of(&single).len(), 1);
    assert!(warnings_of(&single)[0].starts_with("it has a single knock"));
    for quiet in [
        format!("sequence = 7000,9000,8000\n{grant}"),
        "sequence = 7000,8000,9000\n\
         command = nft delete element inet t s { %IP% . tcp . 22 }\n"
            .to_owned(),
    ] {
        let part = one_door(&quiet);
        assert_eq!(part.outcome, Outcome::Translated);
        assert!(warnings_of(&part).is_empty(), "{quiet}: {:?}", part.notes);
    }
}

#[test]
fn the_output_advises_strict_and_marks_the_door_a_scan_opens() {
    let import = import_str(
        "[open]\nsequence = 7000,8000\n\
         command = nft add element inet t s { %IP% . tcp . 22 timeout 30s }\n",
        Path::new(PATH),
    )
    .unwrap();
    assert!(
        import
            .toml
            .contains("\n#   - strict = true on each door (knockd had no such option): "),
        "{}",
        import.toml
    );
    let (above, door) = import.toml.split_once("\n[[door]]\n").unwrap();
    assert!(
        above.contains("\n# note: its ports are in increasing order and it is not strict, so a"),
        "{}",
        import.toml
    );
    assert!(!door.contains("strict"), "knockd had no strict: {door}");
}

const OPEN_22: &str = "command = iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n";
const OPEN_80: &str = "command = iptables -A INPUT -s %IP% -p tcp --dport 80 -j ACCEPT\n";

#[test]
fn a_target_address_is_kept_as_a_warning_and_a_name_leaves_the_door_a_comment() {
    let part = one_door(&format!(
        "sequence = 7000,9000\ntarget = 2001:db8::1\n{OPEN_22}"
    ));
    assert_eq!(part.outcome, Outcome::Translated);
    let target: Vec<&str> = (warnings_of(&part).into_iter())
        .filter(|w| w.starts_with("Target = 2001:db8::1 was dropped"))
        .collect();
    assert_eq!(target.len(), 1, "{:?}", part.notes);
    assert!(target[0].contains("add interfaces = [\"THAT-INTERFACE\"] to the door"));
    let part = one_door(&format!(
        "sequence = 7000,9000\ntarget = gw.example.org\n{OPEN_22}"
    ));
    assert_eq!(
        part.outcome,
        Outcome::NotTranslated(
            "its Target = gw.example.org is not an IP address: knockd compares it with each \
             knock's destination address, so this door never opened"
                .into()
        )
    );
}

#[test]
fn doors_knockd_told_apart_only_by_target_are_not_merged() {
    // One door without Target, one with: knockd opened one per destination, knock-nfq both.
    let t = translate(conf(&format!(
        "[lan]\nsequence = 7000,9000\n{OPEN_22}\
         [wan]\nsequence = 7000,9000\ntarget = 203.0.113.1\n{OPEN_80}"
    )));
    assert_eq!(t.doors[0].outcome, Outcome::Translated);
    let Outcome::NotTranslated(reason) = &t.doors[1].outcome else {
        panic!("[wan] translated: {:?}", t.doors[1].draft);
    };
    assert!(
        reason.starts_with(
            "it has the sequence of [lan], and knockd told them apart by Target (any address \
             there, 203.0.113.1 here)"
        ),
        "{reason}"
    );
    // The same Target, or none on both: knockd opened both doors on these knocks too.
    for target in ["", "target = 203.0.113.1\n"] {
        let t = translate(conf(&format!(
            "[a]\nsequence = 7000,9000\n{target}{OPEN_22}\
             [b]\nsequence = 7000,9000\n{target}{OPEN_80}"
        )));
        assert!(
            t.doors.iter().all(|d| d.outcome == Outcome::Translated),
            "{target:?}: {:?}",
            t.doors.iter().map(|d| &d.outcome).collect::<Vec<_>>()
        );
    }
}
