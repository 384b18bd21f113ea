//! From the merged value tree to the validated model: every check a user can act on, each error
//! at the key that caused it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::value::Value;

use super::error::ConfigError;
use super::model::{
    Action, Blocklist, Config, Daemon, Door, KnockPort, LogFormat, MAX_DOORS, MAX_SEQUENCE_LEN,
    MAX_TARGETS, Proto, ScanPolicy, SequenceOrigin, Target, TcpFlags,
};
use super::parse::{self, FlagsError, TargetError};
use super::tree::{Node, Table, describe};

pub const TOP_KEYS: &[&str] = &["daemon", "door", "blocklist", "cluster"];
pub const DAEMON_KEYS: &[&str] = &[
    "queues",
    "interfaces",
    "table",
    "metrics",
    "max_sources",
    "max_grants",
    "log_format",
    "state_dir",
];
pub const DOOR_KEYS: &[&str] = &[
    "name",
    "sequence",
    "seq_timeout",
    "tcp_flags",
    "strict",
    "open",
    "open_for",
    "action",
    "max_grants_per_second",
    "spa",
    "spa_allow_address",
    "totp",
    "one_time_sequences",
    "from",
    "interfaces",
];
/// Keys of a sequence door that a door opened by `spa` has no use for.
const SEQUENCE_ONLY_KEYS: &[&str] = &[
    "sequence",
    "seq_timeout",
    "tcp_flags",
    "strict",
    "totp",
    "one_time_sequences",
];

const DEFAULT_QUEUE: u16 = 0;
const DEFAULT_TABLE: &str = "knock_nfq";
const DEFAULT_METRICS: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9469));
const DEFAULT_STATE_DIR: &str = "/var/lib/knock-nfq";
const DEFAULT_MAX_SOURCES: usize = 100_000;
/// About 81 bytes each: a million tracked sources is some 80 MiB, within the unit's MemoryMax.
const MAX_MAX_SOURCES: usize = 1_000_000;
/// The `size` of each grant set in the shipped ruleset.
const DEFAULT_MAX_GRANTS: u32 = 65_536;
const MAX_MAX_GRANTS: u32 = 1 << 24;
/// Enough for a team knocking at once; a sniffed sequence replayed from many forged sources
/// gets no further.
const DEFAULT_MAX_GRANTS_PER_SECOND: u32 = 10;
const MAX_MAX_GRANTS_PER_SECOND: u32 = 100_000;
/// knockd's default.
const DEFAULT_SEQ_TIMEOUT: Duration = Duration::from_secs(25);
const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(30);
/// Kernel set timeouts count milliseconds: a shorter grant would round to "no timeout".
const MIN_OPEN_FOR: Duration = Duration::from_millis(1);
const MAX_OPEN_FOR: Duration = Duration::from_secs(24 * 60 * 60);

const EXPECT_DOCUMENT: &str = "a TOML document with [daemon] and [[door]] tables";
const EXPECT_DAEMON: &str = "a [daemon] table";
const EXPECT_QUEUES: &str = "a non-empty array of NFQUEUE numbers such as [0]";
const EXPECT_QUEUE: &str = "an NFQUEUE number 0-65535";
const EXPECT_INTERFACES: &str =
    "an array of interface names such as [\"wan0\"], or [] for all but lo";
const EXPECT_INTERFACE: &str = "an interface name of 1-15 bytes without whitespace, '/' or ':', \
                                and at most a trailing * (\"ppp*\")";
const EXPECT_TABLE: &str =
    "an nftables table name: 1-255 letters, digits or _-./, starting with a letter or _";
const EXPECT_METRICS: &str =
    "a listen address such as \"127.0.0.1:9469\" or \"[::1]:9469\", or \"\" to disable metrics";
const EXPECT_MAX_SOURCES: &str = "a number of sources from 1 to 1000000";
const EXPECT_MAX_GRANTS: &str = "the `size` of the ruleset's grant sets (allow4, allow6, allow_fwd4, allow_fwd6), 1 to 16777216";
const EXPECT_MAX_GRANTS_PER_SECOND: &str = "a number of grants per second from 1 to 100000";
const EXPECT_STATE_DIR: &str = "an absolute directory path such as \"/var/lib/knock-nfq\"";
const EXPECT_LOG_FORMAT: &str = "\"text\" or \"json\"";
const EXPECT_DOORS: &str = "one or more [[door]] tables";
const EXPECT_DOOR: &str = "a [[door]] table";
const EXPECT_NAME: &str = "a door name of 1-64 characters from A-Z a-z 0-9 _ . -";
const EXPECT_KNOCK: &str = "PORT[:tcp|udp] with PORT 1-65535";
const EXPECT_SEQ_TIMEOUT: &str = "a duration longer than 0, such as \"15s\", \"10m\" or \"1h 30m\"";
const EXPECT_TCP_FLAGS: &str = "a comma list of fin, syn, rst, psh, ack, urg, each optionally \
                                prefixed with '!', such as \"syn,!ack\"";
