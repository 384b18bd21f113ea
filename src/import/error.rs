//! Why `import-knockd` produced no config. Messages name the file, and the line where there is
//! one.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: cannot read: {}", path.display(), reason(error))]
    Read { path: PathBuf, error: io::Error },

    /// Something knockd itself would refuse to start with.
    #[error("{}:{line}: not a valid knockd.conf: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// Every door stayed a comment, so the output is not a usable config.
    #[error(
        "{}: none of its {doors} door(s) could be translated; each is a comment in the output \
         above, with the reason", path.display()
    )]
    NothingTranslated { path: PathBuf, doors: usize },

    #[error("{}: has no door sections, only [options]; there is nothing to translate", path.display())]
    NoDoors { path: PathBuf },
}

/// The OS's description without Rust's ` (os error 2)` suffix.
fn reason(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(suffix) if error.raw_os_error().is_some() => text[..suffix].to_owned(),
        _ => text,
    }
}
