//! `apt-get install ./….deb`, an upgrade with `dpkg -i` over an edited conffile, and `dpkg --purge`, in a chroot without
//! network and without systemd running (so the postinst enables the unit but cannot start it).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::root::Root;
use crate::{deb, ok, stdout, text};

const CONFIG: &str = "/etc/knock-nfq/knock-nfq.toml";
const RULESET: &str = "/etc/knock-nfq/nftables.conf";
const UNIT: &str = "/usr/lib/systemd/system/knock-nfq.service";
const ENABLED: &str = "/etc/systemd/system/multi-user.target.wants/knock-nfq.service";
const V2_LINE: &str = "# changed in the upgrade test's second version";
const ADMIN_LINE: &str = "# edited by the admin";

#[test]
#[ignore = "needs root and the .deb: run by `cargo xtask test`"]
fn the_package_installs_upgrades_over_an_edited_conffile_and_purges_clean() {
    let root = Root::fresh();
    root.copy_in(&deb(), "/tmp/knock-nfq.deb");
    let v2 = second_version(&deb(), &root.join("/tmp/knock-nfq-v2.deb"));

    // The README's command: apt resolves the dependencies (all present: no network here).
    ok(&mut root.chroot(
        "apt-get",
        &[
            "install",
            "-y",
            "--no-install-recommends",
            "/tmp/knock-nfq.deb",
        ],
    ));
    installed_files(&root);
    enabled_not_started(&root);

    // The admin edits one conffile and leaves the other; both change in the new version.
    let edited = format!("{}{ADMIN_LINE}\n", root.read(CONFIG));
    std::fs::write(root.join(CONFIG), &edited).unwrap();
    let out = ok(&mut root.chroot(
        "dpkg",
        &[
            "-i",
            "--force-confdef",
            "--force-confold",
            "/tmp/knock-nfq-v2.deb",
        ],
    ));
    let version = stdout(&ok(
        &mut root.chroot("dpkg-query", &["-W", "-f=${Version}", "knock-nfq"])
    ));
    assert_eq!(version, v2, "{}", text(&out));
    assert_eq!(root.read(CONFIG), edited, "the edited conffile is kept");
    let dist = root.read(&format!("{CONFIG}.dpkg-dist"));
    assert!(
        dist.contains(V2_LINE),
        "the new version's conffile beside it"
    );
    assert!(
        root.read(RULESET).contains(V2_LINE),
        "an unedited conffile is upgraded"
    );
    assert!(!root.has(&format!("{RULESET}.dpkg-dist")));
    config_is_private(&root);
    assert!(root.has(ENABLED), "still enabled after the upgrade");

    // State the daemon left (DynamicUser= keeps it in /var/lib/private).
    std::fs::create_dir_all(root.join("/var/lib/private/knock-nfq")).unwrap();
    std::fs::write(root.join("/var/lib/private/knock-nfq/spa-ssh.cache"), "x").unwrap();
    std::os::unix::fs::symlink("private/knock-nfq", root.join("/var/lib/knock-nfq")).unwrap();
    ok(&mut root.chroot("dpkg", &["--purge", "knock-nfq"]));
    for gone in [
        "/etc/knock-nfq",
        "/var/lib/knock-nfq",
        "/var/lib/private/knock-nfq",
        "/usr/sbin/knock-nfq",
        UNIT,
        ENABLED,
        "/usr/lib/sysusers.d/knock-nfq.conf",
        "/usr/share/knock-nfq",
    ] {
        assert!(!root.has(gone), "{gone} is left after the purge");
    }
    let status = root
        .chroot("dpkg-query", &["-W", "-f=${db:Status-Status}", "knock-nfq"])
        .output()
        .unwrap();
    assert!(
        !status.status.success() || stdout(&status) == "not-installed",
        "dpkg still knows the package: {}",
        text(&status)
    );
}

