//! The only unsafe code of the nftables layer: thin owners of libnftnl objects.
//!
//! The safe `nftnl` crate cannot give an element its own timeout and always sets `NLM_F_EXCL`
//! (a repeated grant would fail with EEXIST and abort the batch), so element messages are built
//! here with nftnl-sys and handed to `nftnl::Batch` through its `NlMsg` trait.

use std::ffi::{CStr, CString, c_void};
use std::ptr::NonNull;
use std::time::Duration;

use nftnl::{MsgType, NlMsg};
use nftnl_sys as sys;

mod rules;

pub use rules::{
    ChainInfo, QueueMode, QueueRule, dump_chains_request, dump_rules_request, parse_chain,
    parse_rule_queues,
};

/// `NFPROTO_INET`: the table family.
const FAMILY_INET: u16 = 1;
/// `NFNL_SUBSYS_NFTABLES` message types (linux/netfilter/nf_tables.h).
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
/// Delete if present, no ENOENT (kernel 6.3+; Debian 12's headers predate it).
const NFT_MSG_DESTROYSETELEM: u16 = 30;
/// `NFT_SET_ELEM_INTERVAL_END`.
/// The netlink type of an element message (`NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWSETELEM`),
/// which answers a lookup that found its element.
pub const NEW_SET_ELEM_MESSAGE: u16 = (10 << 8) | 12;

pub const ELEM_INTERVAL_END: u32 = 0x1;

/// `NLM_F_ACK` and `NLM_F_CREATE` (linux/netlink.h), as the header's u16 flags field takes them.
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;

/// libnftnl's attribute ids are small enums, passed as u16 by some of its functions.
fn attr(id: u32) -> u16 {
    u16::try_from(id).expect("libnftnl attribute ids fit in u16")
}

/// What an element message does to its set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemOp {
    /// Add, or re-arm the timeout of an element that exists (no `NLM_F_EXCL`).
    Add,
    /// Remove the listed elements if present.
    Destroy,
    /// Remove every element (a delete message with no element list).
    Flush,
    /// Look the listed element up: a `NEWSETELEM` reply if present (and not expired), else
    /// ENOENT.
    Get,
}

impl ElemOp {
    fn header(self) -> (u16, u16) {
        match self {
            ElemOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK),
            ElemOp::Destroy => (NFT_MSG_DESTROYSETELEM, NLM_F_ACK),
            ElemOp::Flush => (NFT_MSG_DELSETELEM, NLM_F_ACK),
            ElemOp::Get => (NFT_MSG_GETSETELEM, NLM_F_ACK),
        }
    }
}

/// One set element message: a libnftnl set object holding the elements to send.
#[derive(Debug)]
pub struct ElemMsg {
    set: OwnedSet,
    op: ElemOp,
    len: usize,
}

/// Elements per message: at most 256 keys of at most 40 bytes (plus ~24 bytes of attributes
/// each) keep one message far below `nft_nlmsg_maxsize()`, which the `NlMsg` contract requires.
pub const MAX_ELEMS_PER_MESSAGE: usize = 256;

impl ElemMsg {
    pub fn new(table: &CStr, set: &CStr, op: ElemOp) -> ElemMsg {
        ElemMsg {
            set: OwnedSet::named(table, set),
            op,
            len: 0,
        }
    }

    /// Whether another element may be pushed (see [`MAX_ELEMS_PER_MESSAGE`]).
    pub fn has_room(&self) -> bool {
        self.len < MAX_ELEMS_PER_MESSAGE
    }

    /// Appends an element. `timeout` sets both its lifetime and its remaining time, so adding an
    /// element that exists re-arms its countdown instead of failing.
    pub fn push(&mut self, key: &[u8], flags: u32, timeout: Option<Duration>) {
        assert!(
            self.has_room(),
            "element message full: callers check has_room"
        );
        self.len += 1;
        // SAFETY: nftnl_set_elem_alloc has no preconditions.
        let elem = unsafe { sys::nftnl_set_elem_alloc() };
        assert!(!elem.is_null(), "libnftnl out of memory");
        let key_len = u32::try_from(key.len()).expect("set keys are at most 64 bytes");
        // SAFETY: elem is live; libnftnl copies key_len bytes from key, which is that long.
        unsafe {
            sys::nftnl_set_elem_set(
                elem,
                attr(sys::NFTNL_SET_ELEM_KEY),
                key.as_ptr().cast::<c_void>(),
                key_len,
            )
        };
        if flags != 0 {
            // SAFETY: elem is live.
            unsafe { sys::nftnl_set_elem_set_u32(elem, attr(sys::NFTNL_SET_ELEM_FLAGS), flags) };
        }
        if let Some(timeout) = timeout {
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            // SAFETY: elem is live.
            unsafe { sys::nftnl_set_elem_set_u64(elem, attr(sys::NFTNL_SET_ELEM_TIMEOUT), ms) };
            // SAFETY: elem is live.
            unsafe { sys::nftnl_set_elem_set_u64(elem, attr(sys::NFTNL_SET_ELEM_EXPIRATION), ms) };
        }
        // SAFETY: both are live; the set takes ownership of elem and frees it with itself.
        unsafe { sys::nftnl_set_elem_add(self.set.as_ptr(), elem) };
    }
}

