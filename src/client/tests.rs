//! The client's arguments and the messages for bad ones; nothing here touches the network
//! (only literal addresses are resolved).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use clap::Parser;

use super::send::resolve;
use super::*;
use crate::cli::{Cli, Command};

fn plan_of(args: &[&str]) -> Result<KnockPlan, ClientError> {
    let argv = ["knock-nfq", "knock"].iter().chain(args);
    match Cli::try_parse_from(argv).expect("clap accepts it").command {
        Command::Knock(args) => KnockPlan::from_request(&args.request()),
        other => panic!("parsed as {other:?}"),
    }
}

fn clap_error(args: &[&str]) -> String {
    let argv = ["knock-nfq", "knock"].iter().chain(args);
    Cli::try_parse_from(argv)
        .expect_err("clap refuses it")
        .to_string()
}

fn knocks(list: &[(u16, Proto)]) -> Vec<KnockPort> {
    list.iter()
        .map(|&(port, proto)| KnockPort { port, proto })
        .collect()
}

const TCP: Proto = Proto::Tcp;
const UDP: Proto = Proto::Udp;

#[test]
fn ports_are_tcp_unless_they_say_udp() {
    let plan = plan_of(&["server.example", "7000", "8000:udp", "9000:tcp"]).unwrap();
    assert_eq!(plan.host, "server.example");
    assert_eq!(
        plan.knocks,
        knocks(&[(7000, TCP), (8000, UDP), (9000, TCP)])
    );
    assert_eq!(plan.family, AddressFamily::Any);
    assert_eq!(plan.delay, Duration::ZERO);
    assert_eq!(plan.verbosity, Verbosity::Quiet);
}

#[test]
fn dash_u_makes_bare_ports_udp_and_a_per_port_protocol_wins() {
    let plan = plan_of(&["-u", "host", "7000", "8000:tcp", "9000"]).unwrap();
    assert_eq!(
        plan.knocks,
        knocks(&[(7000, UDP), (8000, TCP), (9000, UDP)])
    );
}

#[test]
fn protocol_names_are_case_insensitive_as_in_knockd_conf() {
    let plan = plan_of(&["host", "7000:UDP", "8000:Tcp"]).unwrap();
    assert_eq!(plan.knocks, knocks(&[(7000, UDP), (8000, TCP)]));
}

#[test]
fn delay_family_and_verbosity() {
    let plan = plan_of(&["-d", "500", "-6", "-v", "host", "1"]).unwrap();
    assert_eq!(plan.delay, Duration::from_millis(500));
    assert_eq!(plan.family, AddressFamily::V6);
    assert_eq!(plan.verbosity, Verbosity::EachKnock);
    assert_eq!(
        plan_of(&["-4", "host", "1"]).unwrap().family,
        AddressFamily::V4
    );
}

#[test]
fn options_after_the_ports_work_as_with_knockd_s_client() {
    // knockd write-ups use `knock -v SERVER 7000 8000 9000 -d 500`.
    let plan = plan_of(&["-v", "host", "7000", "8000", "-d", "500"]).unwrap();
    assert_eq!(plan.knocks, knocks(&[(7000, TCP), (8000, TCP)]));
    assert_eq!(plan.delay, Duration::from_millis(500));
}

