//! A door's `spa` table and `spa_allow_address`: the UDP port, the key file (read here, so
//! `check` validates it), and the message age limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use figment::value::Value;

use super::ConfigError;
use super::build::{duration, optional};
use super::model::{GrantAddress, Proto, Spa};
use super::parse;
use super::tree::{Node, Table, describe};
use crate::spa::{KEY_LEN, Key};

pub const SPA_KEYS: &[&str] = &["port", "key_file", "max_age"];

const EXPECT_SPA: &str =
    "a table such as { port = \"62201/udp\", key_file = \"/etc/knock-nfq/ssh.key\" }";
const EXPECT_PORT: &str = "a UDP port such as \"62201/udp\" (or 62201), 1-65535";
const EXPECT_KEY_FILE: &str = "the absolute path of a key file written by `knock-nfq keygen`";
const EXPECT_KEY: &str = "a file holding one base64 key of 32 bytes, as `knock-nfq keygen` writes";
const EXPECT_MAX_AGE: &str = "a duration from 1s to 1h, such as \"30s\"";
const EXPECT_ALLOW_ADDRESS: &str = "true or false";
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30);

type Result<T> = std::result::Result<T, ConfigError>;

/// The door's SPA settings, if it has a `spa` table.
pub fn door_spa(t: &Table) -> Result<Option<Spa>> {
    let Some(node) = t.get("spa") else {
        if let Some(allow) = t.get("spa_allow_address") {
            return Err(allow.invalid_found(
                "spa_allow_address only on a door with a spa table",
                describe(allow.value),
            ));
        }
        return Ok(None);
    };
    let spa = node.table(EXPECT_SPA, SPA_KEYS)?;
    let file_node = spa.require("key_file", EXPECT_KEY_FILE)?;
    let (key_file, key) = key_at(&file_node, EXPECT_KEY_FILE, EXPECT_KEY)?;
    Ok(Some(Spa {
        port: port(&spa.require("port", EXPECT_PORT)?)?,
        key,
        key_file,
        max_age: optional(&spa, "max_age", |n| {
            duration(
                n,
                EXPECT_MAX_AGE,
                Duration::from_secs(1)..=Duration::from_secs(3600),
            )
        })?
        .unwrap_or(DEFAULT_MAX_AGE),
        grant_address: match optional(t, "spa_allow_address", |n| n.bool(EXPECT_ALLOW_ADDRESS))? {
            Some(true) => GrantAddress::NamedOrSender,
            _ => GrantAddress::Sender,
        },
    }))
}

fn port(node: &Node) -> Result<u16> {
    let port = match node.value {
        Value::Num(..) => parse::port(&describe(node.value)),
        Value::String(_, s) => match s.split_once('/') {
            Some((port, proto)) if parse::proto(proto) == Some(Proto::Udp) => parse::port(port),
            Some(_) => None,
            None => parse::port(s),
        },
        _ => None,
    };
    port.ok_or_else(|| node.invalid(EXPECT_PORT))
}

/// The absolute path at `node`.
pub(super) fn absolute(node: &Node, expected: &str) -> Result<PathBuf> {
    let path = Path::new(node.str(expected)?);
    match path.is_absolute() {
        true => Ok(path.to_owned()),
        false => Err(node.invalid(expected)),
    }
}

/// The bytes of the secret file at `path` (named at `node`); one that others may read is
/// refused by `read_secret_file`.
pub(super) fn secret(node: &Node, path: &Path, expected: &str) -> Result<Vec<u8>> {
    super::read_secret_file(path).map_err(|err| match err {
        ConfigError::Read { error, .. } => node.invalid_found(
            expected,
            format!("{} (cannot read it: {error})", describe(node.value)),
        ),
        other => other,
    })
}

/// The key file named at `node` and its key, as `knock-nfq keygen` writes it (an SPA key or
/// a TOTP secret). What the file holds is never shown.
pub(super) fn key_at(
    node: &Node,
    expected_file: &str,
    expected_key: &str,
) -> Result<(PathBuf, Key)> {
    let path = absolute(node, expected_file)?;
    let bytes = secret(node, &path, expected_file)?;
    let found = || format!("{} holding something else", describe(node.value));
    let key = decode_key(&bytes).ok_or_else(|| node.invalid_found(expected_key, found()))?;
    Ok((path, key))
}

/// One line of base64 holding 32 bytes, as `knock-nfq keygen` writes.
fn decode_key(file: &[u8]) -> Option<Key> {
    let text = std::str::from_utf8(file).ok()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    let bytes: [u8; KEY_LEN] = bytes.try_into().ok()?;
    Some(Key::new(bytes))
}

/// A key file for the client (`knock-nfq spa --key-file`), checked as the daemon checks it.
pub fn read_key_file(path: &Path) -> std::result::Result<Key, ConfigError> {
    let bytes = super::read_secret_file(path)?;
    decode_key(&bytes).ok_or_else(|| ConfigError::BadKey {
        path: path.to_owned(),
    })
}

/// A new random key as a key file's contents: base64 and a newline.
pub fn new_key_file() -> std::result::Result<String, getrandom::Error> {
    let mut key = [0; KEY_LEN];
    getrandom::fill(&mut key)?;
    Ok(format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}