// SAFETY: `write` builds exactly one message of at most nft_nlmsg_maxsize() bytes into `buf`,
// which the `NlMsg` contract guarantees is large enough.
unsafe impl NlMsg for ElemMsg {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _: MsgType) {
        let (msg_type, flags) = self.op.header();
        // SAFETY: buf has room for a whole message (NlMsg contract).
        let header =
            unsafe { sys::nftnl_nlmsg_build_hdr(buf.cast(), msg_type, FAMILY_INET, flags, seq) };
        // SAFETY: header points into buf, right after which the payload fits; the set is live.
        unsafe { sys::nftnl_set_elems_nlmsg_build_payload(header, self.set.as_ptr()) };
    }
}

impl ElemMsg {
    /// Writes this message alone, outside a batch (a lookup), into `buf` (cleared first).
    pub fn standalone(&self, buf: &mut Vec<u8>, seq: u32) {
        buf.clear();
        buf.resize(nftnl::nft_nlmsg_maxsize() as usize, 0);
        // SAFETY: buf holds nft_nlmsg_maxsize() bytes, as the NlMsg contract requires.
        unsafe { self.write(buf.as_mut_ptr().cast(), seq, MsgType::Add) };
        // SAFETY: write put one whole message at the start of buf, its header first.
        let len = unsafe { (*buf.as_ptr().cast::<libc::nlmsghdr>()).nlmsg_len } as usize;
        buf.truncate(len);
    }
}

/// A set's properties as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetInfo {
    pub key_type: u32,
    pub key_len: u32,
    pub flags: u32,
    /// The set's `size`; 0 when it has none (unbounded).
    pub size: u32,
}

/// Writes a `GETSET` request for `table`/`set` into `buf` (cleared first).
pub fn get_set_request(buf: &mut Vec<u8>, table: &CStr, set: &CStr, seq: u32) {
    let query = OwnedSet::named(table, set);
    // SAFETY: the header is inside buf with room after it; the set is live.
    request(
        buf,
        (NFT_MSG_GETSET, FAMILY_INET, NLM_F_ACK),
        seq,
        |header| unsafe {
            sys::nftnl_set_nlmsg_build_payload(header, query.as_ptr());
        },
    );
}

/// Writes a `GETTABLE` request for `table` into `buf` (cleared first).
pub fn get_table_request(buf: &mut Vec<u8>, table: &CStr, seq: u32) {
    // SAFETY: nftnl_table_alloc has no preconditions; it returns NULL only when out of memory.
    let query = NonNull::new(unsafe { sys::nftnl_table_alloc() }).expect("libnftnl out of memory");
    // SAFETY: the table object is live; libnftnl copies the string.
    unsafe {
        sys::nftnl_table_set_str(query.as_ptr(), attr(sys::NFTNL_TABLE_NAME), table.as_ptr())
    };
    // SAFETY: the header is inside buf with room after it; the table object is live.
    request(
        buf,
        (NFT_MSG_GETTABLE, FAMILY_INET, NLM_F_ACK),
        seq,
        |header| unsafe {
            sys::nftnl_table_nlmsg_build_payload(header, query.as_ptr());
        },
    );
    // SAFETY: we own the table object and nothing uses it after this.
    unsafe { sys::nftnl_table_free(query.as_ptr()) };
}

/// Writes one request into `buf` (cleared first): the header (message type, family, flags),
/// then `payload`, which writes at most a few hundred bytes (names of at most 256 bytes).
fn request(
    buf: &mut Vec<u8>,
    (msg_type, family, flags): (u16, u16, u16),
    seq: u32,
    payload: impl FnOnce(*mut libc::nlmsghdr),
) {
    buf.clear();
    buf.resize(4096, 0);
    // SAFETY: buf holds 4096 bytes, ample for a header and such a payload.
    let header = unsafe {
        sys::nftnl_nlmsg_build_hdr(buf.as_mut_ptr().cast(), msg_type, family, flags, seq)
    };
    payload(header);
    // SAFETY: header points to the message just written in buf.
    let len = unsafe { (*header).nlmsg_len } as usize;
    buf.truncate(len);
}

