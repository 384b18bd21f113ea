//! A small NFLOG reader (nfnetlink_log) over one netlink socket: bind a log group, copy the
//! first bytes of each packet, and read the packets the ruleset's `log group` rule reports.
//! NFLOG sends copies: the packet itself was already judged by the ruleset.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::ScanError;

/// Report datagrams skipped while waiting for a configuration request's acknowledgement.
const MAX_SKIPPED: usize = 64;
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Enough for an IPv6 header with a few extension headers and the TCP header's first bytes.
const COPY_RANGE: u32 = 128;
/// Each report is sent at once, not batched (the kernel's default waits for 100 packets or a
/// second): the sooner the threshold's report is read, the fewer probes get an answer before
/// the ban. The ruleset bounds the reports to 2000 a second, so this costs little.
const BATCH: u32 = 1;

/// A socket bound to one NFLOG group.
pub struct LogSocket {
    socket: mnl::Socket,
    buf: Vec<u8>,
}

// SAFETY: the mnl_socket (an fd and its port id) is owned exclusively by this value and libmnl
// keeps no per-thread state about it, so moving it to another thread is sound.
unsafe impl Send for LogSocket {}

impl std::fmt::Debug for LogSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSocket").finish_non_exhaustive()
    }
}

/// What one receive brought.
#[derive(Debug)]
pub enum Received<'a> {
    /// The payloads (IP packets, cut to the copy range) of the reported packets.
    Packets(Vec<&'a [u8]>),
    /// Nothing within the receive timeout.
    Idle,
}

impl LogSocket {
    /// Binds `group`; a receive returns [`Received::Idle`] after `timeout` without reports.
    pub fn bind(group: u16, timeout: Duration) -> Result<LogSocket, ScanError> {
        let failed = |source| ScanError::Bind { group, source };
        let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(failed)?;
        set_receive_timeout(socket.as_raw_fd(), timeout).map_err(failed)?;
        let mut log = LogSocket {
            socket,
            buf: vec![0; 64 * 1024],
        };
        let requests = config_requests(group);
        for (seq, request) in requests.iter().enumerate() {
            log.socket.send(request).map_err(failed)?;
            log.expect_ack(u32::try_from(seq).unwrap_or(0) + 1)
                .map_err(failed)?;
        }
        Ok(log)
    }

    /// Reports may already arrive between the requests: they are skipped (the receive timeout
    /// ends the wait if the acknowledgement never comes).
    fn expect_ack(&mut self, seq: u32) -> io::Result<()> {
        for _ in 0..MAX_SKIPPED {
            let got = self.socket.recv_raw(&mut self.buf)?;
            match ack_errno(&self.buf[..got], seq) {
                Some(0) => return Ok(()),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                None => continue,
            }
        }
        Err(io::Error::other("no acknowledgement from nfnetlink_log"))
    }

    /// Waits for the next batch of reports.
    pub fn receive(&mut self) -> io::Result<Received<'_>> {
        match self.socket.recv_raw(&mut self.buf) {
            Ok(got) => Ok(Received::Packets(payloads(&self.buf[..got]))),
            // A signal (SIGHUP for a reload) may land on this thread: nothing was lost.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Received::Idle)
            }
            Err(err) => Err(err),
        }
    }
}

fn set_receive_timeout(fd: i32, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(1),
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    // SAFETY: passes a pointer to a live timeval and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::timeval>()).expect("fits"),
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The configuration of `group`: bind it, copy [`COPY_RANGE`] bytes, send each report at once.
fn config_requests(group: u16) -> [Vec<u8>; 3] {
    let mode = [&COPY_RANGE.to_be_bytes()[..], &[NFULNL_COPY_PACKET, 0]].concat();
    [
        config_request(group, 1, &[(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND])]),
        config_request(group, 2, &[(NFULA_CFG_MODE, &mode)]),
        config_request(group, 3, &[(NFULA_CFG_QTHRESH, &BATCH.to_be_bytes())]),
    ]
}

fn config_request(group: u16, seq: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&[0; 4]); // length, set below
    let kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
    let flags = u16::try_from(libc::NLM_F_REQUEST | libc::NLM_F_ACK).expect("fits");
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family AF_UNSPEC, version 0, the group as resource id (big-endian).
    msg.extend_from_slice(&[0, 0]);
    msg.extend_from_slice(&group.to_be_bytes());
    for (kind, value) in attrs {
        let len = u16::try_from(4 + value.len()).expect("small attribute");
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(value);
        msg.resize(msg.len().next_multiple_of(4), 0);
    }
    let total = u32::try_from(msg.len()).expect("small message");
    msg[..4].copy_from_slice(&total.to_ne_bytes());
    msg
}

