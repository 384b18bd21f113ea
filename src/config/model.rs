//! The validated, typed configuration. Everything here has passed validation:
//! the engine and the dataplane never re-check it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    pub daemon: Daemon,
    pub doors: Vec<Door>,
    pub blocklist: Blocklist,
    /// `[cluster]`: grants shared with other gateways; `None` works alone.
    pub cluster: Option<Cluster>,
}

/// `[cluster]`: the etcd cluster a fleet of gateways shares its grants through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub backend: ClusterBackend,
    /// Client URLs, `http://` or (with `tls`) `https://`.
    pub endpoints: Vec<String>,
    pub tls: Option<ClusterTls>,
    /// Every key the daemon writes or watches starts with it; it starts and ends with `/`.
    pub prefix: String,
    /// This gateway's name, written into what it publishes (so it skips its own).
    pub node: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterBackend {
    Etcd,
}

/// The CA that verifies etcd, and this gateway's client certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    pub ca: Option<PemFile>,
    /// Certificate, then key.
    pub identity: Option<(PemFile, PemFile)>,
}

/// A PEM file read at load time; `Debug` shows only its path (it may hold a private key).
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// `[blocklist]`: ports whose touch bans the source in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocklist {
    /// Touching one bans the source (no door may knock on, open or listen on them).
    pub trap_ports: Vec<KnockPort>,
    /// How long a ban lasts: the element timeout in the kernel's blocked sets.
    pub ban_for: Duration,
    /// Sources never banned.
    pub never: Vec<ipnet::IpNet>,
    /// IPv6 bans cover the source's network of this prefix length.
    pub ipv6_prefix: u8,
    /// Bans for probing many distinct ports; `None`: no scan bans.
    pub scan: Option<ScanBan>,
}

/// `[blocklist] scan`: a source that sends new connections to `distinct_ports` distinct ports
/// (neither knock, trap nor granted ports) within `within` is banned for `ban_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanBan {
    pub distinct_ports: u16,
    pub within: Duration,
    pub ban_for: Duration,
}

impl ScanBan {
    /// The most ports a threshold may name: the kernel reports at most this many probes of one
    /// source at once (the burst of the ruleset's per-source report limit).
    pub const MAX_DISTINCT_PORTS: u16 = 64;
}

impl Default for Blocklist {
    /// No `[blocklist]`: no trap ports, and the defaults of its other keys.
    fn default() -> Blocklist {
        Blocklist {
            trap_ports: Vec::new(),
            ban_for: Blocklist::DEFAULT_BAN_FOR,
            never: Vec::new(),
            ipv6_prefix: Blocklist::DEFAULT_IPV6_PREFIX,
            scan: None,
        }
    }
}

impl Blocklist {
    pub const DEFAULT_BAN_FOR: Duration = Duration::from_secs(3600);
    /// A host behind one IPv6 link usually holds a whole /64 and picks new addresses in it.
    pub const DEFAULT_IPV6_PREFIX: u8 = 64;

    pub fn is_trap(&self, port: KnockPort) -> bool {
        self.trap_ports.contains(&port)
    }

    pub fn never_bans(&self, source: IpAddr) -> bool {
        self.never.iter().any(|net| net.contains(&source))
    }

    /// What a ban of `source` covers: an IPv4 address; for IPv6 its network of `ipv6_prefix`,
    /// or the address alone where that network would cover a `never` source.
    pub fn ban_scope(&self, source: IpAddr) -> ipnet::IpNet {
        let host = ipnet::IpNet::from(source);
        let IpAddr::V6(v6) = source else {
            return host;
        };
        let Ok(net) = ipnet::Ipv6Net::new(v6, self.ipv6_prefix) else {
            return host;
        };
        let net = ipnet::IpNet::V6(net.trunc());
        let spares = |never: &ipnet::IpNet| net.contains(never) || never.contains(&net);
        match self.never.iter().any(spares) {
            true => host,
            false => net,
        }
    }
}

