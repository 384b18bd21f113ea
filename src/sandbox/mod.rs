//! Throw-away networks of network namespaces: the code behind `knock-nfq demo` and the netns
//! integration tests (`tests/netns/`), so both run the product on the same network and ruleset.
//!
//! - [`Netns`]: a namespace with a unique name, deleted with its processes on drop; commands
//!   and closures run inside it.
//! - [`Topology`]: client ── wan0 \[gateway\] lan0 ── LAN host, dual-stack, with a port forward.
//! - [`ruleset::load`]: a ruleset into a namespace, with an iptables-nft NFQUEUE fallback for
//!   kernels without nft's `queue` expression.
//! - [`serve`] and [`Session`]: the services behind the guarded ports, and a client's view.
//!
//! Everything here needs root and the `ip`, `nft` and `iptables-nft` tools.

mod netns;
pub mod ruleset;
mod service;
mod topology;

use std::io;
use std::process::{Command, ExitStatus, Output};

pub use netns::Netns;
pub use ruleset::RulesetMode;
pub use service::{Session, connect_from, serve};
pub use topology::{CLIENT4, CLIENT6, GW4, GW6, LAN4, LAN6, OTHER4, OTHER6, Topology};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot run {command}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("{command} failed ({status}): {output}")]
    Command {
        command: String,
        status: ExitStatus,
        output: String,
    },
    #[error("cannot enter the network namespace {path}")]
    Enter {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the ruleset has no `queue num` statement")]
    NoQueue,
    #[error(
        "the iptables-nft fallback cannot translate `{0}`: it takes `queue num N`, \
         `queue num N-M` and `queue num N-M fanout`, never `bypass` (the queue fails closed)"
    )]
    QueueStatement(String),
}

/// Runs `command`; a failure carries its exit status and output.
pub fn run(command: &mut Command) -> Result<Output, SandboxError> {
    let out = command.output().map_err(|source| SandboxError::Spawn {
        command: format!("{command:?}"),
        source,
    })?;
    if out.status.success() {
        return Ok(out);
    }
    let output = [&out.stdout, &out.stderr]
        .map(|bytes| String::from_utf8_lossy(bytes).trim().to_owned())
        .join("\n");
    Err(SandboxError::Command {
        command: format!("{command:?}"),
        status: out.status,
        output: output.trim().to_owned(),
    })
}
