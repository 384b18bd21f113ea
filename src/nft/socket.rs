//! One netlink socket to nf_tables: send a request or batch, read every reply.
//!
//! The kernel processes a batch inside `sendmsg`, so all replies are queued when it returns:
//! they are read with `MSG_DONTWAIT` until `EAGAIN`. Waiting for the batch-end ACK instead
//! would hang when the batch fails, because the kernel does not send it then.

use std::io;
use std::os::fd::AsRawFd;

/// A netlink reply that concerns us: an ACK or error, or a data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `NLMSG_ERROR`: `errno` 0 is an ACK.
    Ack { seq: u32, errno: i32 },
    /// Any other message (e.g. `NEWSET` answering `GETSET`), whole.
    Data { message: Vec<u8> },
}

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

pub struct Socket {
    socket: mnl::Socket,
    buf: Vec<u8>,
}

// SAFETY: the mnl_socket (an fd and its port id) is owned exclusively by this value and libmnl
// keeps no per-thread state about it, so moving it to another thread is sound. It is not Sync.
unsafe impl Send for Socket {}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("portid", &self.socket.portid())
            .finish_non_exhaustive()
    }
}

impl Socket {
    pub fn open() -> io::Result<Socket> {
        let socket = mnl::Socket::new(mnl::Bus::Netfilter)?;
        let fd = socket.as_raw_fd();
        // Replies carry only the header of a failed message, not its whole payload.
        set_option(fd, libc::NETLINK_CAP_ACK)?;
        Ok(Socket {
            socket,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends `parts` (one batch or request) and returns every reply to it.
    pub fn transact<'a>(
        &mut self,
        parts: impl IntoIterator<Item = &'a [u8]>,
    ) -> io::Result<Vec<Reply>> {
        // A transaction that failed mid-read may have left replies queued: they must not be
        // taken for this request's (a stale element would read as a grant).
        self.discard_queued()?;
        self.socket.send_all(parts)?;
        let mut replies = Vec::new();
        while self.receive(&mut replies)? {}
        Ok(replies)
    }

    fn discard_queued(&mut self) -> io::Result<()> {
        let mut stale = Vec::new();
        loop {
            match self.receive(&mut stale) {
                Ok(true) => stale.clear(),
                Ok(false) => return Ok(()),
                // The overrun is reported once; what follows it is still to be discarded.
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(err) => return Err(err),
            }
        }
    }

    /// Reads one datagram of queued replies into `out`; false when none is queued.
    fn receive(&mut self, out: &mut Vec<Reply>) -> io::Result<bool> {
        // SAFETY: buf is a live, writable buffer of buf.len() bytes owned by self.
        let got = unsafe {
            libc::recv(
                self.socket.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if got < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Ok(false);
            }
            return Err(err);
        }
        let got = usize::try_from(got).expect("recv returned a non-negative count");
        parse_replies(&self.buf[..got], out);
        Ok(true)
    }
}

fn set_option(fd: i32, option: i32) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_NETLINK,
            option,
            (&raw const on).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).expect("fits"),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `NLM_F_DUMP_INTR`: the ruleset changed while this dump was being read; it is inconsistent.
const NLM_F_DUMP_INTR: u16 = 0x10;

/// The netlink message type of a data reply (subsystem << 8 | message).
pub fn message_type(message: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(message.get(4..6)?.try_into().ok()?))
}

/// Whether a data reply belongs to a dump that was interrupted by a ruleset change.
pub fn dump_interrupted(message: &[u8]) -> bool {
    message
        .get(6..8)
        .is_some_and(|flags| u16::from_ne_bytes([flags[0], flags[1]]) & NLM_F_DUMP_INTR != 0)
}

/// The first error among `replies`: the errno of a negative ACK.
pub fn first_error(replies: &[Reply]) -> Option<i32> {
    replies.iter().find_map(|reply| match reply {
        Reply::Ack { errno, .. } if *errno != 0 => Some(*errno),
        _ => None,
    })
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// Splits one receive buffer into replies; a truncated tail is ignored.
pub fn parse_replies(mut buf: &[u8], out: &mut Vec<Reply>) {
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32_at(buf, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32_at(buf, 8).unwrap_or(0);
        match kind {
            NLMSG_ERROR => {
                let errno = buf
                    .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                    .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                out.push(Reply::Ack { seq, errno: -errno });
            }
            NLMSG_DONE => {}
            _ => out.push(Reply::Data {
                message: buf[..len].to_vec(),
            }),
        }
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(NLMSG_HDRLEN + payload.len()).unwrap();
        let mut out = Vec::new();
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&0u16.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    #[test]
    fn acks_errors_and_data_are_told_apart() {
        let mut buf = message(NLMSG_ERROR, 2, &0i32.to_ne_bytes());
        buf.extend(message(NLMSG_ERROR, 3, &(-libc::ENOENT).to_ne_bytes()));
        buf.extend(message(0x0a09, 4, &[1, 2, 3]));
        let mut replies = Vec::new();
        parse_replies(&buf, &mut replies);
        assert_eq!(replies[0], Reply::Ack { seq: 2, errno: 0 });
        assert_eq!(
            replies[1],
            Reply::Ack {
                seq: 3,
                errno: libc::ENOENT
            }
        );
        assert!(matches!(&replies[2], Reply::Data { message } if message.len() == 19));
    }

    #[test]
    fn a_data_reply_tells_its_type_and_whether_its_dump_was_interrupted() {
        let mut interrupted = message(0x0a0c, 5, &[0; 4]);
        assert_eq!(message_type(&interrupted), Some(0x0a0c));
        assert!(!dump_interrupted(&interrupted));
        interrupted[6..8].copy_from_slice(&NLM_F_DUMP_INTR.to_ne_bytes());
        assert!(dump_interrupted(&interrupted));
        assert_eq!(message_type(&[0; 3]), None);
    }

    #[test]
    fn truncated_messages_are_ignored() {
        let mut buf = message(NLMSG_ERROR, 2, &0i32.to_ne_bytes());
        buf.truncate(buf.len() - 1);
        let mut replies = Vec::new();
        parse_replies(&buf, &mut replies);
        assert!(replies.is_empty());
    }
}