/// Parses a `NEWTABLE` reply (answering `GETTABLE`) into the table's handle, which the kernel
/// numbers per network namespace: a table created anew gets a new one.
pub fn parse_table_handle(message: &[u8]) -> Option<u64> {
    let aligned = aligned_copy(message)?;
    // SAFETY: nftnl_table_alloc has no preconditions; it returns NULL only when out of memory.
    let table = NonNull::new(unsafe { sys::nftnl_table_alloc() })?;
    // SAFETY: aligned holds one complete netlink message whose length field bounds the parse.
    let parsed = unsafe { sys::nftnl_table_nlmsg_parse(aligned.as_ptr().cast(), table.as_ptr()) };
    // SAFETY: the table object is live; an absent attribute reads as 0.
    let handle = unsafe { sys::nftnl_table_get_u64(table.as_ptr(), attr(sys::NFTNL_TABLE_HANDLE)) };
    // SAFETY: we own the table object and nothing uses it after this.
    unsafe { sys::nftnl_table_free(table.as_ptr()) };
    (parsed >= 0).then_some(handle)
}

/// A 4-byte aligned copy of one netlink message: libnftnl reads it through a header pointer.
fn aligned_copy(message: &[u8]) -> Option<Vec<u32>> {
    // A netlink header (16 bytes) and the nfgenmsg (4) that libnftnl reads after it.
    if message.len() < 20 {
        return None;
    }
    let mut aligned = vec![0u32; message.len().div_ceil(4)];
    for (word, chunk) in aligned.iter_mut().zip(message.chunks(4)) {
        let mut bytes = [0; 4];
        bytes[..chunk.len()].copy_from_slice(chunk);
        *word = u32::from_ne_bytes(bytes);
    }
    Some(aligned)
}

/// Parses a `NEWSET` reply message (one whole netlink message, 4-byte aligned).
pub fn parse_set_reply(message: &[u8]) -> Option<SetInfo> {
    let aligned = aligned_copy(message)?;
    let owner = OwnedSet::new();
    // SAFETY: aligned holds one complete netlink message whose own length field bounds the parse.
    let parsed = unsafe { sys::nftnl_set_nlmsg_parse(aligned.as_ptr().cast(), owner.as_ptr()) };
    if parsed < 0 {
        return None;
    }
    let get = |id: u32| {
        // SAFETY: the set is live; an attribute that is absent reads as 0.
        unsafe { sys::nftnl_set_get_u32(owner.as_ptr(), attr(id)) }
    };
    Some(SetInfo {
        key_type: get(sys::NFTNL_SET_KEY_TYPE),
        key_len: get(sys::NFTNL_SET_KEY_LEN),
        flags: get(sys::NFTNL_SET_FLAGS),
        size: get(sys::NFTNL_SET_DESC_SIZE),
    })
}

/// An owned libnftnl set object (and, through it, its elements).
#[derive(Debug)]
struct OwnedSet(NonNull<sys::nftnl_set>);

// SAFETY: the object is owned exclusively by this value and libnftnl keeps no global state about
// it, so moving it to another thread is sound.
unsafe impl Send for OwnedSet {}

impl OwnedSet {
    fn new() -> OwnedSet {
        // SAFETY: nftnl_set_alloc has no preconditions; it returns NULL only when out of memory.
        let ptr = unsafe { sys::nftnl_set_alloc() };
        OwnedSet(NonNull::new(ptr).expect("libnftnl out of memory"))
    }

    fn named(table: &CStr, set: &CStr) -> OwnedSet {
        let owned = OwnedSet::new();
        // SAFETY: the set is live; libnftnl copies the string.
        unsafe {
            sys::nftnl_set_set_str(owned.as_ptr(), attr(sys::NFTNL_SET_TABLE), table.as_ptr())
        };
        // SAFETY: as above.
        unsafe { sys::nftnl_set_set_str(owned.as_ptr(), attr(sys::NFTNL_SET_NAME), set.as_ptr()) };
        owned
    }

    fn as_ptr(&self) -> *mut sys::nftnl_set {
        self.0.as_ptr()
    }
}

impl Drop for OwnedSet {
    fn drop(&mut self) {
        // SAFETY: we own the set and nothing uses it after this.
        unsafe { sys::nftnl_set_free(self.0.as_ptr()) };
    }
}

/// A C string for a table or set name; names come from validated config or constants.
pub fn c_name(name: &str) -> CString {
    CString::new(name).expect("nftables names contain no NUL byte")
}
