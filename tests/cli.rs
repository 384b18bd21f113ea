//! The binary's commands as a user runs them (no root needed, except where said).

use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_knock-nfq");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/knock-nfq.example.toml");

#[test]
fn check_accepts_the_example_and_prints_a_line_per_door() {
    let out = Command::new(BINARY)
        .args(["check", "--config", EXAMPLE])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("openSSH: 7000:tcp 9000:tcp 8000:tcp within"),
        "{stdout}"
    );
    assert!(stdout.contains("-> close 22/tcp"), "{stdout}");
    assert!(
        !stdout.contains("warning: door"),
        "the example is scan-proof: {stdout}"
    );
}

#[test]
fn check_warns_about_each_door_a_port_scan_in_order_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scannable.toml");
    let doors = [
        ("ssh", r#"["7000:tcp", "8000:tcp", "9000:udp"]"#, false),
        ("web", "[6000, 5000]", false),
        ("vpn", "[4001, 4002, 4003]", true),
        ("mail", "[3000, 3500, 3200]", false),
        ("ftp", "[2000, 2500]", true),
    ];
    let toml: String = doors
        .iter()
        .enumerate()
        .map(|(i, (name, sequence, strict))| {
            format!(
                "[[door]]\nname = \"{name}\"\nsequence = {sequence}\nstrict = {strict}\n\
                 open = [\"{}/tcp\"]\n",
                22 + i
            )
        })
        .collect();
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(BINARY)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning: door "))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: door \"ssh\": its ports are in increasing order and it is not strict, so \
             a port scan in increasing order opens it; knock in a mixed order (e.g. 7000, 9000, \
             8000) and set strict = true",
            "warning: door \"web\": its ports are in decreasing order and it is not strict, so \
             a port scan in decreasing order opens it; knock in a mixed order (e.g. 7000, 9000, \
             8000) and set strict = true",
            "warning: door \"vpn\": each knock is the port next to the one before, so a port \
             scan in increasing order opens it even though it is strict; leave gaps between the \
             ports",
        ],
        "{stdout}"
    );
}

#[test]
fn check_rejects_a_bad_config_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[door]]\nname = \"ssh\"\nsequence = [\"7000\", \"70000:tcp\"]\nopen = [\"22/tcp\"]\n",
    )
    .unwrap();
    let out = Command::new(BINARY)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: door[0] (\"ssh\").sequence[1]",
            path.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("found \"70000:tcp\""), "{stderr}");
}

#[test]
fn a_missing_config_file_is_named() {
    let out = Command::new(BINARY)
        .args(["check", "--config", "/nonexistent/knock.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/knock.toml: cannot read: No such file or directory"),
        "{stderr}"
    );
}

/// Runs the binary as an unprivileged user: as root (CI) through util-linux's setpriv as
/// nobody; as a user, directly.
fn unprivileged(args: &[&str]) -> std::io::Result<Output> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let drop_to_nobody = ["--reuid=65534", "--regid=65534", "--clear-groups", BINARY];
        Command::new("setpriv")
            .args(drop_to_nobody)
            .args(args)
            .output()
    } else {
        Command::new(BINARY).args(args).output()
    }
}

#[test]
fn the_demo_refuses_to_run_without_root() {
    let Ok(out) = unprivileged(&["demo"]) else {
        panic!("cannot run: setpriv is not installed");
    };
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the demo needs root"));
}

#[test]
fn check_without_cap_net_admin_says_so_and_checks_the_config_alone() {
    let Ok(out) = unprivileged(&["check", "--config", EXAMPLE]) else {
        panic!("cannot run: setpriv is not installed");
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("not checked: querying nftables needs CAP_NET_ADMIN"),
        "{stdout}"
    );
}

#[test]
fn check_with_ruleset_fails_where_it_cannot_verify_the_running_ruleset() {
    let Ok(out) = unprivileged(&["check", "--config", EXAMPLE, "--ruleset"]) else {
        panic!("cannot run: setpriv is not installed");
    };
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the running ruleset was not verified (--ruleset): querying nftables needs CAP_NET_ADMIN"),
        "{stderr}"
    );
}
