//! Sequences that can be used once: rotating (TOTP) sequences, whose step may grant once per
//! door, and knockd's one-time sequence files, whose lines grant once each.
//!
//! The engine knows only fixed sequences. [`OnceState::expand`] turns the config's doors into
//! the engine's: a TOTP door becomes one door per accepted step (T − skew ..= T + skew) that
//! has not been used, a one-time door the door of its first unused line (or, exhausted, a door
//! with no sequence, which nothing opens). Each such door carries the use it consumes
//! ([`crate::config::OnceUse`]); the worker consumes it, durably, before committing the grant, and the daemon
//! expands again when a step ends or a use changes what is offered.
//!
//! - `totp`: the ports of a step.
//! - `one_time`: the sequence file: parsing, and marking a line used.
//! - `store`: [`OnceState`], with the used TOTP steps saved under `daemon.state_dir`.

pub mod one_time;
mod store;
pub mod totp;

#[cfg(test)]
mod tests;

pub use store::{OnceError, OnceState, Refusal, TOTP_FILE};
