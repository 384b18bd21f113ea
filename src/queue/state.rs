//! The packet path's shared state: the engine, sharded by source address, and the metrics.
//!
//! With several queues (or `fanout`), packets of one source can reach different workers, so a
//! source must always map to the same engine. Each shard holds its engine together with the
//! counters its door ids index, so a reload swaps both at once.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::{Blocklist, Config, Door};
use crate::engine::Engine;
use crate::metrics::{DoorMetrics, Metrics};
use crate::once::OnceState;

use super::epoch::GrantEpoch;
use super::protected::Protected;
use crate::spa::{Gate, SpaState};

#[derive(Debug)]
pub struct Shard {
    pub engine: Engine,
    pub door_metrics: Vec<DoorMetrics>,
    /// The same for every shard; here so that a reload swaps it with the doors.
    pub protected: Arc<Protected>,
    /// The UDP ports of SPA doors, sorted; likewise.
    pub spa_ports: Arc<[u16]>,
    /// Trap ports and who is never banned; likewise.
    pub blocklist: Arc<Blocklist>,
}

#[derive(Debug)]
pub struct State {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    pub metrics: Metrics,
    /// One for all workers: a nonce used through one queue is used for all.
    spa: Mutex<SpaState>,
    /// Likewise for TOTP steps and one-time lines.
    once: Mutex<OnceState>,
    /// Whether any door has `interfaces`: only then is a packet's interface worth naming.
    interfaces_matter: AtomicBool,
    /// Bumped by every grant commit, of any worker or the cluster task: held connections are
    /// looked up again when it moves.
    pub grant_epoch: GrantEpoch,
}

/// What the packet path needs besides the config: the engine's doors (the config's, with TOTP
/// and one-time doors expanded by [`OnceState::expand`]) and the once-only stores.
#[derive(Debug)]
pub struct Stores {
    pub spa: SpaState,
    pub once: OnceState,
}

impl State {
    pub fn new(
        config: &Config,
        engine_doors: &[Door],
        shard_count: usize,
        metrics: Metrics,
        stores: Stores,
    ) -> State {
        let shard_count = shard_count.max(1);
        let per_shard = config.daemon.max_sources.div_ceil(shard_count);
        let protected = Arc::new(Protected::new(&config.doors));
        let spa_ports: Arc<[u16]> = Gate::ports(&config.doors).into();
        let blocklist = Arc::new(config.blocklist.clone());
        let shards = (0..shard_count)
            .map(|_| {
                Mutex::new(Shard {
                    engine: Engine::new(engine_doors.to_vec(), per_shard),
                    door_metrics: engine_doors.iter().map(|d| metrics.door(d)).collect(),
                    protected: Arc::clone(&protected),
                    spa_ports: Arc::clone(&spa_ports),
                    blocklist: Arc::clone(&blocklist),
                })
            })
            .collect();
        State {
            shards,
            hasher: RandomState::new(),
            metrics,
            spa: Mutex::new(stores.spa),
            once: Mutex::new(stores.once),
            interfaces_matter: AtomicBool::new(interfaces_matter(config)),
            grant_epoch: GrantEpoch::default(),
        }
    }

    pub fn interfaces_matter(&self) -> bool {
        self.interfaces_matter.load(Ordering::Relaxed)
    }

    /// The shard that owns `source`, locked. A worker that panicked while holding it left the
    /// engine consistent enough to go on (each packet is one small step), so poison is ignored.
    pub fn shard(&self, source: IpAddr) -> MutexGuard<'_, Shard> {
        let index = usize::try_from(self.hasher.hash_one(source)).unwrap_or(0) % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The SPA gate, locked (poison ignored, as for the shards).
    pub fn spa(&self) -> MutexGuard<'_, SpaState> {
        self.spa.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The used TOTP steps and one-time lines, locked (poison ignored).
    pub fn once(&self) -> MutexGuard<'_, OnceState> {
        self.once.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Before the kernel's sets change to `config`'s: treats the services of both configs as
    /// protected, so that no connection to one the kernel already guards reaches the engine,
    /// which accepts what is not a knock. [`State::reload`] then narrows to `config`'s.
    pub fn protect_during_reload(&self, config: &Config) {
        let new = Protected::new(&config.doors);
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.protected = Arc::new(shard.protected.union(&new));
        }
    }

    /// Applies a new configuration with its engine doors; attempts of unchanged doors are
    /// kept by the engine, and the active-grants belief keeps the grants of doors still there.
    pub fn reload(&self, config: &Config, engine_doors: &[Door]) {
        self.metrics
            .active_grants
            .replace_doors(&config.doors, config.daemon.max_sources);
        let protected = Arc::new(Protected::new(&config.doors));
        let spa_ports: Arc<[u16]> = Gate::ports(&config.doors).into();
        self.spa().gate.replace_doors(&config.doors);
        self.interfaces_matter
            .store(interfaces_matter(config), Ordering::Relaxed);
        let blocklist = Arc::new(config.blocklist.clone());
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.spa_ports = Arc::clone(&spa_ports);
            shard.blocklist = Arc::clone(&blocklist);
            shard.protected = Arc::clone(&protected);
        }
        self.rotate(engine_doors, config.daemon.max_sources);
    }

    /// New engine doors for the same config: a TOTP step ended, or a once-only use changed
    /// what is offered.
    pub fn rotate(&self, engine_doors: &[Door], max_sources: usize) {
        let per_shard = max_sources.div_ceil(self.shards.len());
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = shard.engine.tracked_sources();
            shard.engine.replace_doors(engine_doors.to_vec(), per_shard);
            shard.door_metrics = engine_doors.iter().map(|d| self.metrics.door(d)).collect();
            let after = shard.engine.tracked_sources();
            self.metrics
                .packet
                .tracked_sources_elsewhere(gauge_delta(before, after));
        }
    }
}

fn interfaces_matter(config: &Config) -> bool {
    config.doors.iter().any(|door| !door.interfaces.is_empty())
}

/// `after - before` for an `IntGauge`.
pub fn gauge_delta(before: usize, after: usize) -> i64 {
    i64::try_from(after).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(i64::MAX)
}
