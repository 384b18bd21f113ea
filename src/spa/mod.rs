//! Single-packet authorization: a door opened by one signed UDP datagram.
//!
//! - `wire`: the datagram (version 1, HMAC-SHA256), encoded by the client, decoded here.
//! - `replay`: the bounded, persisted cache of nonces already used.
//! - `store`: the gate with its cache saved under `daemon.state_dir` ([`SpaState`]).
//! - `gate`: the pure decision for one datagram: a grant or a counted [`Rejection`].

mod gate;
mod replay;
mod store;
mod wire;

#[cfg(test)]
mod tests;

pub use gate::{Gate, NonceUse, Rejection, SpaOutcome};
pub use replay::{CorruptCache, ReplayCache};
pub use store::{REPLAY_FILE, SpaState, StoreError};
pub use wire::{
    KEY_LEN, Key, MAX_LEN, MAX_PORTS, Message, NONCE_LEN, Parsed, RequestedPort, WireError, decode,
    encode,
};
