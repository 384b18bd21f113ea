//! knock-nfq's local additions, to be offered upstream: many queued packets per receive
//! (`recvmmsg`) and many verdicts per send (several netlink messages in one datagram, which
//! nfnetlink processes one after the other).

use super::*;

/// Datagrams (one queued packet each) read by one `recvmmsg`.
pub const RECV_BATCH: usize = 32;

/// Room left in the staging buffer below which it is sent before another verdict is added:
/// more than a verdict without a payload takes (header, verdict, mark: 40 bytes).
const STAGE_HEADROOM: usize = 64;
/// Bytes of staged verdicts: about 100 of them.
const STAGE_BYTES: usize = 4096;

/// What [`Queue::recv_datagrams`] found besides packets.
enum Datagram {
    Packets,
    /// An acknowledgement (errno 0) or `NLMSG_DONE`.
    Ack,
    Error(std::io::Error),
}

impl Queue {
    /// Messages received and not yet returned by [`Queue::recv`]: while there are some, `recv`
    /// makes no system call. At 0 the packets received together have all been handed out.
    pub fn buffered(&self) -> usize {
        self.queue.len()
    }

    /// A receive buffer no message points into, of `slots` datagrams. Messages still held keep
    /// theirs alive (an `Arc`), so a spare one is taken, or a new one made, until they are done.
    pub(crate) fn free_buffer(&mut self, slots: usize) -> &mut Vec<u32> {
        let wanted = self.bufsize * slots;
        if Arc::get_mut(&mut self.buffer).map_or(true, |b| b.capacity() < wanted) {
            let spare = self
                .spare
                .iter()
                .position(|b| Arc::strong_count(b) == 1 && b.capacity() >= wanted);
            let fresh = match spare {
                Some(i) => self.spare.swap_remove(i),
                None => Arc::new(Vec::with_capacity(wanted)),
            };
            let old = std::mem::replace(&mut self.buffer, fresh);
            if Arc::strong_count(&old) > 1 {
                self.spare.push(old);
            }
            // Buffers whose messages are gone are kept only as long as there are held ones.
            self.spare.retain(|b| Arc::strong_count(b) > 1);
        }
        let buf = Arc::get_mut(&mut self.buffer).expect("buffer just made unique");
        // SAFETY: u32 has no invalid bit patterns and the kernel writes before we read.
        unsafe { buf.set_len(buf.capacity()) };
        buf
    }

