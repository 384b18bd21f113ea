//! A network namespace owned by a test: created with a unique name, torn down on drop (also
//! when the test panics), with helpers to run commands and Rust code inside it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call (netns and interface names are limited).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id() % 100_000,
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(prefix: &str) -> Netns {
        let netns = Netns {
            name: unique(prefix),
        };
        run_ok(Command::new("ip").args(["netns", "add", &netns.name]));
        netns.ip(&["link", "set", "lo", "up"]);
        // No duplicate address detection on links made later: a tentative link-local address
        // delays the first neighbour solicitation, and with it a test's first IPv6 packets.
        netns.sysctl("net.ipv6.conf.default.accept_dad=0");
        netns.sysctl("net.ipv6.conf.all.accept_dad=0");
        netns
    }

    /// `ip netns exec NAME ...`, without checking the status.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs a program in the namespace and panics (with its output) if it fails.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        run_ok(self.command(program).args(args))
    }

    pub fn ip(&self, args: &[&str]) -> Output {
        self.exec("ip", args)
    }

    pub fn sysctl(&self, key_value: &str) {
        self.exec("sysctl", &["-qw", key_value]);
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it creates live there.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Moves the calling thread into the namespace at `path`.
fn enter(path: &str) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on a valid namespace fd affects only the calling thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `command`, panicking with its output unless it succeeds.
pub fn run_ok(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
