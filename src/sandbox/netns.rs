//! A network namespace owned by this process: created with a unique name, deleted on drop
//! (also when a test panics), with helpers to run commands and Rust code inside it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use super::{SandboxError, run};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// One namespace; deleted, with every process in it, on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace named `prefix`, this process's id and a counter, with `lo` up.
    pub fn create(prefix: &str) -> Result<Netns, SandboxError> {
        let name = format!(
            "{prefix}{}-{}",
            std::process::id() % 100_000,
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        // No duplicate address detection on links made later: a tentative link-local address
        // delays the first neighbour solicitation, and with it the first IPv6 packets.
        netns.sysctl("net.ipv6.conf.default.accept_dad=0")?;
        netns.sysctl("net.ipv6.conf.all.accept_dad=0")?;
        Ok(netns)
    }

    /// `ip netns exec NAME PROGRAM`, to be given arguments and run.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs a program in the namespace; a failure carries its output.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output, SandboxError> {
        run(self.command(program).args(args))
    }

    pub fn ip(&self, args: &[&str]) -> Result<Output, SandboxError> {
        self.exec("ip", args)
    }

    pub fn sysctl(&self, key_value: &str) -> Result<(), SandboxError> {
        self.exec("sysctl", &["-qw", key_value]).map(drop)
    }

    /// Runs `f` on a thread that has entered this namespace: the sockets it opens live there.
    /// A panic in `f` is resumed on the calling thread.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SandboxError> {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || enter(&path).map(|()| f()))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &str) -> Result<(), SandboxError> {
    let error = |source| SandboxError::Enter {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(error)?;
    // SAFETY: setns with a namespace fd we hold open changes only this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(error(io::Error::last_os_error()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
            {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid is in our namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
