//! The Debian package, installed: into a throw-away Debian root made by debootstrap (install,
//! upgrade with an edited conffile, purge; dpkg.rs), and booted with systemd as PID 1 in
//! systemd-nspawn, where the unit runs with its full hardening and a client knocks through it
//! (systemd.rs).
//!
//! They need root and the .deb: `cargo xtask test` builds it (`cargo xtask package`) and passes
//! its path in `DEB_UNDER_TEST` (not `KNOCK_NFQ_…`: the daemon reads those as config keys), and whether it has the man pages and completions in
//! `DEB_UNDER_TEST_DOCS` (`generated` or `absent`). Without them the tests fail, saying so.

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
             DEB_UNDER_TEST_DOCS=absent cargo test --test package -- --ignored)"
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

/// Whether the package was built with docs-gen's man pages and completions.
fn docs_generated() -> bool {
    match std::env::var("DEB_UNDER_TEST_DOCS").as_deref() {
        Ok("generated") => true,
        Ok("absent") => false,
        other => panic!("DEB_UNDER_TEST_DOCS must be `generated` or `absent`, not {other:?}"),
    }
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

/// The without-docs variant of `[package.metadata.deb]` is the full asset list minus the lines
/// docs-gen's files fill, so the two cannot drift apart.
#[test]
fn the_package_without_docs_differs_only_by_the_docs() {
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap(),
    )
    .unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let full = deb["assets"].as_array().unwrap();
    let variant = deb["variants"]["without-docs"]["assets"]
        .as_array()
        .unwrap();
    let from_docs_gen = |asset: &&toml::Value| {
        let source = asset[0].as_str().unwrap();
        source.starts_with("target/assets/man/") || source.starts_with("target/assets/completions/")
    };
    let without: Vec<&toml::Value> = full.iter().filter(|a| !from_docs_gen(a)).collect();
    assert_eq!(without, variant.iter().collect::<Vec<_>>());
    assert_eq!(
        full.len() - without.len(),
        5,
        "two man sections, three shells"
    );
}