/// Netlink messages in `buf`: (type, sequence number, payload after the header).
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let header = rest.get(..NLMSG_HDRLEN)?;
        let len = usize::try_from(u32::from_ne_bytes(header[..4].try_into().ok()?)).ok()?;
        let body = rest.get(NLMSG_HDRLEN..len)?;
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        let seq = u32::from_ne_bytes(header[8..12].try_into().ok()?);
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, seq, body))
    })
}

/// The errno of the ACK (`NLMSG_ERROR`) for `seq` in `buf`, 0 for success.
fn ack_errno(buf: &[u8], seq: u32) -> Option<i32> {
    messages(buf).find_map(|(kind, s, body)| {
        (kind == NLMSG_ERROR && s == seq)
            .then(|| Some(-i32::from_ne_bytes(body.get(..4)?.try_into().ok()?)))
            .flatten()
    })
}

/// The `NFULA_PAYLOAD` of every packet message in `buf`.
fn payloads(buf: &[u8]) -> Vec<&[u8]> {
    let packet = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
    messages(buf)
        .filter(|&(kind, _, _)| kind == packet)
        .filter_map(|(_, _, body)| attribute(body.get(4..)?, NFULA_PAYLOAD))
        .collect()
}

fn attribute(mut attrs: &[u8], wanted: u16) -> Option<&[u8]> {
    while let Some(header) = attrs.get(..4) {
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        let value = attrs.get(4..len)?;
        if kind == wanted {
            return Some(value);
        }
        attrs = attrs.get(len.next_multiple_of(4)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_request_names_the_group_and_the_command() {
        let [bind, mode, _] = config_requests(0x1234);
        assert_eq!(bind.len(), 16 + 4 + 8);
        assert_eq!(u32::from_ne_bytes(bind[..4].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes([bind[4], bind[5]]), 0x0401);
        assert_eq!(&bind[16..20], &[0, 0, 0x12, 0x34]);
        assert_eq!(&bind[20..25], &[5, 0, 1, 0, NFULNL_CFG_CMD_BIND]);
        assert_eq!(&mode[24..30], &[0, 0, 0, 128, NFULNL_COPY_PACKET, 0]);
    }

    fn packet_message(payload: &[u8]) -> Vec<u8> {
        let mut body = vec![2, 0, 0x24, 0xfd]; // nfgenmsg: AF_INET, group 9469
        body.extend_from_slice(&[8, 0, 1, 0, 8, 0, 1, 0]); // NFULA_PACKET_HDR
        let len = u16::try_from(4 + payload.len()).unwrap();
        body.extend_from_slice(&len.to_ne_bytes());
        body.extend_from_slice(&NFULA_PAYLOAD.to_ne_bytes());
        body.extend_from_slice(payload);
        body.resize(body.len().next_multiple_of(4), 0);
        let mut msg = u32::try_from(16 + body.len())
            .unwrap()
            .to_ne_bytes()
            .to_vec();
        msg.extend_from_slice(&0x0400u16.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn payloads_are_read_from_every_packet_message_of_a_batch() {
        let mut batch = packet_message(&[0x45, 1, 2]);
        batch.extend(packet_message(&[0x60; 40]));
        let got = payloads(&batch);
        assert_eq!(got, [&[0x45, 1, 2][..], &[0x60; 40][..]]);
        // A message cut short yields what came before it, and no panic.
        assert_eq!(payloads(&batch[..batch.len() - 3]).len(), 1);
    }

    #[test]
    fn an_ack_carries_the_negated_errno() {
        let mut ack = 36u32.to_ne_bytes().to_vec();
        ack.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack.extend_from_slice(&[0, 0]);
        ack.extend_from_slice(&7u32.to_ne_bytes());
        ack.extend_from_slice(&[0; 4]);
        ack.extend_from_slice(&(-libc::EBUSY).to_ne_bytes());
        ack.extend_from_slice(&[0; 16]);
        assert_eq!(ack_errno(&ack, 7), Some(libc::EBUSY));
        assert_eq!(ack_errno(&ack, 8), None);
    }
}
