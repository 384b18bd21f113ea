//! `knock-nfq knock`: a drop-in for knockd's `knock` client.
//!
//! The arguments become a [`KnockPlan`] (pure, unit-tested without a network); [`send()`] then
//! resolves the host once and sends the knocks: a TCP knock is one SYN from a non-blocking
//! connect that is closed at once, a UDP knock one datagram.

mod error;
mod send;
mod spa;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use error::ClientError;
pub use send::send;
pub use spa::{
    DEFAULT_PORT as DEFAULT_SPA_PORT, SpaPlan, key_from_file, requested_ports, send_spa,
};

use crate::config::parse;
use crate::config::{Config, Door, KnockPort, Proto, SequenceOrigin};

/// Which address of the host to knock on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamily {
    /// The first address the resolver returns, as knockd's client does.
    Any,
    V4,
    V6,
}

/// Whether to print each knock as it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    /// `hitting tcp 192.0.2.1:7000`, like knockd's `knock -v`.
    EachKnock,
}

/// Everything `knock` is asked to do, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnockPlan {
    pub host: String,
    pub family: AddressFamily,
    pub knocks: Vec<KnockPort>,
    /// Pause between two knocks (not after the last).
    pub delay: Duration,
    pub verbosity: Verbosity,
}

/// What `PORT` alone means: TCP, or UDP under `-u`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultProto(pub Proto);

/// Where the knocks come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnockSource {
    /// knockd's client syntax, one argument per knock.
    Ports {
        specs: Vec<String>,
        default: DefaultProto,
    },
    /// The sequence of a door in a knock-nfq config.
    Door { config: PathBuf, door: String },
}

/// What the user asked for, not yet validated (the command line's view, without clap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnockRequest {
    pub host: String,
    pub family: AddressFamily,
    pub knocks: KnockSource,
    pub delay: Duration,
    pub verbosity: Verbosity,
}

/// What a port argument must look like.
pub const EXPECT_KNOCK: &str = "PORT[:tcp|udp] with PORT 1-65535";

impl KnockPlan {
    /// Validates a request: the ports given, or the sequence of the door in the config.
    pub fn from_request(request: &KnockRequest) -> Result<KnockPlan, ClientError> {
        let knocks = match &request.knocks {
            KnockSource::Door { config, door } => door_sequence(&Config::load(config)?, door)?,
            KnockSource::Ports { specs, default } => parse_knocks(specs, *default)?,
        };
        Ok(KnockPlan {
            host: request.host.clone(),
            family: request.family,
            knocks,
            delay: request.delay,
            verbosity: request.verbosity,
        })
    }
}

/// knockd's client syntax: `PORT` (the default protocol) or `PORT:tcp` / `PORT:udp`, which
/// win over `-u`.
pub fn parse_knocks(
    specs: &[String],
    default: DefaultProto,
) -> Result<Vec<KnockPort>, ClientError> {
    specs
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            parse_knock(spec, default).ok_or_else(|| ClientError::BadPort {
                position: index + 1,
                spec: spec.clone(),
                expected: EXPECT_KNOCK,
            })
        })
        .collect()
}

fn parse_knock(spec: &str, DefaultProto(default): DefaultProto) -> Option<KnockPort> {
    match spec.split_once(':') {
        Some((port, proto)) => Some(KnockPort {
            port: parse::port(port)?,
            proto: parse::proto(proto)?,
        }),
        None => Some(KnockPort {
            port: parse::port(spec)?,
            proto: default,
        }),
    }
}

/// The sequence of the door called `name`; an unknown name lists the doors there are.
pub fn door_sequence(config: &Config, name: &str) -> Result<Vec<KnockPort>, ClientError> {
    let door = find_door(config, name)?;
    match &door.origin {
        SequenceOrigin::Fixed => Ok(door.sequence.clone()),
        // The step now, by this machine's clock; the daemon accepts `skew` steps either side.
        SequenceOrigin::Totp(t) => {
            let step = crate::once::totp::step_of(t, crate::clock::unix_now());
            Ok(crate::once::totp::sequence(
                &t.secret, step, t.length, t.ports,
            ))
        }
        SequenceOrigin::OneTime(one) => Err(ClientError::OneTimeDoor {
            door: door.name.clone(),
            file: one.file.clone(),
        }),
    }
}

/// The door called `name`; an unknown name lists the doors there are.
pub fn find_door<'a>(config: &'a Config, name: &str) -> Result<&'a Door, ClientError> {
    config
        .doors
        .iter()
        .find(|door| door.name == name)
        .ok_or_else(|| ClientError::UnknownDoor {
            name: name.to_owned(),
            path: config.path.clone(),
            doors: config.doors.iter().map(|d| d.name.clone()).collect(),
        })
}

/// `[2001:db8::1]` as well as `2001:db8::1`: users copy bracketed addresses from URLs.
fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}
