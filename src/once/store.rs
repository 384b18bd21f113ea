//! What has been used: TOTP steps per secret (saved as `state_dir/totp-used`: a line per
//! secret, its fingerprint and the end of its last used step in Unix seconds) and one-time
//! lines (commented out in their own files).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{one_time, totp};
use crate::config::model::{
    Config, Door, KnockPort, OnceUse, OneTime, OneTimeLine, SequenceOrigin, Totp,
};
use crate::persist::{self, PersistError};

/// The used-steps file in `daemon.state_dir`.
pub const TOTP_FILE: &str = "totp-used";
const MAGIC: &str = "knock-nfq totp-used 2\n";

#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    #[error("{}: cannot read it: {error}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error(
        "{}: not a knock-nfq used-steps file (line {line}); move it aside only if no TOTP \
         step it records can still be in a window",
        path.display()
    )]
    Corrupt { path: PathBuf, line: usize },
    #[error(transparent)]
    Write(#[from] PersistError),
}

/// Why a completed once-only sequence grants nothing.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("this step or line was already used")]
    Used,
    #[error("the use could not be recorded: {0}")]
    NotRecorded(String),
}

type UsedLine = (PathBuf, usize, Vec<KnockPort>);

fn used_line(one: &OneTime, line: &OneTimeLine) -> UsedLine {
    (one.file.clone(), line.number, line.sequence.clone())
}

#[derive(Debug)]
pub struct OnceState {
    steps_file: PathBuf,
    /// Per TOTP secret (by [`fingerprint`], so renaming the door changes nothing), the end
    /// of the last step that granted, in Unix seconds: every step starting before it is spent
    /// (in seconds, so a changed `step` keeps what was used).
    used_until: BTreeMap<String, u64>,
    /// One-time lines used since start, by file, line number and sequence (a list the
    /// operator replaced has new lines at those numbers); their files hold them durably.
    used_lines: HashSet<UsedLine>,
}

impl OnceState {
    /// The saved steps, and a check that every file a use rewrites can be written: a door
    /// that could never record its use is an error at start, not a door that never opens.
    pub fn open(config: &Config) -> Result<OnceState, OnceError> {
        let steps_file = config.daemon.state_dir.join(TOTP_FILE);
        let state = OnceState {
            used_until: read_steps(&steps_file)?,
            steps_file,
            used_lines: HashSet::new(),
        };
        state.check_writable(config)?;
        Ok(state)
    }

    /// Before a reload to `config`, the same check as at start.
    pub fn check_writable(&self, config: &Config) -> Result<(), OnceError> {
        let mut totp = false;
        for door in &config.doors {
            match &door.origin {
                SequenceOrigin::Totp(_) => totp = true,
                SequenceOrigin::OneTime(one) => rewrite_unchanged(&one.file)?,
                SequenceOrigin::Fixed => {}
            }
        }
        if totp {
            self.save()?;
        }
        Ok(())
    }

    /// The engine's doors for `doors` at `unix_now`: every door is there at least once (with
    /// an empty sequence when nothing can open it now), so the kernel's sets, filled from
    /// these doors, keep protecting every target.
    pub fn expand(&self, doors: &[Door], unix_now: Duration) -> Vec<Door> {
        let mut out = Vec::with_capacity(doors.len());
        for door in doors {
            match &door.origin {
                SequenceOrigin::Fixed => out.push(door.clone()),
                SequenceOrigin::Totp(t) => {
                    let before = out.len();
                    for step in totp::window(t, unix_now) {
                        if self.is_spent(t, step) {
                            continue;
                        }
                        let mut variant = door.clone();
                        variant.sequence = totp::sequence(&t.secret, step, t.length, t.ports);
                        variant.once = Some(OnceUse::TotpStep(step));
                        out.push(variant);
                    }
                    // Every step of the window used: the door stays, with no sequence. Its
                    // targets must stay in the kernel's protected sets.
                    if out.len() == before {
                        out.push(door.clone());
                    }
                }
                SequenceOrigin::OneTime(one) => {
                    let mut current = door.clone();
                    let unused = one
                        .lines
                        .iter()
                        .find(|line| !self.used_lines.contains(&used_line(one, line)));
                    if let Some(line) = unused {
                        current.sequence.clone_from(&line.sequence);
                        current.once = Some(OnceUse::OneTimeLine(line.number));
                    }
                    out.push(current);
                }
            }
        }
        out
    }

