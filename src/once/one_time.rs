//! knockd's one-time sequence files: one sequence per line in knockd's syntax
//! (`7000,8000:udp,9000`); lines starting with `#` are used or comments. A used line is
//! commented out by rewriting the whole file atomically, so a crash never revives it.

use std::path::Path;

use crate::config::model::{KnockPort, OneTimeLine};
use crate::config::parse;
use crate::persist::{self, PersistError};

/// A line that cannot be offered: its number (from 1) and why. What the line holds is never
/// shown: it is a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub number: usize,
    pub problem: String,
}

/// A line's knocks, if it is a sequence of at most `max_len` of them.
fn knocks_of(line: &str, max_len: usize) -> Option<Vec<KnockPort>> {
    let knocks: Option<Vec<KnockPort>> = line
        .split([',', ' ', '\t'])
        .filter(|s| !s.is_empty())
        .map(parse::knock)
        .collect();
    knocks.filter(|k| !k.is_empty() && k.len() <= max_len)
}

/// The unused lines of a file's text, in order. A line that repeats another (used or not)
/// is refused: a sequence someone saw used must never open again.
pub fn parse(text: &str, max_len: usize) -> Result<Vec<OneTimeLine>, BadLine> {
    let mut lines: Vec<OneTimeLine> = Vec::new();
    // Used lines: knock-nfq puts `#` in front, knockd writes it over the first character.
    let mut used: Vec<(usize, &str)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            used.push((number, comment.trim()));
            continue;
        }
        let Some(sequence) = knocks_of(trimmed, max_len) else {
            return Err(BadLine {
                number,
                problem: format!(
                    "not PORT[:tcp|udp] knocks separated by commas, at most {max_len}"
                ),
            });
        };
        let repeats_used = used.iter().find(|(_, comment)| {
            knocks_of(comment, max_len).as_ref() == Some(&sequence)
                || trimmed.get(1..).is_some_and(|rest| rest == *comment)
        });
        let earlier = lines
            .iter()
            .find(|l| l.sequence == sequence)
            .map(|l| l.number)
            .or(repeats_used.map(|(n, _)| *n));
        if let Some(earlier) = earlier {
            return Err(BadLine {
                number,
                problem: format!("the same sequence as line {earlier}"),
            });
        }
        lines.push(OneTimeLine { number, sequence });
    }
    Ok(lines)
}

/// Why a line could not be marked used.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("{}: cannot read it as UTF-8 text: {error}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{}: the sequence loaded from line {number} is no longer an unused line (the file changed; reload)", path.display())]
    Changed {
        path: std::path::PathBuf,
        number: usize,
    },
    #[error(transparent)]
    Write(#[from] PersistError),
}

/// Comments out the unused line holding `used` (loaded from line `number`; the file may have
/// been edited since), durably. The file must still hold it: a used sequence is never left live.
pub fn mark_used(path: &Path, number: usize, used: &[KnockPort]) -> Result<(), ConsumeError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConsumeError::Read {
        path: path.to_owned(),
        error,
    })?;
    let max_len = used.len();
    let mut out = String::with_capacity(text.len() + 1);
    let mut found = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if !found
            && !trimmed.starts_with('#')
            && knocks_of(trimmed, max_len).as_deref() == Some(used)
        {
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