const EXPECT_STRICT: &str = "true or false";
const EXPECT_OPEN: &str = "a non-empty array of targets such as [\"22/tcp\"]";
const EXPECT_TARGET: &str = "PORT[/tcp|udp] on this host, or ADDR:PORT[/tcp|udp] or \
                             [IPV6]:PORT[/tcp|udp] behind it, with PORT 1-65535";
const EXPECT_OPEN_FOR: &str = "a duration from 1ms to 24h, such as \"30s\", \"10m\" or \"1h 30m\"";
const EXPECT_ACTION: &str = "\"open\" or \"close\"";

type Result<T> = std::result::Result<T, ConfigError>;

/// The whole document.
pub fn config(root: &Node, file: &Path) -> Result<Config> {
    let top = root.table(EXPECT_DOCUMENT, TOP_KEYS)?;
    let daemon = match top.get("daemon") {
        Some(node) => daemon(&node)?,
        None => default_daemon(),
    };
    let doors = doors(&top.require("door", EXPECT_DOORS)?)?;
    let blocklist = match top.get("blocklist") {
        Some(node) => super::blocklist::blocklist(&node, &doors)?,
        None => Blocklist::default(),
    };
    let cluster = optional(&top, "cluster", super::cluster::cluster)?;
    Ok(Config {
        path: file.to_owned(),
        daemon,
        doors,
        blocklist,
        cluster,
    })
}

fn default_daemon() -> Daemon {
    Daemon {
        queues: vec![DEFAULT_QUEUE],
        interfaces: Vec::new(),
        table: DEFAULT_TABLE.to_owned(),
        metrics: Some(DEFAULT_METRICS),
        max_sources: DEFAULT_MAX_SOURCES,
        max_grants: DEFAULT_MAX_GRANTS,
        log_format: LogFormat::Text,
        state_dir: DEFAULT_STATE_DIR.into(),
    }
}

/// Parses `key` if present.
pub(super) fn optional<'a, T>(
    table: &Table<'a>,
    key: &str,
    parse: impl FnOnce(&Node<'a>) -> Result<T>,
) -> Result<Option<T>> {
    table.get(key).map(|node| parse(&node)).transpose()
}

fn daemon(node: &Node) -> Result<Daemon> {
    let t = node.table(EXPECT_DAEMON, DAEMON_KEYS)?;
    let default = default_daemon();
    Ok(Daemon {
        queues: optional(&t, "queues", queues)?.unwrap_or(default.queues),
        interfaces: optional(&t, "interfaces", interfaces)?.unwrap_or(default.interfaces),
        table: optional(&t, "table", table)?.unwrap_or(default.table),
        metrics: optional(&t, "metrics", metrics)?.unwrap_or(default.metrics),
        max_sources: optional(&t, "max_sources", max_sources)?.unwrap_or(default.max_sources),
        max_grants: optional(&t, "max_grants", |n| {
            in_range(n, EXPECT_MAX_GRANTS, MAX_MAX_GRANTS)
        })?
        .unwrap_or(default.max_grants),
        log_format: optional(&t, "log_format", log_format)?.unwrap_or(default.log_format),
        state_dir: optional(&t, "state_dir", state_dir)?.unwrap_or(default.state_dir),
    })
}

fn queues(node: &Node) -> Result<Vec<u16>> {
    let items = non_empty_array(node, EXPECT_QUEUES)?;
    let queues = items
        .iter()
        .map(|item| item.int::<u16>(EXPECT_QUEUE))
        .collect::<Result<Vec<_>>>()?;
    each_once(
        &items,
        &queues,
        "each queue number once",
        "also at",
        PartialEq::eq,
    )?;
    Ok(queues)
}

