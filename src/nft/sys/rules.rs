//! Reading chains and rules back, for `knock-nfq check`: which chains exist and which rules
//! queue packets to userspace (nft's `queue` statement, or iptables-nft's NFQUEUE target on
//! kernels without it).

use std::ffi::{CStr, c_char, c_int};
use std::marker::PhantomData;
use std::ptr::NonNull;

use nftnl_sys as sys;

use super::{aligned_copy, attr, request};

const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_GETRULE: u16 = 7;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const NLM_F_DUMP: u16 = 0x300;
/// `NFPROTO_UNSPEC`: a dump of every family.
const FAMILY_ANY: u16 = 0;
/// `NFQ_FLAG_BYPASS` (xt_NFQUEUE revision 3) and `NFT_QUEUE_FLAG_BYPASS`: the same bit.
const QUEUE_FLAG_BYPASS: u16 = 0x1;

/// A chain as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub family: u32,
    pub table: String,
    pub name: String,
    /// The netfilter hook of a base chain (`NF_INET_*`); `None` for a regular chain.
    pub hook: Option<u32>,
}

/// What the kernel does with a queued packet when no program listens on its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueMode {
    /// Dropped: the service stays closed while the daemon is down.
    FailClosed,
    /// Accepted (`bypass`): whatever the rule guards is open while the daemon is down.
    Bypass,
}

/// A rule that hands packets to queues `first .. first + total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRule {
    pub family: u32,
    pub table: String,
    pub chain: String,
    pub first: u16,
    pub total: u16,
    pub mode: QueueMode,
}

/// Writes a dump request for every chain (of every family; the kernel does not filter chains).
pub fn dump_chains_request(buf: &mut Vec<u8>, seq: u32) {
    request(buf, (NFT_MSG_GETCHAIN, FAMILY_ANY, NLM_F_DUMP), seq, |_| {});
}

/// Writes a dump request for every rule of every family.
pub fn dump_rules_request(buf: &mut Vec<u8>, seq: u32) {
    request(buf, (NFT_MSG_GETRULE, FAMILY_ANY, NLM_F_DUMP), seq, |_| {});
}

/// Parses one `NEWCHAIN` message of a chain dump.
pub fn parse_chain(message: &[u8]) -> Option<ChainInfo> {
    let aligned = aligned_copy(message)?;
    let chain = Owned::<sys::nftnl_chain>::parse(&aligned)?;
    let hook = sys::NFTNL_CHAIN_HOOKNUM;
    Some(ChainInfo {
        family: chain.u32(sys::NFTNL_CHAIN_FAMILY),
        table: chain.str(sys::NFTNL_CHAIN_TABLE),
        name: chain.str(sys::NFTNL_CHAIN_NAME),
        hook: chain.is_set(hook).then(|| chain.u32(hook)),
    })
}

/// Parses one `NEWRULE` message of a rule dump, appending each queueing expression it holds.
pub fn parse_rule_queues(message: &[u8], out: &mut Vec<QueueRule>) {
    let Some(rule) = aligned_copy(message).and_then(|m| Owned::<sys::nftnl_rule>::parse(&m)) else {
        return;
    };
    let family = rule.u32(sys::NFTNL_RULE_FAMILY);
    let (table, chain) = (
        rule.str(sys::NFTNL_RULE_TABLE),
        rule.str(sys::NFTNL_RULE_CHAIN),
    );
    rule.for_each_expr(|expr| {
        if let Some((first, total, mode)) = queue_of(expr) {
            let (table, chain) = (table.clone(), chain.clone());
            out.push(QueueRule {
                family,
                table,
                chain,
                first,
                total,
                mode,
            });
        }
    });
}

/// The queues an expression hands packets to, if it is `queue` or an xt NFQUEUE target.
fn queue_of(expr: Expr<'_>) -> Option<(u16, u16, QueueMode)> {
    match expr.str(sys::NFTNL_EXPR_NAME).as_str() {
        "queue" => {
            let first = expr.u16(sys::NFTNL_EXPR_QUEUE_NUM);
            let total = expr.u16(sys::NFTNL_EXPR_QUEUE_TOTAL).max(1);
            Some((first, total, mode_of(expr.u16(sys::NFTNL_EXPR_QUEUE_FLAGS))))
        }
        "target" if expr.str(sys::NFTNL_EXPR_TG_NAME) == "NFQUEUE" => {
            let revision = expr.u32(sys::NFTNL_EXPR_TG_REV);
            decode_nfqueue(revision, &expr.bytes(sys::NFTNL_EXPR_TG_INFO))
        }
        _ => None,
    }
}

