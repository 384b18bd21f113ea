//! `knock-nfq spa`: one signed datagram to an SPA door (the format is in `docs/spa.md`).

use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;

use super::send::{resolve, unspecified};
use super::{AddressFamily, ClientError, Verbosity};
use crate::config::{Door, Target, read_key_file};
use crate::spa::{self, Key, MAX_PORTS, Message, NONCE_LEN, RequestedPort};

/// fwknop's port: SPA users know it, and any other can be configured.
pub const DEFAULT_PORT: u16 = 62201;

/// Everything one SPA message needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaPlan {
    pub host: String,
    pub family: AddressFamily,
    pub port: u16,
    pub door: String,
    pub key: Key,
    /// Empty: every target of the door.
    pub ports: Vec<RequestedPort>,
    pub grant_address: Option<IpAddr>,
    pub verbosity: Verbosity,
}

impl SpaPlan {
    /// The port and key of `door` from a knock-nfq config, if it is an SPA door.
    pub fn for_door(door: &Door, host: &str) -> Option<SpaPlan> {
        let spa = door.spa.as_ref()?;
        Some(SpaPlan {
            host: host.to_owned(),
            family: AddressFamily::Any,
            port: spa.port,
            door: door.name.clone(),
            key: spa.key.clone(),
            ports: Vec::new(),
            grant_address: None,
            verbosity: Verbosity::Quiet,
        })
    }
}

/// The key in `path`, refused when group or others may read it.
pub fn key_from_file(path: &Path) -> Result<Key, ClientError> {
    Ok(read_key_file(path)?)
}

/// `PORT/PROTO` arguments (`22/tcp`, `22` for TCP) as requested ports.
pub fn requested_ports(specs: &[String]) -> Result<Vec<RequestedPort>, ClientError> {
    if specs.len() > MAX_PORTS {
        return Err(ClientError::TooManyPorts { max: MAX_PORTS });
    }
    specs
        .iter()
        .map(|spec| match crate::config::parse::target(spec) {
            Ok(Target::Local { port, proto }) => Ok(RequestedPort { proto, port }),
            _ => Err(ClientError::BadOpen { spec: spec.clone() }),
        })
        .collect()
}

/// Sends the message, stamped now with a fresh random nonce.
pub fn send_spa(plan: &SpaPlan, out: &mut impl Write) -> Result<(), ClientError> {
    let addr = resolve(&plan.host, plan.family)?;
    let dest = SocketAddr::new(addr, plan.port);
    let mut nonce = [0; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|err| ClientError::Random(err.to_string()))?;
    let timestamp = crate::clock::unix_now().as_secs();
    let message = Message {
        timestamp,
        nonce,
        door: plan.door.clone(),
        ports: plan.ports.clone(),
        address: plan.grant_address,
    };
    let datagram = spa::encode(&message, &plan.key);
    if plan.verbosity == Verbosity::EachKnock {
        let _ = writeln!(out, "sending SPA for door {} to {dest}", plan.door);
    }
    let send = || -> std::io::Result<()> {
        let socket = UdpSocket::bind(SocketAddr::new(unspecified(dest), 0))?;
        socket.send_to(&datagram, dest).map(drop)
    };
    send().map_err(|source| ClientError::Send {
        proto: crate::config::Proto::Udp,
        dest,
        source,
    })
}
