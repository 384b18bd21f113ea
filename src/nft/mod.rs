//! nftables over netlink: verify the table's sets, fill the port and interface sets, and add or
//! revoke grants. Batches are built as values and sent and checked in one place
//! (`Nft::commit`); every reply is read and mapped back to the message it answers.

pub mod keys;
mod lookup;
mod ruleset;
pub mod sets;
mod socket;
mod sys;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use nftnl::{Batch, MsgType};

use crate::config::{Action, Config, Door, KnockPort, Proto, ScanPolicy, Target};
use crate::engine::{Grant, GrantSpec};
pub use lookup::Attempt;
pub use ruleset::{Audit, Finding};
use sets::SetSpec;
use socket::{Reply, Socket};
use sys::{ElemMsg, ElemOp};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot open a netlink socket to nf_tables (the daemon needs CAP_NET_ADMIN)")]
    Socket(#[source] io::Error),
    #[error("nf_tables refused the query: the daemon and `check` need CAP_NET_ADMIN (run as root)")]
    Permission,
    #[error("netlink exchange with nf_tables failed")]
    Io(#[source] io::Error),
    #[error(
        "table inet {table} does not exist: load the ruleset first (nft -f /etc/knock-nfq/nftables.conf; \
         a kernel without nft's queue expression needs the README's iptables-nft workaround)"
    )]
    MissingTable { table: String },
    #[error("table inet {table} has no set {set}: expected `{spec}` (is the ruleset out of date?)")]
    MissingSet {
        table: String,
        set: &'static str,
        spec: SetSpec,
    },
    #[error(
        "set {set} in table inet {table} is not what the daemon fills: {found}; expected `{spec}`"
    )]
    WrongSet {
        table: String,
        set: &'static str,
        found: String,
        spec: SetSpec,
    },
    #[error("nf_tables rejected {what} (table inet {table}); the whole batch was rolled back")]
    Rejected {
        table: String,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the set contents for table inet {table} do not fit one netlink batch")]
    TooLarge { table: String },
    #[error("nf_tables sent no reply to {what} (table inet {table})")]
    NoReply { table: String, what: String },
}

impl NftError {
    /// The kernel refused an element because its set is at its `size` (ENFILE).
    pub fn is_set_full(&self) -> bool {
        matches!(self, NftError::Rejected { source, .. } if source.raw_os_error() == Some(libc::ENFILE))
    }
}

/// One grant element added or removed by [`Nft::apply_elements`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementChange {
    Add { timeout: Duration },
    Remove,
}

/// What one message of a batch does, for error messages.
#[derive(Debug, Clone, Copy)]
struct Label {
    op: ElemOp,
    set: &'static str,
}

impl Label {
    fn describe(self) -> String {
        match self.op {
            ElemOp::Add => format!("adding elements to set {}", self.set),
            ElemOp::Destroy => format!("removing elements from set {}", self.set),
            ElemOp::Flush => format!("flushing set {}", self.set),
            ElemOp::Get => format!("looking up an element of set {}", self.set),
        }
    }
}

/// A batch under construction: element messages in the order their changes were asked for.
/// A change joins the set's last message if that one does the same operation; otherwise a new
/// message starts. Regrouping across another operation on the same set would reorder the
/// changes: [close X, open A, close A] would become [remove X and A, add A], leaving A open.
#[derive(Debug, Default)]
struct ElemBatch {
    messages: Vec<(Label, ElemMsg)>,
}

impl ElemBatch {
    fn message(&mut self, table: &CString, spec: SetSpec, op: ElemOp) -> &mut ElemMsg {
        let last_of_set = self
            .messages
            .iter()
            .rposition(|(label, _)| label.set == spec.name);
        let found = last_of_set.filter(|&i| {
            let (label, message) = &self.messages[i];
            label.op == op && message.has_room()
        });
        let index = found.unwrap_or_else(|| {
            self.messages.push((
                Label { op, set: spec.name },
                ElemMsg::new(table, &sys::c_name(spec.name), op),
            ));
            self.messages.len() - 1
        });
        &mut self.messages[index].1
    }
}

