//! `knock-nfq run`: wires config, nftables, the queue workers and metrics together, and
//! handles signals (SIGTERM/SIGINT stop, SIGHUP reloads).

mod http;
mod rotation;
mod watchdog;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::cluster::{self, ClusterError, Inbox, Limits};
use crate::config::{Config, ConfigError, Door};
use crate::metrics::Metrics;
use crate::nft::{Nft, NftError};
use crate::once::{OnceError, OnceState};
use crate::queue::{self, QueueError, State, Stores, Worker, WorkerHandle};
use crate::scan::{self, Reporter, ReporterHandle, ScanError};
use crate::spa::{SpaState, StoreError};
use watchdog::Watchdog;

/// How often the supervisor checks the workers and the table.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// How long workers get to answer what is queued when stopping.
const STOP_DEADLINE: Duration = Duration::from_millis(900);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("cannot listen for metrics on {addr}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Spa(#[from] StoreError),
    #[error(transparent)]
    Once(#[from] OnceError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("the worker of NFQUEUE {queue} died")]
    WorkerDied { queue: u16 },
    #[error("the scan reporter thread died")]
    ReporterDied,
    #[error("cannot set up the runtime, threads or signal handlers")]
    Runtime(#[source] io::Error),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), DaemonError> {
    // Blocking threads serve only name lookups of etcd endpoints; tokio's default of 512 could
    // run into the unit's TasksMax when endpoints are hostnames and the resolver is slow.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(Daemon::start(config)?.supervise())
}

struct Daemon {
    config: Config,
    /// `config`'s doors as the engine runs them now (TOTP and one-time doors expanded).
    engine_doors: Vec<Door>,
    /// Whether the last rotation could not update the kernel's sets (logged once).
    rotation_failing: bool,
    nft: Nft,
    /// The kernel's handle of the table whose sets were last filled; `None` while it is missing.
    table_handle: Option<u64>,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    workers: Vec<WorkerHandle>,
    /// The thread reading the ruleset's scan reports; `None` when their group could not be
    /// bound and no scan bans were configured.
    reporter: Option<ReporterHandle>,
    /// What the workers publish, for the cluster task; `None` without `[cluster]`.
    cluster_rx: Option<Inbox>,
    /// What other gateways' grants may open here, sent to the cluster task at each reload.
    cluster_limits: watch::Sender<Limits>,
}

/// The daemon runs with a ruleset that is incomplete (an operator may queue from their own
/// rules) but says what `knock-nfq check --ruleset` would refuse.
fn warn_about_ruleset(nft: &mut Nft, queues: &[u16]) {
    match nft.audit_ruleset(queues) {
        Ok(audit) => {
            for finding in audit.findings {
                warn!(%finding, "the running ruleset is not what the daemon needs");
            }
        }
        Err(err) => warn!(error = %err, "cannot read the running ruleset back to verify it"),
    }
}

impl Daemon {
    /// Verifies the table, fills the sets, binds the queues and starts the workers. The sets are
    /// filled before any queue is bound, so the kernel guards the services before knocks count.
    fn start(config: Config) -> Result<Daemon, DaemonError> {
        let since_epoch = crate::clock::unix_now();
        let spa = SpaState::open(&config, Instant::now(), since_epoch)?;
        let once = OnceState::open(&config)?;
        let engine_doors = once.expand(&config.doors, since_epoch);
        let mut nft = Nft::open(&config.daemon.table)?;
        nft.verify(config.daemon.max_grants)?;
        nft.fill_static_sets(&rotation::with_doors(&config, &engine_doors))?;
        warn_about_ruleset(&mut nft, &config.daemon.queues);
        let table_handle = Some(nft.table_handle()?);
        let metrics = Metrics::new(&config);
        metrics.last_reload_success.set(unix_now());
        let cluster_limits = watch::Sender::new(Limits::of(&config.doors));
        let (publisher, cluster_rx) =
            cluster::channel(config.cluster.as_ref(), &metrics.cluster, &cluster_limits);
        rotation::report_lines_left(&metrics, &once, &config.doors);
        let state = Arc::new(State::new(
            &config,
            &engine_doors,
            config.daemon.queues.len(),
            metrics,
            Stores { spa, once },
        ));
        let stop = Arc::new(AtomicBool::new(false));
        queue::install_wake_handler().map_err(DaemonError::Runtime)?;
        let mut workers = Vec::new();
        let placements = queue::affinity::placements(config.daemon.queues.len())
            .map_err(DaemonError::Runtime)?;
        for (&num, &placement) in config.daemon.queues.iter().zip(&placements) {
            let queue = queue::open(num)?;
            let worker = Worker::new(
                num,
                queue,
                Nft::open(&config.daemon.table)?,
                Arc::clone(&state),
                Arc::clone(&stop),
                publisher.clone(),
            );
            workers.push(worker.spawn(placement).map_err(DaemonError::Runtime)?);
        }
        let reporter = start_reporter(&config, &state, &stop)?;
        Ok(Daemon {
            reporter,
            table_handle,
            engine_doors,
            rotation_failing: false,
            config,
            nft,
            state,
            stop,
            workers,
            cluster_rx,
            cluster_limits,
        })
    }

    /// Starts the cluster task, if there is a `[cluster]`. Only a client that cannot be set up
    /// (a TLS file the client refuses) stops the daemon; etcd being away does not.
    async fn start_cluster(&mut self) -> Result<(), DaemonError> {
        let (Some(rx), Some(config)) = (self.cluster_rx.take(), self.config.cluster.clone()) else {
            return Ok(());
        };
        let nft = cluster::open_sets(&self.config.daemon.table)?;
        let client = cluster::connect(&config).await?;
        let metrics = self.state.metrics.cluster.clone();
        let epoch = self.state.grant_epoch.clone();
        tokio::spawn(cluster::run(config, client, nft, rx, metrics, epoch));
        Ok(())
    }

    async fn supervise(mut self) -> Result<(), DaemonError> {
        if let Some(addr) = self.config.daemon.metrics {
            let listener = http::bind(addr)
                .await
                .map_err(|source| DaemonError::Metrics { addr, source })?;
            tokio::spawn(http::serve(listener, self.state.metrics.clone()));
        }
        self.start_cluster().await?;
        let signal = |kind| signal(kind).map_err(DaemonError::Runtime);
        let (mut term, mut int, mut hup) = (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::hangup())?,
        );
        info!(
            config = %self.config.path.display(), table = %self.config.daemon.table, queues = ?self.config.daemon.queues,
            doors = self.config.doors.len(), "knock-nfq running"
        );
        notify(&[NotifyState::Ready]);
        let mut watchdog = Watchdog::from_env();
        let mut health = tokio::time::interval(HEALTH_INTERVAL);
        let mut rotate = tokio::time::interval(rotation::INTERVAL);
        let result = loop {
            tokio::select! {
                _ = term.recv() => break Ok(()),
                _ = int.recv() => break Ok(()),
                _ = hup.recv() => self.reload(),
                () = watchdog.tick() => watchdog.ping(&self.workers),
                _ = health.tick() => if let Err(err) = self.check_health() { break Err(err) },
                _ = rotate.tick() => self.rotate(),
            }
        };
        notify(&[NotifyState::Stopping]);
        self.stop();
        result
    }

    /// A worker that died ends the daemon (systemd restarts it); a table loaded anew under the
    /// daemon, whose sets are then empty and guard nothing, is refilled at once.
    fn check_health(&mut self) -> Result<(), DaemonError> {
        if let Some(dead) = self.workers.iter().find(|w| !w.is_alive()) {
            return Err(DaemonError::WorkerDied { queue: dead.num });
        }
        if self.reporter.as_ref().is_some_and(|r| !r.is_alive()) {
            // Scan bans configured: restart (systemd) rather than run without them. Otherwise
            // the reports were ignored anyway; keeping every door working matters more.
            if self.config.blocklist.scan.is_some() {
                return Err(DaemonError::ReporterDied);
            }
            warn!("the scan report reader stopped; no scan bans until the next restart");
            self.reporter = None;
        }
        let table = self.config.daemon.table.clone();
        match self.nft.table_handle() {
            Ok(handle) if Some(handle) == self.table_handle => {}
            Ok(handle) => {
                warn!(%table, "table inet {table} was loaded anew (nftables reloaded?): refilling its sets");
                match self
                    .nft
                    .fill_static_sets(&rotation::with_doors(&self.config, &self.engine_doors))
                {
                    Ok(()) => self.table_handle = Some(handle),
                    Err(err) => {
                        self.state.metrics.nft_errors.inc();
                        error!(%table, error = %err, "refilling the sets failed; retrying every second");
                    }
                }
            }
            Err(err) => {
                if self.table_handle.take().is_some() {
                    error!(%table, error = %err, "the table is gone: nothing is guarded until it is loaded again");
                }
            }
        }
        Ok(())
    }

    /// Re-reads the config; a bad file or a failed set update keeps the old config running.
    fn reload(&mut self) {
        notify(&[
            NotifyState::Reloading,
            NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Reloading),
        ]);
        let started = Instant::now();
        match self.try_reload() {
            Ok(()) => {
                self.state.metrics.reload_success.inc();
                self.state.metrics.last_reload_success.set(unix_now());
                let doors: Vec<&str> = self.config.doors.iter().map(|d| d.name.as_str()).collect();
                info!(
                    config = %self.config.path.display(), doors = %doors.join(","),
                    duration = ?started.elapsed(), "configuration reloaded"
                );
            }
            Err(err) => {
                self.state.metrics.reload_failure.inc();
                error!(
                    config = %self.config.path.display(), error = %err, duration = ?started.elapsed(),
                    "reload rejected; still running on the previous configuration"
                );
            }
        }
        notify(&[NotifyState::Ready]);
    }

    fn try_reload(&mut self) -> Result<(), DaemonError> {
        let (mut config, _) = Config::load_trusted(&self.config.path)?;
        // Bound queues, the verified table, the metrics listener and the cluster change only on
        // restart.
        let old = &self.config.daemon;
        if (
            &config.daemon.queues,
            &config.daemon.table,
            config.daemon.metrics,
            &config.daemon.state_dir,
            &config.cluster,
        ) != (
            &old.queues,
            &old.table,
            old.metrics,
            &old.state_dir,
            &self.config.cluster,
        ) {
            warn!(
                "changes to daemon.queues, daemon.table, daemon.metrics, daemon.state_dir and \
                 [cluster] take effect at the next restart"
            );
            config.cluster.clone_from(&self.config.cluster);
            config.daemon.queues.clone_from(&old.queues);
            config.daemon.table.clone_from(&old.table);
            config.daemon.metrics = old.metrics;
            config.daemon.state_dir.clone_from(&old.state_dir);
        }
        if config.blocklist.scan.is_some() && self.reporter.is_none() {
            warn!(
                group = scan::LOG_GROUP,
                "[blocklist] scan takes effect at the next restart: its NFLOG group could not be \
                 bound at startup"
            );
        }
        self.state.spa().save_if_used(&config)?;
        self.state.once().check_writable(&config)?;
        let engine_doors = self
            .state
            .once()
            .expand(&config.doors, crate::clock::unix_now());
        self.state.protect_during_reload(&config);
        let filled = self
            .nft
            .fill_static_sets(&rotation::with_doors(&config, &engine_doors));
        match filled {
            Ok(()) => self.state.reload(&config, &engine_doors),
            Err(_) => self.state.reload(&self.config, &self.engine_doors),
        }
        filled?;
        rotation::report_lines_left(&self.state.metrics, &self.state.once(), &config.doors);
        self.cluster_limits.send_replace(Limits::of(&config.doors));
        self.config = config;
        self.engine_doors = engine_doors;
        Ok(())
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let deadline = Instant::now() + STOP_DEADLINE;
        for worker in self.workers {
            worker.join(deadline);
        }
        if let Some(reporter) = self.reporter {
            reporter.join();
        }
        info!("knock-nfq stopped");
    }
}

/// Binds the scan reports' NFLOG group, always: a reload may turn scan bans on later. Only with
/// scan bans configured is a group that cannot be bound an error.
fn start_reporter(
    config: &Config,
    state: &Arc<State>,
    stop: &Arc<AtomicBool>,
) -> Result<Option<ReporterHandle>, DaemonError> {
    let nft = Nft::open(&config.daemon.table)?;
    match Reporter::new(scan::LOG_GROUP, nft, Arc::clone(state), Arc::clone(stop)) {
        Ok(reporter) => Ok(Some(reporter.spawn().map_err(DaemonError::Runtime)?)),
        Err(err) if config.blocklist.scan.is_some() => Err(err.into()),
        Err(err) => {
            warn!(error = %err, "no scan bans until the next restart");
            Ok(None)
        }
    }
}

fn notify(states: &[NotifyState<'_>]) {
    // Outside systemd NOTIFY_SOCKET is unset and this does nothing.
    let _ = sd_notify::notify(false, states);
}

fn unix_now() -> f64 {
    crate::clock::unix_now().as_secs_f64()
}
