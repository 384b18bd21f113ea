//! `import-knockd` on real knockd.conf files: Debian's stock one, the ones from the seed
//! write-ups, knockd(1)'s examples, and a file of nft and gateway forms
//! (tests/fixtures/knockd/, each naming its source at the top).
//!
//! For each: which doors translate and to what (as `knock-nfq check` summarises them), which
//! stay comments and why, the warnings, and that the output loads as a config.

use std::path::{Path, PathBuf};

use knock_nfq::config::Config;
use knock_nfq::import::{Import, import_file};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/knockd")
        .join(name)
}

/// The warning for knockd's classic openSSH door, 7000, 8000, 9000: a port scan in order opens it.
const SCAN_OPENS_OPEN_SSH: &str = "[openSSH]: its ports are in increasing order and it is not \
    strict, so a port scan in increasing order opens it";

/// What a fixture must translate to.
struct Expected {
    file: &'static str,
    interfaces: &'static [&'static str],
    /// `Door::summary()` of each translated door, in order.
    doors: &'static [&'static str],
    /// Each door left as a comment, and a piece of its reason.
    not_translated: &'static [(&'static str, &'static str)],
    /// Pieces of the other warnings (changed meanings), in order.
    warnings: &'static [&'static str],
}

const FIXTURES: &[Expected] = &[
    Expected {
        file: "debian-stock.conf",
        interfaces: &[],
        doors: &[
            "openSSH: 7000:tcp 8000:tcp 9000:tcp within 5s, flags syn -> open 22/tcp for 1h",
            "closeSSH: 9000:tcp 8000:tcp 7000:tcp within 5s, flags syn -> close 22/tcp",
        ],
        not_translated: &[(
            "openHTTPS",
            "its command \"/usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%\" runs \
             /usr/local/sbin/knock_add, and knock-nfq runs no commands",
        )],
        warnings: &["[openSSH]: knockd's grant had no end", SCAN_OPENS_OPEN_SSH],
    },
    Expected {
        file: "zh-opencloseSSH.conf",
        interfaces: &[],
        doors: &[
            "opencloseSSH: 2222:udp 3333:tcp 4444:udp within 15s, flags syn,ack -> open 22/tcp for 10s",
        ],
        not_translated: &[],
        warnings: &[
            "[opencloseSSH]: tcpflags = syn,ack requires ACK",
            "[opencloseSSH]: its ports are in increasing order and it is not strict",
        ],
    },
    Expected {
        file: "zh-openSSH-10022.conf",
        interfaces: &[],
        doors: &[
            "openSSH: 7000:tcp 8000:tcp 9000:tcp within 30s, flags syn -> open 10022/tcp for 1h",
            "closeSSH: 9000:tcp 8000:tcp 7000:tcp within 30s, flags syn -> close 10022/tcp",
        ],
        not_translated: &[],
        warnings: &["[openSSH]: knockd's grant had no end", SCAN_OPENS_OPEN_SSH],
    },
    Expected {
        file: "archwiki-opencloseSSH.conf",
        interfaces: &[],
        doors: &[
            "opencloseSSH: 8881:tcp 7777:tcp 9991:tcp within 15s, flags syn,ack -> open 22/tcp for 10s",
        ],
        not_translated: &[],
        warnings: &[
            "[opencloseSSH]: tcpflags = syn,ack requires ACK",
            "[opencloseSSH]: chain TCP is taken to be called from INPUT",
        ],
    },
    Expected {
        file: "ru-archwiki-commented.conf",
        interfaces: &[],
        doors: &[
            "opencloseSSH: 8881:tcp 7777:tcp 9991:tcp within 15s, flags syn,ack -> open 22/tcp for 10s",
        ],
        not_translated: &[],
        warnings: &[
            "[opencloseSSH]: tcpflags = syn,ack requires ACK",
            "[opencloseSSH]: chain TCP is taken to be called from INPUT",
        ],
    },
    Expected {
        file: "ru-openSSH-closeSSH.conf",
        interfaces: &["eth1"],
        doors: &[
            "openSSH: 7000:tcp 8000:tcp 9000:tcp within 5s, flags syn -> open 22/tcp for 1h",
            "closeSSH: 9000:tcp 8000:tcp 7000:tcp within 5s, flags syn -> close 22/tcp",
        ],
        not_translated: &[],
        warnings: &["[openSSH]: knockd's grant had no end", SCAN_OPENS_OPEN_SSH],
    },
    Expected {
        file: "debian-manpage-examples.conf",
        interfaces: &[],
        doors: &[
            "opencloseSMTP: one-time sequences from SEQ (1 unused) within 15s, flags fin,!ack \
                 -> open 25/tcp for 5s",
        ],
        not_translated: &[
            (
                "openSSH",
                "names a port without a protocol (-p tcp or -p udp), which iptables refuses",
            ),
            (
                "closeSSH",
                "names a port without a protocol (-p tcp or -p udp), which iptables refuses",
            ),
            (
                "opencloseSSH",
                "admits the knocker to every port (no --dport)",
            ),
        ],
        warnings: &[
            "[opencloseSMTP]: one_time_sequences = /etc/knockd/smtp_sequences: knock-nfq \
                     comments out each used line",
        ],
    },
    Expected {
        file: "nft-and-gateway.conf",
        interfaces: &["wan0"],
        doors: &[
            "openSSH-nft: 7000:tcp 8000:tcp 9000:udp within 10s, flags syn,!ack -> open 22/tcp for 30s",
            "closeSSH-nft: 9000:udp 8000:tcp 7000:tcp within 25s -> close 22/tcp",
            "web-rule: 5001:tcp 5002:tcp 5003:tcp within 25s -> open 80/tcp, 443/tcp for 2m",
            "lan-rdp: 6001:udp 6002:udp within 25s -> open 198.51.100.10:3389/tcp, \
             [2001:db8:2::10]:3389/tcp for 10m",
            "mail: 4001:tcp 4002:tcp within 25s -> open 993/tcp, 587/tcp for 1h",
        ],
        not_translated: &[
            (
                "wake",
                "runs /usr/bin/etherwake, and knock-nfq runs no commands",
            ),
            ("list", "is a shell command line ('&')"),
            (
                "knock-on-ssh",
                "the config parser refuses its translation: sequence[0]: expected a knock port \
                 that no door opens on this host",
            ),
        ],
        warnings: &[
            "[openSSH-nft]: its ports are in increasing order and it is not strict",
            "[web-rule]: stop_command \"/usr/local/sbin/nft-delete-by-comment %IP%\" was not \
             translated",
            "[web-rule]: its ports are in increasing order and it is not strict",
            "[lan-rdp]: its ports are in increasing order and it is not strict",
            "[mail]: knockd's grant had no end",
            "[mail]: its ports are in increasing order and it is not strict",
        ],
    },
    Expected {
        file: "per-door-target.conf",
        interfaces: &["eth0"],
        doors: &[
            "openSSH-admin: 7000:tcp 9000:tcp 8000:tcp within 10s, flags syn,!ack -> open 22/tcp \
             for 1h",
            "openIMAP: 4000:tcp 4002:tcp 4001:tcp within 25s -> open 993/tcp for 1h",
        ],
        not_translated: &[
            (
                "openConsole-public",
                "it has the sequence of [openSSH-admin], and knockd told them apart by Target \
                 (192.0.2.1 there, 203.0.113.1 here); a knock-nfq door has no destination \
                 address, so these knocks would open both doors",
            ),
            (
                "openVPN-byname",
                "its Target = gw.example.org is not an IP address: knockd compares it with each \
                 knock's destination address, so this door never opened",
            ),
        ],
        warnings: &[
            "[openSSH-admin]: knockd's grant had no end",
            "[openSSH-admin]: Target = 192.0.2.1 was dropped: knockd counted only knocks sent \
             to 192.0.2.1; a knock-nfq door has no destination address",
            "[openIMAP]: knockd's grant had no end",
        ],
    },
];

