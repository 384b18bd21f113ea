//! One queue's worker thread: receive, decide, commit grants, send the verdict.

use std::io;
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::affinity::{Placement, pin_current_thread};
use super::busy::BusyPoll;
use super::epoch::SeenEpoch;
use super::held::{self, Held, HeldConnection};
use super::ifname::{IfName, IfNames};
use super::limit::{Backoff, ErrorStreak, Gate, RateLimit};
use super::protected::Hook;
use super::state::{Shard, State, gauge_delta};
use crate::cluster::Publisher;
use crate::config::{Action, Proto};
use crate::engine::{Arrival, DoorEvent, Eviction, Grant, GrantSpec, KnockResult, Verdict};
use crate::metrics::DoorMetrics;
use crate::metrics::worker::WorkerCounters;
use crate::nft::{Attempt, Nft, NftError};
use crate::packet::{self, Packet};

mod ban;
mod once;
mod spa;
mod verdict;

/// At most one warning per this interval for receive and verdict errors...
const ERROR_WARNING_INTERVAL: Duration = Duration::from_secs(1);
/// ...and for evictions, which a spoofed-source flood causes on every packet.
const EVICTION_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Tries of a batch that revokes access before it is given up (counted and logged).
const CLOSE_ATTEMPTS: u32 = 3;
/// How long a worker pauses when the same receive error keeps repeating.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// What a worker does with a packet it received.
enum Decision {
    Now(Verdict),
    /// A connection to a protected service: the kernel's grant set decides, now or once its
    /// grant is committed (or its deadline passes).
    Hold(Attempt),
}

