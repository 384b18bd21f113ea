//! The daemon the demo runs on its gateway, and the files it needs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::DemoError;
use crate::sandbox::Netns;

/// The demo's files (config, notify socket) in a fresh directory only root can open, created
/// under a random name (never a fixed path in /tmp) and removed on drop.
#[derive(Debug)]
pub struct Files(TempDir);

impl Files {
    pub fn create() -> Result<Files, DemoError> {
        // mkdir(2) with mode 0700: never a moment when others can look in.
        tempfile::Builder::new()
            .prefix("knock-nfq-demo-")
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir()
            .map(Files)
            .map_err(|e| DemoError::Io("creating the demo's private directory".into(), e))
    }

    pub fn dir(&self) -> &Path {
        self.0.path()
    }

    fn config(&self) -> PathBuf {
        self.dir().join("knock-nfq.toml")
    }

    /// Writes the config readable by root alone, as the daemon wants a file holding sequences.
    fn write_config(&self, config: &str) -> Result<PathBuf, DemoError> {
        let path = self.config();
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(config.as_bytes()))
            .map_err(|e| DemoError::Io("writing the demo config".into(), e))?;
        Ok(path)
    }

    fn notify(&self) -> PathBuf {
        self.dir().join("notify")
    }
}

/// The daemon process on the gateway; killed when dropped.
#[derive(Debug)]
pub struct Daemon(Child);

impl Daemon {
    /// Writes `config` into `files` and starts `binary` on it in `gw`, until it is ready.
    pub fn start(
        gw: &Netns,
        binary: &Path,
        config: &str,
        files: &Files,
    ) -> Result<Daemon, DemoError> {
        let config = files.write_config(config)?;
        let notify = UnixDatagram::bind(files.notify())
            .map_err(|e| DemoError::Io("binding the notify socket".into(), e))?;
        let child = gw
            .command(binary.to_str().unwrap_or("knock-nfq"))
            .args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", files.notify())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| DemoError::Io("starting knock-nfq".into(), e))?;
        let mut daemon = Daemon(child);
        daemon.wait_ready(&notify)?;
        Ok(daemon)
    }

    fn wait_ready(&mut self, notify: &UnixDatagram) -> Result<(), DemoError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 256];
        let _ = notify.set_read_timeout(Some(Duration::from_millis(100)));
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Err(DemoError::Step(format!(
                    "knock-nfq exited ({status}) before it was ready"
                )));
            }
            if let Ok(n) = notify.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1")
            {
                return Ok(());
            }
        }
        Err(DemoError::Step(
            "knock-nfq was not ready within 10 s".into(),
        ))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_files_live_in_a_fresh_directory_only_its_owner_can_open() {
        let (files, other) = (Files::create().unwrap(), Files::create().unwrap());
        assert_ne!(
            files.dir(),
            other.dir(),
            "each run gets a directory of its own"
        );
        let mode = fs::metadata(files.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(
            fs::read_dir(files.dir()).unwrap().next().is_none(),
            "created empty"
        );
        for path in [files.config(), files.notify()] {
            assert_eq!(path.parent(), Some(files.dir()));
        }

        let config = files.write_config("[daemon]\n").unwrap();
        assert_eq!(fs::read_to_string(&config).unwrap(), "[daemon]\n");
        let mode = fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the knock sequences are root's alone");

        let dir = files.dir().to_owned();
        drop(files);
        assert!(!dir.exists(), "removed when the demo ends");
    }
}