fn installed_files(root: &Root) {
    let version = ok(&mut root.chroot("/usr/sbin/knock-nfq", &["--version"]));
    assert!(
        stdout(&version).starts_with("knock-nfq "),
        "{}",
        text(&version)
    );
    let unit = root.read(UNIT);
    assert!(
        unit.lines().any(
            |l| l == "ExecStart=/usr/sbin/knock-nfq run --config /etc/knock-nfq/knock-nfq.toml"
        ),
        "the packaged unit runs the packaged binary"
    );
    assert!(!unit.contains("/usr/local/bin"));
    assert_eq!(
        root.read(RULESET),
        include_str!("../../deploy/nftables.conf")
    );
    for path in [
        "/usr/lib/sysusers.d/knock-nfq.conf",
        "/usr/share/knock-nfq/grafana-dashboard.json",
        "/usr/share/doc/knock-nfq/examples/knock-nfq.example.toml",
        "/usr/share/doc/knock-nfq/copyright",
    ] {
        assert!(root.has(path), "{path} is not installed");
    }
    let conffiles = stdout(&ok(
        &mut root.chroot("dpkg-query", &["-W", "-f=${Conffiles}", "knock-nfq"])
    ));
    for conffile in [CONFIG, RULESET] {
        assert!(
            conffiles.contains(conffile),
            "{conffile} is not a conffile: {conffiles}"
        );
    }
    docs(root);
    config_is_private(root);
    // No door is enabled, so the shipped config opens and closes nothing: check refuses it.
    let check = root
        .chroot("/usr/sbin/knock-nfq", &["check", "--config", CONFIG])
        .output()
        .unwrap();
    assert!(!check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("door: missing"), "{}", text(&check));
}

fn docs(root: &Root) {
    let docs = [
        "/usr/share/man/man1/knock-nfq.1.gz",
        "/usr/share/man/man5/knock-nfq.toml.5.gz",
        "/usr/share/bash-completion/completions/knock-nfq",
        "/usr/share/zsh/vendor-completions/_knock-nfq",
        "/usr/share/fish/vendor_completions.d/knock-nfq.fish",
    ];
    for path in docs {
        assert!(root.has(path), "{path} is not installed");
    }
    let pages = std::fs::read_dir(root.join("/usr/share/man/man1")).unwrap();
    let ours = pages
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("knock-nfq"))
        .count();
    assert!(ours > 1, "a page per subcommand too, found {ours}");
}

/// The config holds the knock sequences: 0640 root:knock-nfq, the daemon's group.
fn config_is_private(root: &Root) {
    let meta = std::fs::metadata(root.join(CONFIG)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (0, root.gid("knock-nfq")));
}

fn enabled_not_started(root: &Root) {
    let target = std::fs::read_link(root.join(ENABLED)).expect("the unit is enabled");
    assert!(target.ends_with("knock-nfq.service"), "{target:?}");
    let passwd = root.read("/etc/passwd");
    assert!(
        passwd.lines().any(|l| l.starts_with("knock-nfq:")),
        "systemd-sysusers made the user"
    );
}

/// The same package as version `…+pkgtest2`, with both conffiles changed; its version.
fn second_version(deb: &Path, out: &Path) -> String {
    let tree = tempfile::tempdir().unwrap();
    let dir = tree.path().join("pkg");
    ok(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&dir));
    let control_path = dir.join("DEBIAN/control");
    let control = std::fs::read_to_string(&control_path).unwrap();
    let old = control
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .expect("a Version field")
        .to_owned();
    let new = format!("{old}+pkgtest2");
    std::fs::write(
        &control_path,
        control.replace(&format!("Version: {old}\n"), &format!("Version: {new}\n")),
    )
    .unwrap();
    for conffile in [CONFIG, RULESET] {
        let path = dir.join(conffile.trim_start_matches('/'));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}{V2_LINE}\n")).unwrap();
    }
    ok(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&dir)
        .arg(out));
    new
}