/// The `[daemon]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Daemon {
    /// NFQUEUE numbers, one worker thread each.
    pub queues: Vec<u16>,
    /// Guarded input interfaces; empty means every interface but `lo`.
    pub interfaces: Vec<String>,
    /// The nftables table (family inet) whose sets the daemon fills.
    pub table: String,
    /// Prometheus listen address; `None` disables the endpoint.
    pub metrics: Option<SocketAddr>,
    /// Bound on tracked sources; beyond it an attempt is evicted, one-knock attempts first.
    pub max_sources: usize,
    /// The `size` each grant set must have in the kernel (checked at start and by `check`).
    pub max_grants: u32,
    pub log_format: LogFormat,
    /// Where state that must survive a restart is kept (the SPA replay cache).
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Transport protocol of a knock or a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number (`meta l4proto`).
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One port of a knock sequence (`7000:udp` in knockd syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KnockPort {
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for KnockPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.port, self.proto)
    }
}

/// TCP flag bits, as in the TCP header's flags byte.
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;

    /// Each flag with its knockd name, in header bit order.
    pub const NAMES: [(u8, &str); 6] = [
        (FIN, "fin"),
        (SYN, "syn"),
        (RST, "rst"),
        (PSH, "psh"),
        (ACK, "ack"),
        (URG, "urg"),
    ];
}

/// A knockd `tcpflags` filter: bits that must be set and bits that must be clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    pub set: u8,
    pub clear: u8,
}

impl TcpFlags {
    /// Whether a packet with these header flags passes the filter.
    pub fn matches(self, flags: u8) -> bool {
        flags & self.set == self.set && flags & self.clear == 0
    }
}

/// knockd syntax, required flags plain and forbidden ones with `!`, in header bit order
/// (`syn,!ack`); the config parser reads it back.
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for &(bit, name) in &tcp_flag::NAMES {
            let bang = match (self.set & bit != 0, self.clear & bit != 0) {
                (true, _) => "",
                (false, true) => "!",
                (false, false) => continue,
            };
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{bang}{name}")?;
        }
        Ok(())
    }
}

/// What a door's grant opens (or, on a close door, revokes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A service on this host: `22/tcp`.
    Local { port: u16, proto: Proto },
    /// A service behind the gateway, checked in the forward hook: `10.0.0.5:8080/tcp`.
    Forward {
        addr: IpAddr,
        port: u16,
        proto: Proto,
    },
}

impl Target {
    pub fn port(self) -> u16 {
        match self {
            Target::Local { port, .. } | Target::Forward { port, .. } => port,
        }
    }

    pub fn proto(self) -> Proto {
        match self {
            Target::Local { proto, .. } | Target::Forward { proto, .. } => proto,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Local { port, proto } => write!(f, "{port}/{proto}"),
            Target::Forward {
                addr: IpAddr::V4(a),
                port,
                proto,
            } => write!(f, "{a}:{port}/{proto}"),
            Target::Forward {
                addr: IpAddr::V6(a),
                port,
                proto,
            } => write!(f, "[{a}]:{port}/{proto}"),
        }
    }
}

/// Whether completing a door grants or revokes its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Open,
    Close,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Open => "open",
            Action::Close => "close",
        }
    }
}

/// How a door reacts to new connections to ports outside its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanPolicy {
    /// knockd: only knock ports matter; other ports never disturb an attempt.
    #[default]
    IgnoreOtherPorts,
    /// `strict = true`: a new connection to any other port resets the attempt.
    ResetOnOtherPorts,
}