/// A worker ready to run on its own thread.
pub struct Worker {
    num: u16,
    queue: nfq::Queue,
    nft: Nft,
    state: Arc<State>,
    /// This worker's share of the per-packet metrics (it alone writes them).
    counters: WorkerCounters,
    stop: Arc<AtomicBool>,
    error_warnings: RateLimit,
    eviction_warnings: RateLimit,
    refusal_warnings: RateLimit,
    receive_errors: ErrorStreak,
    grant_failure_warnings: RateLimit,
    /// Grants of the packets of this receive, each with its door's counters; reused.
    pending: Vec<(Grant, DoorMetrics)>,
    /// Connections that raced their knock, waiting for its grant.
    held: Held<nfq::Detached>,
    /// The grant epoch the held connections were last looked up at.
    seen: SeenEpoch,
    ifnames: IfNames,
    /// Drops decided but not yet staged: one batch verdict covers them.
    drops: verdict::DropBatch,
    /// When each packet whose verdict is not yet sent was received; reused.
    received: Vec<Instant>,
    /// When the packets being decided were received (one `recvmmsg`).
    received_at: Instant,
    /// Whether to poll the socket rather than sleep on it (a flood).
    busy: BusyPoll,
    /// Where committed grants go next: the other gateways, through the cluster task.
    publisher: Publisher,
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
        publisher: Publisher,
    ) -> Worker {
        Worker {
            publisher,
            num,
            queue,
            nft,
            counters: state.metrics.packet.worker(),
            state,
            stop,
            error_warnings: RateLimit::new(ERROR_WARNING_INTERVAL),
            eviction_warnings: RateLimit::new(EVICTION_WARNING_INTERVAL),
            refusal_warnings: RateLimit::new(ERROR_WARNING_INTERVAL),
            receive_errors: ErrorStreak::default(),
            grant_failure_warnings: RateLimit::new(ERROR_WARNING_INTERVAL),
            pending: Vec::new(),
            held: Held::default(),
            seen: SeenEpoch::default(),
            ifnames: IfNames::new(Instant::now()),
            drops: verdict::DropBatch::default(),
            received: Vec::with_capacity(nfq::RECV_BATCH * 2),
            received_at: Instant::now(),
            busy: BusyPoll::default(),
        }
    }

    /// Starts the worker on its own thread, pinned to `placement`.
    pub fn spawn(self, placement: Placement) -> io::Result<WorkerHandle> {
        let num = self.num;
        let thread = thread::Builder::new()
            .name(format!("queue-{num}"))
            .spawn(move || {
                match pin_current_thread(placement) {
                    Ok(()) => debug!(queue = num, ?placement, "worker placed"),
                    // Still correct, only slower: warn and run where the scheduler puts it.
                    Err(err) => warn!(queue = num, ?placement, error = %err, "cannot pin the worker to its CPU"),
                }
                self.run();
            })?;
        Ok(WorkerHandle { num, thread })
    }

    fn run(mut self) {
        debug!(queue = self.num, "worker started");
        while !self.stop.load(Ordering::Acquire) {
            let fresh = self.queue.buffered() == 0;
            let polling = fresh && self.busy.polling(Instant::now());
            // With connections held, the clock matters even when no packet comes.
            self.queue.set_nonblocking(polling || !self.held.is_empty());
            let received = self.queue.recv();
            let answered = received.is_ok();
            match received {
                Ok(message) => {
                    // Every packet of one receive counts from the system call that brought it.
                    if fresh {
                        self.received_at = Instant::now();
                        self.busy.received(self.received_at);
                    }
                    self.receive_errors.clear();
                    self.answer(message, self.received_at);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock && polling => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => thread::sleep(held::POLL),
                Err(err) => self.receive_failed(&err),
            }
            if self.queue.buffered() == 0 {
                self.end_drain();
                if answered {
                    self.busy.drained(Instant::now());
                }
                if !self.held.is_empty() {
                    self.settle_held(Instant::now());
                }
            }
        }
        self.drain();
        debug!(queue = self.num, "worker stopped");
    }

    /// Finishes the packets one receive brought in: their grants are committed in one batch,
    /// then their verdicts go out in one datagram (so a knock's grant precedes its drop, and
    /// the connection it opens is admitted by the kernel).
    fn end_drain(&mut self) {
        self.commit_pending_grants();
        self.flush_verdicts();
    }

    /// Commits the pending grants (once-only uses consumed first). A bug here must not cost
    /// the worker: the grants are given up, counted and logged, and the verdicts still go out.
    fn commit_pending_grants(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let committed = panic::catch_unwind(AssertUnwindSafe(|| {
            self.consume_once_only();
            if !self.pending.is_empty() {
                self.commit_pending();
            }
        }));
        if committed.is_err() {
            self.pending.clear();
            self.state.metrics.queue_errors.inc();
            error!(
                queue = self.num,
                "committing grants panicked; they were not made"
            );
        }
    }

    /// Gives a verdict to every packet still in the socket, then leaves the queue.
    fn drain(&mut self) {
        self.queue.set_nonblocking(true);
        loop {
            match self.queue.recv() {
                Ok(message) => self.answer(message, Instant::now()),
                // An overrun or a stray wake-up signal is not the end of what is queued.
                Err(err) if matches!(err.raw_os_error(), Some(libc::EINTR | libc::ENOBUFS)) => {}
                Err(_) => break,
            }
            if self.queue.buffered() == 0 {
                self.end_drain();
            }
        }
        self.end_drain();
        // Held connections (some may have come in just now) get their verdict too.
        for connection in self.held.take_all() {
            self.settled(connection, Verdict::Drop);
        }
        self.flush_verdicts();
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
            other => {
                // Errors without an errno share one code: they repeat alike.
                let errno = other.unwrap_or(0);
                self.state.metrics.queue_errors.inc();
                self.warn_rate_limited("receiving from the queue failed", err);
                if self.receive_errors.failed(errno) == Backoff::Pause {
                    thread::sleep(ERROR_PAUSE);
                }
            }
        }
    }

    fn warn_rate_limited(&mut self, what: &str, err: &dyn std::error::Error) {
        if let Gate::Report { events } = self.error_warnings.check(Instant::now()) {
            warn!(queue = self.num, error = %err, events, "{what}");
        }
    }

    fn evicted(&mut self, now: Instant) {
        self.counters.eviction();
        if let Gate::Report { events } = self.eviction_warnings.check(now) {
            warn!(
                queue = self.num,
                evicted = events,
                "knock attempts evicted: the source table is full (a flood of spoofed sources? \
                 if the traffic is real, raise daemon.max_sources)"
            );
        }
    }

    /// Decides and sends the verdict for one packet, or holds it (a connection waiting for its
    /// grant, which gets its verdict from [`Worker::settle_held`]).
    fn answer(&mut self, message: nfq::Message, received: Instant) {
        let (payload, hook) = (message.get_payload(), Hook::from_number(message.get_hook()));
        let interface = match self.state.interfaces_matter() {
            true => self.ifnames.name(message.get_indev(), received),
            false => None,
        };
        // A bug must not cost the packet its verdict (it would stay queued) nor the worker.
        let decided = panic::catch_unwind(AssertUnwindSafe(|| {
            self.decide(received, (payload, hook, interface))
        }));
        let decision = decided.unwrap_or_else(|_| {
            self.state.metrics.queue_errors.inc();
            error!(
                queue = self.num,
                "deciding a packet panicked; it was dropped"
            );
            Decision::Now(Verdict::Drop)
        });
        let attempt = match decision {
            Decision::Now(verdict) => return self.send(message, verdict, received),
            Decision::Hold(attempt) => attempt,
        };
        // A batch verdict covers every lower packet id: none may be pending behind a held one.
        self.stage_drops();
        let connection = HeldConnection {
            message: message.detach(),
            attempt,
            received,
        };
        if let Err(connection) = self.held.hold(connection) {
            self.settled(connection, Verdict::Drop);
        }
    }

    /// Admits the held connections whose grant is in the kernel now, drops the expired.
    fn settle_held(&mut self, now: Instant) {
        let recheck = self.seen.recheck(&self.state.grant_epoch);
        for connection in self.held.due(now, recheck) {
            let verdict = match self.is_granted(connection.attempt) {
                true => Verdict::Accept,
                false if held::expired(connection.received, now) => Verdict::Drop,
                false => {
                    // Still within its deadline: room was made for it by taking it out.
                    let _ = self.held.hold(connection);
                    continue;
                }
            };
            self.settled(connection, verdict);
        }
        self.flush_verdicts();
    }

    fn settled(&mut self, connection: HeldConnection<nfq::Detached>, verdict: Verdict) {
        self.counters.held(verdict);
        self.send_held(connection.message, verdict, connection.received);
    }

    fn decide(
        &mut self,
        now: Instant,
        (payload, hook, interface): (&[u8], Hook, Option<IfName>),
    ) -> Decision {
        let packet = match packet::parse(payload) {
            Ok(packet) => packet,
            Err(err) => {
                // Not judged, so not let through: the queue fails closed.
                self.counters.packet_error(err);
                return Decision::Now(Verdict::Drop);
            }
        };
        let arrival = interface
            .as_ref()
            .map_or(Arrival::Unknown, |name| Arrival::On(name.as_str()));
        let attempt = match self.step(now, (hook, arrival), &packet, payload) {
            Decision::Now(verdict) => return Decision::Now(verdict),
            Decision::Hold(attempt) => attempt,
        };
        // Its knock may be one of this receive's: its grant goes in before the lookup.
        self.commit_pending_grants();
        match self.is_granted(attempt) {
            true => {
                self.counters.held(Verdict::Accept);
                Decision::Now(Verdict::Accept)
            }
            false => Decision::Hold(attempt),
        }
    }

    /// Whether the kernel holds the grant a held connection asks for; a failed lookup is a no.
    fn is_granted(&mut self, attempt: Attempt) -> bool {
        self.nft.is_granted(attempt).unwrap_or_else(|err| {
            self.state.metrics.nft_errors.inc();
            self.warn_rate_limited("looking up a grant failed; the connection waits", &err);
            false
        })
    }

    /// Steps the source's engine under its shard lock and takes the grants out, so the netlink
    /// commit that follows does not hold up other sources of the shard. A connection to a
    /// protected service is held for the kernel's grant set to decide instead.
    fn step(
        &mut self,
        now: Instant,
        (hook, arrival): (Hook, Arrival),
        packet: &Packet,
        bytes: &[u8],
    ) -> Decision {
        let knock = &packet.knock;
        let mut guard = self.state.shard(knock.source);
        let Shard {
            engine,
            door_metrics,
            protected,
            spa_ports,
            blocklist,
        } = &mut *guard;
        if let Some(attempt) = protected.attempt(hook, packet) {
            return Decision::Hold(attempt);
        }
        let port = crate::config::KnockPort {
            port: knock.port,
            proto: knock.proto,
        };
        if blocklist.is_trap(port) && !blocklist.never_bans(knock.source) {
            let (before, ban_for) = (engine.tracked_sources(), blocklist.ban_for);
            let scope = blocklist.ban_scope(knock.source);
            engine.forget(knock.source);
            let after = engine.tracked_sources();
            drop(guard);
            self.counters.tracked_sources(gauge_delta(before, after));
            self.ban(now, scope, ban_for);
            return Decision::Now(Verdict::Drop);
        }
        if knock.proto == Proto::Udp && spa_ports.binary_search(&knock.port).is_ok() {
            drop(guard);
            return Decision::Now(self.authorize(now, (packet, arrival), bytes));
        }
        let before = engine.tracked_sources();
        let outcome = engine.on_packet_via(now, knock, arrival);
        let (verdict, eviction) = (outcome.verdict, outcome.eviction);
        for event in outcome.events {
            door_metrics[event.door].knock(event.result);
            log_knock(*event, &outcome.doors[event.door], knock.source);
        }
        for grant in outcome.grants {
            let counters = door_metrics[grant.door].clone();
            self.pending.push((grant.clone(), counters));
        }
        for refusal in outcome.refused {
            door_metrics[refusal.door].refused.rate_limited.inc();
            if let Gate::Report { events } = self.refusal_warnings.check(now) {
                warn!(
                    door = %outcome.doors[refusal.door].door, source = %refusal.source, refused = events,
                    "grants refused: the door is over its max_grants_per_second (a sniffed \
                     sequence replayed from many sources?)"
                );
            }
        }
        debug!(source = %knock.source, port = knock.port, proto = %knock.proto, ?verdict, "packet");
        let after = engine.tracked_sources();
        drop(guard);
        if eviction == Eviction::Evicted {
            self.evicted(now);
        }
        if after != before {
            self.counters.tracked_sources(gauge_delta(before, after));
        }
        Decision::Now(verdict)
    }

    /// Commits the grants of this receive's packets in one batch before their verdicts go
    /// out, so each client's next SYN is admitted. If the batch fails, each grant is tried
    /// alone: one the kernel refuses (its set is full) must not cost the others theirs.
    fn commit_pending(&mut self) {
        let all = 0..self.pending.len();
        let result = self.commit_range(all.clone());
        match result {
            Err(_) if all.len() > 1 => {
                for i in all {
                    let result = self.commit_range(i..i + 1);
                    self.record_commit(i, &result);
                }
            }
            result => all.for_each(|i| self.record_commit(i, &result)),
        }
        self.pending.clear();
    }

    /// Commits the pending grants in `range` in one batch, retrying one that revokes access
    /// (a lost revoke leaves open what the user asked to close; bounded).
    fn commit_range(&mut self, range: std::ops::Range<usize>) -> Result<Instant, NftError> {
        let started = Instant::now();
        let has_close = self.pending[range.clone()]
            .iter()
            .any(|(g, _)| g.action() == Action::Close);
        let mut result = self.commit_once(range.clone());
        for _ in 1..CLOSE_ATTEMPTS {
            match &result {
                Err(err) if has_close && !err.is_set_full() => {
                    result = self.commit_once(range.clone());
                }
                _ => break,
            }
        }
        let committed = Instant::now();
        self.state
            .metrics
            .nft_batch_seconds
            .observe(committed.duration_since(started).as_secs_f64());
        result.map(|()| started)
    }

    /// Counts, logs and publishes the pending grant `i` after its commit (`Ok` holds when the
    /// commit started).
    fn record_commit(&mut self, i: usize, result: &Result<Instant, NftError>) {
        let (grant, counters) = &self.pending[i];
        let (spec, source) = (&*grant.spec, grant.source);
        if spec.targets_for(source).is_empty() {
            info!(door = %spec.door, %source, "sequence complete, but the door has no target for this address family");
            return;
        }
        let now = Instant::now();
        let metrics = &self.state.metrics;
        let err = match result {
            Ok(started) => {
                counters.grants.inc();
                // Committed here first; the fleet hears of it after the verdict's work.
                self.publisher.publish(grant, crate::clock::unix_now());
                metrics.active_grants.record(now, spec, source);
                log_grant(spec, source, now.duration_since(*started));
                return;
            }
            Err(err) => err,
        };
        let refused = &counters.refused;
        match err.is_set_full() {
            true => refused.set_full.inc(),
            false => refused.nft_error.inc(),
        }
        // A flood of completions must not become a flood of log lines.
        if let Gate::Report { events } = self.grant_failure_warnings.check(now) {
            error!(
                queue = self.num, door = %spec.door, %source, action = spec.action.name(),
                error = %err, cause = ?std::error::Error::source(err), failed = events,
                "grant failed; the client's access is unchanged"
            );
        }
    }

    fn commit_once(&mut self, range: std::ops::Range<usize>) -> Result<(), NftError> {
        let grants = self.pending[range].iter().map(|(grant, _)| grant);
        let result = self.nft.apply_grants(grants);
        match &result {
            Ok(()) => self.state.grant_epoch.bump(),
            Err(_) => self.state.metrics.nft_errors.inc(),
        }
        result
    }
}

