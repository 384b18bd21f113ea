//! Set element keys, byte for byte as the kernel compares them. Pure, so it is tested without
//! root: a wrong byte here is a grant that silently opens the wrong port.
//!
//! Concatenated keys pad every field to 4 bytes; ports are big-endian (network order).

use std::net::IpAddr;

use crate::config::{KnockPort, Proto, Target};

/// Length of an `ifname` key (IFNAMSIZ).
pub const IFNAME_LEN: usize = 16;

/// A set element key; the longest is `ipv6_addr . ipv6_addr . inet_proto . inet_service` (40).
pub type Key = Vec<u8>;

fn push_proto(key: &mut Key, proto: Proto) {
    key.extend_from_slice(&[proto.number(), 0, 0, 0]);
}

fn push_port(key: &mut Key, port: u16) {
    key.extend_from_slice(&port.to_be_bytes());
    key.extend_from_slice(&[0, 0]);
}

fn push_addr(key: &mut Key, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => key.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => key.extend_from_slice(&a.octets()),
    }
}

/// `inet_proto . inet_service`: the `knock_ports` and `protected` sets.
pub fn proto_port(proto: Proto, port: u16) -> Key {
    let mut key = Vec::with_capacity(8);
    push_proto(&mut key, proto);
    push_port(&mut key, port);
    key
}

pub fn knock_port(knock: KnockPort) -> Key {
    proto_port(knock.proto, knock.port)
}

/// `ipvX_addr . inet_proto . inet_service`: `protected_fwd4/6` (daddr) and `allow4/6` (saddr).
pub fn addr_proto_port(addr: IpAddr, proto: Proto, port: u16) -> Key {
    let mut key = Vec::with_capacity(24);
    push_addr(&mut key, addr);
    push_proto(&mut key, proto);
    push_port(&mut key, port);
    key
}

/// `saddr . daddr . inet_proto . inet_service`: `allow_fwd4/6`.
pub fn forward_grant(source: IpAddr, dest: IpAddr, proto: Proto, port: u16) -> Key {
    let mut key = Vec::with_capacity(40);
    push_addr(&mut key, source);
    push_addr(&mut key, dest);
    push_proto(&mut key, proto);
    push_port(&mut key, port);
    key
}

/// The grant key of `target` for `source`, or `None` when the families differ (an IPv6 client
/// cannot reach an IPv4 LAN host through the gateway without NAT64, so there is nothing to open).
pub fn grant(source: IpAddr, target: Target) -> Option<Key> {
    match target {
        Target::Local { port, proto } => Some(addr_proto_port(source, proto, port)),
        Target::Forward { addr, port, proto } if addr.is_ipv4() == source.is_ipv4() => {
            Some(forward_grant(source, addr, proto, port))
        }
        Target::Forward { .. } => None,
    }
}

/// The `blocked6_nets` interval of an IPv6 network: its first address and the first address
/// past it (none for a network that ends at the top of the address space).
pub fn ipv6_interval(net: ipnet::Ipv6Net) -> ([u8; 16], Option<[u8; 16]>) {
    let start = net.network().to_bits();
    let size = 1u128.checked_shl(128 - u32::from(net.prefix_len()));
    let end = size.and_then(|size| start.checked_add(size));
    (start.to_be_bytes(), end.map(u128::to_be_bytes))
}

/// One element of an interval set: a range start, or the (exclusive) end of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntervalElem {
    Start([u8; IFNAME_LEN]),
    End([u8; IFNAME_LEN]),
}

/// The elements of the `guarded_ifaces` interval set for the configured interface names.
///
/// `wan0` matches that name only, `ppp*` every name with that prefix (as nft's `iifname "ppp*"`),
/// and an empty list every interface (the ruleset returns early for `lo`). The layout mirrors what
/// `nft` itself sends: a leading end marker when the first range does not start at zero, then
/// start/end pairs with exclusive ends, ranges merged so the kernel sees no overlap.
pub fn ifname_intervals(names: &[String]) -> Vec<IntervalElem> {
    let mut ranges: Vec<([u8; IFNAME_LEN], Option<[u8; IFNAME_LEN]>)> = if names.is_empty() {
        vec![([0; IFNAME_LEN], None)]
    } else {
        names.iter().map(|name| ifname_range(name)).collect()
    };
    ranges.sort();
    let merged = merge(ranges);

    let mut elems = Vec::with_capacity(merged.len() * 2 + 1);
    if merged
        .first()
        .is_some_and(|(start, _)| *start != [0; IFNAME_LEN])
    {
        elems.push(IntervalElem::End([0; IFNAME_LEN]));
    }
    for (start, end) in merged {
        elems.push(IntervalElem::Start(start));
        if let Some(end) = end {
            elems.push(IntervalElem::End(end));
        }
    }
    elems
}

