//! Queued packets into [`Knock`]s (and their destination), without copying.
//!
//! NFQUEUE hands over the packet from its IP header on, cut to the copy range (about 128 bytes),
//! so the IP layer is parsed laxly (etherparse: IPv4 options, IPv6 extension headers, lengths
//! that exceed the copy) and the transport fields are read straight from the first bytes of the
//! transport header: ports at 0..4, TCP flags at 13. Anything else is a [`PacketError`], which
//! the worker counts and drops; it never panics.

use std::net::IpAddr;

use etherparse::{IpNumber, LaxIpSlice};

use crate::config::Proto;
use crate::engine::Knock;

/// Why a queued packet is not a knock. Each is counted, never logged per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("not a parseable IPv4 or IPv6 header")]
    BadIpHeader,
    #[error("neither TCP nor UDP")]
    NotTcpOrUdp,
    #[error("a fragment, not a whole packet")]
    Fragment,
    #[error("transport header cut short")]
    Truncated,
}

impl PacketError {
    /// Every variant, for pre-registering one counter each.
    pub const ALL: [PacketError; 4] = [
        PacketError::BadIpHeader,
        PacketError::NotTcpOrUdp,
        PacketError::Fragment,
        PacketError::Truncated,
    ];

    /// A fixed label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            PacketError::BadIpHeader => "bad_ip_header",
            PacketError::NotTcpOrUdp => "not_tcp_or_udp",
            PacketError::Fragment => "fragment",
            PacketError::Truncated => "truncated",
        }
    }
}

/// Bytes of the transport header we read: ports (0..4) and, for TCP, the flags byte (13).
const TCP_NEEDED: usize = 14;
const UDP_NEEDED: usize = 4;

/// A queued packet: what the engine steps on, and where it was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub knock: Knock,
    pub destination: IpAddr,
}

/// Parses one queued packet.
pub fn parse(packet: &[u8]) -> Result<Packet, PacketError> {
    let (ip, _ext_header_error) =
        LaxIpSlice::from_slice(packet).map_err(|_| PacketError::BadIpHeader)?;
    let payload = ip.payload();
    if payload.fragmented {
        // conntrack reassembles before the queue hook; a fragment here is a crafted packet.
        return Err(PacketError::Fragment);
    }
    let (proto, needed) = match payload.ip_number {
        IpNumber::TCP => (Proto::Tcp, TCP_NEEDED),
        IpNumber::UDP => (Proto::Udp, UDP_NEEDED),
        _ => return Err(PacketError::NotTcpOrUdp),
    };
    let header = payload
        .payload
        .get(..needed)
        .ok_or(PacketError::Truncated)?;
    let port = u16::from_be_bytes([header[2], header[3]]);
    let tcp_flags = match proto {
        Proto::Tcp => header[13],
        Proto::Udp => 0,
    };
    let knock = Knock {
        source: ip.source_addr(),
        proto,
        port,
        tcp_flags,
    };
    Ok(Packet {
        knock,
        destination: ip.destination_addr(),
    })
}

/// A UDP packet's payload, as far as the copy range reached: `None` unless the packet is
/// UDP and whole (its UDP length fits what was copied).
pub fn udp_payload(packet: &[u8]) -> Option<&[u8]> {
    let (ip, _) = LaxIpSlice::from_slice(packet).ok()?;
    let payload = ip.payload();
    if payload.ip_number != IpNumber::UDP || payload.fragmented {
        return None;
    }
    let udp = payload.payload;
    let length = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    udp.get(8..length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const SYN: u8 = crate::config::tcp_flag::SYN;

    fn tcp_v4(dport: u16) -> Vec<u8> {
        let builder = PacketBuilder::ipv4([192, 0, 2, 7], [192, 0, 2, 1], 64)
            .tcp(40000, dport, 1, 1024)
            .syn();
        let mut out = Vec::new();
        builder.write(&mut out, &[]).unwrap();
        out
    }

    #[test]
    fn ipv4_tcp_syn() {
        let Packet { knock, destination } = parse(&tcp_v4(7000)).unwrap();
        assert_eq!(knock.source, IpAddr::from([192, 0, 2, 7]));
        assert_eq!(destination, IpAddr::from([192, 0, 2, 1]));
        assert_eq!(
            (knock.proto, knock.port, knock.tcp_flags),
            (Proto::Tcp, 7000, SYN)
        );
    }

    #[test]
    fn ipv6_udp_with_extension_header() {
        let builder = PacketBuilder::ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            [0; 16],
            64,
        )
        .udp(5000, 9000);
        let mut plain = Vec::new();
        builder.write(&mut plain, b"knock").unwrap();
        // Insert a destination-options header (next header 60) between IPv6 and UDP.
        let mut packet = plain[..40].to_vec();
        packet[6] = 60;
        packet.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        packet.extend_from_slice(&plain[40..]);
        let len = u16::try_from(packet.len() - 40).unwrap();
        packet[4..6].copy_from_slice(&len.to_be_bytes());
        let knock = parse(&packet).unwrap().knock;
        assert_eq!(
            (knock.proto, knock.port, knock.tcp_flags),
            (Proto::Udp, 9000, 0)
        );
        assert_eq!(knock.source, "2001:db8::9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let plain = tcp_v4(8000);
        let mut packet = plain[..20].to_vec();
        packet[0] = 0x46; // IHL 6: one word of options
        packet.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        packet.extend_from_slice(&plain[20..]);
        let len = u16::try_from(packet.len()).unwrap();
        packet[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(parse(&packet).unwrap().knock.port, 8000);
    }

    #[test]
    fn copy_range_cut_with_wrong_total_length_still_parses() {
        let mut packet = tcp_v4(7000);
        packet[2..4].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(parse(&packet).unwrap().knock.port, 7000);
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        let packet = tcp_v4(7000);
        assert_eq!(parse(&[]), Err(PacketError::BadIpHeader));
        assert_eq!(parse(&[0x45; 10]), Err(PacketError::BadIpHeader));
        assert_eq!(parse(&packet[..20 + 10]), Err(PacketError::Truncated));
        let mut icmp = packet.clone();
        icmp[9] = 1;
        assert_eq!(parse(&icmp), Err(PacketError::NotTcpOrUdp));
        let mut fragment = packet;
        fragment[6] = 0x20; // more fragments
        assert_eq!(parse(&fragment), Err(PacketError::Fragment));
        for len in 0..60 {
            let _ = parse(&tcp_v4(1)[..len.min(40)]);
        }
    }
}
