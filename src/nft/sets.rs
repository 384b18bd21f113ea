//! The sets of `deploy/nftables.conf`: names, key types and flags. The daemon fills these and
//! nothing else; `knock-nfq check` and startup verify them against the kernel.

use std::fmt;

/// nft datatype ids (nftables `include/datatype.h`), as stored in `NFTA_SET_KEY_TYPE`.
mod datatype {
    pub const IPV4_ADDR: u32 = 7;
    pub const IPV6_ADDR: u32 = 8;
    pub const INET_PROTO: u32 = 12;
    pub const INET_SERVICE: u32 = 13;
    pub const IFNAME: u32 = 41;
}

/// `NFT_SET_*` flags we rely on.
pub mod flag {
    pub const INTERVAL: u32 = 0x4;
    pub const TIMEOUT: u32 = 0x10;
}

/// One named set the daemon needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetSpec {
    pub name: &'static str,
    /// Field datatypes, concatenated left to right.
    pub fields: &'static [u32],
    /// Flags the set must have.
    pub flags: u32,
}

impl SetSpec {
    /// The concatenated type id: each field shifted in by 6 bits, as nft does.
    pub fn key_type(&self) -> u32 {
        self.fields.iter().fold(0, |acc, field| (acc << 6) | field)
    }

    /// Key length in bytes: a lone `inet_proto` is one byte; concatenated fields are each padded
    /// to a multiple of 4.
    pub fn key_len(&self) -> u32 {
        match self.fields {
            [INET_PROTO] => 1,
            fields => fields
                .iter()
                .map(|f| {
                    if matches!(*f, IPV6_ADDR | IFNAME) {
                        16
                    } else {
                        4
                    }
                })
                .sum(),
        }
    }
}

/// Names a kernel-reported key type the way `nft list` would (`ipv4_addr . inet_service`).
pub fn type_name(key_type: u32) -> String {
    let mut fields = Vec::new();
    let mut rest = key_type;
    while rest != 0 {
        fields.push(rest & 0x3f);
        rest >>= 6;
    }
    let names: Vec<String> = fields
        .iter()
        .rev()
        .map(|field| match *field {
            IPV4_ADDR => "ipv4_addr".to_owned(),
            IPV6_ADDR => "ipv6_addr".to_owned(),
            INET_PROTO => "inet_proto".to_owned(),
            INET_SERVICE => "inet_service".to_owned(),
            IFNAME => "ifname".to_owned(),
            other => format!("datatype {other}"),
        })
        .collect();
    if names.is_empty() {
        "an untyped key".to_owned()
    } else {
        names.join(" . ")
    }
}

impl fmt::Display for SetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "set {} {{ type {};",
            self.name,
            type_name(self.key_type())
        )?;
        match (
            self.flags & flag::INTERVAL != 0,
            self.flags & flag::TIMEOUT != 0,
        ) {
            (true, true) => f.write_str(" flags interval, timeout; }"),
            (true, false) => f.write_str(" flags interval; }"),
            (false, true) => f.write_str(" flags timeout; }"),
            (false, false) => f.write_str(" }"),
        }
    }
}

use datatype::{IFNAME, INET_PROTO, INET_SERVICE, IPV4_ADDR, IPV6_ADDR};

const fn spec(name: &'static str, fields: &'static [u32], flags: u32) -> SetSpec {
    SetSpec {
        name,
        fields,
        flags,
    }
}

/// Input interfaces whose new connections are guarded (interval: names and `prefix*`).
pub const GUARDED_IFACES: SetSpec = spec("guarded_ifaces", &[IFNAME], flag::INTERVAL);
/// Every knock port: new connections to these are queued to the daemon.
pub const KNOCK_PORTS: SetSpec = spec("knock_ports", &[INET_PROTO, INET_SERVICE], 0);
/// Protocols whose every new connection is queued (filled only when a door is `strict`).
pub const WATCH_PROTOS: SetSpec = spec("watch_protos", &[INET_PROTO], 0);
/// Services on this host that are dropped unless granted.
pub const PROTECTED: SetSpec = spec("protected", &[INET_PROTO, INET_SERVICE], 0);
/// Services behind the gateway (after DNAT) that are dropped unless granted.
pub const PROTECTED_FWD4: SetSpec =
    spec("protected_fwd4", &[IPV4_ADDR, INET_PROTO, INET_SERVICE], 0);
pub const PROTECTED_FWD6: SetSpec =
    spec("protected_fwd6", &[IPV6_ADDR, INET_PROTO, INET_SERVICE], 0);