/// `[start, end)` for one name or `prefix*`; `None` as end means "to the largest key".
fn ifname_range(name: &str) -> ([u8; IFNAME_LEN], Option<[u8; IFNAME_LEN]>) {
    let (prefix, wildcard) = match name.strip_suffix('*') {
        Some(prefix) => (prefix, true),
        None => (name, false),
    };
    let mut start = [0; IFNAME_LEN];
    let len = prefix.len().min(IFNAME_LEN - 1);
    start[..len].copy_from_slice(&prefix.as_bytes()[..len]);
    let end = if wildcard {
        increment(&start[..len]).map(|bytes| {
            let mut end = [0; IFNAME_LEN];
            end[..bytes.len()].copy_from_slice(&bytes);
            end
        })
    } else {
        increment(&start).map(|bytes| bytes.try_into().expect("increment keeps the length"))
    };
    (start, end)
}

/// The big-endian successor of `bytes` with the same length, or `None` on overflow.
fn increment(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = bytes.to_vec();
    for byte in out.iter_mut().rev() {
        if *byte == u8::MAX {
            *byte = 0;
        } else {
            *byte += 1;
            return Some(out);
        }
    }
    None
}

type Range = ([u8; IFNAME_LEN], Option<[u8; IFNAME_LEN]>);

/// Merges sorted, possibly overlapping or touching ranges.
fn merge(sorted: Vec<Range>) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::with_capacity(sorted.len());
    for (start, end) in sorted {
        match out.last_mut() {
            Some((_, last_end)) if last_end.is_none_or(|e| start <= e) => {
                *last_end = match (*last_end, end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => out.push((start, end)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn name(s: &str) -> [u8; IFNAME_LEN] {
        let mut out = [0; IFNAME_LEN];
        out[..s.len()].copy_from_slice(s.as_bytes());
        out
    }

    #[test]
    fn an_ipv6_ban_covers_its_network_with_an_exclusive_end() {
        let net = |s: &str| s.parse::<ipnet::Ipv6Net>().unwrap();
        let addr = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(
            ipv6_interval(net("2001:db8:1::/64")),
            (addr("2001:db8:1::"), Some(addr("2001:db8:1:1::")))
        );
        assert_eq!(
            ipv6_interval(net("2001:db8:1::3/128")),
            (addr("2001:db8:1::3"), Some(addr("2001:db8:1::4")))
        );
        assert_eq!(
            ipv6_interval(net("ffff:ffff:ffff:ffff::/64")),
            (addr("ffff:ffff:ffff:ffff::"), None)
        );
    }

    #[test]
    fn local_grant_key_matches_nft_layout() {
        // Bytes as `nft --debug=netlink add element ... { 192.0.2.1 . tcp . 22 }` sends them.
        let key = grant(
            Ipv4Addr::new(192, 0, 2, 1).into(),
            Target::Local {
                port: 22,
                proto: Proto::Tcp,
            },
        );
        assert_eq!(key.unwrap(), [192, 0, 2, 1, 6, 0, 0, 0, 0, 22, 0, 0]);
    }

    #[test]
    fn port_is_big_endian() {
        assert_eq!(
            proto_port(Proto::Udp, 0x1f40),
            [17, 0, 0, 0, 0x1f, 0x40, 0, 0]
        );
    }

    #[test]
    fn forward_grant_keys_have_both_addresses() {
        let src: IpAddr = "2001:db8::1".parse().unwrap();
        let dst: IpAddr = "2001:db8:1::5".parse().unwrap();
        let key = grant(
            src,
            Target::Forward {
                addr: dst,
                port: 443,
                proto: Proto::Tcp,
            },
        )
        .unwrap();
        assert_eq!(key.len(), 40);
        assert_eq!(
            key[..16],
            "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            key[16..32],
            "2001:db8:1::5".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(key[32..], [6, 0, 0, 0, 1, 187, 0, 0]);
    }

    #[test]
    fn forward_grant_across_families_is_skipped() {
        let target = Target::Forward {
            addr: "192.0.2.5".parse().unwrap(),
            port: 80,
            proto: Proto::Tcp,
        };
        assert_eq!(grant("2001:db8::1".parse().unwrap(), target), None);
    }

    #[test]
    fn exact_names_become_single_key_ranges_like_nft() {
        let mut lo_end = name("lo");
        lo_end[15] = 1;
        assert_eq!(
            ifname_intervals(&["lo".into()]),
            [
                IntervalElem::End([0; 16]),
                IntervalElem::Start(name("lo")),
                IntervalElem::End(lo_end)
            ]
        );
    }

    #[test]
    fn wildcard_covers_the_prefix() {
        assert_eq!(
            ifname_intervals(&["ppp*".into()]),
            [
                IntervalElem::End([0; 16]),
                IntervalElem::Start(name("ppp")),
                IntervalElem::End(name("ppq"))
            ]
        );
    }

    #[test]
    fn empty_list_guards_everything() {
        assert_eq!(ifname_intervals(&[]), [IntervalElem::Start([0; 16])]);
    }

    #[test]
    fn overlapping_names_are_merged() {
        let elems = ifname_intervals(&["eth0".into(), "eth*".into(), "wan0".into()]);
        assert_eq!(elems.len(), 5, "{elems:?}");
        assert_eq!(elems[1], IntervalElem::Start(name("eth")));
        assert_eq!(elems[2], IntervalElem::End(name("eti")));
    }
}
