//! systemd's watchdog: with `WatchdogSec=` systemd sets `WATCHDOG_USEC` and restarts the service
//! if `WATCHDOG=1` stops coming. The supervisor pings at half that interval, but only while
//! every queue worker is alive: a daemon whose worker died answers no knocks and should be
//! restarted, even though its main loop still runs.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::{Interval, MissedTickBehavior};
use tracing::{error, info};

use crate::queue::WorkerHandle;

/// Whether pings still go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Pinging,
    /// A worker died: pings stopped so that systemd restarts the daemon.
    Starved,
}

#[derive(Debug)]
pub struct Watchdog {
    ticker: Option<Interval>,
    health: Health,
}

impl Watchdog {
    /// Enabled when systemd asked for it (`WATCHDOG_USEC`, for this pid).
    pub fn from_env() -> Watchdog {
        let mut usec = 0;
        let ticker = sd_notify::watchdog_enabled(false, &mut usec)
            .then(|| ping_period(usec))
            .flatten()
            .map(|period| {
                info!(period = ?period, "systemd watchdog enabled");
                let mut ticker = tokio::time::interval(period);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                ticker
            });
        Watchdog {
            ticker,
            health: Health::Pinging,
        }
    }

    /// Completes at the next ping time; never when the watchdog is off.
    pub async fn tick(&mut self) {
        match &mut self.ticker {
            Some(ticker) => {
                ticker.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Pings systemd if every worker is alive; otherwise says which died, once, and stops.
    pub fn ping(&mut self, workers: &[WorkerHandle]) {
        let dead: Vec<u16> = workers
            .iter()
            .filter(|w| !w.is_alive())
            .map(|w| w.num)
            .collect();
        match (dead.is_empty(), self.health) {
            (true, Health::Pinging) => {
                let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
            }
            (false, Health::Pinging) => {
                self.health = Health::Starved;
                error!(queues = ?dead, "a queue worker died; stopping watchdog pings so systemd restarts the daemon");
            }
            (_, Health::Starved) => {}
        }
    }
}

/// Half the watchdog interval, as sd_watchdog_enabled(3) advises; none for a zero interval.
fn ping_period(usec: u64) -> Option<Duration> {
    (usec > 0).then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_come_at_half_the_interval() {
        assert_eq!(ping_period(30_000_000), Some(Duration::from_secs(15)));
        assert_eq!(ping_period(1), Some(Duration::from_millis(1)));
        assert_eq!(ping_period(0), None);
    }
}
