//! The command line (each command is documented in README) and the glue for the commands that
//! are not the daemon.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::{
    self, AddressFamily, ClientError, DefaultProto, KnockPlan, KnockRequest, KnockSource, SpaPlan,
    Verbosity,
};
use crate::config::{self, Config, Proto};
use crate::import::{self, ImportError};
use crate::nft::{Audit, Finding, Nft, NftError};

#[derive(Debug, Parser)]
#[command(
    name = "knock-nfq",
    version,
    about = "Port knocking for Linux hosts and gateways: NFQUEUE verdicts, nftables grants"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (systemd Type=notify; SIGHUP reloads; SIGTERM stops).
    Run(ConfigArg),
    /// Validate the config, and the running ruleset (table, sets, chains, queues) where loaded.
    Check(CheckArgs),
    /// See it all work in a throw-away sandbox of network namespaces (root).
    Demo,
    /// Knock on a host: knockd's `knock` client (`knock-nfq knock HOST 7000 8000 9000:udp`).
    Knock(KnockArgs),
    /// Print a knockd.conf translated to this program's config (TOML) on stdout.
    #[command(name = "import-knockd")]
    ImportKnockd(ImportArgs),
    /// Open an SPA door: send one signed datagram (`knock-nfq spa HOST --door ssh --key-file K`).
    Spa(SpaArgs),
    /// Make a new random SPA key: base64 on stdout, or a new file only its owner may read.
    Keygen(KeygenArgs),
    /// Lift a trap-port ban before it runs out (needs CAP_NET_ADMIN).
    Unban(UnbanArgs),
}

#[derive(Debug, Args)]
pub struct UnbanArgs {
    /// The banned address.
    #[arg(value_name = "ADDR")]
    pub address: std::net::IpAddr,
    /// The config whose table holds the bans.
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Args)]
pub struct SpaArgs {
    /// The host to open: a name or an address.
    pub host: String,
    /// The SPA door's name, as in the daemon's config.
    #[arg(long, value_name = "NAME")]
    pub door: String,
    /// The door's key, as `knock-nfq keygen` wrote it (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// The address to grant instead of this host's (behind NAT); the door must allow it.
    #[arg(long, value_name = "ADDR")]
    pub grant_address: Option<std::net::IpAddr>,
    /// The door's UDP port.
    #[arg(long, short = 'p', value_name = "PORT", default_value_t = client::DEFAULT_SPA_PORT)]
    pub port: u16,
    /// Ask for only these of the door's targets (PORT/PROTO; repeatable). Default: all.
    #[arg(long = "open", value_name = "PORT/PROTO")]
    pub open: Vec<String>,
    /// Send to the host's IPv4 address.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Send to the host's IPv6 address.
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// Print what is sent.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the key to this new file (mode 0600) instead of stdout; never overwrites.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(long, short = 'c', value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Fail unless the running ruleset is loaded and verified (by default a missing table is
    /// only noted, so the config can be checked anywhere).
    #[arg(long)]
    pub ruleset: bool,
}

impl CheckArgs {
    pub fn ruleset(&self) -> RulesetCheck {
        match self.ruleset {
            true => RulesetCheck::Required,
            false => RulesetCheck::WhereLoaded,
        }
    }
}

/// Whether `check` must verify the running ruleset or only may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesetCheck {
    WhereLoaded,
    Required,
}

/// `knock`'s arguments, knockd's client compatible; [`KnockPlan::from_request`] validates them.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  knock-nfq knock -v server.example.com 7000 8000 9000:udp\n  \
                  knock-nfq knock --config /etc/knock-nfq/knock-nfq.toml --door ssh server.example.com"
)]
pub struct KnockArgs {
    /// Knock with UDP where a port names no protocol (default TCP).
    #[arg(short = 'u', long = "udp", conflicts_with = "door")]
    pub udp: bool,
    /// Wait MS milliseconds between two knocks.
    #[arg(short = 'd', long = "delay", value_name = "MS", default_value_t = 0)]
    pub delay: u64,
    /// Knock on the host's IPv4 address.
    #[arg(short = '4', long = "ipv4", conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Knock on the host's IPv6 address.
    #[arg(short = '6', long = "ipv6")]
    pub ipv6: bool,
    /// Print each knock as it is sent.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Take the sequence from this knock-nfq config (with --door).
    #[arg(short = 'c', long, value_name = "PATH", requires = "door")]
    pub config: Option<PathBuf>,
    /// The door of --config whose sequence to knock.
    #[arg(long, value_name = "NAME", requires = "config")]
    pub door: Option<String>,
    /// The host to knock on: a name or an address.
    pub host: String,
    /// The knocks, in order: PORT, PORT:tcp or PORT:udp.
    #[arg(
        value_name = "PORT[:PROTO]",
        required_unless_present = "door",
        conflicts_with = "door"
    )]
    pub ports: Vec<String>,
}

