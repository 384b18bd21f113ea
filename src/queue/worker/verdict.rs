//! Sending verdicts. One receive brings in up to `nfq::RECV_BATCH` packets; their verdicts are
//! staged and go out together in one datagram once the receive's grants are committed (see
//! `Worker::end_drain`), so a flood costs two system calls per receive, not two per packet.
//! Drops are coalesced further: while no connection is held, one `NFQNL_MSG_VERDICT_BATCH`
//! drops every packet up to the receive's last one, after the staged accepts. An accept is a
//! message of its own (a fallback-mode accept also rewrites the packet's mark).

use std::thread;
use std::time::{Duration, Instant};

use super::Worker;
use crate::engine::Verdict;
use crate::queue::FALLBACK_MARK;

/// Tries of a send of staged verdicts that fails for want of memory or by a signal...
const SEND_ATTEMPTS: u32 = 3;
/// ...and the pause between them.
const SEND_RETRY_PAUSE: Duration = Duration::from_micros(200);

/// The drops decided but not yet staged: the highest packet id.
#[derive(Debug, Default)]
pub(super) struct DropBatch {
    last_id: Option<u32>,
}

impl Worker {
    /// Stages (or, for a drop, coalesces) the verdict of a packet answered as it arrives; it
    /// reaches the kernel when the receive's packets are all decided and their grants
    /// committed ([`Worker::flush_verdicts`]).
    pub(super) fn send(&mut self, mut message: nfq::Message, verdict: Verdict, received: Instant) {
        self.count_verdict(verdict, received);
        // A batch covers every lower id, so a held connection (a lower id) rules it out.
        if verdict == Verdict::Drop && self.held.is_empty() {
            self.drops.last_id = Some(message.get_packet_id());
            return;
        }
        let (kernel, mark) = kernel_verdict(verdict, message.get_nfmark());
        message.set_verdict(kernel);
        if let Some(mark) = mark {
            message.set_nfmark(mark);
        }
        if let Err(err) = self.queue.stage_verdict(message) {
            self.verdicts_lost(&err);
        }
    }

    /// Stages the verdict of a held connection: one by one, never in a batch (held connections
    /// are few, and a batch would cover the packets received before it).
    pub(super) fn send_held(&mut self, packet: nfq::Detached, verdict: Verdict, received: Instant) {
        self.count_verdict(verdict, received);
        let (kernel, mark) = kernel_verdict(verdict, packet.get_nfmark());
        if let Err(err) = self.queue.stage_detached(packet, kernel, mark) {
            self.verdicts_lost(&err);
        }
    }

    fn count_verdict(&mut self, verdict: Verdict, received: Instant) {
        self.counters.verdict(verdict);
        self.received.push(received);
    }

    /// Stages one batch verdict for the coalesced drops, if any. Before a connection is held:
    /// the batch must cover only lower ids than its.
    pub(super) fn stage_drops(&mut self) {
        let Some(last_id) = self.drops.last_id.take() else {
            return;
        };
        if let Err(err) = self.queue.stage_drop_up_to(self.num, last_id) {
            self.verdicts_lost(&err);
        }
    }

    /// Sends every staged verdict in one datagram. A send that fails is tried again (nothing
    /// of it reached the kernel); one that keeps failing is counted and its verdicts given up:
    /// their packets stay queued, unjudged, until the queue is closed (which drops them).
    pub(super) fn flush_verdicts(&mut self) {
        self.stage_drops();
        self.send_staged();
        // From each packet's arrival to its verdict's send, grant commits included.
        let sent = Instant::now();
        for received in self.received.drain(..) {
            let seconds = sent.duration_since(received).as_secs_f64();
            self.counters.verdict_seconds(seconds);
        }
    }

    fn send_staged(&mut self) {
        for attempt in 1..=SEND_ATTEMPTS {
            let err = match self.queue.send_staged() {
                Ok(()) => return,
                Err(err) => err,
            };
            let transient = matches!(
                err.raw_os_error(),
                Some(libc::ENOBUFS | libc::ENOMEM | libc::EINTR | libc::EAGAIN)
            );
            if !transient || attempt == SEND_ATTEMPTS {
                self.queue.discard_staged();
                self.verdicts_lost(&err);
                return;
            }
            thread::sleep(SEND_RETRY_PAUSE);
        }
    }

    fn verdicts_lost(&mut self, err: &std::io::Error) {
        self.state.metrics.queue_errors.inc();
        self.warn_rate_limited("sending verdicts failed", err);
    }
}

/// What the kernel is told for `verdict`, and the packet's new mark if it changes: an accept in
/// the iptables-nft fallback clears the fallback bit and repeats the hook (see
/// [`FALLBACK_MARK`]).
fn kernel_verdict(verdict: Verdict, mark: u32) -> (nfq::Verdict, Option<u32>) {
    match verdict {
        Verdict::Drop => (nfq::Verdict::Drop, None),
        Verdict::Accept if mark & FALLBACK_MARK == 0 => (nfq::Verdict::Accept, None),
        Verdict::Accept => (nfq::Verdict::Repeat, Some(mark & !FALLBACK_MARK)),
    }
}
