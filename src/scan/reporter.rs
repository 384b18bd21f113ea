//! The scan reporter thread: reads the ruleset's reports, counts them and bans scanners.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::nflog::{LogSocket, Received};
use super::{Detector, MAX_TRACKED, Observation, ScanError};
use crate::config::{KnockPort, ScanBan};
use crate::nft::Nft;
use crate::queue::State;
use crate::queue::limit::{Gate, RateLimit};
use crate::queue::state::gauge_delta;

/// How often the thread looks at the stop flag when no report comes.
const IDLE: Duration = Duration::from_millis(200);
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

pub struct Reporter {
    log: LogSocket,
    nft: Nft,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    detector: Detector,
    warnings: RateLimit,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter").finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct ReporterHandle {
    thread: JoinHandle<()>,
}

impl ReporterHandle {
    pub fn is_alive(&self) -> bool {
        !self.thread.is_finished()
    }

    pub fn join(self) {
        let _ = self.thread.join();
    }
}

impl Reporter {
    pub fn new(
        group: u16,
        nft: Nft,
        state: Arc<State>,
        stop: Arc<AtomicBool>,
    ) -> Result<Reporter, ScanError> {
        Ok(Reporter {
            log: LogSocket::bind(group, IDLE)?,
            nft,
            state,
            stop,
            detector: Detector::new(MAX_TRACKED),
            warnings: RateLimit::new(WARNING_INTERVAL),
        })
    }

    pub fn spawn(self) -> io::Result<ReporterHandle> {
        let thread = thread::Builder::new()
            .name("scan-reports".into())
            .spawn(move || self.run())?;
        Ok(ReporterHandle { thread })
    }

    fn run(mut self) {
        let mut probes = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            match self.log.receive() {
                Ok(Received::Packets(packets)) => probes.extend(
                    packets
                        .into_iter()
                        .filter_map(|p| crate::packet::parse(p).ok())
                        .map(|p| {
                            let port = KnockPort {
                                port: p.knock.port,
                                proto: p.knock.proto,
                            };
                            (p.knock.source, port)
                        }),
                ),
                Ok(Received::Idle) => {}
                Err(err) => self.receive_failed(&err),
            }
            let now = Instant::now();
            for probe in probes.drain(..) {
                self.count(now, probe);
            }
        }
        debug!("scan reporter stopped");
    }

    /// A lost report can only miss a ban, never cause one: count it and go on.
    fn receive_failed(&mut self, err: &io::Error) {
        self.state.metrics.scan_reports_lost.inc();
        if let Gate::Report { events } = self.warnings.check(Instant::now()) {
            warn!(error = %err, events, "reading scan reports failed (a burst overran the socket?)");
        }
        if err.raw_os_error() != Some(libc::ENOBUFS) {
            thread::sleep(IDLE);
        }
    }

    fn count(&mut self, now: Instant, (source, port): (IpAddr, KnockPort)) {
        let blocklist = Arc::clone(&self.state.shard(source).blocklist);
        let Some(limits) = blocklist.scan else {
            return;
        };
        if blocklist.never_bans(source) {
            return;
        }
        // Counted per ban scope: an IPv6 scanner that takes a new address of its /64 for each
        // probe is still one scanner.
        let scope = blocklist.ban_scope(source);
        let key = (scope.network(), port);
        if self.detector.observe(now, key, limits).0 != Observation::Detected {
            return;
        }
        // Nor is a neighbour that holds a grant banned with its /64.
        if self.state.metrics.active_grants.holds_within(now, scope) {
            info!(%source, banned = %scope, "not banned for a port scan: a source there holds a grant");
            return;
        }
        self.ban(now, scope, source, limits);
    }

    /// Bans like a trap port does: the kernel's blocked sets, and the knock state discarded.
    fn ban(&mut self, now: Instant, scope: ipnet::IpNet, source: IpAddr, limits: ScanBan) {
        {
            let mut shard = self.state.shard(source);
            let before = shard.engine.tracked_sources();
            shard.engine.forget(source);
            let after = shard.engine.tracked_sources();
            self.state
                .metrics
                .packet
                .tracked_sources_elsewhere(gauge_delta(before, after));
        }
        let metrics = &self.state.metrics;
        match self.nft.ban(scope, limits.ban_for) {
            Ok(()) => {
                metrics.bans_scan.inc();
                metrics.banned_sources.record(now, scope, limits.ban_for);
                info!(
                    banned = %scope, ban_for = %humantime::format_duration(limits.ban_for),
                    distinct_ports = limits.distinct_ports, within = %humantime::format_duration(limits.within),
                    "banned: it probed many ports (a port scan)"
                );
            }
            Err(err) => {
                metrics.nft_errors.inc();
                if let Gate::Report { events } = self.warnings.check(now) {
                    error!(banned = %scope, error = %err, failed = events, "banning a scanner failed");
                }
            }
        }
    }
}
