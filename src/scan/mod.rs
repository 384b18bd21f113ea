//! Scan bans (`[blocklist] scan`): a source that probes many distinct ports within a short
//! window is banned in the kernel's blocked sets, like a trap-port ban.
//!
//! The probes of a scan never reach the queue (only knock, trap and recently knocked protected
//! ports are queued), so the ruleset reports them instead: a `log group` rule (NFLOG) copies
//! each new TCP/UDP connection on the guarded interfaces to a port that is neither a knock nor a
//! trap port nor granted, bounded in the kernel per source and in total. NFLOG sends copies and
//! needs no verdict: it can neither hold nor admit a packet, and with no daemon reading the
//! group the kernel discards the copies. The daemon reads the group ([`nflog`]), counts
//! distinct ports exactly ([`detector`], pure and bounded) and bans ([`reporter`]) unless the
//! source is in `never` or holds a live grant.

pub mod detector;
pub mod nflog;
pub mod reporter;

pub use detector::{Detector, Observation, Room};
pub use reporter::{Reporter, ReporterHandle};

/// The NFLOG group of the ruleset's report rule (`log group 9469` in deploy/nftables.conf).
pub const LOG_GROUP: u16 = 9469;

/// How many sources the detector counts at once. Each keeps fewer than
/// [`crate::config::ScanBan::MAX_DISTINCT_PORTS`] ports of 24 bytes: at most about 6 MiB.
pub const MAX_TRACKED: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(
        "cannot read the scan reports of NFLOG group {group} (is nfnetlink_log available, and \
         is the group free? another program such as ulogd may hold it)"
    )]
    Bind {
        group: u16,
        #[source]
        source: std::io::Error,
    },
}