/// One `[[door]]`: a knock sequence and what completing it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Door {
    pub name: String,
    pub sequence: Vec<KnockPort>,
    /// Whole-sequence deadline, counted from the first knock (knockd semantics).
    pub seq_timeout: Duration,
    /// knockd `tcpflags`; TCP knocks whose flags don't match are ignored.
    pub tcp_flags: Option<TcpFlags>,
    pub scan_policy: ScanPolicy,
    pub targets: Vec<Target>,
    /// Grant lifetime: the kernel set element's timeout.
    pub open_for: Duration,
    pub action: Action,
    /// Grants the door makes per second (burst: as many at once); completions beyond it are
    /// refused and counted.
    pub max_grants_per_second: u32,
    /// Opened by one signed datagram instead of a sequence (then `sequence` is empty).
    pub spa: Option<Spa>,
    /// `from`: the only source networks that may use the door; empty: any source.
    pub from: Vec<ipnet::IpNet>,
    /// `interfaces`: the only interfaces (`ppp*` wildcards) its knocks count on; empty: every
    /// guarded one.
    pub interfaces: Vec<String>,
    /// Where `sequence` comes from: the config, or (then it is filled in at run time, see
    /// `crate::once`) a TOTP secret or a one-time sequence file.
    pub origin: SequenceOrigin,
    /// In the engine's doors only: the use of a TOTP step or one-time line that this door's
    /// grant consumes.
    pub once: Option<OnceUse>,
}

impl Door {
    /// Whether `source` may use the door (its `from`, if it has one).
    pub fn admits(&self, source: IpAddr) -> bool {
        self.from.is_empty() || self.from.iter().any(|net| net.contains(&source))
    }

    /// Whether a knock that arrived so counts (its `interfaces`, if it has them).
    pub fn arrives_on(&self, arrival: crate::engine::Arrival) -> bool {
        if self.interfaces.is_empty() {
            return true;
        }
        let crate::engine::Arrival::On(name) = arrival else {
            return false;
        };
        self.interfaces
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
    }
}

/// Where a door's knock sequence comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SequenceOrigin {
    /// `sequence = [...]`, valid any number of times.
    #[default]
    Fixed,
    /// `totp = {...}`: derived from a secret for each time step.
    Totp(std::sync::Arc<Totp>),
    /// `one_time_sequences = "FILE"`: the file's first unused line.
    OneTime(std::sync::Arc<OneTime>),
}

/// A rotating sequence: `length` distinct TCP ports of `ports` for each `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totp {
    pub secret_file: PathBuf,
    /// Never printed: its `Debug` is redacted.
    pub secret: crate::spa::Key,
    pub step: Duration,
    pub length: usize,
    /// First and last port, inclusive.
    pub ports: (u16, u16),
    /// Steps accepted either side of the current one.
    pub skew: u8,
}

/// A knockd one-time sequence file and its unused lines when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTime {
    pub file: PathBuf,
    pub lines: Vec<OneTimeLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeLine {
    /// Line number in the file, from 1.
    pub number: usize,
    pub sequence: Vec<KnockPort>,
}

/// What a grant of a once-only door uses up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnceUse {
    TotpStep(u64),
    OneTimeLine(usize),
}

/// A door's single-packet authorization: a UDP port, an HMAC key, how old a message may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spa {
    /// The UDP port messages are sent to.
    pub port: u16,
    pub key_file: PathBuf,
    /// Never printed: its `Debug` is redacted.
    pub key: crate::spa::Key,
    pub max_age: Duration,
    pub grant_address: GrantAddress,
}

/// Which address an accepted SPA message grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GrantAddress {
    /// The datagram's source address, always.
    #[default]
    Sender,
    /// `spa_allow_address = true`: the address the message names, if any (a client behind
    /// NAT), else the sender's.
    NamedOrSender,
}

/// The most ports a sequence may have.
pub const MAX_SEQUENCE_LEN: usize = 32;
/// The most doors a config may have, and targets a door may open. Together with
/// `MAX_SEQUENCE_LEN` they bound the sets the daemon fills, so one atomic netlink batch always
/// holds them, and the engine's per-attempt door list.
pub const MAX_DOORS: usize = 64;
pub const MAX_TARGETS: usize = 16;
