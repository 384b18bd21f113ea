//! Why `knock` did not knock. Each message names the argument or host at fault and what was
//! expected.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::config::{ConfigError, Proto};

use super::AddressFamily;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A port argument that is not knockd's `PORT[:tcp|udp]`.
    #[error("port argument {position} ({spec:?}): expected {expected}")]
    BadPort {
        /// 1-based, among the port arguments.
        position: usize,
        spec: String,
        expected: &'static str,
    },

    /// `--config` could not be read or is invalid; its message is complete.
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("{}: no door named {name:?}; the doors there are: {}", path.display(), doors.join(", "))]
    UnknownDoor {
        name: String,
        path: PathBuf,
        doors: Vec<String>,
    },

    #[error(
        "door {door:?} takes one-time sequences from {}: knock the next unused line of your \
         copy of that list by hand (knock-nfq knock HOST PORT...), then mark it used",
        file.display()
    )]
    OneTimeDoor { door: String, file: PathBuf },

    #[error("--open {spec:?}: expected PORT/PROTO of one of the door's targets, such as 22/tcp")]
    BadOpen { spec: String },

    #[error("at most {max} --open ports fit in one SPA message")]
    TooManyPorts { max: usize },

    #[error("cannot draw a random nonce: {0}")]
    Random(String),

    #[error("cannot resolve host {host:?}: {reason}")]
    Resolve { host: String, reason: String },

    /// The host resolved, but not to an address of the family asked for with -4 or -6.
    #[error("host {host:?} has no {} address (it resolves to {})", family_name(*family), list(found))]
    NoAddress {
        host: String,
        family: AddressFamily,
        found: Vec<IpAddr>,
    },

    /// The OS refused to send a knock (no route, no such address family here).
    #[error("cannot send the {proto} knock to {dest}")]
    Send {
        proto: Proto,
        dest: SocketAddr,
        #[source]
        source: io::Error,
    },
}

fn family_name(family: AddressFamily) -> &'static str {
    match family {
        AddressFamily::Any => "usable",
        AddressFamily::V4 => "IPv4",
        AddressFamily::V6 => "IPv6",
    }
}

fn list(addrs: &[IpAddr]) -> String {
    let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    shown.join(", ")
}
