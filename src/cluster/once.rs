//! Fleet-wide once-only uses: the interface, not yet wired in.
//!
//! Today an SPA nonce, a used TOTP step or a one-time line is recorded by the gateway that saw
//! it ([`crate::spa::SpaState`], [`crate::once::OnceState`]), durably, before its grant. A
//! replay of the same datagram or sequence at *another* gateway of the fleet is not rejected.
//!
//! The intended shape: each local store becomes one implementation of [`OnceLedger`], and a
//! fleet ledger wraps it. `claim` first takes the use in the local store (so a replay at this
//! gateway is refused without the network), then asks etcd to create
//! `{prefix}once/{kind}/{door}/{id}` if it is absent, in one transaction
//! (`Txn::when([Compare::create_revision(key, Equal, 0)]).and_then([put(key, node, lease)])`),
//! with a lease as long as the use can be replayed (the SPA `max_age` window, the TOTP step's
//! skew window, forever for a one-time line). `succeeded() == false` means another gateway took
//! it first: [`Claim::Used`].
//!
//! Unlike grants, this check must come before the grant, so it would put a network round trip
//! (about 1 ms in a LAN, bounded by a timeout) on the path of once-only doors only. With etcd
//! away the ledger answers [`Claim::Unverified`], and the door's policy decides: grant on the
//! local record alone (available, replayable across gateways during the partition) or refuse
//! (safe, the door is closed while etcd is away).

use std::time::Duration;

/// A use that may grant once in the whole fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnceUse<'a> {
    SpaNonce { door: &'a str, nonce: [u8; 16] },
    TotpStep { door: &'a str, step: u64 },
    OneTimeLine { door: &'a str, line: usize },
}

/// What a ledger says about a use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody had used it: it is now recorded as used, and the grant may go ahead.
    First,
    /// Used before (here or, for a fleet ledger, at another gateway): refuse.
    Used,
    /// Recorded here, but the fleet could not be asked (etcd away): the door's policy decides.
    Unverified,
}

/// What the local stores and a fleet ledger have in common.
pub trait OnceLedger {
    /// Records `once` as used if it was not, at `now` (since the Unix epoch); `replayable_for`
    /// is how long a replay of it could still be accepted, so how long it must be remembered.
    fn claim(&mut self, once: OnceUse<'_>, replayable_for: Duration, now: Duration) -> Claim;
}
