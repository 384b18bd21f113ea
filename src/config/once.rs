//! A door's `totp` table or `one_time_sequences` file, instead of a fixed `sequence`. Both
//! files are secrets (whoever reads them can knock), read here so that `check` validates them.

use std::sync::Arc;
use std::time::Duration;

use super::ConfigError;
use super::build::{duration, optional};
use super::model::{KnockPort, MAX_SEQUENCE_LEN, OneTime, Proto, SequenceOrigin, Totp};
use super::spa::{absolute, key_at, secret};
use super::tree::{Node, Table, describe};
use crate::once::one_time;

pub const TOTP_KEYS: &[&str] = &["secret_file", "step", "length", "ports", "skew"];

const EXPECT_TOTP: &str = "a table such as { secret_file = \"/etc/knock-nfq/ssh.totp\", \
                           ports = \"20000-29999\" }";
const EXPECT_SECRET_FILE: &str = "the absolute path of a secret written by `knock-nfq keygen`";
const EXPECT_SECRET: &str =
    "a file holding one base64 secret of 32 bytes, as `knock-nfq keygen` writes";
const EXPECT_STEP: &str = "a duration of whole seconds from 5s to 1h, such as \"30s\"";
const EXPECT_LENGTH: &str = "a number of knocks from 2 to 16";
const EXPECT_PORTS: &str = "a port range FIRST-LAST such as \"20000-29999\", with at least 100 \
                            ports";
const EXPECT_SKEW: &str = "a number of steps from 0 to 5";
const EXPECT_FILE: &str = "the absolute path of a one-time sequence file (knockd's format: one \
                           sequence per line)";
const DEFAULT_STEP: Duration = Duration::from_secs(30);
const DEFAULT_LENGTH: usize = 4;
const DEFAULT_SKEW: u8 = 1;
/// Fewer ports than this would make a step's sequence guessable.
const MIN_RANGE: u32 = 100;

type Result<T> = std::result::Result<T, ConfigError>;

/// The keys that replace `sequence`.
pub const ORIGIN_KEYS: &[&str] = &["totp", "one_time_sequences"];

/// Where the door's sequence comes from, and the key that says so (for errors elsewhere).
pub fn door_origin<'a>(t: &Table<'a>) -> Result<(SequenceOrigin, Option<Node<'a>>)> {
    let given: Vec<Node> = ORIGIN_KEYS.iter().filter_map(|k| t.get(k)).collect();
    if given.len() > 1 || (!given.is_empty() && t.get("sequence").is_some()) {
        let node = given.last().expect("at least one");
        return Err(node.invalid_found(
            "one of sequence, totp and one_time_sequences",
            format!("{} besides another of them", describe(node.value)),
        ));
    }
    if let Some(node) = t.get("totp") {
        return Ok((SequenceOrigin::Totp(Arc::new(totp(&node)?)), Some(node)));
    }
    if let Some(node) = t.get("one_time_sequences") {
        return Ok((
            SequenceOrigin::OneTime(Arc::new(one_time(&node)?)),
            Some(node),
        ));
    }
    Ok((SequenceOrigin::Fixed, None))
}

/// Every port the door may knock on, for the checks against other doors' ports.
pub fn possible_knocks(origin: &SequenceOrigin) -> Vec<KnockPort> {
    match origin {
        SequenceOrigin::Fixed => Vec::new(),
        SequenceOrigin::Totp(t) => (t.ports.0..=t.ports.1)
            .map(|port| KnockPort {
                port,
                proto: Proto::Tcp,
            })
            .collect(),
        SequenceOrigin::OneTime(one) => one
            .lines
            .iter()
            .flat_map(|l| l.sequence.iter().copied())
            .collect(),
    }
}

/// Whether the door may ever knock on `port` (without listing a TOTP range).
pub fn may_knock_on(origin: &SequenceOrigin, port: KnockPort) -> bool {
    match origin {
        SequenceOrigin::Fixed => false,
        SequenceOrigin::Totp(t) => {
            port.proto == Proto::Tcp && (t.ports.0..=t.ports.1).contains(&port.port)
        }
        SequenceOrigin::OneTime(one) => one.lines.iter().any(|l| l.sequence.contains(&port)),
    }
}

fn totp(node: &Node) -> Result<Totp> {
    let t = node.table(EXPECT_TOTP, TOTP_KEYS)?;
    let file_node = t.require("secret_file", EXPECT_SECRET_FILE)?;
    let (secret_file, secret) = key_at(&file_node, EXPECT_SECRET_FILE, EXPECT_SECRET)?;
    let length = optional(&t, "length", |n| {
        let length = n.int::<usize>(EXPECT_LENGTH)?;
        match (2..=MAX_SEQUENCE_LEN.min(16)).contains(&length) {
            true => Ok(length),
            false => Err(n.invalid(EXPECT_LENGTH)),
        }
    })?
    .unwrap_or(DEFAULT_LENGTH);
    Ok(Totp {
        secret_file,
        secret,
        step: optional(&t, "step", |n| {
            let step = duration(
                n,
                EXPECT_STEP,
                Duration::from_secs(5)..=Duration::from_secs(3600),
            )?;
            match step.subsec_nanos() {
                0 => Ok(step),
                _ => Err(n.invalid(EXPECT_STEP)),
            }
        })?
        .unwrap_or(DEFAULT_STEP),
        length,
        ports: ports(&t.require("ports", EXPECT_PORTS)?)?,
        skew: optional(&t, "skew", |n| {
            let skew = n.int::<u8>(EXPECT_SKEW)?;
            match skew <= 5 {
                true => Ok(skew),
                false => Err(n.invalid(EXPECT_SKEW)),
            }
        })?
        .unwrap_or(DEFAULT_SKEW),
    })
}

fn ports(node: &Node) -> Result<(u16, u16)> {
    let text = node.str(EXPECT_PORTS)?;
    let range = text.split_once('-').and_then(|(first, last)| {
        Some((
            first.trim().parse::<u16>().ok()?,
            last.trim().parse::<u16>().ok()?,
        ))
    });
    match range {
        Some((first, last))
            if first >= 1 && last >= first && u32::from(last - first) + 1 >= MIN_RANGE =>
        {
            Ok((first, last))
        }
        _ => Err(node.invalid(EXPECT_PORTS)),
    }
}

fn one_time(node: &Node) -> Result<OneTime> {
    let file = absolute(node, EXPECT_FILE)?;
    // Each use replaces the file: through a symlink the target would keep the used line.
    if std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(node.invalid_found(
            EXPECT_FILE,
            format!("{}, a symlink (name the file itself)", describe(node.value)),
        ));
    }
    let bytes = secret(node, &file, "a file the daemon can read")?;
    // The daemon rewrites the file after each use, so it must be text it can write back.
    let text = String::from_utf8(bytes).map_err(|_| {
        node.invalid_found(
            EXPECT_FILE,
            format!("{}, which is not UTF-8 text", describe(node.value)),
        )
    })?;
    let lines = one_time::parse(&text, MAX_SEQUENCE_LEN).map_err(|bad| {
        node.invalid_found(
            EXPECT_FILE,
            format!(
                "{}, whose line {} is {}",
                describe(node.value),
                bad.number,
                bad.problem
            ),
        )
    })?;
    Ok(OneTime { file, lines })
}
