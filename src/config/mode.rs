//! Who else may change or read a file the daemon trusts: a config writable by a local user
//! would let them open doors, and one readable by all gives away the sequences. Key and secret
//! files are stricter: private to their owner, or refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
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

/// Refuses a file that group or others may write; reports one that everyone may read.
pub fn check_trusted_file(path: &Path) -> Result<Exposure, ConfigError> {
    let metadata = fs::metadata(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & SHARED_WRITE != 0 {
        return Err(ConfigError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(if mode & WORLD_READ != 0 {
        Exposure::WorldReadable { mode }
    } else {
        Exposure::Private
    })
}

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
            let err = check_trusted_file(file.path()).unwrap_err().to_string();
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
        assert_eq!(
            check_trusted_file(file_with_mode(0o600).path()).unwrap(),
            Exposure::Private
        );
        assert_eq!(
            check_trusted_file(file_with_mode(0o640).path()).unwrap(),
            Exposure::Private
        );
        assert_eq!(
            check_trusted_file(file_with_mode(0o644).path()).unwrap(),
            Exposure::WorldReadable { mode: 0o644 }
        );
    }
}
