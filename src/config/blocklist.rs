//! `[blocklist]`: trap ports, whose touch bans the source in the kernel for `ban_for`, scan
//! bans (`scan`: many distinct ports probed within a window), and the sources (`never`) that
//! are never banned.

use std::time::Duration;

use super::ConfigError;
use super::build::{duration, from, optional};
use super::model::{Blocklist, Door, KnockPort, ScanBan, Target};
use super::once::may_knock_on;
use super::parse;
use super::tree::{Node, describe};

pub const BLOCKLIST_KEYS: &[&str] = &["trap_ports", "ban_for", "never", "ipv6_prefix", "scan"];
pub const SCAN_KEYS: &[&str] = &["distinct_ports", "within", "ban_for"];

const EXPECT_BLOCKLIST: &str = "a table such as [blocklist] trap_ports = [\"23/tcp\"]";
const EXPECT_TRAPS: &str = "a non-empty array of ports such as [\"23/tcp\", \"3389/tcp\"]";
const EXPECT_TRAP: &str = "PORT/tcp or PORT/udp, with PORT 1-65535";
const EXPECT_BAN_FOR: &str = "a duration from 1s to 30 days, such as \"16h\"";
const EXPECT_PREFIX: &str = "a prefix length from 16 to 128, such as 64";
const EXPECT_SCAN: &str =
    "a table such as { distinct_ports = 8, within = \"5s\", ban_for = \"10m\" }";
const EXPECT_WITHIN: &str = "a duration from 1s to 10m, such as \"5s\"";
const MAX_TRAPS: usize = 64;
const BAN_FOR: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(30 * 86_400);

type Result<T> = std::result::Result<T, ConfigError>;

pub fn blocklist(node: &Node, doors: &[Door]) -> Result<Blocklist> {
    let t = node.table(EXPECT_BLOCKLIST, BLOCKLIST_KEYS)?;
    Ok(Blocklist {
        trap_ports: optional(&t, "trap_ports", |n| trap_ports(n, doors))?.unwrap_or_default(),
        ban_for: optional(&t, "ban_for", |n| duration(n, EXPECT_BAN_FOR, BAN_FOR))?
            .unwrap_or(Blocklist::DEFAULT_BAN_FOR),
        never: optional(&t, "never", from)?.unwrap_or_default(),
        ipv6_prefix: optional(&t, "ipv6_prefix", ipv6_prefix)?
            .unwrap_or(Blocklist::DEFAULT_IPV6_PREFIX),
        scan: optional(&t, "scan", scan)?,
    })
}

/// `scan = { distinct_ports, within, ban_for }`: every key is required, so that a ban's length
/// is never a surprise.
fn scan(node: &Node) -> Result<ScanBan> {
    let t = node.table(EXPECT_SCAN, SCAN_KEYS)?;
    let ports = format!(
        "a number of ports from 2 to {}, such as 8",
        ScanBan::MAX_DISTINCT_PORTS
    );
    let distinct_ports = t.require("distinct_ports", &ports)?;
    let distinct = distinct_ports.int::<u16>(&ports)?;
    if !(2..=ScanBan::MAX_DISTINCT_PORTS).contains(&distinct) {
        return Err(distinct_ports.invalid(&ports));
    }
    let window = Duration::from_secs(1)..=Duration::from_secs(600);
    Ok(ScanBan {
        distinct_ports: distinct,
        within: duration(&t.require("within", EXPECT_WITHIN)?, EXPECT_WITHIN, window)?,
        ban_for: duration(
            &t.require("ban_for", EXPECT_BAN_FOR)?,
            EXPECT_BAN_FOR,
            BAN_FOR,
        )?,
    })
}

fn ipv6_prefix(node: &Node) -> Result<u8> {
    match node.int::<u8>(EXPECT_PREFIX)? {
        prefix @ 16..=128 => Ok(prefix),
        _ => Err(node.invalid(EXPECT_PREFIX)),
    }
}

fn trap_ports(node: &Node, doors: &[Door]) -> Result<Vec<KnockPort>> {
    let items = node.array(EXPECT_TRAPS)?;
    if items.is_empty() || items.len() > MAX_TRAPS {
        return Err(node.invalid(EXPECT_TRAPS));
    }
    items
        .iter()
        .map(|item| {
            let port = match parse::target(item.str(EXPECT_TRAP)?) {
                Ok(Target::Local { port, proto }) => KnockPort { port, proto },
                _ => return Err(item.invalid(EXPECT_TRAP)),
            };
            match owner(port, doors) {
                Some(owner) => Err(item.invalid_found(
                    "a port no door knocks on, opens on this host or listens on for SPA",
                    format!("{}, used by door {owner:?}", describe(item.value)),
                )),
                None => Ok(port),
            }
        })
        .collect()
}

/// The door that already uses `port`, if one does.
fn owner(port: KnockPort, doors: &[Door]) -> Option<&str> {
    let target = Target::Local {
        port: port.port,
        proto: port.proto,
    };
    doors
        .iter()
        .find(|door| {
            door.sequence.contains(&port)
                || may_knock_on(&door.origin, port)
                || door.targets.contains(&target)
                || door.spa.as_ref().is_some_and(|spa| {
                    port.proto == super::model::Proto::Udp && port.port == spa.port
                })
        })
        .map(|door| door.name.as_str())
}