#[test]
fn bad_port_specs_name_the_argument_and_what_was_expected() {
    let cases = [
        (
            vec!["host", "7000", "70000"],
            r#"port argument 2 ("70000"): expected PORT[:tcp|udp] with PORT 1-65535"#,
        ),
        (
            vec!["host", "0"],
            r#"port argument 1 ("0"): expected PORT[:tcp|udp] with PORT 1-65535"#,
        ),
        (
            vec!["host", "ssh"],
            r#"port argument 1 ("ssh"): expected PORT[:tcp|udp] with PORT 1-65535"#,
        ),
        (
            vec!["host", "1", "2", "7000:icmp"],
            r#"port argument 3 ("7000:icmp"): expected PORT[:tcp|udp] with PORT 1-65535"#,
        ),
        (
            vec!["host", "7000:"],
            r#"port argument 1 ("7000:"): expected PORT[:tcp|udp] with PORT 1-65535"#,
        ),
        (
            vec!["host", ":udp"],
            r#"port argument 1 (":udp"): expected PORT[:tcp|udp] with PORT 1-65535"#,
        ),
        (
            vec!["host", "+22"],
            r#"port argument 1 ("+22"): expected PORT[:tcp|udp] with PORT 1-65535"#,
        ),
    ];
    for (args, message) in cases {
        let err = plan_of(&args).expect_err("a bad spec");
        assert!(matches!(err, ClientError::BadPort { .. }), "{err:?}");
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn clap_refuses_contradictory_or_missing_arguments() {
    assert!(clap_error(&["host"]).contains("PORT[:PROTO]"));
    assert!(clap_error(&["-4", "-6", "host", "1"]).contains("cannot be used with"));
    assert!(clap_error(&["--door", "ssh", "host"]).contains("--config"));
    assert!(
        clap_error(&["--config", "x.toml", "--door", "ssh", "host", "7000"])
            .contains("cannot be used with")
    );
    assert!(
        clap_error(&["-u", "--config", "x.toml", "--door", "ssh", "host"])
            .contains("cannot be used with")
    );
    assert!(clap_error(&["-d", "soon", "host", "1"]).contains("--delay <MS>"));
}

const CONFIG: &str = r#"
[[door]]
name = "ssh"
sequence = ["7000:tcp", "8000:tcp", "9000:udp"]
open = ["22/tcp"]

[[door]]
name = "ssh-close"
sequence = [9100, 9200]
open = ["22/tcp"]
action = "close"
"#;

#[test]
fn a_door_of_the_config_gives_its_sequence() {
    let config = Config::from_toml_str(CONFIG, Path::new("knock-nfq.toml")).unwrap();
    assert_eq!(
        door_sequence(&config, "ssh").unwrap(),
        knocks(&[(7000, TCP), (8000, TCP), (9000, UDP)])
    );
    assert_eq!(
        door_sequence(&config, "ssh-close").unwrap(),
        knocks(&[(9100, TCP), (9200, TCP)])
    );
}

#[test]
fn an_unknown_door_lists_the_doors_there_are() {
    let config = Config::from_toml_str(CONFIG, Path::new("knock-nfq.toml")).unwrap();
    let err = door_sequence(&config, "web").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"knock-nfq.toml: no door named "web"; the doors there are: ssh, ssh-close"#
    );
}

#[test]
fn the_door_form_reads_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("knock-nfq.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let path = path.to_str().unwrap();
    let plan = plan_of(&["--config", path, "--door", "ssh-close", "-d", "20", "host"]).unwrap();
    assert_eq!(plan.knocks, knocks(&[(9100, TCP), (9200, TCP)]));
    assert_eq!(plan.delay, Duration::from_millis(20));

    let missing = plan_error(&["--config", "/nonexistent/k.toml", "--door", "ssh", "host"]);
    assert_eq!(
        missing,
        "/nonexistent/k.toml: cannot read: No such file or directory"
    );
}

fn plan_error(args: &[&str]) -> String {
    plan_of(args).expect_err("refused").to_string()
}

#[test]
fn literal_addresses_resolve_to_themselves_in_their_family_only() {
    let v4: IpAddr = "192.0.2.1".parse().unwrap();
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(resolve("192.0.2.1", AddressFamily::Any).unwrap(), v4);
    assert_eq!(resolve("192.0.2.1", AddressFamily::V4).unwrap(), v4);
    assert_eq!(resolve("2001:db8::1", AddressFamily::V6).unwrap(), v6);
    assert_eq!(resolve("[2001:db8::1]", AddressFamily::Any).unwrap(), v6);
    assert_eq!(
        resolve("192.0.2.1", AddressFamily::V6)
            .unwrap_err()
            .to_string(),
        r#"host "192.0.2.1" has no IPv6 address (it resolves to 192.0.2.1)"#
    );
    assert_eq!(
        resolve("2001:db8::1", AddressFamily::V4)
            .unwrap_err()
            .to_string(),
        r#"host "2001:db8::1" has no IPv4 address (it resolves to 2001:db8::1)"#
    );
}
