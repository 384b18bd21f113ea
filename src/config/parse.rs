//! Parsers for the strings inside the config: knocks, targets, TCP flags, names. Pure functions;
//! the caller turns a `None` or an `Err` into a [`ConfigError`](super::ConfigError) with the key.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use super::model::{KnockPort, Proto, Target, TcpFlags, tcp_flag};

/// A port 1-65535, digits only (`u16::from_str` would also take `+22`).
pub fn port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&p| p != 0)
}

/// `tcp` or `udp`, in any case (knockd compares case-insensitively).
pub fn proto(s: &str) -> Option<Proto> {
    if s.eq_ignore_ascii_case("tcp") {
        Some(Proto::Tcp)
    } else if s.eq_ignore_ascii_case("udp") {
        Some(Proto::Udp)
    } else {
        None
    }
}

/// knockd's `PORT[:tcp|udp]`, TCP by default.
pub fn knock(s: &str) -> Option<KnockPort> {
    let (port_str, proto_str) = s.trim().split_once(':').unwrap_or((s.trim(), "tcp"));
    Some(KnockPort {
        port: port(port_str)?,
        proto: proto(proto_str)?,
    })
}

/// Why a target string didn't parse, beyond "not the expected syntax".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    Syntax,
    /// `2001:db8::5:8080`: an IPv6 address without the brackets that separate it from the port.
    BareIpv6,
    /// An address that no forwarded connection goes to (loopback, multicast, unspecified).
    NotForwardable,
}

/// `PORT[/PROTO]` on this host, `ADDR:PORT[/PROTO]` or `[V6ADDR]:PORT[/PROTO]` behind it.
pub fn target(s: &str) -> Result<Target, TargetError> {
    let s = s.trim();
    let (endpoint, proto_str) = s.rsplit_once('/').unwrap_or((s, "tcp"));
    let proto = proto(proto_str).ok_or(TargetError::Syntax)?;
    let Some((addr_str, port_str)) = endpoint.rsplit_once(':') else {
        let port = port(endpoint).ok_or(TargetError::Syntax)?;
        return Ok(Target::Local { port, proto });
    };
    let port = port(port_str).ok_or(TargetError::Syntax)?;
    let addr = forward_addr(addr_str)?;
    if addr.is_loopback() || addr.is_multicast() || addr.is_unspecified() {
        return Err(TargetError::NotForwardable);
    }
    Ok(Target::Forward { addr, port, proto })
}

fn forward_addr(s: &str) -> Result<IpAddr, TargetError> {
    if let Some(v6) = s.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        return v6
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| TargetError::Syntax);
    }
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => Ok(IpAddr::V4(v4)),
        // `::1:22` splits into `::1` and `22`: the user meant `[::1]:22` or `[::1:22]:PORT`.
        Ok(IpAddr::V6(_)) => Err(TargetError::BareIpv6),
        Err(_) if s.contains(':') => Err(TargetError::BareIpv6),
        Err(_) => Err(TargetError::Syntax),
    }
}

/// Why a `tcp_flags` string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagsError {
    Syntax,
    /// The flag named both required and forbidden (`syn,!syn`): no packet could match.
    Contradiction(&'static str),
}

/// knockd's `tcpflags`: a comma list of `fin,syn,rst,psh,ack,urg`, each optionally `!`-prefixed.
pub fn tcp_flags(s: &str) -> Result<TcpFlags, FlagsError> {
    let mut flags = TcpFlags::default();
    for item in s.split(',') {
        let item = item.trim();
        let (forbidden, name) = item
            .strip_prefix('!')
            .map_or((false, item), |n| (true, n.trim()));
        let &(bit, canonical) = tcp_flag::NAMES
            .iter()
            .find(|(_, known)| name.eq_ignore_ascii_case(known))
            .ok_or(FlagsError::Syntax)?;
        if forbidden {
            flags.clear |= bit;
        } else {
            flags.set |= bit;
        }
        if flags.set & flags.clear & bit != 0 {
            return Err(FlagsError::Contradiction(canonical));
        }
    }
    Ok(flags)
}

/// A humantime duration (`15s`, `10m`, `1h 30m`).
pub fn duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok()
}

/// Door names end up as Prometheus label values and in logs: keep them plain.
pub fn door_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// What the kernel accepts as an interface name (`dev_valid_name`): 1-15 bytes, not `.` or `..`,
/// no `/`, `:` or whitespace; plus nftables' wildcard, a trailing `*` (`ppp*`).
pub fn interface_name(s: &str) -> bool {
    let name = s.strip_suffix('*').unwrap_or(s);
    (1..=15).contains(&s.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| "/:*".contains(c) || c.is_whitespace() || c.is_control())
}

/// Whether two interface patterns match a common name: the kernel refuses overlapping elements
/// in the interval set they go into.
pub fn interfaces_overlap(a: &str, b: &str) -> bool {
    let covers = |wild: &str, other: &str| {
        wild.strip_suffix('*')
            .is_some_and(|prefix| other.starts_with(prefix))
    };
    a == b || covers(a, b) || covers(b, a)
}

/// An identifier the `nft` command line accepts unquoted, so the operator can list the table;
/// at most 255 bytes (the kernel's `NFT_NAME_MAXLEN` with its NUL).
pub fn table_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    first_ok && s.len() <= 255 && bytes.all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b))
}
