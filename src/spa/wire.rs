//! The SPA datagram, version 1 (specified in `docs/spa.md`): a fixed header, the door's name,
//! the requested ports, an optional address to grant, and an HMAC-SHA256 over all of it.
//! Decoding borrows the datagram and never allocates; it checks structure only, the MAC is
//! [`Key::verify`]'s.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Proto;

pub const VERSION: u8 = 1;
pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 16;
pub const MAC_LEN: usize = 32;
/// Door names are 1-64 characters; a door opens at most this many targets.
pub const MAX_NAME_LEN: usize = 64;
pub const MAX_PORTS: usize = 16;
/// Flag bit: an address to grant follows the ports.
const FLAG_ADDRESS: u8 = 0x01;
/// version, flags, timestamp (8), nonce (16), name length.
const HEADER_LEN: usize = 1 + 1 + 8 + NONCE_LEN + 1;
/// The largest valid datagram: 189 bytes.
pub const MAX_LEN: usize = HEADER_LEN + MAX_NAME_LEN + 1 + 3 * MAX_PORTS + 17 + MAC_LEN;

/// A door's 32-byte HMAC key. Never printed: `Debug` shows only that it is a key. The HMAC
/// state after the key's blocks is computed once, so a datagram costs only its own blocks.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; KEY_LEN],
    keyed: Hmac<Sha256>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(redacted)")
    }
}

impl Key {
    pub fn new(bytes: [u8; KEY_LEN]) -> Key {
        // HMAC takes keys of any length, so this cannot fail.
        let keyed = Hmac::<Sha256>::new_from_slice(&bytes).expect("HMAC accepts any key length");
        Key { bytes, keyed }
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.keyed.clone()
    }

    /// HMAC-SHA256 of `signed`.
    pub fn sign(&self, signed: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac();
        mac.update(signed);
        mac.finalize().into_bytes().into()
    }

    /// Whether `tag` is the MAC of `signed`, compared in constant time.
    pub fn verify(&self, signed: &[u8], tag: &[u8; MAC_LEN]) -> bool {
        let mut mac = self.mac();
        mac.update(signed);
        mac.verify_slice(tag).is_ok()
    }
}

/// A port the client asks to have opened: one of the door's targets' (protocol, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestedPort {
    pub proto: Proto,
    pub port: u16,
}

/// What a client sends, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Seconds since the Unix epoch, at sending.
    pub timestamp: u64,
    pub nonce: [u8; NONCE_LEN],
    pub door: String,
    /// Empty: every target of the door.
    pub ports: Vec<RequestedPort>,
    /// The address to grant instead of the sender's (a client behind NAT).
    pub address: Option<IpAddr>,
}

/// Why a datagram is not a well-formed version 1 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("shorter than its fields say, or longer")]
    Length,
    #[error("not version 1")]
    Version,
    #[error("unknown flag bits")]
    Flags,
    #[error("a door name that is empty, too long or not ASCII")]
    Name,
    #[error("more than 16 ports, or a protocol other than tcp or udp")]
    Ports,
    #[error("an address family other than 4 or 6")]
    Family,
}

/// A well-formed datagram, borrowed; its MAC is not checked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub timestamp: u64,
    pub nonce: [u8; NONCE_LEN],
    pub door: &'a str,
    /// Three bytes per port: protocol number, port (big-endian).
    ports: &'a [u8],
    pub address: Option<IpAddr>,
    /// Every byte the MAC covers.
    pub signed: &'a [u8],
    pub tag: [u8; MAC_LEN],
}

impl Parsed<'_> {
    pub fn ports(&self) -> impl Iterator<Item = RequestedPort> + '_ {
        self.ports.chunks_exact(3).map(|p| RequestedPort {
            proto: if p[0] == Proto::Tcp.number() {
                Proto::Tcp
            } else {
                Proto::Udp
            },
            port: u16::from_be_bytes([p[1], p[2]]),
        })
    }
}

/// The signed datagram for `message`.
///
/// # Panics
/// With a door name or port list over the limits (the client validates both first).
pub fn encode(message: &Message, key: &Key) -> Vec<u8> {
    assert!((1..=MAX_NAME_LEN).contains(&message.door.len()) && message.door.is_ascii());
    assert!(message.ports.len() <= MAX_PORTS);
    let mut out = Vec::with_capacity(MAX_LEN);
    out.push(VERSION);
    out.push(if message.address.is_some() {
        FLAG_ADDRESS
    } else {
        0
    });
    out.extend_from_slice(&message.timestamp.to_be_bytes());
    out.extend_from_slice(&message.nonce);
    out.push(u8::try_from(message.door.len()).expect("asserted above"));
    out.extend_from_slice(message.door.as_bytes());
    out.push(u8::try_from(message.ports.len()).expect("asserted above"));
    for port in &message.ports {
        out.push(port.proto.number());
        out.extend_from_slice(&port.port.to_be_bytes());
    }
    match message.address {
        Some(IpAddr::V4(addr)) => {
            out.push(4);
            out.extend_from_slice(&addr.octets());
        }
        Some(IpAddr::V6(addr)) => {
            out.push(6);
            out.extend_from_slice(&addr.octets());
        }
        None => {}
    }
    let tag = key.sign(&out);
    out.extend_from_slice(&tag);
    out
}

/// Reads a datagram's structure; every byte must belong to a field.
pub fn decode(datagram: &[u8]) -> Result<Parsed<'_>, WireError> {
    let body_len = datagram
        .len()
        .checked_sub(MAC_LEN)
        .ok_or(WireError::Length)?;
    let (signed, tag) = datagram.split_at(body_len);
    let mut reader = Reader(signed);
    if reader.byte()? != VERSION {
        return Err(WireError::Version);
    }
    let flags = reader.byte()?;
    if flags & !FLAG_ADDRESS != 0 {
        return Err(WireError::Flags);
    }
    let timestamp = u64::from_be_bytes(reader.array()?);
    let nonce = reader.array()?;
    let name_len = usize::from(reader.byte()?);
    let door = std::str::from_utf8(reader.take(name_len)?).map_err(|_| WireError::Name)?;
    if door.is_empty() || name_len > MAX_NAME_LEN || !door.is_ascii() {
        return Err(WireError::Name);
    }
    let port_count = usize::from(reader.byte()?);
    if port_count > MAX_PORTS {
        return Err(WireError::Ports);
    }
    let ports = reader.take(3 * port_count)?;
    let known = [Proto::Tcp.number(), Proto::Udp.number()];
    if ports.chunks_exact(3).any(|p| !known.contains(&p[0])) {
        return Err(WireError::Ports);
    }
    let address = match flags & FLAG_ADDRESS {
        0 => None,
        _ => Some(match reader.byte()? {
            4 => IpAddr::V4(Ipv4Addr::from(reader.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(reader.array::<16>()?)),
            _ => return Err(WireError::Family),
        }),
    };
    if !reader.0.is_empty() {
        return Err(WireError::Length);
    }
    Ok(Parsed {
        timestamp,
        nonce,
        door,
        ports,
        address,
        signed,
        tag: tag.try_into().map_err(|_| WireError::Length)?,
    })
}

/// The unread rest of a datagram.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Length);
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
}
