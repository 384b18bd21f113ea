//! What has been used: TOTP steps per door (saved as `state_dir/totp-used`) and one-time lines
//! (commented out in their own files).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{one_time, totp};
use crate::config::model::{
    Config, Door, KnockPort, OnceUse, OneTime, OneTimeLine, SequenceOrigin,
};
use crate::persist::{self, PersistError};

/// The used-steps file in `daemon.state_dir`.
pub const TOTP_FILE: &str = "totp-used";
const MAGIC: &str = "knock-nfq totp-used 1\n";

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
    /// Per TOTP door, the last step that granted: it and every earlier step are spent.
    last_steps: BTreeMap<String, u64>,
    /// One-time lines used since start, by file, line number and sequence (a list the
    /// operator replaced has new lines at those numbers); their files hold them durably.
    used_lines: HashSet<UsedLine>,
    /// Changes whenever a use changes what [`OnceState::expand`] offers.
    generation: u64,
}

impl OnceState {
    /// The saved steps, and a check that every file a use rewrites can be written: a door
    /// that could never record its use is an error at start, not a door that never opens.
    pub fn open(config: &Config) -> Result<OnceState, OnceError> {
        let steps_file = config.daemon.state_dir.join(TOTP_FILE);
        let state = OnceState {
            last_steps: read_steps(&steps_file)?,
            steps_file,
            used_lines: HashSet::new(),
            generation: 0,
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

    pub fn generation(&self) -> u64 {
        self.generation
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
                    let spent = self.last_steps.get(&door.name).copied();
                    let before = out.len();
                    for step in totp::window(t, unix_now) {
                        if spent.is_some_and(|last| step <= last) {
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

    /// Records `use_` of `door` durably; a use already made is refused. A use that cannot be
    /// recorded is refused as well, and stays spent in memory (never granted twice).
    pub fn consume(
        &mut self,
        door: &str,
        origin: &SequenceOrigin,
        use_: OnceUse,
    ) -> Result<(), Refusal> {
        match (use_, origin) {
            (OnceUse::TotpStep(step), _) => {
                if self.last_steps.get(door).is_some_and(|&last| step <= last) {
                    return Err(Refusal::Used);
                }
                self.last_steps.insert(door.to_owned(), step);
                self.generation += 1;
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
                self.generation += 1;
                one_time::mark_used(&one.file, number)
                    .map_err(|err| Refusal::NotRecorded(err.to_string()))
            }
            (OnceUse::OneTimeLine(_), _) => Err(Refusal::NotRecorded(
                "a one-time use of a door without a sequence file".into(),
            )),
        }
    }

    fn save(&self) -> Result<(), PersistError> {
        let mut text = String::from(MAGIC);
        for (door, step) in &self.last_steps {
            text.push_str(&format!("{door} {step}\n"));
        }
        persist::write_atomically(&self.steps_file, text.as_bytes())
    }
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
        let (door, step) = line.split_once(' ').ok_or_else(|| corrupt(index + 2))?;
        let step = step.parse().map_err(|_| corrupt(index + 2))?;
        steps.insert(door.to_owned(), step);
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
