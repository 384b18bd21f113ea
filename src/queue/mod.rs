//! NFQUEUE workers: one blocking thread per configured queue (nfq crate), each pinned to a CPU
//! when there are several ([`affinity`]).
//!
//! Every received packet gets a verdict, always: parse failures are counted and dropped (a
//! packet that was not judged is never let through), and the grant of a completing knock is
//! committed to nftables before that packet's drop verdict. A worker reads the packets waiting
//! in its socket together (up to `nfq::RECV_BATCH` per `recvmmsg`), decides each, commits their
//! grants in one nftables batch and sends their verdicts in one datagram.
//!
//! `open` binds before it configures (NFQUEUE has no instance to configure until it is bound).
//! The window is harmless: a packet queued in it arrives with no payload (the kernel's default
//! for a new instance), which is unparseable and dropped, or whole (nfq's own bind asks for
//! that), which is judged as usual; and a new instance has no fail-open, so a full queue drops.

pub mod affinity;
mod busy;
mod epoch;
mod held;
mod ifname;
pub(crate) mod limit;
mod protected;
pub mod state;
mod wake;
mod worker;

pub use epoch::GrantEpoch;
pub use state::{State, Stores};
pub use wake::install as install_wake_handler;
pub use worker::{Worker, WorkerHandle};

use std::io;

/// The packet mark of the iptables-nft fallback (kernels without nft's `queue` expression): the
/// ruleset's `to_daemon` chain sets it and an iptables-nft NFQUEUE rule queues on it. A packet
/// the daemon admits with it is answered "repeat" with the bit cleared, so the iptables chain
/// that queued it runs again from its start (the operator's own rules still judge it, where an
/// accept would skip them) and chains that drop still-marked packets let it pass.
pub const FALLBACK_MARK: u32 = 0x4000_0000;

/// Bytes of each packet copied to userspace: the IP and transport headers, and a whole SPA
/// message behind the largest IPv4 header (60 + 8 + 189 bytes), or an IPv6 one with up to 80
/// bytes of extension headers. A SYN is shorter than this, so it costs nothing more; only
/// datagrams with a payload to a knock or SPA port are copied further than their headers.
pub const COPY_RANGE: u16 = 320;
/// Packets the kernel holds for a queue; beyond it new ones are dropped (fail closed).
pub const QUEUE_MAX_LEN: u32 = 4096;
/// The queue socket's receive buffer: room for the whole kernel queue (each message of up to
/// [`COPY_RANGE`] bytes takes about 1–2 KiB of socket memory; the kernel doubles the value set),
/// so a burst waits for the daemon instead of overrunning the socket. The default
/// (`net.core.rmem_default`, 208 KiB) holds about 150 SYNs.
pub const SOCKET_BUFFER: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot open an NFQUEUE netlink socket (the daemon needs CAP_NET_ADMIN)")]
    Open(#[source] io::Error),
    #[error("cannot bind NFQUEUE {queue}: is another process bound to it?")]
    Bind {
        queue: u16,
        #[source]
        source: io::Error,
    },
    #[error("cannot configure NFQUEUE {queue} ({what})")]
    Configure {
        queue: u16,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Opens and configures queue `num`.
pub fn open(num: u16) -> Result<nfq::Queue, QueueError> {
    let mut queue = nfq::Queue::open().map_err(QueueError::Open)?;
    queue
        .bind(num)
        .map_err(|source| QueueError::Bind { queue: num, source })?;
    let configure = |what, result: io::Result<()>| {
        result.map_err(|source| QueueError::Configure {
            queue: num,
            what,
            source,
        })
    };
    configure("copy range", queue.set_copy_range(num, COPY_RANGE))?;
    configure("queue length", queue.set_queue_max_len(num, QUEUE_MAX_LEN))?;
    // Under overload drop, never accept: a queued packet may be one the ruleset guards (a
    // strict door queues every new connection), and none may pass unjudged.
    configure("fail-closed", queue.set_fail_open(num, false))?;
    configure("ENOBUFS reporting", queue.set_recv_enobufs(true))?;
    configure("receive buffer", queue.set_recv_buffer_size(SOCKET_BUFFER))?;
    Ok(queue)
}
