//! `cargo xtask package`: the Debian package, built by cargo-deb from `[package.metadata.deb]`
//! in Cargo.toml, into target/debian/.
//!
//! The files it packages that are not in the repository as they ship are generated here, from
//! the repository's own, into target/assets/: the unit with ExecStart in /usr/sbin, and the
//! conffile (the example config with every door commented out, so installing the package opens
//! and closes nothing), and from docs-gen the man pages and completions.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{cargo, run};

const ASSETS: &str = "target/assets";
const UNIT: &str = "deploy/knock-nfq.service";
const EXAMPLE: &str = "deploy/knock-nfq.example.toml";
const SOURCE_BIN: &str = "/usr/local/bin/knock-nfq";
const PACKAGED_BIN: &str = "/usr/sbin/knock-nfq";
/// Builds the package; the path of the .deb.
pub fn package() -> Result<PathBuf, String> {
    // Paths here and in Cargo.toml's metadata are the workspace's.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::set_current_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    ensure_cargo_deb()?;
    fs::create_dir_all(ASSETS).map_err(|e| format!("{ASSETS}: {e}"))?;
    generate_docs()?;
    write_asset("knock-nfq.service", &packaged_unit(&read(UNIT)?)?)?;
    write_asset("knock-nfq.toml", &packaged_config(&read(EXAMPLE)?))?;
    let mut deb = Command::new(cargo());
    deb.args(["deb", "--package", "knock-nfq", "--output", "target/debian"]);
    // Its build's progress shows as it goes; the path it prints on stdout is read below.
    let out = deb
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{deb:?}: {e} (is cargo-deb installed?)"))?;
    if !out.status.success() {
        return Err(format!("{deb:?} failed: {}", out.status));
    }
    // cargo-deb prints the path of the package it wrote, last.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .rev()
        .find(|line| line.trim_end().ends_with(".deb"))
        .ok_or_else(|| format!("cargo deb printed no .deb path: {stdout}"))?;
    let deb = root
        .join(path.trim())
        .canonicalize()
        .map_err(|e| format!("{path}: {e}"))?;
    eprintln!("xtask: package: {}", deb.display());
    Ok(deb)
}

fn ensure_cargo_deb() -> Result<(), String> {
    let installed = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        eprintln!("xtask: installing cargo-deb");
        run(Command::new(cargo()).args(["install", "--locked", "cargo-deb"]))?;
    }
    Ok(())
}

/// The man pages and shell completions, into target/assets (as the package ships them); the
/// docs-gen crate's tests check what they show.
pub fn generate_docs() -> Result<(), String> {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/assets");
    run(Command::new(cargo())
        .args(["run", "--quiet", "-p", "knock-nfq-docs", "--"])
        .arg(assets))
}

/// The repository's unit with the binary where the package installs it; nothing else changes.
fn packaged_unit(unit: &str) -> Result<String, String> {
    let packaged = unit.replace(SOURCE_BIN, PACKAGED_BIN);
    let exec = format!("ExecStart={PACKAGED_BIN} run ");
    if !packaged.lines().any(|line| line.starts_with(&exec)) {
        return Err(format!(
            "{UNIT}: no `ExecStart={SOURCE_BIN} run` line to point at {PACKAGED_BIN}"
        ));
    }
    Ok(packaged)
}

/// The example config with every line of an enabled door commented out: from the first
/// `[[door]]` on, every line that is not blank or a comment already. A config without a door
/// fails `knock-nfq check`, so the package's postinst does not start the daemon with it.
fn packaged_config(example: &str) -> String {
    let header = "# Installed by the knock-nfq package with no door enabled: the daemon refuses to \
                  start\n# until you enable one (`knock-nfq check --ruleset` says what is \
                  missing), then\n# `systemctl start knock-nfq`.\n";
    let mut in_doors = false;
    let body: Vec<String> = example
        .lines()
        .map(|line| {
            in_doors |= line.trim() == "[[door]]";
            let trimmed = line.trim_start();
            if in_doors && !trimmed.is_empty() && !trimmed.starts_with('#') {
                format!("#{line}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    format!("{header}{}\n", body.join("\n"))
}

fn read(path: &str) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

fn write_asset(name: &str, text: &str) -> Result<(), String> {
    let path = Path::new(ASSETS).join(name);
    fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}