fn interfaces(node: &Node) -> Result<Vec<String>> {
    let items = node.array(EXPECT_INTERFACES)?;
    let names = items
        .iter()
        .map(|item| checked_str(item, EXPECT_INTERFACE, parse::interface_name).map(str::to_owned))
        .collect::<Result<Vec<_>>>()?;
    let expected = "interfaces that don't overlap (\"ppp*\" covers every name starting with ppp)";
    each_once(&items, &names, expected, "which overlaps", |a, b| {
        parse::interfaces_overlap(a, b)
    })?;
    Ok(names)
}

/// A door's `interfaces`: as the daemon's, but at least one.
fn door_interfaces(node: &Node) -> Result<Vec<String>> {
    let names = interfaces(node)?;
    if names.is_empty() {
        return Err(node.invalid(
            "a non-empty array of interfaces such as [\"wan0\", \"ppp*\"] (leave the key out \
             for every guarded interface)",
        ));
    }
    Ok(names)
}

fn table(node: &Node) -> Result<String> {
    checked_str(node, EXPECT_TABLE, parse::table_name).map(str::to_owned)
}

fn metrics(node: &Node) -> Result<Option<SocketAddr>> {
    match node.str(EXPECT_METRICS)?.trim() {
        "" => Ok(None),
        addr => addr
            .parse()
            .map(Some)
            .map_err(|_| node.invalid(EXPECT_METRICS)),
    }
}

fn max_sources(node: &Node) -> Result<usize> {
    let max = node.int::<usize>(EXPECT_MAX_SOURCES)?;
    if !(1..=MAX_MAX_SOURCES).contains(&max) {
        return Err(node.invalid(EXPECT_MAX_SOURCES));
    }
    Ok(max)
}

/// An integer from 1 to `max`.
fn in_range(node: &Node, expected: &str, max: u32) -> Result<u32> {
    let value = node.int::<u32>(expected)?;
    if !(1..=max).contains(&value) {
        return Err(node.invalid(expected));
    }
    Ok(value)
}

fn state_dir(node: &Node) -> Result<PathBuf> {
    super::spa::absolute(node, EXPECT_STATE_DIR)
}

fn log_format(node: &Node) -> Result<LogFormat> {
    match node.str(EXPECT_LOG_FORMAT)? {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(node.invalid(EXPECT_LOG_FORMAT)),
    }
}

/// A door with the nodes that later checks across doors point at.
struct ParsedDoor<'a> {
    door: Door,
    /// `door[0] ("ssh")`
    label: String,
    name: Node<'a>,
    knocks: Vec<Node<'a>>,
    /// An SPA door's `spa.port`.
    spa_port: Option<Node<'a>>,
    /// `totp` or `one_time_sequences`, where the sequence is not fixed.
    origin: Option<Node<'a>>,
}

fn doors(node: &Node) -> Result<Vec<Door>> {
    let items = non_empty_array(node, EXPECT_DOORS)?;
    if items.len() > MAX_DOORS {
        let expected = format!("at most {MAX_DOORS} [[door]] tables");
        return Err(node.invalid_found(&expected, format!("{} doors", items.len())));
    }
    let mut parsed: Vec<ParsedDoor> = Vec::new();
    for item in &items {
        let door = door(item)?;
        if let Some(first) = parsed.iter().find(|p| p.door.name == door.door.name) {
            let found = format!(
                "{}, also the name of {}",
                describe(door.name.value),
                first.label
            );
            return Err(door.name.invalid_found("a name no other door has", found));
        }
        parsed.push(door);
    }
    knocks_can_arrive(&parsed)?;
    knock_ports_fit(&parsed)?;
    spa_ports_are_free(&parsed)?;
    Ok(parsed.into_iter().map(|p| p.door).collect())
}

