//! Durable state files: written whole or not at all, so a crash or power cut mid-write leaves
//! the previous version, never a torn one. Used for what must survive a restart (replay caches,
//! consumed one-time sequences).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A state file that could not be replaced.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot write: {error}", path.display())]
pub struct PersistError {
    pub path: PathBuf,
    #[source]
    pub error: io::Error,
}

/// Replaces `path` with `contents` atomically and durably: a temporary file in the same
/// directory (mode 0600), fsync, rename over `path`, fsync of the directory.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), PersistError> {
    replace(path, contents).map_err(|error| PersistError {
        path: path.to_owned(),
        error,
    })
}

fn replace(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?;
    // A name nobody can guess, created new and never through a symlink: another user who
    // may write the directory cannot make this write land elsewhere.
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
    let mut temp_name = name.to_owned();
    temp_name.push(format!(".tmp{}", u64::from_ne_bytes(random)));
    let temp = dir.join(temp_name);
    let result = write_synced(&temp, contents).and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    File::open(dir)?.sync_all()
}

fn write_synced(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_whole_file_leaves_no_temporary_and_keeps_it_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomically(&path, b"first version, longer").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left: {names:?}");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_file() {
        let err = write_atomically(Path::new("/nonexistent-dir/state"), b"x").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent-dir/state: cannot write"),
            "{err}"
        );
    }
}
