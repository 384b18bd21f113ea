//! Who else may change or read a file the daemon trusts: a config writable by a local user
//! would let them open doors, and one readable by all gives away the sequences. Key and secret
//! files are stricter: private to their owner, or refused.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::ConfigError;

/// Write bits for group and others.
const SHARED_WRITE: u32 = 0o022;
/// Read bit for others.
const WORLD_READ: u32 = 0o004;

/// What else but its owner (and its group, for reading) can do with a trusted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    Private,
    /// Every local user can read it (a warning: they learn the knock sequences).
    WorldReadable {
        mode: u32,
    },
}

/// Reads a trusted file (one open, so what is checked is what is read), refusing it when
/// someone other than its owner, root or the daemon could change it: group or others may
/// write it, another user owns it, or its directory lets others replace it. Reports whether
/// every local user may read it.
pub fn read_trusted_file(path: &Path) -> Result<(String, Exposure), ConfigError> {
    let read_error = |error| ConfigError::Read {
        path: path.to_owned(),
        error,
    };
    let mut file = fs::File::open(path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    let exposure = check_metadata(path, &metadata)?;
    check_directory(path)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(read_error)?;
    Ok((text, exposure))
}

fn check_metadata(path: &Path, metadata: &fs::Metadata) -> Result<Exposure, ConfigError> {
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & SHARED_WRITE != 0 {
        return Err(ConfigError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    if !trusted_owner(metadata.uid(), effective_uid()) {
        return Err(ConfigError::Owner {
            path: path.to_owned(),
            uid: metadata.uid(),
        });
    }
    Ok(if mode & WORLD_READ != 0 {
        Exposure::WorldReadable { mode }
    } else {
        Exposure::Private
    })
}

/// Root's files, and the daemon's own, are trusted; any other owner may rewrite the file.
fn trusted_owner(owner: u32, daemon: u32) -> bool {
    owner == 0 || owner == daemon
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A directory that group or others may write lets them rename another file over this one,
/// unless it is sticky (like /tmp), where only a file's owner may replace it.
fn check_directory(path: &Path) -> Result<(), ConfigError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let metadata = fs::metadata(dir).map_err(|error| ConfigError::Read {
        path: dir.to_owned(),
        error,
    })?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & SHARED_WRITE != 0 && mode & STICKY == 0 {
        return Err(ConfigError::DirectoryWritable {
            dir: dir.to_owned(),
            file: path.to_owned(),
            mode,
        });
    }
    if !trusted_owner(metadata.uid(), effective_uid()) {
        return Err(ConfigError::Owner {
            path: dir.to_owned(),
            uid: metadata.uid(),
        });
    }
    Ok(())
}

/// The sticky bit of a directory: entries can be replaced only by their owner.
const STICKY: u32 = 0o1000;

/// Group and other bits: a secret file with any of them set is refused.
const SHARED_ANY: u32 = 0o077;

/// Reads a key or secret file, refusing one that group or others may read or write. The
/// contents never appear in an error.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let read_error = |error| ConfigError::Read {
        path: path.to_owned(),
        error,
    };
    let mut file = fs::File::open(path).map_err(read_error)?;
    let mode = file.metadata().map_err(read_error)?.permissions().mode() & 0o7777;
    if mode & SHARED_ANY != 0 {
        return Err(ConfigError::SecretExposed {
            path: path.to_owned(),
            mode,
        });
    }
    let mut contents = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut contents).map_err(read_error)?;
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_mode(mode: u32) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        fs::set_permissions(file.path(), fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    #[test]
    fn a_file_writable_by_group_or_others_is_refused_naming_it_the_mode_and_the_fix() {
        for mode in [0o664, 0o646, 0o620] {
            let file = file_with_mode(mode);
            let err = read_trusted_file(file.path()).unwrap_err().to_string();
            let path = file.path().display().to_string();
            assert!(err.starts_with(&path), "{err}");
            assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
            assert!(err.contains(&format!("chmod go-w {path}")), "{err}");
        }
    }

    #[test]
    fn a_secret_file_any_other_user_may_read_is_refused_and_a_private_one_is_read() {
        for mode in [0o640, 0o604, 0o660, 0o700 | 0o010] {
            let file = file_with_mode(mode);
            let err = read_secret_file(file.path()).unwrap_err().to_string();
            let path = file.path().display().to_string();
            assert!(err.starts_with(&path), "{err}");
            assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
            assert!(err.contains(&format!("chmod 600 {path}")), "{err}");
        }
        let file = file_with_mode(0o600);
        fs::write(file.path(), b"secret bytes").unwrap();
        assert_eq!(read_secret_file(file.path()).unwrap(), b"secret bytes");
    }

    #[test]
    fn owner_only_and_group_readable_files_are_private_and_world_readable_ones_are_reported() {
        let exposure = |mode| read_trusted_file(file_with_mode(mode).path()).unwrap().1;
        assert_eq!(exposure(0o600), Exposure::Private);
        assert_eq!(exposure(0o640), Exposure::Private);
        assert_eq!(exposure(0o644), Exposure::WorldReadable { mode: 0o644 });
    }

    #[test]
    fn only_root_or_the_daemons_own_user_may_own_a_trusted_file() {
        assert!(trusted_owner(0, 0));
        assert!(trusted_owner(0, 990));
        assert!(trusted_owner(990, 990));
        assert!(!trusted_owner(1000, 990));
        assert!(!trusted_owner(1000, 0));
    }

    #[test]
    fn a_directory_others_may_write_is_refused_unless_sticky_and_the_file_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("knock-nfq.toml");
        fs::write(&path, "[daemon]\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_trusted_file(&path).unwrap().0, "[daemon]\n");

        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = read_trusted_file(&path).unwrap_err().to_string();
        let shown = dir.path().display().to_string();
        assert!(
            err.starts_with(&format!("{shown}: writable by group or others (mode 0777)")),
            "{err}"
        );
        assert!(err.contains(&format!("chmod go-w {shown}")), "{err}");

        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(read_trusted_file(&path).is_ok());
    }
}
