//! `knock_nfq_banned_sources`: the bans the daemon made whose `ban_for` has not run out, in its
//! belief (the kernel is not asked, as for active grants). A ban lifted by `knock-nfq unban`, a
//! separate process, is counted until its time would have run out; a ban of an IPv6 network
//! counts once. Bounded by the blocked sets' size: beyond it the book stops growing (and so
//! does the kernel's set).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};

use super::kernel_queue::{family, gauge};

/// The blocked sets' `size` in deploy/nftables.conf.
const CAPACITY: usize = 65_536;

/// Ban scope → when the ban ends; pure (time is passed in).
#[derive(Debug, Default)]
pub struct BanBook {
    ends: HashMap<IpNet, Instant>,
}

impl BanBook {
    /// A ban made (or re-armed) at `now`.
    pub fn record(&mut self, now: Instant, scope: IpNet, ban_for: Duration) {
        if self.ends.len() >= CAPACITY && !self.ends.contains_key(&scope) {
            self.prune(now);
            if self.ends.len() >= CAPACITY {
                return;
            }
        }
        self.ends.insert(scope, now + ban_for);
    }

    /// Bans still running at `now`.
    pub fn active(&mut self, now: Instant) -> usize {
        self.prune(now);
        self.ends.len()
    }

    fn prune(&mut self, now: Instant) {
        self.ends.retain(|_, end| *end > now);
    }
}

/// The shared book behind the gauge, fed by the workers after each ban.
#[derive(Debug, Clone)]
pub struct BannedSources {
    book: Arc<Mutex<BanBook>>,
    desc: Desc,
}

impl BannedSources {
    pub fn new() -> BannedSources {
        BannedSources {
            book: Arc::default(),
            desc: Desc::new(
                "knock_nfq_banned_sources".into(),
                "Bans the daemon made whose ban_for has not run out (an IPv4 address or an \
                 IPv6 network each; the daemon's belief)."
                    .into(),
                Vec::new(),
                HashMap::new(),
            )
            .expect("valid desc"),
        }
    }

    /// A poisoned lock is taken anyway: every book operation leaves it consistent.
    fn book(&self) -> std::sync::MutexGuard<'_, BanBook> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn record(&self, now: Instant, scope: IpNet, ban_for: Duration) {
        self.book().record(now, scope, ban_for);
    }
}

impl Default for BannedSources {
    fn default() -> BannedSources {
        BannedSources::new()
    }
}

impl Collector for BannedSources {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let active = self.book().active(Instant::now());
        let metric = gauge(&[], u64::try_from(active).unwrap_or(u64::MAX));
        vec![family(&self.desc, MetricType::GAUGE, vec![metric])]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_counts_until_it_ends_and_a_rearm_counts_once() {
        let (mut book, t0) = (BanBook::default(), Instant::now());
        let net: IpNet = "2001:db8:1::/64".parse().unwrap();
        let host: IpNet = "192.0.2.2/32".parse().unwrap();
        book.record(t0, net, Duration::from_secs(10));
        book.record(t0, host, Duration::from_secs(5));
        book.record(t0 + Duration::from_secs(1), net, Duration::from_secs(10));
        assert_eq!(book.active(t0 + Duration::from_secs(4)), 2);
        assert_eq!(
            book.active(t0 + Duration::from_secs(5)),
            1,
            "host's ban ended"
        );
        assert_eq!(
            book.active(t0 + Duration::from_secs(11)),
            0,
            "re-armed at 1 s"
        );
    }
}
