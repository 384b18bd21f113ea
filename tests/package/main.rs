//! The Debian package, installed: into a throw-away Debian root made by debootstrap (install,
//! upgrade with an edited conffile, purge; dpkg.rs), and booted with systemd as PID 1 in
//! systemd-nspawn, where the unit runs with its full hardening and a client knocks through it
//! (systemd.rs).
//!
//! They need root and the .deb: `cargo xtask test` builds it (`cargo xtask package`) and passes
//! its path in `DEB_UNDER_TEST` (not `KNOCK_NFQ_…`: the daemon reads those as config keys).
//! Without it the tests fail, saying so.

mod dpkg;
mod root;
mod systemd;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The .deb under test.
fn deb() -> PathBuf {
    let path = std::env::var_os("DEB_UNDER_TEST").unwrap_or_else(|| {
        panic!(
            "DEB_UNDER_TEST is not set: run `cargo xtask test`, which builds the package first \
             (or `cargo xtask package`, then DEB_UNDER_TEST=target/debian/knock-nfq_VERSION_amd64.deb \
             cargo test --test package -- --ignored)"
        )
    });
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "DEB_UNDER_TEST={}: no such file",
        path.display()
    );
    path
}

/// Runs `command`, which must succeed; its output.
fn ok(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}",
        out.status,
        text(&out)
    );
    out
}

/// stdout and stderr, as text.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
