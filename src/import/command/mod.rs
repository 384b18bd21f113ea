//! knockd's grant commands into what they open for the knocker (`%IP%`).
//!
//! knockd runs a shell command when a sequence completes. This reads the common ones, a single
//! `iptables`/`ip6tables` rule or `nft` command that admits `%IP%` to a port, and says why for
//! everything else. It never guesses: a command it does not fully understand is
//! [`Unsupported`], and the door stays a comment for a person to finish.

mod iptables;
mod nft;
mod words;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::Duration;

use crate::config::{Proto, Target, parse};

/// What a grant command does for the knocker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub op: GrantOp,
    pub targets: Vec<Target>,
    /// nft's per-element `timeout`: the kernel ends the grant by itself.
    pub timeout: Option<Duration>,
    /// Parts of the command that were dropped in translation, for the output's comments.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOp {
    /// `iptables -A/-I`, `nft add element`, `nft add rule`.
    Add,
    /// `iptables -D`, `nft delete element`.
    Delete,
}

/// Why a command was not translated. Reads after "the command": `runs /usr/local/bin/x, ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl Unsupported {
    fn new(why: impl Into<String>) -> Self {
        Unsupported(why.into())
    }
}

/// Reads one knockd command.
pub fn grant(command: &str) -> Result<Grant, Unsupported> {
    let words = words::split(command)?;
    program(&words)
}

fn program(words: &[String]) -> Result<Grant, Unsupported> {
    let Some((program, args)) = words.split_first() else {
        return Err(Unsupported::new("is empty"));
    };
    match program.rsplit('/').next().unwrap_or(program) {
        "sudo" => self::program(args),
        "iptables" | "ip6tables" | "iptables-nft" | "ip6tables-nft" | "iptables-legacy"
        | "ip6tables-legacy" => iptables::grant(args),
        "nft" => nft::grant(args),
        _ => Err(Unsupported::new(format!(
            "runs {program}, and knock-nfq runs no commands: it only opens ports it is told \
             about with open = [...]"
        ))),
    }
}

/// Where a rule sits, from its chain's name: it decides between a local and a forward target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hook {
    Input,
    Forward,
    /// A user chain, taken to be jumped to from INPUT (ArchWiki's `TCP` chain).
    Custom(String),
}

impl Hook {
    fn of(chain: &str) -> Result<Hook, Unsupported> {
        let upper = chain.to_ascii_uppercase();
        match upper.as_str() {
            "INPUT" => Ok(Hook::Input),
            "FORWARD" => Ok(Hook::Forward),
            "OUTPUT" | "PREROUTING" | "POSTROUTING" => Err(Unsupported::new(format!(
                "adds to chain {chain}, where an accept does not admit the knocker to a service"
            ))),
            _ => Ok(Hook::Custom(chain.to_owned())),
        }
    }
}

/// What a rule admits once its chain, destination, protocol and ports are known.
#[derive(Debug, Default)]
struct Admits {
    dest: Option<IpAddr>,
    proto: Option<Proto>,
    ports: Vec<u16>,
    notes: Vec<String>,
}

impl Admits {
    fn targets(mut self, hook: &Hook, op: GrantOp, no_port: &str) -> Result<Grant, Unsupported> {
        let proto = match (self.proto, self.ports.is_empty()) {
            (_, true) => return Err(Unsupported::new(no_port.to_owned())),
            (Some(proto), false) => proto,
            (None, false) => {
                return Err(Unsupported::new(
                    "names a port without a protocol (-p tcp or -p udp), which iptables refuses",
                ));
            }
        };
        let targets = match hook {
            Hook::Forward => self.forward(proto)?,
            Hook::Input | Hook::Custom(_) => self.local(hook, proto),
        };
        Ok(Grant {
            op,
            targets,
            timeout: None,
            notes: self.notes,
        })
    }

    fn forward(&self, proto: Proto) -> Result<Vec<Target>, Unsupported> {
        let Some(addr) = self.dest else {
            return Err(Unsupported::new(
                "forwards to every host behind the gateway (no destination address); \
                 knock-nfq opens ADDR:PORT/PROTO targets",
            ));
        };
        if addr.is_loopback() || addr.is_multicast() || addr.is_unspecified() {
            return Err(Unsupported::new(format!(
                "forwards to {addr}, which is never forwarded"
            )));
        }
        let target = |port| Target::Forward { addr, port, proto };
        Ok(self.ports.iter().copied().map(target).collect())
    }

    fn local(&mut self, hook: &Hook, proto: Proto) -> Vec<Target> {
        if let Some(addr) = self.dest {
            self.notes.push(format!(
                "the destination {addr} was dropped: knock-nfq opens the port on every address \
                 of this host"
            ));
        }
        if let Hook::Custom(chain) = hook {
            self.notes.push(format!(
                "chain {chain} is taken to be called from INPUT, for a service on this host"
            ));
        }
        let target = |port| Target::Local { port, proto };
        self.ports.iter().copied().map(target).collect()
    }
}

/// `%IP%`, also as a host prefix (`%IP%/32`).
fn is_knocker(value: &str) -> bool {
    matches!(value, "%IP%" | "%IP%/32" | "%IP%/128")
}

fn proto(value: &str) -> Result<Proto, Unsupported> {
    parse::proto(value).ok_or_else(|| {
        Unsupported::new(format!(
            "uses protocol {value:?}; knock-nfq opens tcp and udp ports"
        ))
    })
}

/// A port number, or one of the service names people write in rules (`--dport ssh`).
fn port(value: &str) -> Result<u16, Unsupported> {
    if let Some(port) = parse::port(value) {
        return Ok(port);
    }
    if value.contains(':') || value.contains('-') {
        return Err(Unsupported::new(format!(
            "opens the port range {value}; knock-nfq opens single ports"
        )));
    }
    SERVICES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value))
        .map(|&(_, port)| port)
        .ok_or_else(|| {
            Unsupported::new(format!(
                "names the port {value:?}, which this import does not know; write its number"
            ))
        })
}

/// /etc/services names common in knockd configs; fixed here so the output does not depend on
/// the machine the import runs on.
const SERVICES: &[(&str, u16)] = &[
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("http", 80),
    ("pop3", 110),
    ("imap", 143),
    ("imap2", 143),
    ("https", 443),
    ("submission", 587),
    ("rsync", 873),
    ("imaps", 993),
    ("pop3s", 995),
    ("openvpn", 1194),
    ("mysql", 3306),
    ("ms-wbt-server", 3389),
    ("postgresql", 5432),
];

/// An address as written in a rule; a host prefix (`/32`, `/128`) is the address itself.
fn address(value: &str) -> Result<IpAddr, Unsupported> {
    let (addr, prefix) = value.split_once('/').unwrap_or((value, ""));
    let parsed: Option<IpAddr> = addr.parse().ok();
    match (parsed, prefix) {
        (Some(ip), "") => Ok(ip),
        (Some(IpAddr::V4(v4)), "32") => Ok(IpAddr::V4(v4)),
        (Some(IpAddr::V6(v6)), "128") => Ok(IpAddr::V6(v6)),
        _ => Err(Unsupported::new(format!(
            "matches the destination {value:?}; knock-nfq opens single addresses"
        ))),
    }
}