    /// Unused one-time lines left for each one-time door.
    pub fn lines_left<'a>(&self, doors: &'a [Door]) -> Vec<(&'a str, usize)> {
        doors
            .iter()
            .filter_map(|door| match &door.origin {
                SequenceOrigin::OneTime(one) => Some((
                    door.name.as_str(),
                    one.lines
                        .iter()
                        .filter(|line| !self.used_lines.contains(&used_line(one, line)))
                        .count(),
                )),
                _ => None,
            })
            .collect()
    }

    fn is_spent(&self, t: &Totp, step: u64) -> bool {
        let used_until = self.used_until.get(&fingerprint(t)).copied();
        used_until.is_some_and(|until| step.saturating_mul(t.step.as_secs()) < until)
    }

    /// Records `use_` of `door` durably; a use already made (or a step no longer in its
    /// window at `unix_now`) is refused. A use that cannot be recorded is refused as well, and
    /// stays spent in memory (never granted twice).
    pub fn consume(
        &mut self,
        origin: &SequenceOrigin,
        use_: OnceUse,
        unix_now: Duration,
    ) -> Result<(), Refusal> {
        match (use_, origin) {
            (OnceUse::TotpStep(step), SequenceOrigin::Totp(t)) => {
                if self.is_spent(t, step) || !totp::window(t, unix_now).contains(&step) {
                    return Err(Refusal::Used);
                }
                let end = step.saturating_add(1).saturating_mul(t.step.as_secs());
                self.used_until.insert(fingerprint(t), end);
                self.save()
                    .map_err(|err| Refusal::NotRecorded(err.to_string()))
            }
            (OnceUse::OneTimeLine(number), SequenceOrigin::OneTime(one)) => {
                let Some(line) = one.lines.iter().find(|line| line.number == number) else {
                    return Err(Refusal::NotRecorded(format!("no line {number} was loaded")));
                };
                if !self.used_lines.insert(used_line(one, line)) {
                    return Err(Refusal::Used);
                }
                one_time::mark_used(&one.file, number, &line.sequence)
                    .map_err(|err| Refusal::NotRecorded(err.to_string()))
            }
            _ => Err(Refusal::NotRecorded(
                "a once-only use that does not match its door".into(),
            )),
        }
    }

    fn save(&self) -> Result<(), PersistError> {
        let mut text = String::from(MAGIC);
        for (secret, until) in &self.used_until {
            text.push_str(&format!("{secret} {until}\n"));
        }
        persist::write_atomically(&self.steps_file, text.as_bytes())
    }
}

/// Names a TOTP secret in the used-steps file without revealing it: the first 8 bytes of
/// HMAC-SHA256(secret, "knock-nfq totp-used"), in hex.
fn fingerprint(t: &Totp) -> String {
    t.secret.sign(b"knock-nfq totp-used")[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_steps(path: &Path) -> Result<BTreeMap<String, u64>, OnceError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => {
            return Err(OnceError::Read {
                path: path.to_owned(),
                error,
            });
        }
    };
    let corrupt = |line| OnceError::Corrupt {
        path: path.to_owned(),
        line,
    };
    let body = text.strip_prefix(MAGIC).ok_or_else(|| corrupt(1))?;
    let mut steps = BTreeMap::new();
    for (index, line) in body.lines().enumerate() {
        let (secret, until) = line.split_once(' ').ok_or_else(|| corrupt(index + 2))?;
        let until = until.parse().map_err(|_| corrupt(index + 2))?;
        steps.insert(secret.to_owned(), until);
    }
    Ok(steps)
}

/// Proves the file's directory takes the atomic rewrite a use needs, changing nothing.
fn rewrite_unchanged(path: &Path) -> Result<(), OnceError> {
    let bytes = std::fs::read(path).map_err(|error| OnceError::Read {
        path: path.to_owned(),
        error,
    })?;
    persist::write_atomically(path, &bytes)?;
    Ok(())
}
