//! The gate with its replay cache on disk: read at start, saved after every accepted message
//! (before its grant is committed), so no restart lets a used message in again.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::gate::Gate;
use super::replay::ReplayCache;
use crate::config::Config;
use crate::persist::{self, PersistError};

/// The replay cache's file in `daemon.state_dir`.
pub const REPLAY_FILE: &str = "spa-replay";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: cannot read the SPA replay cache", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: not an SPA replay cache (version 1), or cut short; move it away to start with an \
         empty cache (messages younger than max_age could then be replayed once)",
        path.display()
    )]
    Corrupt { path: PathBuf },
    #[error("the SPA replay cache cannot be saved, so no SPA door could open")]
    Write(#[source] PersistError),
}

/// The SPA gate and where its replay cache is saved.
#[derive(Debug)]
pub struct SpaState {
    pub gate: Gate,
    path: PathBuf,
}

impl SpaState {
    /// The gate for `config`'s SPA doors with the saved cache (expired entries left out). With
    /// an SPA door, the cache is saved once right away: a state directory the daemon cannot
    /// write is an error at start, not a door that silently never opens.
    pub fn open(config: &Config, now: Instant, unix_now: Duration) -> Result<SpaState, StoreError> {
        let path = config.daemon.state_dir.join(REPLAY_FILE);
        let cache = read_cache(&path, unix_now)?;
        let state = SpaState {
            gate: Gate::new(&config.doors, cache, now),
            path,
        };
        state.save_if_used(config)?;
        Ok(state)
    }

    /// Saves the cache, replacing the file atomically and durably.
    pub fn save(&self) -> Result<(), PersistError> {
        persist::write_atomically(&self.path, &self.gate.replay_cache().to_bytes())
    }

    /// Before a reload to `config`: the state directory must be writable if it has an SPA door.
    pub fn save_if_used(&self, config: &Config) -> Result<(), StoreError> {
        match config.doors.iter().any(|door| door.spa.is_some()) {
            true => self.save().map_err(StoreError::Write),
            false => Ok(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_cache(path: &Path, unix_now: Duration) -> Result<ReplayCache, StoreError> {
    // The capacity is set from the doors by the gate.
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(ReplayCache::new(1)),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    ReplayCache::from_bytes(&bytes, 1, unix_now.as_secs()).map_err(|_| StoreError::Corrupt {
        path: path.to_owned(),
    })
}
