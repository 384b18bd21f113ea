//! A touched trap port: the source (an IPv6 source with its network) is banned in the kernel's
//! blocked sets, where every later packet of it is dropped before anything is queued.

use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{error, info};

use super::Worker;
use crate::queue::limit::Gate;

impl Worker {
    pub(super) fn ban(&mut self, now: Instant, scope: IpNet, ban_for: Duration) {
        match self.nft.ban(scope, ban_for) {
            Ok(()) => {
                self.state.metrics.bans_trap_port.inc();
                self.state
                    .metrics
                    .banned_sources
                    .record(now, scope, ban_for);
                info!(banned = %scope, ban_for = %humantime::format_duration(ban_for), "banned: it touched a trap port");
            }
            Err(err) => {
                self.state.metrics.nft_errors.inc();
                if let Gate::Report { events } = self.grant_failure_warnings.check(now) {
                    error!(banned = %scope, error = %err, failed = events, "banning a source failed");
                }
            }
        }
    }
}
