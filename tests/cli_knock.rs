//! `knock-nfq knock` refusing bad input, as a user sees it. Every case fails before a packet
//! is sent (the knocks themselves are tested in network namespaces, tests/netns/client.rs).

use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_knock-nfq");

fn knock(args: &[&str]) -> Output {
    Command::new(BINARY)
        .arg("knock")
        .args(args)
        .output()
        .expect("run knock-nfq")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_port_spec_names_the_argument_and_exits_1() {
    let out = knock(&["192.0.2.1", "7000", "70000:tcp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        stderr(&out),
        "knock-nfq: port argument 2 (\"70000:tcp\"): expected PORT[:tcp|udp] with PORT 1-65535\n"
    );
}

#[test]
fn a_host_without_an_address_of_the_family_asked_for_exits_1() {
    let out = knock(&["-6", "192.0.2.1", "7000"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "knock-nfq: host \"192.0.2.1\" has no IPv6 address (it resolves to 192.0.2.1)\n"
    );
}

#[test]
fn an_unknown_door_lists_the_doors_of_the_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/knock-nfq.example.toml");
    let out = knock(&["--config", example, "--door", "ssh", "192.0.2.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "knock-nfq: {example}: no door named \"ssh\"; the doors there are: openSSH, \
             closeSSH, wireguard, lan-web\n"
        )
    );
}

#[test]
fn usage_errors_come_from_clap() {
    let out = knock(&["192.0.2.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("<PORT[:PROTO]>"), "{}", stderr(&out));
}