impl KnockArgs {
    /// The client's view of these arguments.
    pub fn request(&self) -> KnockRequest {
        let knocks = match (&self.config, &self.door) {
            (Some(config), Some(door)) => KnockSource::Door {
                config: config.clone(),
                door: door.clone(),
            },
            // clap makes --config and --door go together, and excludes ports with them.
            _ => KnockSource::Ports {
                specs: self.ports.clone(),
                default: DefaultProto(if self.udp { Proto::Udp } else { Proto::Tcp }),
            },
        };
        KnockRequest {
            host: self.host.clone(),
            family: family(self.ipv4, self.ipv6),
            knocks,
            delay: Duration::from_millis(self.delay),
            verbosity: if self.verbose {
                Verbosity::EachKnock
            } else {
                Verbosity::Quiet
            },
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The knockd configuration to translate, usually /etc/knockd.conf.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

/// `knock-nfq knock`: builds the plan and sends it; `-v` lines go to `out`. A `--door` that
/// is an SPA door is opened with its message instead of a sequence.
pub fn knock(args: &KnockArgs, out: &mut impl Write) -> Result<(), ClientError> {
    let request = args.request();
    if let KnockSource::Door { config, door } = &request.knocks {
        let config = Config::load(config)?;
        let door = client::find_door(&config, door)?;
        if let Some(mut plan) = SpaPlan::for_door(door, &request.host) {
            plan.family = request.family;
            plan.verbosity = request.verbosity;
            return client::send_spa(&plan, out);
        }
    }
    client::send(&KnockPlan::from_request(&request)?, out)
}

/// `knock-nfq spa`.
pub fn spa(args: &SpaArgs, out: &mut impl Write) -> Result<(), ClientError> {
    let plan = SpaPlan {
        host: args.host.clone(),
        family: family(args.ipv4, args.ipv6),
        port: args.port,
        door: args.door.clone(),
        key: client::key_from_file(&args.key_file)?,
        ports: client::requested_ports(&args.open)?,
        grant_address: args.grant_address,
        verbosity: match args.verbose {
            true => Verbosity::EachKnock,
            false => Verbosity::Quiet,
        },
    };
    client::send_spa(&plan, out)
}

/// Why `keygen` wrote no key.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("cannot draw random bytes: {0}")]
    Random(String),
    #[error("{}: cannot create the key file (it is never overwritten)", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `knock-nfq keygen`: the key on `out`, or in a new file created with mode 0600.
pub fn keygen(args: &KeygenArgs, out: &mut impl Write) -> Result<(), KeygenError> {
    let key = config::new_key_file().map_err(|e| KeygenError::Random(e.to_string()))?;
    let Some(path) = &args.output else {
        let _ = out.write_all(key.as_bytes());
        return Ok(());
    };
    let create = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(key.as_bytes())?;
        file.sync_all()
    };
    create().map_err(|source| KeygenError::Create {
        path: path.clone(),
        source,
    })
}

fn family(ipv4: bool, ipv6: bool) -> AddressFamily {
    match (ipv4, ipv6) {
        (true, _) => AddressFamily::V4,
        (_, true) => AddressFamily::V6,
        _ => AddressFamily::Any,
    }
}

/// `knock-nfq import-knockd`: the TOML on `out`, one warning line per untranslated door or
/// changed meaning on `warn`. No translated door is an error, after the commented doors are out.
pub fn import_knockd(
    args: &ImportArgs,
    out: &mut impl Write,
    warn: &mut impl Write,
) -> Result<(), ImportError> {
    let import = import::import_file(&args.path)?;
    if import.doors == 0 {
        return Err(ImportError::NoDoors {
            path: args.path.clone(),
        });
    }
    let _ = out.write_all(import.toml.as_bytes());
    let _ = out.flush();
    for line in &import.warnings {
        let _ = writeln!(warn, "knock-nfq: warning: {line}");
    }
    if import.translated == 0 {
        return Err(ImportError::NothingTranslated {
            path: args.path.clone(),
            doors: import.doors,
        });
    }
    Ok(())
}

/// The advice for a config every local user can read.
pub const WORLD_READABLE: &str = "the config is readable by every local user, who can learn the \
    knock sequences; make it root:knock-nfq 0640 (see deploy/knock-nfq.service)";

/// What `check` found about the nftables side.
#[derive(Debug)]
pub enum TableCheck {
    Verified,
    /// No table here (or no permission to look): the config alone was checked.
    NotChecked(String),
}

/// Why `check` failed on the nftables side.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("the running ruleset was not verified (--ruleset): {0}")]
    NotChecked(String),
    #[error("the running ruleset is not what the daemon needs:{}", bullets(.0))]
    Ruleset(Vec<Finding>),
}

fn bullets(findings: &[Finding]) -> String {
    findings.iter().map(|f| format!("\n  - {f}")).collect()
}

/// `knock-nfq check`: prints one line per door, a warning per door a port scan can open, then
/// what it verified of the running ruleset.
/// Errors are the caller's to print; an absent table is a note unless `ruleset` requires it.
pub fn check(
    config: &Config,
    ruleset: RulesetCheck,
    out: &mut impl Write,
) -> Result<TableCheck, CheckError> {
    let _ = writeln!(
        out,
        "{}: ok, {} door(s)",
        config.path.display(),
        config.doors.len()
    );
    for door in &config.doors {
        let _ = writeln!(out, "  {}", door.summary());
    }
    let blocklist = &config.blocklist;
    if !blocklist.trap_ports.is_empty() {
        let traps: Vec<String> = (blocklist.trap_ports.iter())
            .map(|p| format!("{}/{}", p.port, p.proto))
            .collect();
        let never: Vec<String> = blocklist.never.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "  blocklist: touching {} bans for {} (IPv6: the /{}){}",
            traps.join(" "),
            humantime::format_duration(blocklist.ban_for),
            blocklist.ipv6_prefix,
            match never.is_empty() {
                true => String::new(),
                false => format!(", never {}", never.join(" ")),
            }
        );
    }
    if let Some(scan) = &blocklist.scan {
        let _ = writeln!(
            out,
            "  blocklist: {} distinct ports within {} ban for {} (reported by the ruleset's log group {})",
            scan.distinct_ports,
            humantime::format_duration(scan.within),
            humantime::format_duration(scan.ban_for),
            crate::scan::LOG_GROUP,
        );
    }
    if let Some(cluster) = &config.cluster {
        let _ = writeln!(out, "  {}", cluster.summary());
    }
    for door in &config.doors {
        if let Some(risk) = door.scan_risk() {
            let _ = writeln!(out, "warning: door {:?}: {risk}", door.name);
        }
    }
    let table = &config.daemon.table;
    let audit = Nft::open(table).and_then(|mut nft| {
        nft.verify(config.daemon.max_grants)?;
        nft.audit_ruleset(&config.daemon.queues)
    });
    let why = match audit {
        Ok(audit) => return report(table, audit, out),
        Err(NftError::MissingTable { .. }) => format!("table inet {table} is not loaded here"),
        Err(NftError::Socket(err)) => format!("cannot query nftables ({err})"),
        Err(NftError::Permission) => "querying nftables needs CAP_NET_ADMIN (run as root)".into(),
        Err(err) => return Err(err.into()),
    };
    if ruleset == RulesetCheck::Required {
        return Err(CheckError::NotChecked(why));
    }
    let _ = writeln!(out, "table inet {table}: not checked: {why}");
    Ok(TableCheck::NotChecked(why))
}

fn report(table: &str, audit: Audit, out: &mut impl Write) -> Result<TableCheck, CheckError> {
    if !audit.findings.is_empty() {
        return Err(CheckError::Ruleset(audit.findings));
    }
    let _ = writeln!(
        out,
        "table inet {table}: every set the daemon fills is present with the right type, and \
         its chains input, forward and to_daemon"
    );
    for feeder in audit.feeders {
        let _ = writeln!(out, "  queued to the daemon by {feeder}, failing closed");
    }
    Ok(TableCheck::Verified)
}