/// Per-packet steps at debug: at info, a completion shows as its grant line (or, beyond the
/// door's grant rate, as a rate-limited summary), so a flood cannot fill the journal.
fn log_knock(event: DoorEvent, door: &GrantSpec, source: IpAddr) {
    match event.result {
        KnockResult::Complete => debug!(
            door = %door.door, %source, knocks = door.knocks, action = door.action.name(),
            "knock sequence complete"
        ),
        // The sweep reports other sources' attempts expiring during this packet.
        KnockResult::Expired => debug!(door = %door.door, "knock attempt expired"),
        result => debug!(door = %door.door, %source, result = result.name(), "knock"),
    }
}

fn log_grant(door: &GrantSpec, source: IpAddr, commit_time: Duration) {
    let targets: Vec<String> = door.targets.iter().map(ToString::to_string).collect();
    let targets = targets.join(",");
    match door.action {
        Action::Open => info!(
            door = %door.door, %source, %targets,
            open_for = %humantime::format_duration(door.open_for), ?commit_time,
            "grant committed"
        ),
        Action::Close => info!(
            door = %door.door, %source, %targets, ?commit_time,
            "grant revoked"
        ),
    }
}

impl WorkerHandle {
    /// Whether the worker thread is still running (it ends only on stop, or by panicking).
    pub fn is_alive(&self) -> bool {
        !self.thread.is_finished()
    }

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