/// Decodes `struct xt_NFQ_info` (revision 0) to `xt_NFQ_info_v3`: queue number, then (v1+)
/// queue count, then (v2) a bypass field or (v3) flags. All fields are host-endian u16.
pub fn decode_nfqueue(revision: u32, info: &[u8]) -> Option<(u16, u16, QueueMode)> {
    let field = |index: usize| {
        let bytes = info.get(index * 2..index * 2 + 2)?;
        Some(u16::from_ne_bytes([bytes[0], bytes[1]]))
    };
    let first = field(0)?;
    let total = if revision >= 1 { field(1)?.max(1) } else { 1 };
    let mode = match revision {
        0 | 1 => QueueMode::FailClosed,
        // Revision 2's third field is a bypass boolean, revision 3's a flag word.
        2 => mode_of(u16::from(field(2)? != 0)),
        _ => mode_of(field(2)?),
    };
    Some((first, total, mode))
}

fn mode_of(flags: u16) -> QueueMode {
    if flags & QUEUE_FLAG_BYPASS != 0 {
        QueueMode::Bypass
    } else {
        QueueMode::FailClosed
    }
}

/// A libnftnl chain or rule parsed from one netlink message, freed on drop.
struct Owned<T: Object>(NonNull<T>);

/// The libnftnl object types read back here, with the functions that handle them.
trait Object: Sized {
    const ALLOC: unsafe extern "C" fn() -> *mut Self;
    const FREE: unsafe extern "C" fn(*const Self);
    const PARSE: unsafe extern "C" fn(*const libc::nlmsghdr, *mut Self) -> c_int;
    const GET_STR: unsafe extern "C" fn(*const Self, u16) -> *const c_char;
    const GET_U32: unsafe extern "C" fn(*const Self, u16) -> u32;
    const IS_SET: unsafe extern "C" fn(*const Self, u16) -> bool;
}

impl Object for sys::nftnl_chain {
    const ALLOC: unsafe extern "C" fn() -> *mut Self = sys::nftnl_chain_alloc;
    const FREE: unsafe extern "C" fn(*const Self) = sys::nftnl_chain_free;
    const PARSE: unsafe extern "C" fn(*const libc::nlmsghdr, *mut Self) -> c_int =
        sys::nftnl_chain_nlmsg_parse;
    const GET_STR: unsafe extern "C" fn(*const Self, u16) -> *const c_char =
        sys::nftnl_chain_get_str;
    const GET_U32: unsafe extern "C" fn(*const Self, u16) -> u32 = sys::nftnl_chain_get_u32;
    const IS_SET: unsafe extern "C" fn(*const Self, u16) -> bool = sys::nftnl_chain_is_set;
}

impl Object for sys::nftnl_rule {
    const ALLOC: unsafe extern "C" fn() -> *mut Self = sys::nftnl_rule_alloc;
    const FREE: unsafe extern "C" fn(*const Self) = sys::nftnl_rule_free;
    const PARSE: unsafe extern "C" fn(*const libc::nlmsghdr, *mut Self) -> c_int =
        sys::nftnl_rule_nlmsg_parse;
    const GET_STR: unsafe extern "C" fn(*const Self, u16) -> *const c_char =
        sys::nftnl_rule_get_str;
    const GET_U32: unsafe extern "C" fn(*const Self, u16) -> u32 = sys::nftnl_rule_get_u32;
    const IS_SET: unsafe extern "C" fn(*const Self, u16) -> bool = sys::nftnl_rule_is_set;
}

impl<T: Object> Owned<T> {
    /// Parses `aligned`, one whole 4-byte aligned netlink message.
    fn parse(aligned: &[u32]) -> Option<Owned<T>> {
        // SAFETY: the allocator has no preconditions; it returns NULL only when out of memory.
        let owned = Owned(NonNull::new(unsafe { T::ALLOC() })?);
        // SAFETY: aligned holds one complete message whose length field bounds the parse.
        let parsed = unsafe { T::PARSE(aligned.as_ptr().cast(), owned.0.as_ptr()) };
        (parsed >= 0).then_some(owned)
    }

    fn str(&self, id: u32) -> String {
        // SAFETY: the object is live; an absent attribute reads as NULL.
        let ptr = unsafe { T::GET_STR(self.0.as_ptr(), attr(id)) };
        // SAFETY: NULL or a string the live object owns.
        unsafe { owned(ptr) }
    }

