//! A touched trap port: the source is banned in the kernel's blocked sets, where every later
//! packet of it is dropped before anything is queued.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::{error, info};

use super::Worker;
use crate::queue::limit::Gate;

impl Worker {
    pub(super) fn ban(&mut self, now: Instant, source: IpAddr, ban_for: Duration) {
        match self.nft.ban(source, ban_for) {
            Ok(()) => {
                self.state.metrics.bans_trap_port.inc();
                info!(%source, ban_for = %humantime::format_duration(ban_for), "banned: it touched a trap port");
            }
            Err(err) => {
                self.state.metrics.nft_errors.inc();
                if let Gate::Report { events } = self.grant_failure_warnings.check(now) {
                    error!(%source, error = %err, failed = events, "banning a source failed");
                }
            }
        }
    }
}
