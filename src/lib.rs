//! knock-nfq: a port-knocking daemon for Linux hosts and gateways.
//!
//! nftables queues new connection attempts to the daemon over NFQUEUE; the daemon advances each
//! source's knock state and answers every packet with a verdict. A completed sequence adds the
//! source to an nftables set with a timeout, over netlink, before the verdict is sent.
//!
//! # Layout
//!
//! - [`config`]: the TOML file (figment) into typed, validated structs; errors name file and key.
//! - [`engine`]: the pure knock state machine. `on_packet(now, knock)` returns a verdict and grant
//!   instructions; no I/O, no clock reads, a bounded source table.
//! - [`packet`]: borrowed parsing of queued IPv4/IPv6 packets into a [`engine::Knock`].
pub mod config;
pub mod engine;
