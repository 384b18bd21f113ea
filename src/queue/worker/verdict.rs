//! Sending verdicts. Drops are batched: while no connection is held, a dropped packet's verdict
//! waits, and one `NFQNL_MSG_VERDICT_BATCH` drops every packet up to the last one, sent after
//! [`MAX_BATCH`] drops or as soon as the socket has nothing more to read. Under a flood of
//! forged knocks that saves a netlink send per packet. Accepts go out one by one at once (a
//! fallback-mode accept also rewrites the packet's mark).

use std::time::Instant;

use super::Worker;
use crate::engine::Verdict;
use crate::queue::FALLBACK_MARK;

/// Drops held back before a batch verdict is sent regardless.
const MAX_BATCH: u32 = 64;

/// Whether a drop may wait for a batch verdict. Only a packet answered as it arrives may: a
/// batch covers every lower packet id, so it must never overtake a connection that was held
/// (held connections are few; theirs go out one by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Batching {
    Allowed,
    Never,
}

/// The drops decided but not yet sent: the highest packet id and how many.
#[derive(Debug, Default)]
pub(super) struct DropBatch {
    last_id: Option<u32>,
    count: u32,
}

impl DropBatch {
    pub(super) fn is_pending(&self) -> bool {
        self.last_id.is_some()
    }
}

impl Worker {
    /// Sends (or, for a drop, batches) the verdict. `verdict_seconds` is observed when the
    /// verdict is decided; a batched drop reaches the kernel at most [`MAX_BATCH`] packets later.
    pub(super) fn send(
        &mut self,
        mut message: nfq::Message,
        (verdict, batching): (Verdict, Batching),
        received: Instant,
    ) {
        match verdict {
            Verdict::Accept => {
                let mark = message.get_nfmark();
                if mark & FALLBACK_MARK == 0 {
                    message.set_verdict(nfq::Verdict::Accept);
                } else {
                    message.set_nfmark(mark & !FALLBACK_MARK);
                    message.set_verdict(nfq::Verdict::Repeat);
                }
                self.counters.verdict(Verdict::Accept);
            }
            Verdict::Drop => {
                message.set_verdict(nfq::Verdict::Drop);
                self.counters.verdict(Verdict::Drop);
            }
        }
        self.counters
            .verdict_seconds(received.elapsed().as_secs_f64());
        // A batch covers every lower id, so a held connection (a lower id) rules it out.
        if verdict == Verdict::Drop && batching == Batching::Allowed && self.held.is_empty() {
            self.drops.last_id = Some(message.get_packet_id());
            self.drops.count += 1;
            if self.drops.count >= MAX_BATCH {
                self.flush_drops();
            }
            return;
        }
        if let Err(err) = self.queue.verdict(message) {
            self.state.metrics.queue_errors.inc();
            self.warn_rate_limited("sending a verdict failed", &err);
        }
    }

    /// Sends the batched drops, if any.
    pub(super) fn flush_drops(&mut self) {
        let Some(last_id) = self.drops.last_id.take() else {
            return;
        };
        self.drops.count = 0;
        if let Err(err) = self.queue.drop_up_to(self.num, last_id) {
            self.state.metrics.queue_errors.inc();
            self.warn_rate_limited("sending a batch of drop verdicts failed", &err);
        }
    }
}