fn door<'a>(node: &Node<'a>) -> Result<ParsedDoor<'a>> {
    let t = node.table(EXPECT_DOOR, DOOR_KEYS)?;
    let name = checked_str(
        &t.require("name", EXPECT_NAME)?,
        EXPECT_NAME,
        parse::door_name,
    )?;
    // From here on, messages show the door's name beside its index.
    let t = t.named(name);
    let spa = super::spa::door_spa(&t)?;
    if spa.is_some() {
        no_sequence_keys(&t)?;
    }
    let (origin, origin_node) = super::once::door_origin(&t)?;
    let (sequence, knocks) = match (&spa, &origin) {
        (None, SequenceOrigin::Fixed) => sequence(&t)?,
        _ => (Vec::new(), Vec::new()),
    };
    let possible = super::once::possible_knocks(&origin);
    let door = Door {
        name: name.to_owned(),
        seq_timeout: optional(&t, "seq_timeout", seq_timeout)?.unwrap_or(DEFAULT_SEQ_TIMEOUT),
        tcp_flags: optional(&t, "tcp_flags", |n| {
            tcp_flags(
                n,
                if possible.is_empty() {
                    &sequence
                } else {
                    &possible
                },
            )
        })?,
        scan_policy: optional(&t, "strict", scan_policy)?.unwrap_or_default(),
        targets: targets(&t.require("open", EXPECT_OPEN)?)?,
        open_for: optional(&t, "open_for", open_for)?.unwrap_or(DEFAULT_OPEN_FOR),
        action: optional(&t, "action", action)?.unwrap_or(Action::Open),
        max_grants_per_second: optional(&t, "max_grants_per_second", |n| {
            in_range(n, EXPECT_MAX_GRANTS_PER_SECOND, MAX_MAX_GRANTS_PER_SECOND)
        })?
        .unwrap_or(DEFAULT_MAX_GRANTS_PER_SECOND),
        from: optional(&t, "from", from)?.unwrap_or_default(),
        interfaces: optional(&t, "interfaces", door_interfaces)?.unwrap_or_default(),
        sequence,
        spa,
        origin,
        once: None,
    };
    Ok(ParsedDoor {
        origin: origin_node,
        door,
        label: t.node.path.shown().to_owned(),
        // Again, now shown with the door's name, for the duplicate check.
        name: t.require("name", EXPECT_NAME)?,
        knocks,
        spa_port: t.get("spa").and_then(|spa| {
            let Value::Dict(..) = spa.value else {
                return None;
            };
            spa.table(EXPECT_DOOR, super::spa::SPA_KEYS)
                .ok()?
                .get("port")
        }),
    })
}

fn no_sequence_keys(t: &Table) -> Result<()> {
    match SEQUENCE_ONLY_KEYS.iter().find_map(|key| t.get(key)) {
        Some(node) => Err(node.invalid_found(
            "no sequence keys on a door opened by spa (one signed datagram opens it)",
            describe(node.value),
        )),
        None => Ok(()),
    }
}

fn sequence<'a>(t: &Table<'a>) -> Result<(Vec<KnockPort>, Vec<Node<'a>>)> {
    let expected =
        format!("an array of 1 to {MAX_SEQUENCE_LEN} knocks such as [\"7000:tcp\", \"8000:udp\"]");
    let node = t.require("sequence", &expected)?;
    let knocks = non_empty_array(&node, &expected)?;
    if knocks.len() > MAX_SEQUENCE_LEN {
        return Err(node.invalid_found(&expected, format!("an array of {} knocks", knocks.len())));
    }
    let sequence = knocks.iter().map(knock).collect::<Result<Vec<_>>>()?;
    Ok((sequence, knocks))
}

/// knockd syntax as a string, or a bare port number for TCP.
fn knock(node: &Node) -> Result<KnockPort> {
    let knock = match node.value {
        Value::String(_, s) => parse::knock(s),
        Value::Num(..) => parse::knock(&describe(node.value)),
        _ => None,
    };
    knock.ok_or_else(|| node.invalid(EXPECT_KNOCK))
}

fn tcp_flags(node: &Node, sequence: &[KnockPort]) -> Result<TcpFlags> {
    let flags = node.str(EXPECT_TCP_FLAGS)?;
    let parsed = parse::tcp_flags(flags).map_err(|e| match e {
        FlagsError::Syntax => node.invalid(EXPECT_TCP_FLAGS),
        FlagsError::Contradiction(flag) => node.invalid_found(
            "each flag either required or forbidden, not both",
            format!("{flags:?} ({flag} is both, so no packet could match)"),
        ),
    })?;
    if !sequence.iter().any(|k| k.proto == Proto::Tcp) {
        let found = format!("{flags:?} on a door whose knocks are all UDP");
        return Err(node.invalid_found(
            "tcp_flags only on a door with at least one TCP knock",
            found,
        ));
    }
    Ok(parsed)
}

fn targets(node: &Node) -> Result<Vec<Target>> {
    let items = non_empty_array(node, EXPECT_OPEN)?;
    if items.len() > MAX_TARGETS {
        let expected = format!("at most {MAX_TARGETS} targets");
        return Err(node.invalid_found(&expected, format!("{} targets", items.len())));
    }
    let targets = items.iter().map(target).collect::<Result<Vec<_>>>()?;
    each_once(
        &items,
        &targets,
        "each target once",
        "also at",
        PartialEq::eq,
    )?;
    Ok(targets)
}

