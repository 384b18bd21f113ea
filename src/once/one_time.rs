//! knockd's one-time sequence files: one sequence per line in knockd's syntax
//! (`7000,8000:udp,9000`); lines starting with `#` are used or comments. A used line is
//! commented out by rewriting the whole file atomically, so a crash never revives it.

use std::path::Path;

use crate::config::model::{KnockPort, OneTimeLine};
use crate::config::parse;
use crate::persist::{self, PersistError};

/// A line that is not a sequence: its number (from 1) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub number: usize,
    pub found: String,
}

/// The unused lines of a file's text, in order.
pub fn parse(text: &str, max_len: usize) -> Result<Vec<OneTimeLine>, BadLine> {
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let bad = || BadLine {
            number: index + 1,
            found: trimmed.chars().take(80).collect(),
        };
        let sequence: Option<Vec<KnockPort>> = trimmed
            .split([',', ' ', '\t'])
            .filter(|s| !s.is_empty())
            .map(parse::knock)
            .collect();
        match sequence {
            Some(sequence) if !sequence.is_empty() && sequence.len() <= max_len => {
                lines.push(OneTimeLine {
                    number: index + 1,
                    sequence,
                });
            }
            _ => return Err(bad()),
        }
    }
    Ok(lines)
}

/// Why a line could not be marked used.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("{}: cannot read it: {error}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{}: line {number} is no longer the unused sequence the daemon loaded (the file changed; reload)", path.display())]
    Changed {
        path: std::path::PathBuf,
        number: usize,
    },
    #[error(transparent)]
    Write(#[from] PersistError),
}

/// Comments out line `number` (from 1), durably, after checking it is still unused.
pub fn mark_used(path: &Path, number: usize) -> Result<(), ConsumeError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConsumeError::Read {
        path: path.to_owned(),
        error,
    })?;
    let mut out = String::with_capacity(text.len() + 1);
    let mut found = false;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if index + 1 == number && !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            out.push('#');
            found = true;
        }
        out.push_str(line);
    }
    if !found {
        return Err(ConsumeError::Changed {
            path: path.to_owned(),
            number,
        });
    }
    persist::write_atomically(path, out.as_bytes())?;
    Ok(())
}
