//! Configuration: TOML (figment) plus `KNOCK_NFQ_` environment overrides, validated into
//! [`model`] types.
//!
//! - `source`: the TOML text as a figment provider (syntax errors keep line and column).
//! - `tree`: typed reading of the merged values, with key paths and origins for messages.
//! - `build`: every check, from the value tree to [`Config`].
//! - `parse`: the small string syntaxes (knocks, targets, TCP flags, names).
//! - `error`: [`ConfigError`], whose `Display` is the full message for the user.
//! - `mode`: the permission check of files the daemon trusts.
//! - `spa`: a door's `spa` table, with its key file read and checked.
//! - `cluster`: the `[cluster]` table (etcd endpoints, TLS files, prefix, node name).
//! - `scan`: whether a port scan in port order can complete a door ([`ScanRisk`]).

mod blocklist;
mod build;
mod cluster;
mod error;
mod mode;
pub mod model;
mod once;
pub(crate) mod parse;
mod scan;
mod source;
mod spa;
mod summary;
mod tree;

#[cfg(test)]
mod man_tests;
#[cfg(test)]
mod tests;

use std::fs;
use std::path::Path;

use figment::Figment;
use figment::providers::Env;

pub use error::{ConfigError, Origin};
pub use mode::{Exposure, read_secret_file};
pub use model::*;
pub use scan::{Order, ScanRisk};
pub use spa::{new_key_file, read_key_file};

/// Where the daemon looks without `--config`.
pub const DEFAULT_PATH: &str = "/etc/knock-nfq/knock-nfq.toml";

/// Environment overrides: `KNOCK_NFQ_DAEMON__MAX_SOURCES=5000` sets `daemon.max_sources`.
pub const ENV_PREFIX: &str = "KNOCK_NFQ_";

/// Separates nested keys in an override's name.
const ENV_SEPARATOR: &str = "__";

impl Config {
    /// Reads the TOML file plus `KNOCK_NFQ_` environment overrides, and validates everything.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::parse_with_env(&text, path)
    }

    /// [`Config::load`] for the daemon: the file is refused unless only its owner (root or the
    /// daemon's user) can change it; the exposure says whether every local user may read it.
    pub fn load_trusted(path: &Path) -> Result<(Config, Exposure), ConfigError> {
        let (text, exposure) = mode::read_trusted_file(path)?;
        Ok((Config::parse_with_env(&text, path)?, exposure))
    }

    fn parse_with_env(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let env = Env::prefixed(ENV_PREFIX).split(ENV_SEPARATOR);
        validate(
            &Figment::from(source::TomlFile::parse(text, path)?).merge(env),
            path,
        )
    }

    /// Like [`Config::load`] from a string, without environment overrides; `origin` names the
    /// text in messages.
    pub fn from_toml_str(toml: &str, origin: &Path) -> Result<Config, ConfigError> {
        validate(
            &Figment::from(source::TomlFile::parse(toml, origin)?),
            origin,
        )
    }
}

fn validate(figment: &Figment, path: &Path) -> Result<Config, ConfigError> {
    // The empty path is the root: the whole merged document, each value tagged with its source.
    let root = figment.find_value("").map_err(|error| ConfigError::Merge {
        path: path.to_owned(),
        error: Box::new(error),
    })?;
    let sources = tree::Sources {
        figment,
        file: path,
    };
    build::config(&tree::Node::root(&root, sources), path)
}
