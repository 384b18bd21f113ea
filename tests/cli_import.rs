//! `knock-nfq import-knockd` as a user runs it: the TOML on stdout, warnings on stderr, and the
//! exit status.

use std::path::Path;
use std::process::{Command, Output};

use knock_nfq::config::Config;

const BINARY: &str = env!("CARGO_BIN_EXE_knock-nfq");

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/knockd/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn import(path: &str) -> Output {
    Command::new(BINARY)
        .args(["import-knockd", path])
        .output()
        .expect("run knock-nfq")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

#[test]
fn debian_s_stock_file_gives_a_valid_config_and_warns_about_the_door_it_cannot_translate() {
    let out = import(&fixture("debian-stock.conf"));
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let config = Config::from_toml_str(&stdout, Path::new("stdout"))
        .unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    let names: Vec<&str> = config.doors.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["openSSH", "closeSSH"]);
    assert!(
        stdout.contains("\n# NOT TRANSLATED: [openHTTPS],"),
        "{stdout}"
    );
    assert_eq!(
        text(&out.stderr).lines().collect::<Vec<_>>(),
        [
            "knock-nfq: warning: [openSSH]: knockd's grant had no end (it stayed until a close \
             door or a reboot removed it); knock-nfq grants always expire, so open_for = \"1h\" \
             is a choice to review (at most 24h)",
            "knock-nfq: warning: [openSSH]: its ports are in increasing order and it is not \
             strict, so a port scan in increasing order opens it; knock in a mixed order (e.g. \
             7000, 9000, 8000) and set strict = true (knockd's door opened to the same scan; a \
             new order means a new knock command for your users)",
            "knock-nfq: warning: [openHTTPS]: not translated, left as a comment: its command \
             \"/usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%\" runs \
             /usr/local/sbin/knock_add, and knock-nfq runs no commands: it only opens ports it \
             is told about with open = [...]",
        ]
    );
}

#[test]
fn a_file_with_no_translatable_door_prints_the_comments_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("knockd.conf").display().to_string();
    std::fs::write(
        &path,
        "[opencloseSMTP]\nkey = SECRET\nseq_timeout = 15\n\
         start_command = /usr/sbin/iptables -A INPUT -s %IP% -p tcp --dport 25 -j ACCEPT\n",
    )
    .expect("write");
    let out = import(&path);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("\n# NOT TRANSLATED: [opencloseSMTP],"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n# name = \"opencloseSMTP\"\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("\n[[door]]"), "{stdout}");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with(
        "knock-nfq: warning: [opencloseSMTP]: not translated, left as a comment: its sequence \
         comes from a TOTP Key"
    ));
    assert_eq!(
        lines[1],
        format!(
            "knock-nfq: {path}: none of its 1 door(s) could be translated; each is a comment in \
             the output above, with the reason"
        )
    );
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let out = import("/nonexistent/knockd.conf");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "knock-nfq: /nonexistent/knockd.conf: cannot read: No such file or directory\n"
    );
}

#[test]
fn what_knockd_refuses_is_an_error_with_file_and_line_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("knockd.conf");
    std::fs::write(
        &path,
        "[options]\n  UseSyslog\n[openSSH]\n  sequence = 7000,8000,x\n",
    )
    .unwrap();
    let out = import(path.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        format!(
            "knock-nfq: {}:4: not a valid knockd.conf: sequence: \"x\" is not PORT[:tcp|udp] \
             with PORT 1-65535\n",
            path.display()
        )
    );

    std::fs::write(&path, "[options]\n  UseSyslog\n").unwrap();
    let out = import(path.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        format!(
            "knock-nfq: {}: has no door sections, only [options]; there is nothing to \
             translate\n",
            path.display()
        )
    );
}

#[test]
fn the_path_is_required() {
    let out = Command::new(BINARY).arg("import-knockd").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("<PATH>"));
}
