//! Debian's knockd, the reference the project replaces, run on the gateway like a knockd user
//! on nftables would run it.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::netns::Netns;

/// Debian's knockd on the gateway's WAN interface, granting with `nft add element` into the
/// ruleset's allow4 set.
pub struct Knockd {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Knockd {
    /// Starts knockd in `gw` and waits until it listens.
    pub fn start(gw: &Netns) -> Knockd {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("knockd.conf");
        let log = dir.path().join("knockd.log");
        fs::write(
            &conf,
            format!(
                "[options]\n    LogFile = {}\n    Interface = wan0\n\n[openSSH]\n    \
                 sequence = 7000:tcp,8000:tcp,9000:udp\n    seq_timeout = 5\n    \
                 tcpflags = syn\n    start_command = /usr/sbin/nft add element inet \
                 knock_nfq allow4 {{ %IP% . tcp . 22 timeout 30s }}\n",
                log.display()
            ),
        )
        .expect("write knockd.conf");
        let child = gw
            .command("knockd")
            .args(["-i", "wan0", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start knockd");
        let knockd = Knockd {
            child,
            log,
            _dir: dir,
        };
        knockd.wait_for_log("starting up, listening on wan0");
        knockd
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_for_log(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(line) {
            assert!(
                Instant::now() < deadline,
                "knockd did not log {line:?}; its log:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Knockd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