/// Grants for services on this host: `saddr . l4proto . dport`.
pub const ALLOW4: SetSpec = spec(
    "allow4",
    &[IPV4_ADDR, INET_PROTO, INET_SERVICE],
    flag::TIMEOUT,
);
pub const ALLOW6: SetSpec = spec(
    "allow6",
    &[IPV6_ADDR, INET_PROTO, INET_SERVICE],
    flag::TIMEOUT,
);
/// Grants for services behind the gateway: `saddr . daddr . l4proto . dport`.
pub const ALLOW_FWD4: SetSpec = spec(
    "allow_fwd4",
    &[IPV4_ADDR, IPV4_ADDR, INET_PROTO, INET_SERVICE],
    flag::TIMEOUT,
);
pub const ALLOW_FWD6: SetSpec = spec(
    "allow_fwd6",
    &[IPV6_ADDR, IPV6_ADDR, INET_PROTO, INET_SERVICE],
    flag::TIMEOUT,
);
/// Banned sources, each with its ban as timeout: IPv4 addresses, and IPv6 networks (interval:
/// a ban covers the source's /64, `[blocklist] ipv6_prefix`).
pub const BLOCKED4: SetSpec = spec("blocked4", &[IPV4_ADDR], flag::TIMEOUT);
pub const BLOCKED6_NETS: SetSpec = spec(
    "blocked6_nets",
    &[IPV6_ADDR],
    flag::INTERVAL | flag::TIMEOUT,
);

/// `tcp` and `udp` once the daemon has filled the other sets; while empty the ruleset drops
/// every new TCP/UDP connection (fail closed).
pub const READY: SetSpec = spec("ready", &[INET_PROTO], 0);

/// Sources that sent a knock in the last seconds, which the kernel itself adds (`update` on the
/// knock-port rule). Their new connections to protected services are queued behind their knocks
/// instead of dropped, so a connection sent right after the last knock is not lost.
pub const RECENT4: SetSpec = spec("recent4", &[IPV4_ADDR], flag::TIMEOUT);
pub const RECENT6: SetSpec = spec("recent6", &[IPV6_ADDR], flag::TIMEOUT);

/// Each source's budget of scan reports, which the kernel itself keeps (`update` with a
/// per-element `limit` in the `scan_report` chain): bounded, or a flood of sources would grow it.
pub const SCAN4: SetSpec = spec("scan4", &[IPV4_ADDR], flag::TIMEOUT);
pub const SCAN6: SetSpec = spec("scan6", &[IPV6_ADDR], flag::TIMEOUT);

/// Every set the daemon needs, in the order `check` reports them.
pub const ALL: [SetSpec; 17] = [
    GUARDED_IFACES,
    KNOCK_PORTS,
    WATCH_PROTOS,
    PROTECTED,
    PROTECTED_FWD4,
    PROTECTED_FWD6,
    ALLOW4,
    ALLOW6,
    ALLOW_FWD4,
    ALLOW_FWD6,
    BLOCKED4,
    BLOCKED6_NETS,
    READY,
    RECENT4,
    RECENT6,
    SCAN4,
    SCAN6,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_type_ids_match_nft() {
        // What `nft` itself stores for ipv4_addr . inet_service: 461.
        assert_eq!(spec("x", &[IPV4_ADDR, INET_SERVICE], 0).key_type(), 461);
        assert_eq!(ALLOW4.key_type(), (7 << 12) | (12 << 6) | 13);
    }

    #[test]
    fn kernel_key_types_are_named_like_nft() {
        assert_eq!(
            type_name(ALLOW_FWD6.key_type()),
            "ipv6_addr . ipv6_addr . inet_proto . inet_service"
        );
        assert_eq!(type_name(GUARDED_IFACES.key_type()), "ifname");
        assert_eq!(type_name(5), "datatype 5");
        assert_eq!(
            ALLOW6.to_string(),
            "set allow6 { type ipv6_addr . inet_proto . inet_service; flags timeout; }"
        );
    }

    #[test]
    fn key_lengths_are_fields_padded_to_four() {
        // As the kernel reports them for the sets of deploy/nftables.conf.
        let lengths: Vec<(&str, u32)> = ALL.iter().map(|s| (s.name, s.key_len())).collect();
        assert_eq!(
            lengths,
            [
                ("guarded_ifaces", 16),
                ("knock_ports", 8),
                ("watch_protos", 1),
                ("protected", 8),
                ("protected_fwd4", 12),
                ("protected_fwd6", 24),
                ("allow4", 12),
                ("allow6", 24),
                ("allow_fwd4", 16),
                ("allow_fwd6", 40),
                ("blocked4", 4),
                ("blocked6_nets", 16),
                ("ready", 1),
                ("recent4", 4),
                ("recent6", 16),
                ("scan4", 4),
                ("scan6", 16),
            ]
        );
    }
}
