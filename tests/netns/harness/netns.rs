//! The library's [`sandbox::Netns`] for tests: the same namespace, with methods that panic
//! (with the command's output) instead of returning errors.

use std::ops::Deref;
use std::process::{Command, Output};

use knock_nfq::sandbox;

#[derive(Debug)]
pub struct Netns(sandbox::Netns);

impl Netns {
    pub fn create(prefix: &str) -> Netns {
        Netns(sandbox::Netns::create(prefix).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Runs a program in the namespace and panics (with its output) if it fails.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.0.exec(program, args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ip ARGS` in the namespace; panics if it fails.
    #[allow(dead_code, reason = "harness API: the latency bench uses it")]
    pub fn ip(&self, args: &[&str]) -> Output {
        self.exec("ip", args)
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it creates live there.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.0.run(f).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl From<sandbox::Netns> for Netns {
    fn from(netns: sandbox::Netns) -> Netns {
        Netns(netns)
    }
}

/// The library's namespace, for its functions and for `name` and `command`.
impl Deref for Netns {
    type Target = sandbox::Netns;

    fn deref(&self) -> &sandbox::Netns {
        &self.0
    }
}

/// Runs `command`, panicking with its output unless it succeeds.
#[allow(
    dead_code,
    reason = "harness API for the test files that run host commands"
)]
pub fn run_ok(command: &mut Command) -> Output {
    sandbox::run(command).unwrap_or_else(|e| panic!("{e}"))
}
