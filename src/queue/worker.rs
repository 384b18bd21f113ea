//! One queue's worker thread: receive, decide, commit grants, send the verdict.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::config::Door;
use crate::daemon::state::{State, gauge_delta};
use crate::engine::{Eviction, KnockResult, Verdict};
use crate::nft::Nft;
use crate::packet;

/// A worker ready to run on its own thread.
pub struct Worker {
    num: u16,
    queue: nfq::Queue,
    nft: Nft,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    last_warning: Option<Instant>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.num)
            .finish_non_exhaustive()
    }
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    pub num: u16,
    thread: JoinHandle<()>,
}

impl Worker {
    pub fn new(
        num: u16,
        queue: nfq::Queue,
        nft: Nft,
        state: Arc<State>,
        stop: Arc<AtomicBool>,
    ) -> Worker {
        Worker {
            num,
            queue,
            nft,
            state,
            stop,
            last_warning: None,
        }
    }

    pub fn spawn(self) -> io::Result<WorkerHandle> {
        let num = self.num;
        let thread = thread::Builder::new()
            .name(format!("queue-{num}"))
            .spawn(move || self.run())?;
        Ok(WorkerHandle { num, thread })
    }

    fn run(mut self) {
        debug!(queue = self.num, "worker started");
        while !self.stop.load(Ordering::Acquire) {
            match self.queue.recv() {
                Ok(message) => self.answer(message),
                Err(err) => self.receive_failed(&err),
            }
        }
        self.drain();
        debug!(queue = self.num, "worker stopped");
    }

    /// Gives a verdict to every packet still in the socket, then leaves the queue.
    fn drain(&mut self) {
        self.queue.set_nonblocking(true);
        while let Ok(message) = self.queue.recv() {
            self.answer(message);
        }
        let _ = self.queue.unbind(self.num);
    }

    fn receive_failed(&mut self, err: &io::Error) {
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::ENOBUFS) => {
                self.state.metrics.queue_enobufs.inc();
                self.warn_rate_limited(
                    "queue socket overrun: the kernel dropped packets (ENOBUFS)",
                    err,
                );
            }
            _ => {
                self.state.metrics.queue_errors.inc();
                self.warn_rate_limited("receiving from the queue failed", err);
                thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn warn_rate_limited(&mut self, what: &str, err: &io::Error) {
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(1))
        {
            self.last_warning = Some(now);
            warn!(queue = self.num, error = %err, "{what}");
        }
    }

    /// Decides and sends the verdict for one packet. Never returns without a verdict sent.
    fn answer(&mut self, mut message: nfq::Message) {
        let received = Instant::now();
        let verdict = self.decide(received, message.get_payload(), message.get_indev());
        let metrics = &self.state.metrics;
        match verdict {
            Verdict::Accept => {
                message.set_verdict(nfq::Verdict::Accept);
                metrics.verdict_accept.inc();
            }
            Verdict::Drop => {
                message.set_verdict(nfq::Verdict::Drop);
                metrics.verdict_drop.inc();
            }
        }
        if let Err(err) = self.queue.verdict(message) {
            self.state.metrics.queue_errors.inc();
            self.warn_rate_limited("sending a verdict failed", &err);
        }
        self.state
            .metrics
            .verdict_seconds
            .observe(received.elapsed().as_secs_f64());
    }

    fn decide(&mut self, now: Instant, payload: &[u8], iface: u32) -> Verdict {
        let knock = match packet::parse(payload, iface) {
            Ok(knock) => knock,
            Err(err) => {
                self.state.metrics.packet_error(err).inc();
                return Verdict::Accept;
            }
        };
        let state = Arc::clone(&self.state);
        let mut guard = state.shard(knock.source);
        let shard = &mut *guard;
        let before = shard.engine.tracked_sources();
        let outcome = shard.engine.on_packet(now, &knock);
        for event in outcome.events {
            shard.door_metrics[event.door].knock(event.result);
            if event.result == KnockResult::Complete {
                info!(door = %shard.doors[event.door].name, source = %knock.source, "knock sequence complete");
            }
        }
        if outcome.eviction == Eviction::Oldest {
            state.metrics.evictions.inc();
        }
        debug!(source = %knock.source, port = knock.port, proto = %knock.proto, verdict = ?outcome.verdict, "packet");
        let verdict = outcome.verdict;
        if !outcome.grants.is_empty() {
            let grants: Vec<(IpAddr, usize)> =
                outcome.grants.iter().map(|g| (g.source, g.door)).collect();
            self.commit_grants(&grants, &shard.doors, &shard.door_metrics);
        }
        let after = shard.engine.tracked_sources();
        state
            .metrics
            .tracked_sources
            .add(gauge_delta(before, after));
        verdict
    }

    /// Commits grants before the verdict goes out, so the client's next SYN is admitted.
    fn commit_grants(
        &mut self,
        grants: &[(IpAddr, usize)],
        doors: &[Door],
        door_metrics: &[crate::metrics::DoorMetrics],
    ) {
        let started = Instant::now();
        let result = self
            .nft
            .apply_grants(grants.iter().map(|(source, door)| (*source, &doors[*door])));
        self.state
            .metrics
            .nft_batch_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                for (source, door_id) in grants {
                    let door = &doors[*door_id];
                    door_metrics[*door_id].grants.inc();
                    let targets: Vec<String> =
                        door.targets.iter().map(ToString::to_string).collect();
                    info!(door = %door.name, %source, action = door.action.name(), targets = %targets.join(","),
                        open_for = %humantime::format_duration(door.open_for), "grant committed");
                }
            }
            Err(err) => {
                self.state.metrics.nft_errors.inc();
                error!(queue = self.num, error = %err, cause = ?std::error::Error::source(&err), "grant failed");
            }
        }
    }
}

impl WorkerHandle {
    /// Waits for the worker to finish after the stop flag was set, waking it until it does.
    pub fn join(self, deadline: Instant) {
        while !self.thread.is_finished() && Instant::now() < deadline {
            super::wake::wake(&self.thread);
            thread::sleep(Duration::from_millis(5));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        } else {
            warn!(queue = self.num, "worker did not stop in time");
        }
    }
}