/// knockd's only per-door address rule, `Target`, has no knock-nfq key: the import writes no
/// `from` or `interfaces` for it (those filter the knocker and the arrival interface), and the
/// door's comment says how to narrow it by hand.
#[test]
fn a_per_door_target_becomes_a_note_and_no_door_rule() {
    let import = import("per-door-target.conf");
    let door = import
        .toml
        .split("\n[[door]]\nname = \"openSSH-admin\"\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_else(|| panic!("no openSSH-admin door:\n{}", import.toml));
    assert_eq!(
        door,
        "sequence = [\"7000:tcp\", \"9000:tcp\", \"8000:tcp\"]\nseq_timeout = \"10s\"\n\
         tcp_flags = \"syn,!ack\"\nopen = [\"22/tcp\"]\nopen_for = \"1h\""
    );
    let above = import
        .toml
        .split("name = \"openSSH-admin\"")
        .next()
        .unwrap();
    let above = above.replace("\n# ", " ");
    assert!(
        above.contains("add interfaces = [\"THAT-INTERFACE\"] to the door"),
        "{}",
        import.toml
    );
    assert!(!import.toml.contains("\nfrom = "), "{}", import.toml);
    assert_eq!(
        import.toml.matches("\ninterfaces = ").count(),
        1,
        "[daemon] only"
    );
}

/// The one-time door loads once its file is where the config says (it is read at load).
#[test]
fn one_time_sequences_translate_into_a_one_time_door() {
    use std::os::unix::fs::PermissionsExt;
    let import = import("ru-opencloseSMTP.conf");
    assert_eq!((import.translated, import.doors), (1, 1));
    assert!(
        import.warnings[0].contains("move the file there, mode 0600"),
        "{:?}",
        import.warnings
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("smtp_sequences");
    std::fs::write(&file, "2222,3333,4444\n#used\n5555:udp,6666\n").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let toml = import.toml.replace(
        "\"/etc/knockd/smtp_sequences\"",
        &format!("{:?}", file.display().to_string()),
    );
    let config = Config::from_toml_str(&toml, Path::new("smtp.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(
        config.doors[0].summary(),
        format!(
            "opencloseSMTP: one-time sequences from {} (2 unused) within 15s, flags fin,!ack -> \
             open 25/tcp for 5s",
            file.display()
        )
    );
}

fn import(file: &str) -> Import {
    import_file(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_fixture_translates_as_expected() {
    for expected in FIXTURES {
        check(expected);
    }
}

fn check(expected: &Expected) {
    let file = expected.file;
    let import = import(file);
    assert_eq!(import.translated, expected.doors.len(), "{file}");
    assert_eq!(
        import.doors,
        expected.doors.len() + expected.not_translated.len(),
        "{file}"
    );
    check_config(expected, &import);
    check_comments(expected, &import);
    check_warnings(expected, &import);
}

/// The output as it is (comments included) is a config with exactly the translated doors.
fn check_config(expected: &Expected, import: &Import) {
    let file = expected.file;
    if expected.doors.is_empty() {
        // Nothing translated: no [[door]] outside comments, so not a loadable config.
        assert!(!import.toml.contains("\n[[door]]"), "{file}");
        return;
    }
    let (_dir, toml, seq) = with_sequence_files(&import.toml);
    let config = Config::from_toml_str(&toml, Path::new(file))
        .unwrap_or_else(|e| panic!("{file}: {e}\n{toml}"));
    let summaries: Vec<String> = config
        .doors
        .iter()
        .map(|door| door.summary().replace(&seq, "SEQ"))
        .collect();
    assert_eq!(summaries, expected.doors, "{file}");
    assert_eq!(config.daemon.interfaces, expected.interfaces, "{file}");
}

/// The config with each one-time sequence file pointed at one private file of one line (a
/// config load reads it); the file's path, which the summaries show.
fn with_sequence_files(toml: &str) -> (tempfile::TempDir, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("seq");
    std::fs::write(&file, "1111,2222\n").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let path = file.display().to_string();
    let toml = toml
        .lines()
        .map(|line| match line.strip_prefix("one_time_sequences = ") {
            Some(_) => format!("one_time_sequences = {path:?}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    (dir, toml, path)
}

/// Every untranslated door is a comment block that starts with the reason.
fn check_comments(expected: &Expected, import: &Import) {
    let file = expected.file;
    let header = format!(
        "# knock-nfq configuration generated by `knock-nfq import-knockd` from\n# {}",
        fixture(file).display()
    );
    let one_line = format!(
        "# knock-nfq configuration generated by `knock-nfq import-knockd` from {}",
        fixture(file).display()
    );
    assert!(
        import.toml.starts_with(&header) || import.toml.starts_with(&one_line),
        "{file}:\n{}",
        import.toml
    );
    assert_eq!(
        import.toml.matches("\n# NOT TRANSLATED: [").count(),
        expected.not_translated.len(),
        "{file}"
    );
    for (name, _) in expected.not_translated {
        let block = format!("\n# NOT TRANSLATED: [{name}],");
        assert!(import.toml.contains(&block), "{file}: {name}");
        assert!(
            import.toml.contains(&format!("\n# name = \"{name}\"\n")),
            "{file}: {name} has a commented draft"
        );
    }
}

/// One stderr line per untranslated door, naming it, its command and why; then the others.
fn check_warnings(expected: &Expected, import: &Import) {
    let file = expected.file;
    let (untranslated, others): (Vec<&String>, Vec<&String>) = import
        .warnings
        .iter()
        .partition(|w| w.contains(": not translated, left as a comment: "));
    assert_eq!(
        untranslated.len(),
        expected.not_translated.len(),
        "{file}: {untranslated:?}"
    );
    for (line, (name, reason)) in untranslated.iter().zip(expected.not_translated) {
        assert!(
            line.starts_with(&format!("[{name}]: not translated")),
            "{file}: {line}"
        );
        assert!(line.contains(reason), "{file}: {line}\nwanted: {reason}");
    }
    assert_eq!(others.len(), expected.warnings.len(), "{file}: {others:?}");
    for (line, piece) in others.iter().zip(expected.warnings) {
        assert!(line.starts_with(piece), "{file}: {line}\nwanted: {piece}");
    }
}

#[test]
#[ignore = "needs Debian's knockd installed; `cargo xtask test` installs it and runs this"]
fn the_debian_fixture_is_the_installed_stock_file() {
    let Ok(installed) = std::fs::read_to_string("/etc/knockd.conf") else {
        panic!("cannot run: /etc/knockd.conf is not installed here");
    };
    let fixture = std::fs::read_to_string(fixture("debian-stock.conf")).unwrap();
    let (_source, copy) = fixture.split_once('\n').unwrap();
    // Only when the installed file is still Debian's (a local edit is no reason to fail).
    if installed.contains("[openHTTPS]") {
        assert_eq!(copy, installed);
    }
}

#[test]
fn the_stock_file_keeps_its_sections_as_comments_above_each_door() {
    let import = import("debian-stock.conf");
    assert!(import.toml.contains(
        "#     [openSSH]\n#     sequence    = 7000,8000,9000\n#     seq_timeout = 5\n\
         #     command     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\
         #     tcpflags    = syn\n"
    ));
    assert!(import.toml.contains("\n[daemon]\n# knockd's UseSyslog: "));
}