/// A target string, or a bare port number for TCP on this host.
fn target(node: &Node) -> Result<Target> {
    let s = match node.value {
        Value::String(_, s) => s.clone(),
        Value::Num(..) => describe(node.value),
        _ => return Err(node.invalid(EXPECT_TARGET)),
    };
    parse::target(&s).map_err(|e| {
        let hint = match e {
            TargetError::Syntax => return node.invalid(EXPECT_TARGET),
            TargetError::BareIpv6 => {
                "put an IPv6 address in brackets, as in [2001:db8::5]:8080/tcp"
            }
            TargetError::NotForwardable => {
                "a loopback, multicast or unspecified address is never forwarded; \
                 write PORT/PROTO for a service on this host"
            }
        };
        node.invalid_found(EXPECT_TARGET, format!("{} ({hint})", describe(node.value)))
    })
}

const EXPECT_FROM: &str =
    "a non-empty array of source networks such as [\"203.0.113.0/24\", \"2001:db8::/32\"]";
const EXPECT_NETWORK: &str = "a network ADDR/PREFIX such as \"203.0.113.0/24\", or one address";
const MAX_FROM: usize = 64;

pub(super) fn from(node: &Node) -> Result<Vec<ipnet::IpNet>> {
    let items = non_empty_array(node, EXPECT_FROM)?;
    if items.len() > MAX_FROM {
        return Err(node.invalid_found(
            &format!("at most {MAX_FROM} networks"),
            format!("{} networks", items.len()),
        ));
    }
    items
        .iter()
        .map(|item| {
            let text = item.str(EXPECT_NETWORK)?.trim();
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            // 203.0.113.7/24 is almost always a typo for the network or the address.
            match net {
                Ok(net) if net.trunc() == net => Ok(net),
                Ok(net) => Err(item.invalid_found(
                    EXPECT_NETWORK,
                    format!(
                        "{} (host bits set; the network is {})",
                        describe(item.value),
                        net.trunc()
                    ),
                )),
                Err(_) => Err(item.invalid(EXPECT_NETWORK)),
            }
        })
        .collect()
}

fn seq_timeout(node: &Node) -> Result<Duration> {
    duration(
        node,
        EXPECT_SEQ_TIMEOUT,
        Duration::from_nanos(1)..=Duration::MAX,
    )
}

fn scan_policy(node: &Node) -> Result<ScanPolicy> {
    Ok(match node.bool(EXPECT_STRICT)? {
        true => ScanPolicy::ResetOnOtherPorts,
        false => ScanPolicy::IgnoreOtherPorts,
    })
}

fn open_for(node: &Node) -> Result<Duration> {
    duration(node, EXPECT_OPEN_FOR, MIN_OPEN_FOR..=MAX_OPEN_FOR)
}

fn action(node: &Node) -> Result<Action> {
    match node.str(EXPECT_ACTION)? {
        "open" => Ok(Action::Open),
        "close" => Ok(Action::Close),
        _ => Err(node.invalid(EXPECT_ACTION)),
    }
}

/// A humantime string within `range`. Bare numbers are refused with a hint: TOML has no unit,
/// and guessing seconds would hide a typo such as `30` meant as minutes.
pub(super) fn duration(
    node: &Node,
    expected: &str,
    range: RangeInclusive<Duration>,
) -> Result<Duration> {
    let bare = |number: &str| {
        let found = describe(node.value);
        node.invalid_found(
            expected,
            format!("{found} (a number without a unit; write \"{number}s\" for seconds)"),
        )
    };
    let text = match node.value {
        Value::String(_, s) => s,
        Value::Num(..) => return Err(bare(&describe(node.value))),
        _ => return Err(node.invalid(expected)),
    };
    if text.trim().parse::<u64>().is_ok() {
        return Err(bare(text.trim()));
    }
    parse::duration(text)
        .filter(|d| range.contains(d))
        .ok_or_else(|| node.invalid(expected))
}

/// A string that `valid` accepts.
fn checked_str<'a>(node: &Node<'a>, expected: &str, valid: fn(&str) -> bool) -> Result<&'a str> {
    let s = node.str(expected)?;
    if valid(s) {
        Ok(s)
    } else {
        Err(node.invalid(expected))
    }
}

fn non_empty_array<'a>(node: &Node<'a>, expected: &str) -> Result<Vec<Node<'a>>> {
    let items = node.array(expected)?;
    if items.is_empty() {
        return Err(node.invalid(expected));
    }
    Ok(items)
}

