//! Why a configuration was rejected. Every message says where (the file, or the environment
//! variable that set the value), which key, what was expected and what was found.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A rejected configuration, one variant per stage: reading, TOML syntax, structure, values.
///
/// `Display` is the complete message for the user. The variants carry no `source()` chain on
/// purpose, so printing with `{:#}` or anyhow's `Caused by` does not repeat the cause.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read: {}", path.display(), reason(error))]
    Read { path: PathBuf, error: io::Error },

    /// The file is not valid TOML (this includes a key written twice).
    #[error("{}{}: invalid TOML: {message}", path.display(), at(*position))]
    Syntax {
        path: PathBuf,
        /// 1-based line and column, when the parser knows them.
        position: Option<(usize, usize)>,
        message: String,
    },

    /// A key that the configuration contract doesn't know (often a typo).
    #[error("{origin}: {key}: unknown key; expected one of {}", expected.join(", "))]
    UnknownKey {
        origin: Origin,
        key: String,
        expected: &'static [&'static str],
    },

    /// A required key is absent.
    #[error("{origin}: {key}: missing; expected {expected}")]
    Missing {
        origin: Origin,
        key: String,
        expected: String,
    },

    /// A value of the wrong type, out of range, malformed, or in conflict with another key.
    #[error("{origin}: {key}: expected {expected}, found {found}")]
    Invalid {
        origin: Origin,
        key: String,
        expected: String,
        found: String,
    },

    /// A trusted file that someone other than its owner may change.
    #[error(
        "{}: writable by group or others (mode {mode:04o}): a local user could change what the \
         daemon grants; fix with `chmod go-w {}`",
        path.display(), path.display()
    )]
    Writable { path: PathBuf, mode: u32 },

    /// A trusted file owned by a user other than root or the daemon's own: its owner could
    /// change its mode and contents at will.
    #[error(
        "{}: owned by uid {uid}, neither root nor the daemon's user: its owner could change \
         what the daemon grants; fix with `chown root {}`",
        path.display(), path.display()
    )]
    Owner { path: PathBuf, uid: u32 },

    /// The directory of a trusted file lets others replace the file (writable, not sticky).
    #[error(
        "{}: writable by group or others (mode {mode:04o}): a local user could replace {}; \
         fix with `chmod go-w {}`",
        dir.display(), file.display(), dir.display()
    )]
    DirectoryWritable {
        dir: PathBuf,
        file: PathBuf,
        mode: u32,
    },

    /// A key or secret file that group or others may read (or write).
    #[error(
        "{}: readable or writable by group or others (mode {mode:04o}): a secret must be \
         private to its owner; fix with `chmod 600 {}`",
        path.display(), path.display()
    )]
    SecretExposed { path: PathBuf, mode: u32 },

    /// A key file that does not hold a key (its contents are never shown).
    #[error("{}: expected {KEY_FILE}; found something else", path.display())]
    BadKey { path: PathBuf },

    /// figment could not merge its sources; not expected, as both providers are infallible.
    #[error("{}: {error}", path.display())]
    Merge {
        path: PathBuf,
        error: Box<figment::Error>,
    },
}

const KEY_FILE: &str = "one base64 key of 32 bytes, as `knock-nfq keygen` writes";

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    /// An environment override; the full variable name, e.g. `KNOCK_NFQ_DAEMON__MAX_SOURCES`.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => f.write_str(var),
        }
    }
}

/// The OS's description without Rust's ` (os error 2)` suffix, which tells a user nothing more.
fn reason(error: &io::Error) -> String {
    let text = error.to_string();
    match (error.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(suffix)) => text[..suffix].to_owned(),
        _ => text,
    }
}

/// `:LINE:COLUMN`, the form editors and terminals jump to.
fn at(position: Option<(usize, usize)>) -> String {
    position.map_or_else(String::new, |(line, column)| format!(":{line}:{column}"))
}
