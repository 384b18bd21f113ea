//! Asking the kernel whether a source holds a grant: the answer for a connection attempt that
//! raced its own knock into the queue (the ruleset queues a new connection to a protected
//! service only from a source that knocked in the last seconds).

use std::net::IpAddr;

use super::sys::{ElemMsg, ElemOp};
use super::{Nft, NftError, keys, sets, sys};
use crate::config::Proto;
use crate::nft::socket::{self, Reply};

/// A connection attempt to a protected service, as the queue saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// To this host (the input hook): the `allow4/6` grant `source . proto . port`.
    Local {
        source: IpAddr,
        proto: Proto,
        port: u16,
    },
    /// Through the gateway (the forward hook): the `allow_fwd4/6` grant, destination included.
    Forward {
        source: IpAddr,
        destination: IpAddr,
        proto: Proto,
        port: u16,
    },
}

impl Nft {
    /// Whether the kernel's grant set holds (an unexpired) element for `attempt`.
    pub fn is_granted(&mut self, attempt: Attempt) -> Result<bool, NftError> {
        let (spec, key) = match attempt {
            Attempt::Local {
                source,
                proto,
                port,
            } => {
                let spec = if source.is_ipv4() {
                    sets::ALLOW4
                } else {
                    sets::ALLOW6
                };
                (spec, keys::addr_proto_port(source, proto, port))
            }
            Attempt::Forward {
                source,
                destination,
                proto,
                port,
            } => {
                if source.is_ipv4() != destination.is_ipv4() {
                    return Ok(false);
                }
                let spec = if source.is_ipv4() {
                    sets::ALLOW_FWD4
                } else {
                    sets::ALLOW_FWD6
                };
                (spec, keys::forward_grant(source, destination, proto, port))
            }
        };
        let mut message = ElemMsg::new(&self.table_c, &sys::c_name(spec.name), ElemOp::Get);
        message.push(&key, 0, None);
        let mut request = Vec::new();
        message.standalone(&mut request, 1);
        let replies = self
            .socket
            .transact([request.as_slice()])
            .map_err(NftError::Io)?;
        let is_element = |reply: &Reply| {
            matches!(reply, Reply::Data { message }
                if socket::message_type(message) == Some(sys::NEW_SET_ELEM_MESSAGE))
        };
        if replies.iter().any(is_element) {
            return Ok(true);
        }
        match socket::first_error(&replies) {
            Some(libc::ENOENT) => Ok(false),
            errno => Err(self.failed(errno, format!("a lookup in set {}", spec.name))),
        }
    }
}