/// Rejects the second of two values that are the `same`, naming where the first one is.
fn each_once<T>(
    nodes: &[Node],
    values: &[T],
    expected: &str,
    relation: &str,
    same: impl Fn(&T, &T) -> bool,
) -> Result<()> {
    for (later, value) in values.iter().enumerate() {
        if let Some(first) = values[..later].iter().position(|v| same(v, value)) {
            let found = format!(
                "{}, {relation} {}",
                describe(nodes[later].value),
                nodes[first].path.shown()
            );
            return Err(nodes[later].invalid_found(expected, found));
        }
    }
    Ok(())
}

/// nftables drops packets to a door's local targets before they are queued, so a knock on such
/// a port (same port and protocol) never reaches the daemon: the door could never open.
fn knocks_can_arrive(doors: &[ParsedDoor]) -> Result<()> {
    for door in doors {
        if let Some(node) = &door.origin {
            let possible = super::once::possible_knocks(&door.door.origin);
            let clash = possible.iter().find_map(|knock| {
                let owner = doors.iter().find(|d| {
                    d.door.targets.contains(&local(*knock))
                        || d.door
                            .spa
                            .as_ref()
                            .is_some_and(|spa| knock.proto == Proto::Udp && knock.port == spa.port)
                })?;
                Some((knock, owner))
            });
            if let Some((knock, owner)) = clash {
                return Err(node.invalid_found(
                    "knock ports that no door opens on this host and no SPA door listens on",
                    format!(
                        "{} knocking on {knock}, which {} opens or listens on",
                        describe(node.value),
                        owner.label
                    ),
                ));
            }
        }
        for (knock, node) in door.door.sequence.iter().zip(&door.knocks) {
            if let Some(owner) = doors
                .iter()
                .find(|d| d.door.targets.contains(&local(*knock)))
            {
                let found = format!(
                    "{}, which {} opens on this host",
                    describe(node.value),
                    owner.label
                );
                return Err(node.invalid_found(
                    "a knock port that no door opens on this host (the kernel drops packets to \
                     those ports before the daemon sees them, so this knock could never arrive)",
                    found,
                ));
            }
        }
    }
    Ok(())
}

/// The kernel's knock-port set is filled in one netlink message, sized for every door's
/// longest sequence; a TOTP door knocks on a sequence for each step of its window at once.
fn knock_ports_fit(doors: &[ParsedDoor]) -> Result<()> {
    const BUDGET: usize = MAX_DOORS * MAX_SEQUENCE_LEN;
    let mut total = 0;
    for door in doors {
        total += match &door.door.origin {
            SequenceOrigin::Fixed => door.door.sequence.len(),
            SequenceOrigin::Totp(t) => (2 * usize::from(t.skew) + 1) * t.length,
            SequenceOrigin::OneTime(one) => one
                .lines
                .iter()
                .map(|l| l.sequence.len())
                .max()
                .unwrap_or(0),
        };
        if total > BUDGET {
            let node = door.origin.as_ref().unwrap_or(&door.name);
            return Err(node.invalid_found(
                &format!("at most {BUDGET} knock ports in use at once, over all doors"),
                format!(
                    "{} bringing them to {total} (a TOTP door knocks on length x (2 x skew + 1))",
                    describe(node.value)
                ),
            ));
        }
    }
    Ok(())
}

fn local(knock: KnockPort) -> Target {
    Target::Local {
        port: knock.port,
        proto: knock.proto,
    }
}

/// An SPA port takes every UDP datagram to it: no sequence may knock there, and no door may
/// open it on this host (the kernel would drop the messages before the daemon saw them).
fn spa_ports_are_free(doors: &[ParsedDoor]) -> Result<()> {
    for door in doors {
        let (Some(spa), Some(node)) = (&door.door.spa, &door.spa_port) else {
            continue;
        };
        let knock = KnockPort {
            port: spa.port,
            proto: Proto::Udp,
        };
        let clash = doors.iter().find_map(|other| {
            if other.door.sequence.contains(&knock) {
                Some(format!("a knock of {}", other.label))
            } else if other.door.targets.contains(&local(knock)) {
                Some(format!("opened on this host by {}", other.label))
            } else {
                None
            }
        });
        if let Some(clash) = clash {
            return Err(node.invalid_found(
                "a UDP port that no sequence knocks on and no door opens on this host",
                format!("{}, {clash}", describe(node.value)),
            ));
        }
    }
    Ok(())
}
