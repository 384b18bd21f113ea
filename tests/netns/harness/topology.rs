//! The library's sandbox topology (client ── wan0 [gateway] lan0 ── LAN host) as the tests use
//! it: the gateway runs the ruleset, the daemon and a service on port 22; the LAN host serves
//! port 80, reachable through the gateway directly and by DNAT from the gateway's port 8080.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use knock_nfq::sandbox::{self, ruleset};
#[allow(unused_imports, reason = "each test file uses its own subset")]
pub use knock_nfq::sandbox::{
    CLIENT4, CLIENT6, GW4, GW6, LAN4, LAN6, OTHER4, OTHER6, Session, connect_from,
};

use super::netns::Netns;

/// The library's topology with the shipped ruleset loaded, port 22 on the gateway answering
/// `gw` and port 80 on the LAN host answering `lan`.
#[derive(Debug)]
pub struct Topology {
    pub client: Netns,
    pub gw: Netns,
    #[allow(dead_code, reason = "held: the LAN host lives as long as the topology")]
    pub lan: Netns,
    /// How the ruleset was loaded, to print.
    pub ruleset_mode: String,
}

impl Topology {
    pub fn new() -> Topology {
        Topology::with_ruleset(ruleset::SHIPPED)
    }

    /// The shipped ruleset with `queue num 0-1 fanout` (two queues, picked by the CPU that
    /// handles the packet); pair it with `queues = [0, 1]` in the config.
    #[allow(
        dead_code,
        reason = "harness API: the fanout tests and the bench use it"
    )]
    pub fn with_fanout() -> Topology {
        let shipped = knock_nfq::sandbox::ruleset::SHIPPED;
        let ruleset = shipped.replacen("\t\tqueue num 0\n", "\t\tqueue num 0-1 fanout\n", 1);
        assert_ne!(
            ruleset, shipped,
            "the shipped ruleset's queue statement moved"
        );
        Topology::with_ruleset(&ruleset)
    }

    /// Like [`Topology::new`], with `ruleset` instead of the shipped one (e.g. its queue
    /// statement changed to `queue num 0-1 fanout`).
    pub fn with_ruleset(ruleset: &str) -> Topology {
        let sandbox::Topology { client, gw, lan } =
            sandbox::Topology::build("k").unwrap_or_else(|e| panic!("{e}"));
        let (client, gw, lan) = (Netns::from(client), Netns::from(gw), Netns::from(lan));
        let mode = load_ruleset(&gw, ruleset);
        serve(&gw, 22, "gw");
        serve(&lan, 80, "lan");
        Topology {
            ruleset_mode: format!("ruleset: loaded into netns {} (mode: {mode})", gw.name),
            client,
            gw,
            lan,
        }
    }

    /// Loads the shipped ruleset again, as `systemctl reload nftables` does (after the test
    /// deleted the table).
    pub fn reload_ruleset(&self) {
        load_ruleset(&self.gw, ruleset::SHIPPED);
    }

    /// Connects from `source` (an address of the client) and reads the service's greeting.
    pub fn connect(
        &self,
        source: &str,
        dest: SocketAddr,
        timeout: Duration,
    ) -> io::Result<Session> {
        let source: IpAddr = source.parse().expect("a literal address");
        self.client
            .run(move || Session::open(source, dest, timeout))
    }

    /// Whether a connection is admitted (`Some(greeting)`) or silently dropped (`None`).
    /// Anything else (a RST, an ICMP error) fails the test: guarded ports never answer.
    pub fn reaches(&self, source: &str, dest: &str) -> Option<String> {
        match self.connect(
            source,
            dest.parse().expect("a literal socket address"),
            Duration::from_millis(800),
        ) {
            Ok(session) => Some(session.greeting),
            Err(err) if err.kind() == io::ErrorKind::TimedOut => None,
            Err(err) => {
                panic!("{source} -> {dest}: expected admitted or silently dropped, got: {err}")
            }
        }
    }

    /// Knocks with Debian's `knock` client from the client namespace (first address).
    pub fn knock(&self, host: &str, ports: &[&str]) {
        let mut args = vec!["-d", "20", host];
        args.extend_from_slice(ports);
        if host.contains(':') {
            args.insert(0, "-6");
        }
        self.client.exec("knock", &args);
    }
}

/// Loads `ruleset` into `ns` (the iptables-nft queue fallback where the kernel needs it).
pub fn load_ruleset(ns: &Netns, ruleset: &str) -> ruleset::RulesetMode {
    ruleset::load(ns, ruleset).unwrap_or_else(|e| panic!("{e}"))
}

/// A dual-stack TCP service that greets each client with `name`, then echoes lines.
pub fn serve(ns: &Netns, port: u16, name: &'static str) {
    sandbox::serve(ns, port, name).unwrap_or_else(|e| panic!("{e}"));
}
