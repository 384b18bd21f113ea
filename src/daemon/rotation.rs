//! Keeping the engine's doors current: a TOTP door's accepted steps move on with the clock,
//! and a once-only use changes what is offered. The supervisor checks often; the kernel's
//! knock-port set changes first, then the engines.

use std::time::Duration;

use tracing::{debug, error};

use super::Daemon;
use crate::config::{Config, Door};
use crate::metrics::Metrics;
use crate::once::OnceState;

/// How often the engine's doors are compared with what they should be now.
pub const INTERVAL: Duration = Duration::from_millis(200);

/// `config` with the engine's doors, for the kernel's sets.
pub fn with_doors(config: &Config, doors: &[Door]) -> Config {
    Config {
        doors: doors.to_vec(),
        ..config.clone()
    }
}

/// `knock_nfq_one_time_sequences_left`; an exhausted door is an error in the log.
pub fn report_lines_left(metrics: &Metrics, once: &OnceState, doors: &[Door]) {
    for (door, left) in once.lines_left(doors) {
        let gauge = metrics.one_time_left(door);
        let before = gauge.get();
        gauge.set(i64::try_from(left).unwrap_or(i64::MAX));
        if left == 0 && before != 0 {
            error!(
                %door,
                "the door's one-time sequences are used up: it is disabled until lines are \
                 added to its file and the daemon is reloaded"
            );
        }
    }
}

impl Daemon {
    pub(super) fn rotate(&mut self) {
        let doors = self
            .state
            .once()
            .expand(&self.config.doors, crate::clock::unix_now());
        if doors == self.engine_doors {
            return;
        }
        let config = with_doors(&self.config, &doors);
        if let Err(err) = self.nft.fill_static_sets(&config) {
            self.state.metrics.nft_errors.inc();
            // Retried every tick: logged once until it works again.
            if !std::mem::replace(&mut self.rotation_failing, true) {
                error!(error = %err, "updating the knock ports of TOTP or one-time doors failed; retrying");
            }
            return;
        }
        self.rotation_failing = false;
        self.state.rotate(&doors, self.config.daemon.max_sources);
        report_lines_left(&self.state.metrics, &self.state.once(), &self.config.doors);
        debug!(doors = doors.len(), "once-only sequences moved on");
        self.engine_doors = doors;
    }
}