    /// Reads up to [`RECV_BATCH`] datagrams with one `recvmmsg` (blocking for the first unless
    /// non-blocking was set, never for the others) and queues their packets.
    pub(crate) fn recv_datagrams(&mut self) -> Result<()> {
        let slot = self.bufsize;
        let fd = self.fd;
        let flags = self.recv_flag | libc::MSG_WAITFORONE | MSG_TRUNC;
        let buf = self.free_buffer(RECV_BATCH);
        let base = buf.as_mut_ptr();
        // SAFETY: all-zero iovec and mmsghdr are valid (null pointers, zero lengths).
        let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        for (i, (iov, hdr)) in iovs.iter_mut().zip(hdrs.iter_mut()).enumerate() {
            // SAFETY: slot i lies inside the buffer, which holds RECV_BATCH slots.
            iov.iov_base = unsafe { base.add(i * slot) } as *mut libc::c_void;
            iov.iov_len = slot * 4;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at its own iovec and slot, both alive for the call.
        let received = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                RECV_BATCH as c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut first_error = None;
        for (i, hdr) in hdrs.iter().take(received as usize).enumerate() {
            let len = hdr.msg_len as usize;
            let found = if len > slot * 4 {
                // Truncated: the slot is smaller than the copy range promised.
                Datagram::Error(std::io::Error::from_raw_os_error(ENOSPC))
            } else {
                // SAFETY: the kernel wrote `len` bytes at slot i; parse_datagram reads only those.
                unsafe { self.parse_datagram(self.buffer.as_ptr().add(i * slot), len) }
            };
            if let Datagram::Error(err) = found {
                first_error.get_or_insert(err);
            }
        }
        match first_error {
            // Packets received with the error are handed out first.
            Some(err) if self.queue.is_empty() => Err(err),
            Some(err) => {
                self.deferred_error = Some(err);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Queues the packets of one datagram of `len` bytes at `start`.
    unsafe fn parse_datagram(&mut self, start: *const u32, len: usize) -> Datagram {
        let mut found = Datagram::Packets;
        let (mut nlh, mut left) = (start as *const nlmsghdr, len);
        while left >= NLMSG_HDRLEN {
            let nlmsg_len = (*nlh).nlmsg_len as usize;
            if nlmsg_len < NLMSG_HDRLEN || left < nlmsg_len {
                break;
            }
            if (*nlh).nlmsg_flags & NLM_F_DUMP_INTR as u16 != 0 {
                return Datagram::Error(std::io::Error::from_raw_os_error(EINTR));
            }
            match (*nlh).nlmsg_type as c_int {
                NLMSG_ERROR => {
                    let err = (nlh as usize + NLMSG_HDRLEN) as *const nlmsgerr;
                    match (*err).error.abs() {
                        0 => found = Datagram::Ack,
                        errno => return Datagram::Error(std::io::Error::from_raw_os_error(errno)),
                    }
                }
                NLMSG_DONE => found = Datagram::Ack,
                v if v < NLMSG_MIN_TYPE => (),
                _ => parse_msg(nlh, self),
            }
            let aligned = nfq_align(nlmsg_len);
            nlh = (nlh as usize + aligned) as *const nlmsghdr;
            left = left.saturating_sub(aligned);
        }
        found
    }

    /// Adds `msg`'s verdict to the staged ones, sent by [`Queue::send_staged`]. A verdict that
    /// replaces the payload is sent at once instead (after the staged ones).
    pub fn stage_verdict(&mut self, msg: Message) -> Result<()> {
        if !matches!(msg.payload_state, PayloadState::Unmodified) {
            self.send_staged()?;
            return self.verdict(msg);
        }
        let buf = self.stage_room()?;
        // SAFETY: stage_room leaves at least STAGE_HEADROOM bytes, more than this message.
        self.staged_len += unsafe {
            let mut nlmsg = Nlmsg::new(buf);
            put_verdict(&mut nlmsg, &msg);
            finish(nlmsg)
        };
        Ok(())
    }

    /// Stages a drop of every packet of queue `queue_num` up to and including `packet_id` that
    /// has no verdict yet (`NFQNL_MSG_VERDICT_BATCH`). The caller must not hold back any message
    /// with a lower id: it is dropped too.
    pub fn stage_drop_up_to(&mut self, queue_num: u16, packet_id: u32) -> Result<()> {
        let buf = self.stage_room()?;
        // SAFETY: as in stage_verdict.
        self.staged_len += unsafe {
            let mut nlmsg = Nlmsg::new(buf);
            nfq_hdr_put(&mut nlmsg, NFQNL_MSG_VERDICT_BATCH as u16, queue_num, false);
            let vh = nfqnl_msg_verdict_hdr {
                verdict: be32_to_cpu(0),
                id: be32_to_cpu(packet_id),
            };
            nlmsg.put_slice(NFQA_VERDICT_HDR as u16, std::slice::from_ref(&vh));
            finish(nlmsg)
        };
        Ok(())
    }

    /// Whether verdicts are staged and not yet sent.
    pub fn has_staged(&self) -> bool {
        self.staged_len > 0
    }

    /// Sends the staged verdicts in one datagram. On an error they stay staged (nothing of a
    /// failed send reaches nfnetlink), so the caller may try again or [`Queue::discard_staged`].
    pub fn send_staged(&mut self) -> Result<()> {
        if self.staged_len == 0 {
            return Ok(());
        }
        // SAFETY: the first staged_len u32s of the buffer are whole netlink messages.
        let sent = unsafe { self.send_raw(self.staged.as_ptr() as *const u8, self.staged_len * 4) };
        if sent.is_ok() {
            self.staged_len = 0;
        }
        sent
    }

    /// Forgets the staged verdicts (their packets stay queued until the queue is unbound).
    pub fn discard_staged(&mut self) {
        self.staged_len = 0;
    }

    /// The free tail of the staging buffer, with room for one more verdict.
    fn stage_room(&mut self) -> Result<&mut [u32]> {
        if self.staged.is_empty() {
            self.staged = vec![0; STAGE_BYTES / 4].into_boxed_slice();
        }
        if (self.staged.len() - self.staged_len) * 4 < STAGE_HEADROOM {
            self.send_staged()?;
        }
        Ok(&mut self.staged[self.staged_len..])
    }
}

/// Sets the length of a message written at the staging buffer's tail; returns it in u32s.
unsafe fn finish(mut nlmsg: Nlmsg) -> usize {
    nlmsg.adjust_len();
    nlmsg.len
}

/// Writes the verdict message for `msg` (header, verdict, changed mark).
pub(crate) unsafe fn put_verdict(nlmsg: &mut Nlmsg, msg: &Message) {
    let mark = if msg.nfmark_dirty {
        Some(msg.nfmark)
    } else {
        None
    };
    put_verdict_of(nlmsg, (msg.id, (*msg.hdr).packet_id), msg.verdict, mark);
}

/// Writes a verdict message for packet `packet_id` (big-endian, as the kernel sent it) of
/// queue `queue_num`.
unsafe fn put_verdict_of(
    nlmsg: &mut Nlmsg,
    (queue_num, packet_id): (u16, u32),
    verdict: Verdict,
    mark: Option<u32>,
) {
    nfq_hdr_put(nlmsg, NFQNL_MSG_VERDICT as u16, queue_num, false);
    let vh = nfqnl_msg_verdict_hdr {
        verdict: be32_to_cpu(match verdict {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
            Verdict::Queue(num) => (num as u32) << 16 | 3,
            Verdict::Repeat => 4,
            Verdict::Stop => 5,
        }),
        id: packet_id,
    };
    nlmsg.put_slice(NFQA_VERDICT_HDR as u16, std::slice::from_ref(&vh));
    if let Some(mark) = mark {
        nlmsg.put_u32(NFQA_MARK as u16, mark);
    }
}

/// What a verdict needs of a message, without the message: it pins its whole receive buffer
/// (up to [`RECV_BATCH`] packets' room), so one answered long after later receives is kept
/// as this instead.
#[derive(Debug, Clone, Copy)]
pub struct Detached {
    queue_num: u16,
    /// Big-endian, as the kernel sent it.
    packet_id: u32,
    nfmark: u32,
}

impl Message {
    /// Keeps what its verdict needs and lets go of the receive buffer.
    pub fn detach(self) -> Detached {
        Detached {
            queue_num: self.id,
            // SAFETY: hdr was checked non-null when the message was parsed.
            packet_id: unsafe { (*self.hdr).packet_id },
            nfmark: self.nfmark,
        }
    }
}

impl Detached {
    pub fn get_nfmark(&self) -> u32 {
        self.nfmark
    }
}

impl Queue {
    /// [`Queue::stage_verdict`] for a detached message; `mark`, if any, replaces its mark.
    pub fn stage_detached(
        &mut self,
        packet: Detached,
        verdict: Verdict,
        mark: Option<u32>,
    ) -> Result<()> {
        let buf = self.stage_room()?;
        // SAFETY: stage_room leaves at least STAGE_HEADROOM bytes, more than this message.
        self.staged_len += unsafe {
            let mut nlmsg = Nlmsg::new(buf);
            put_verdict_of(
                &mut nlmsg,
                (packet.queue_num, packet.packet_id),
                verdict,
                mark,
            );
            finish(nlmsg)
        };
        Ok(())
    }
}