    fn u32(&self, id: u32) -> u32 {
        // SAFETY: the object is live; an absent attribute reads as 0.
        unsafe { T::GET_U32(self.0.as_ptr(), attr(id)) }
    }

    fn is_set(&self, id: u32) -> bool {
        // SAFETY: the object is live.
        unsafe { T::IS_SET(self.0.as_ptr(), attr(id)) }
    }
}

impl<T: Object> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: we own the object and nothing uses it after this.
        unsafe { T::FREE(self.0.as_ptr()) };
    }
}

impl Owned<sys::nftnl_rule> {
    fn for_each_expr(&self, mut f: impl FnMut(Expr<'_>)) {
        // SAFETY: the rule is live; the iterator returns NULL only when out of memory.
        let Some(iter) = NonNull::new(unsafe { sys::nftnl_expr_iter_create(self.0.as_ptr()) })
        else {
            return;
        };
        loop {
            // SAFETY: the iterator and its rule are live; NULL marks the end.
            let expr = unsafe { sys::nftnl_expr_iter_next(iter.as_ptr()) };
            let Some(expr) = NonNull::new(expr) else {
                break;
            };
            f(Expr(expr, PhantomData));
        }
        // SAFETY: we own the iterator and nothing uses it after this.
        unsafe { sys::nftnl_expr_iter_destroy(iter.as_ptr()) };
    }
}

/// An expression of a live rule, valid while the rule is borrowed.
#[derive(Clone, Copy)]
struct Expr<'rule>(NonNull<sys::nftnl_expr>, PhantomData<&'rule ()>);

impl Expr<'_> {
    fn str(self, id: u32) -> String {
        // SAFETY: the expression is live while its rule is; an absent attribute reads as NULL.
        let ptr = unsafe { sys::nftnl_expr_get_str(self.0.as_ptr(), attr(id)) };
        // SAFETY: NULL or a string the live expression owns.
        unsafe { owned(ptr) }
    }

    fn u16(self, id: u32) -> u16 {
        // SAFETY: as above; an absent attribute reads as 0.
        unsafe { sys::nftnl_expr_get_u16(self.0.as_ptr(), attr(id)) }
    }

    fn u32(self, id: u32) -> u32 {
        // SAFETY: as above; an absent attribute reads as 0.
        unsafe { sys::nftnl_expr_get_u32(self.0.as_ptr(), attr(id)) }
    }

    fn bytes(self, id: u32) -> Vec<u8> {
        let mut len = 0u32;
        // SAFETY: as above; len receives the attribute's length; absent reads as NULL.
        let data = unsafe { sys::nftnl_expr_get(self.0.as_ptr(), attr(id), &mut len) };
        if data.is_null() {
            return Vec::new();
        }
        // SAFETY: libnftnl holds `len` bytes at `data` while the expression lives.
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len as usize) }.to_vec()
    }
}

/// Copies a C string libnftnl owns; NULL (attribute absent) becomes "".
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid during the call.
unsafe fn owned(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(fields: &[u16]) -> Vec<u8> {
        fields.iter().flat_map(|f| f.to_ne_bytes()).collect()
    }

    #[test]
    fn nfqueue_revisions_decode_number_count_and_bypass() {
        let closed = QueueMode::FailClosed;
        assert_eq!(decode_nfqueue(0, &info(&[3])), Some((3, 1, closed)));
        assert_eq!(decode_nfqueue(1, &info(&[2, 4])), Some((2, 4, closed)));
        assert_eq!(
            decode_nfqueue(2, &info(&[0, 1, 1])),
            Some((0, 1, QueueMode::Bypass))
        );
        assert_eq!(
            decode_nfqueue(3, &info(&[0, 0, 0, 0])),
            Some((0, 1, closed))
        );
        // Revision 3 with cpu-fanout (0x2) alone still fails closed; with bypass (0x1) it does not.
        assert_eq!(
            decode_nfqueue(3, &info(&[0, 2, 2, 0])),
            Some((0, 2, closed))
        );
        assert_eq!(
            decode_nfqueue(3, &info(&[0, 2, 3, 0])),
            Some((0, 2, QueueMode::Bypass))
        );
        assert_eq!(
            decode_nfqueue(3, &info(&[0])),
            None,
            "a truncated blob is no queue"
        );
    }
}
