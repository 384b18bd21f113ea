//! `knock-nfq import-knockd`: a knockd.conf translated to this project's TOML.
//!
//! - `knockd`: the file into a typed [`KnockdConf`], read the way knockd reads it.
//! - `command`: knockd's grant commands (iptables, ip6tables, nft) into the targets they open.
//! - `translate`: doors into drafts, each checked with the real config parser, with a note for
//!   every setting whose meaning changes.
//! - `render`: the TOML text, untranslatable doors as comment blocks that say why.
//!
//! A door is never dropped silently: it is translated, or it stays in the output as a comment
//! and its reason is among the [`Import::warnings`].

mod command;
mod error;
pub mod knockd;
mod render;
mod translate;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::Path;

pub use error::ImportError;
pub use knockd::KnockdConf;
pub use translate::{Outcome, Severity, Translation};

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Import {
    /// The config text; loadable when `translated > 0`.
    pub toml: String,
    /// One line per untranslated door and per changed meaning, naming the door.
    pub warnings: Vec<String>,
    pub translated: usize,
    /// Doors in the knockd file.
    pub doors: usize,
}

/// Reads and translates the knockd.conf at `path`.
pub fn import_file(path: &Path) -> Result<Import, ImportError> {
    let bytes = fs::read(path).map_err(|error| ImportError::Read {
        path: path.to_owned(),
        error,
    })?;
    // knockd reads bytes; a comment in another encoding must not stop the import.
    import_str(&String::from_utf8_lossy(&bytes), path)
}

/// Translates knockd.conf text; `path` names it in the output and in errors.
pub fn import_str(text: &str, path: &Path) -> Result<Import, ImportError> {
    let translation = translate::translate(knockd::parse(text, path)?);
    Ok(Import {
        toml: render::render(&translation),
        warnings: warnings(&translation),
        translated: translation
            .doors
            .iter()
            .filter(|d| d.outcome == Outcome::Translated)
            .count(),
        doors: translation.doors.len(),
    })
}

fn warnings(t: &Translation) -> Vec<String> {
    let mut lines = Vec::new();
    if let translate::Interfaces::Invalid { name, reason } = &t.interfaces {
        lines.push(format!(
            "[options]: Interface = {name} not translated ({reason}); interfaces = [] instead"
        ));
    }
    for door in &t.doors {
        let name = &door.knockd.name;
        if let Outcome::NotTranslated(reason) = &door.outcome {
            // Its notes stay in the comment block; the reason is what matters here.
            lines.push(format!(
                "[{name}]: not translated, left as a comment: {reason}"
            ));
            continue;
        }
        let changed = door
            .notes
            .iter()
            .filter(|n| n.severity == Severity::Warning);
        lines.extend(changed.map(|n| format!("[{name}]: {}", n.text)));
    }
    lines
}