/// One open netlink socket bound to the daemon's table.
#[derive(Debug)]
pub struct Nft {
    socket: Socket,
    table: String,
    table_c: CString,
}

impl Nft {
    pub fn open(table: &str) -> Result<Nft, NftError> {
        let socket = Socket::open().map_err(NftError::Socket)?;
        Ok(Nft {
            socket,
            table: table.to_owned(),
            table_c: sys::c_name(table),
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Checks that the table has every set the daemon fills, with the right type and flags, and
    /// that every set of per-source elements is bounded: the grant sets by `max_grants`.
    pub fn verify(&mut self, max_grants: u32) -> Result<(), NftError> {
        for spec in sets::ALL {
            let info = self.query_set(spec)?;
            self.compare(spec, info)?;
            self.check_size(spec, info.size, max_grants)?;
        }
        Ok(())
    }

    fn check_size(&self, spec: SetSpec, size: u32, max_grants: u32) -> Result<(), NftError> {
        let wrong = |found: String| NftError::WrongSet {
            table: self.table.clone(),
            set: spec.name,
            found,
            spec,
        };
        let is_grant_set = [
            sets::ALLOW4,
            sets::ALLOW6,
            sets::ALLOW_FWD4,
            sets::ALLOW_FWD6,
        ]
        .iter()
        .any(|s| s.name == spec.name);
        let per_source = spec.flags & sets::flag::TIMEOUT != 0;
        match (is_grant_set, per_source, size) {
            (true, _, size) if size != max_grants => Err(wrong(format!(
                "it has {}, and daemon.max_grants is {max_grants}: give the set `size \
                 {max_grants}` or set daemon.max_grants to its size",
                shown_size(size)
            ))),
            (false, true, 0) => Err(wrong(
                "it has no `size`: a set of sources must be bounded (the shipped ruleset says \
                 `size 65536`)"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// The kernel's handle of the table: it changes when the table is created anew (a reload of
    /// the ruleset after `flush ruleset`), which leaves every set empty.
    pub fn table_handle(&mut self) -> Result<u64, NftError> {
        let mut request = Vec::new();
        sys::get_table_request(&mut request, &self.table_c, 1);
        let replies = self
            .socket
            .transact([request.as_slice()])
            .map_err(NftError::Io)?;
        let handle = replies.iter().find_map(|reply| match reply {
            Reply::Data { message, .. } => sys::parse_table_handle(message),
            Reply::Ack { .. } => None,
        });
        handle.ok_or_else(|| NftError::MissingTable {
            table: self.table.clone(),
        })
    }

    /// The kernel's view of one set. ENOENT becomes a missing table or set, EPERM a missing
    /// capability.
    fn query_set(&mut self, spec: SetSpec) -> Result<sys::SetInfo, NftError> {
        let mut request = Vec::new();
        sys::get_set_request(&mut request, &self.table_c, &sys::c_name(spec.name), 1);
        let replies = self
            .socket
            .transact([request.as_slice()])
            .map_err(NftError::Io)?;
        let info = replies.iter().find_map(|reply| match reply {
            Reply::Data { message, .. } => sys::parse_set_reply(message),
            Reply::Ack { .. } => None,
        });
        if let Some(info) = info {
            return Ok(info);
        }
        Err(match socket::first_error(&replies) {
            Some(libc::ENOENT) => self.missing(spec),
            Some(libc::EPERM) => NftError::Permission,
            errno => self.failed(errno, format!("a query for set {}", spec.name)),
        })
    }

    /// A request the kernel refused with `errno`, or (`None`) did not answer.
    fn failed(&self, errno: Option<i32>, what: String) -> NftError {
        let table = self.table.clone();
        match errno {
            Some(errno) => NftError::Rejected {
                table,
                what,
                source: io::Error::from_raw_os_error(errno),
            },
            None => NftError::NoReply { table, what },
        }
    }

    fn compare(&self, spec: SetSpec, info: sys::SetInfo) -> Result<(), NftError> {
        let wrong = |found: String| NftError::WrongSet {
            table: self.table.clone(),
            set: spec.name,
            found,
            spec,
        };
        if info.key_len != spec.key_len() || info.key_type != spec.key_type() {
            let found = sets::type_name(info.key_type);
            return Err(wrong(format!(
                "it has `type {found}` ({} bytes)",
                info.key_len
            )));
        }
        for (flag, name) in [
            (sets::flag::INTERVAL, "interval"),
            (sets::flag::TIMEOUT, "timeout"),
        ] {
            if spec.flags & flag != 0 && info.flags & flag == 0 {
                return Err(wrong(format!("it lacks `flags {name}`")));
            }
        }
        Ok(())
    }

    /// ENOENT names neither table nor set: ask for the table itself.
    fn missing(&mut self, spec: SetSpec) -> NftError {
        let mut request = Vec::new();
        sys::get_table_request(&mut request, &self.table_c, 1);
        let table_exists = self
            .socket
            .transact([request.as_slice()])
            .is_ok_and(|replies| replies.iter().any(|r| matches!(r, Reply::Data { .. })));
        if table_exists {
            NftError::MissingSet {
                table: self.table.clone(),
                set: spec.name,
                spec,
            }
        } else {
            NftError::MissingTable {
                table: self.table.clone(),
            }
        }
    }

    /// Replaces the contents of the interface, knock-port and protected sets from `config` in
    /// one atomic batch, which also marks the table `ready` (until then the ruleset drops every
    /// new connection). Grant sets are never touched.
    pub fn fill_static_sets(&mut self, config: &Config) -> Result<(), NftError> {
        let mut batch = ElemBatch::default();
        for spec in [
            sets::GUARDED_IFACES,
            sets::KNOCK_PORTS,
            sets::WATCH_PROTOS,
            sets::PROTECTED,
            sets::PROTECTED_FWD4,
            sets::PROTECTED_FWD6,
            sets::READY,
        ] {
            batch.message(&self.table_c, spec, ElemOp::Flush);
        }
        self.add_interfaces(&mut batch, &config.daemon.interfaces);
        self.add_ports(&mut batch, &config.doors, &config.blocklist.trap_ports);
        let ready = batch.message(&self.table_c, sets::READY, ElemOp::Add);
        for proto in [Proto::Tcp, Proto::Udp] {
            ready.push(&[proto.number()], 0, None);
        }
        self.commit(&batch)
    }

    fn add_interfaces(&self, batch: &mut ElemBatch, names: &[String]) {
        let message = batch.message(&self.table_c, sets::GUARDED_IFACES, ElemOp::Add);
        for elem in keys::ifname_intervals(names) {
            match elem {
                keys::IntervalElem::Start(key) => message.push(&key, 0, None),
                keys::IntervalElem::End(key) => message.push(&key, sys::ELEM_INTERVAL_END, None),
            }
        }
    }

    fn add_ports(&self, batch: &mut ElemBatch, doors: &[Door], traps: &[KnockPort]) {
        // An SPA door's port is queued like a knock port: its datagrams are judged inline.
        let spa_ports = doors
            .iter()
            .filter_map(|d| d.spa.as_ref())
            .map(|spa| KnockPort {
                port: spa.port,
                proto: Proto::Udp,
            });
        let knock_ports: BTreeSet<_> = doors
            .iter()
            .flat_map(|d| d.sequence.iter().copied())
            .chain(spa_ports)
            // A touched trap port bans its source: it must reach the daemon too.
            .chain(traps.iter().copied())
            .map(keys::knock_port)
            .collect();
        let mut targets: Vec<Target> = Vec::new();
        for target in doors.iter().flat_map(|d| &d.targets) {
            if !targets.contains(target) {
                targets.push(*target);
            }
        }
        for key in knock_ports {
            batch
                .message(&self.table_c, sets::KNOCK_PORTS, ElemOp::Add)
                .push(&key, 0, None);
        }
        if doors
            .iter()
            .any(|d| d.scan_policy == ScanPolicy::ResetOnOtherPorts)
        {
            for proto in [Proto::Tcp, Proto::Udp] {
                batch
                    .message(&self.table_c, sets::WATCH_PROTOS, ElemOp::Add)
                    .push(&[proto.number()], 0, None);
            }
        }
        for target in targets {
            let (spec, key) = match target {
                Target::Local { port, proto } => (sets::PROTECTED, keys::proto_port(proto, port)),
                Target::Forward {
                    addr: addr @ IpAddr::V4(_),
                    port,
                    proto,
                } => (
                    sets::PROTECTED_FWD4,
                    keys::addr_proto_port(addr, proto, port),
                ),
                Target::Forward { addr, port, proto } => (
                    sets::PROTECTED_FWD6,
                    keys::addr_proto_port(addr, proto, port),
                ),
            };
            batch
                .message(&self.table_c, spec, ElemOp::Add)
                .push(&key, 0, None);
        }
    }

    /// Opens (or re-arms) or revokes each grant's targets for its source, in one batch, and
    /// returns once the kernel has committed it.
    pub fn apply_grants<'a>(
        &mut self,
        grants: impl IntoIterator<Item = &'a Grant>,
    ) -> Result<(), NftError> {
        let mut batch = ElemBatch::default();
        for grant in grants {
            self.add_grant(&mut batch, grant.source, &grant.spec);
        }
        if batch.messages.is_empty() {
            return Ok(());
        }
        self.commit(&batch)
    }

    /// Adds (with a timeout) or removes single grant elements in one batch: other gateways'
    /// grants, carried out here.
    pub fn apply_elements(
        &mut self,
        changes: impl IntoIterator<Item = (IpAddr, Target, ElementChange)>,
    ) -> Result<(), NftError> {
        let mut batch = ElemBatch::default();
        for (source, target, change) in changes {
            let Some(key) = keys::grant(source, target) else {
                continue;
            };
            let (op, timeout) = match change {
                ElementChange::Add { timeout } => (ElemOp::Add, Some(timeout)),
                ElementChange::Remove => (ElemOp::Destroy, None),
            };
            batch
                .message(&self.table_c, grant_set(source, target), op)
                .push(&key, 0, timeout);
        }
        if batch.messages.is_empty() {
            return Ok(());
        }
        self.commit(&batch)
    }

    /// Bans `scope` in the kernel for `ban_for` (an IPv4 address in `blocked4`, an IPv6 network
    /// in `blocked6_nets`: dropped before anything is queued); a ban already there is re-armed.
    pub fn ban(&mut self, scope: IpNet, ban_for: Duration) -> Result<(), NftError> {
        self.ban_op(scope, ElemOp::Add, Some(ban_for))
    }

    /// Lifts the bans of `scopes` (`knock-nfq unban`); lifting one that is not there is no error.
    pub fn unban(&mut self, scopes: &[IpNet]) -> Result<(), NftError> {
        for &scope in scopes {
            self.ban_op(scope, ElemOp::Destroy, None)?;
        }
        Ok(())
    }

    fn ban_op(
        &mut self,
        scope: IpNet,
        op: ElemOp,
        timeout: Option<Duration>,
    ) -> Result<(), NftError> {
        let mut batch = ElemBatch::default();
        match scope {
            IpNet::V4(net) => batch.message(&self.table_c, sets::BLOCKED4, op).push(
                &net.addr().octets(),
                0,
                timeout,
            ),
            IpNet::V6(net) => {
                let message = batch.message(&self.table_c, sets::BLOCKED6_NETS, op);
                let (start, end) = keys::ipv6_interval(net);
                message.push(&start, 0, timeout);
                // The start's timeout ends the range; the kernel takes none on an end element.
                if let Some(end) = end {
                    message.push(&end, sys::ELEM_INTERVAL_END, None);
                }
            }
        }
        self.commit(&batch)
    }

    fn add_grant(&self, batch: &mut ElemBatch, source: IpAddr, grant: &GrantSpec) {
        let (op, timeout) = match grant.action {
            Action::Open => (ElemOp::Add, Some(grant.open_for)),
            Action::Close => (ElemOp::Destroy, None),
        };
        for &target in grant.targets_for(source) {
            let Some(key) = keys::grant(source, target) else {
                continue;
            };
            batch
                .message(&self.table_c, grant_set(source, target), op)
                .push(&key, 0, timeout);
        }
    }

    /// Sends one batch and checks the reply to every message.
    fn commit(&mut self, batch: &ElemBatch) -> Result<(), NftError> {
        let mut nl_batch = Batch::new();
        for (_, message) in &batch.messages {
            nl_batch.add(message, MsgType::Add);
        }
        let finalized = nl_batch.finalize();
        // The kernel takes a batch as one datagram; nftnl splits it into pages, which would
        // arrive as several. The config's limits keep every batch within one page.
        if finalized.iter().count() != 1 {
            return Err(NftError::TooLarge {
                table: self.table.clone(),
            });
        }
        let seqs = finalized.sequence_numbers();
        let replies = self.socket.transact(&finalized).map_err(NftError::Io)?;
        // nftnl numbers (and asks ACKs for) the begin/end messages only on kernels >= 6.10.
        let first_message_seq = if seqs.len() > batch.messages.len() {
            seqs.start + 1
        } else {
            seqs.start
        };
        let label_of = |seq: u32| {
            seq.checked_sub(first_message_seq)
                .and_then(|i| batch.messages.get(i as usize))
                .map_or_else(|| "the batch".to_owned(), |(label, _)| label.describe())
        };
        if let Some((seq, errno)) = replies.iter().find_map(|r| match r {
            Reply::Ack { seq, errno } if *errno != 0 => Some((*seq, *errno)),
            _ => None,
        }) {
            return Err(NftError::Rejected {
                table: self.table.clone(),
                what: label_of(seq),
                source: io::Error::from_raw_os_error(errno),
            });
        }
        for seq in seqs {
            if !replies
                .iter()
                .any(|r| matches!(r, Reply::Ack { seq: s, .. } if *s == seq))
                && seq >= first_message_seq
            {
                return Err(NftError::NoReply {
                    table: self.table.clone(),
                    what: label_of(seq),
                });
            }
        }
        Ok(())
    }
}

fn shown_size(size: u32) -> String {
    match size {
        0 => "no `size` (unbounded)".into(),
        size => format!("`size {size}`"),
    }
}

/// The grant set for `target` reached from `source`.
fn grant_set(source: IpAddr, target: Target) -> SetSpec {
    match (target, source) {
        (Target::Local { .. }, IpAddr::V4(_)) => sets::ALLOW4,
        (Target::Local { .. }, IpAddr::V6(_)) => sets::ALLOW6,
        (Target::Forward { .. }, IpAddr::V4(_)) => sets::ALLOW_FWD4,
        (Target::Forward { .. }, IpAddr::V6(_)) => sets::ALLOW_FWD6,
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    fn ops(batch: &ElemBatch) -> Vec<(&'static str, ElemOp)> {
        batch.messages.iter().map(|(l, _)| (l.set, l.op)).collect()
    }

    #[test]
    fn changes_to_one_set_keep_their_order_and_others_group() {
        let table = CString::new("knock_nfq").unwrap();
        let mut batch = ElemBatch::default();
        let changes = [
            (sets::ALLOW4, ElemOp::Destroy),
            (sets::ALLOW4, ElemOp::Add),
            (sets::ALLOW6, ElemOp::Add),
            (sets::ALLOW4, ElemOp::Add),
            (sets::ALLOW6, ElemOp::Add),
            (sets::ALLOW4, ElemOp::Destroy),
        ];
        for (spec, op) in changes {
            batch
                .message(&table, spec, op)
                .push(&[192, 0, 2, 1], 0, None);
        }
        let allow4 = sets::ALLOW4.name;
        let allow6 = sets::ALLOW6.name;
        assert_eq!(
            ops(&batch),
            [
                (allow4, ElemOp::Destroy),
                (allow4, ElemOp::Add),
                (allow6, ElemOp::Add),
                (allow4, ElemOp::Destroy),
            ]
        );
    }
}
