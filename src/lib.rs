//! knock-nfq: a port-knocking daemon for Linux hosts and gateways.
//!
//! nftables queues new connection attempts to the daemon over NFQUEUE; the daemon advances each
//! source's knock state and answers every packet with a verdict. A completed sequence adds the
//! source to an nftables set with a timeout, over netlink, before the verdict is sent.
//!
//! # Layout
//!
//! - [`config`]: the TOML file (figment) into typed, validated structs; errors name file and key.
//! - [`engine`]: the pure knock state machine. `on_packet(now, knock)` returns a verdict and
//!   grants, each carrying its door's compiled [`engine::GrantSpec`] (targets per address family,
//!   `open_for`, action), so carrying one out needs nothing else; no I/O, no clock reads, a
//!   bounded source table.
//! - [`spa`]: single-packet authorization: the versioned wire format (HMAC-SHA256), the
//!   verifying gate (age, door, ports, address, rate) and the bounded nonce replay cache that
//!   is persisted under the state directory before a grant is made. Pure except `spa::store`.
//! - [`once`]: sequences that grant once: TOTP steps derived from a secret and knockd's
//!   one-time sequence files, expanded into the engine's fixed-sequence doors; each use is
//!   recorded durably before its grant.
//! - [`packet`]: borrowed parsing of queued IPv4/IPv6 packets into an [`engine::Knock`].
//! - [`queue`]: the packet path. The engine sharded by source ([`queue::State`]) and the NFQUEUE
//!   workers (nfq), one blocking thread per queue (pinned to a CPU each when there are several,
//!   to match `queue num 0-N fanout`): receive up to 32 packets in one system call, step the
//!   engine under the shard lock for each, commit the receive's grants in one batch after
//!   releasing it, then send all its verdicts in one datagram (drops as one batch verdict);
//!   under a flood a worker polls its socket briefly instead of sleeping (`queue::busy`).
//!   A touched trap port bans its source (an IPv6 source with its /64) in the
//!   kernel's blocked sets. A connection to a protected service that raced its own knock is
//!   held briefly and admitted only if the kernel holds its grant, looked up again whenever
//!   any worker or the cluster task commits one ([`queue::GrantEpoch`]). The nfq crate is a
//!   local fork (`vendor/nfq`) that can size the queue socket's buffer, receive many packets
//!   per system call and send many verdicts per datagram.
//! - [`nft`]: nftables over netlink (nftnl + mnl): set verification, the port and interface sets,
//!   grants with per-element timeouts, grant lookups, and reading the ruleset back for `check`.
//!   Its unsafe code lives in `nft::sys`.
//! - [`cluster`]: the fleet (`[cluster]`): grants published to etcd with a lease as long as
//!   what is left of them, and other gateways' grants and revokes watched and carried out in
//!   the local sets. Workers hand grants over a bounded channel; the packet path never waits
//!   on etcd for them. SPA nonces, TOTP steps and one-time lines are claimed fleet-wide (an
//!   etcd transaction, a bounded wait). Pure key layout, mirror and outbox; the etcd task in
//!   `cluster::etcd`.
//! - [`metrics`]: the Prometheus registry; label children resolved up front. Read at scrape
//!   time: the per-packet families, which each worker counts in cells of its own
//!   (`metrics::worker`, summed over the workers), the kernel's queue counters (`/proc`), and
//!   the active-grants and bans books fed by the workers.
//! - [`clock`]: the wall clock, read at the edges (SPA timestamps, TOTP steps).
//! - [`persist`]: state files replaced atomically and durably (temp file, fsync, rename).
//! - [`daemon`]: `knock-nfq run`: startup, signals and reloads, systemd notifications and
//!   watchdog, the `/metrics` endpoint. It drives `queue`; nothing on the packet path imports it.
//! - [`client`]: `knock-nfq knock`, knockd's client: arguments into a `KnockPlan`, then one SYN
//!   or datagram per knock; `knock-nfq spa` builds and sends one signed SPA datagram.
//! - [`import`]: `knock-nfq import-knockd`: a knockd.conf parsed into a typed form, translated
//!   and rendered as this project's TOML, with a comment for whatever could not be translated.
//! - [`cli`]: the command line and the commands that are not the daemon (`check`, `knock`,
//!   `spa`, `keygen`, `import-knockd`).
//! - [`scan`]: scan bans (`[blocklist] scan`): the ruleset's NFLOG reports of probes to
//!   ports that are neither knocked, trapped nor granted, read by a small nfnetlink_log reader
//!   on a thread of its own; a pure, bounded detector counts distinct ports per source within
//!   the window, and a detection bans in the kernel's blocked sets like a trap port does.
//! - [`sandbox`]: throw-away networks of namespaces (client, gateway, LAN host) with the shipped
//!   ruleset loaded, and the iptables-nft queue fallback for kernels without nft's `queue`.
//!   The code behind `knock-nfq demo`, the netns tests and the package's systemd test;
//!   nothing else imports it.
//! - [`demo`]: `knock-nfq demo`, the whole product on a [`sandbox`], narrated step by step.
//!
//! The binary (`main.rs`) only parses arguments, loads the config, sets up tracing and calls in.
//! Beside this crate: `xtask` (project tasks; it never depends on this crate) and `docs-gen`
//! (`knock-nfq-docs`: the man pages and shell completions from [`cli::Cli`], and the
//! hand-written `docs/man/knock-nfq.toml.5`, whose keys `config` checks in its tests).
//!
//! Outside the crate, the Debian package: cargo-deb's `[package.metadata.deb]` in Cargo.toml,
//! the maintainer scripts in `deploy/debian/`, `cargo xtask package` (`xtask/src/package.rs`,
//! which generates the packaged unit and conffile from `deploy/`), and its install, upgrade,
//! purge and systemd tests in `tests/package/`.

pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod import;
pub mod metrics;
pub mod nft;
pub mod once;
pub mod packet;
pub mod persist;
pub mod queue;
pub mod sandbox;
pub mod scan;
pub mod spa;
