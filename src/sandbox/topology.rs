//! client ── wan0 [gateway] lan0 ── LAN host, each in a namespace of its own.
//!
//! Addresses are TEST-NET (RFC 5737) and documentation (RFC 3849) prefixes, so nothing here can
//! reach a real network. The gateway forwards between its links and forwards its port 8080 to
//! the LAN host's port 80, as a router's port forward does.

use super::{Netns, SandboxError};

pub const GW4: &str = "192.0.2.1";
pub const CLIENT4: &str = "192.0.2.2";
/// A second source on the client side (grants must not leak to it), never a default source.
pub const OTHER4: &str = "192.0.2.3";
pub const GW6: &str = "2001:db8:1::1";
pub const CLIENT6: &str = "2001:db8:1::2";
pub const OTHER6: &str = "2001:db8:1::3";
pub const LAN4: &str = "198.51.100.10";
pub const LAN6: &str = "2001:db8:2::10";
const GW_LAN4: &str = "198.51.100.1";
const GW_LAN6: &str = "2001:db8:2::1";

/// The three namespaces, linked and addressed; no ruleset yet.
#[derive(Debug)]
pub struct Topology {
    pub client: Netns,
    pub gw: Netns,
    pub lan: Netns,
}

impl Topology {
    /// Namespaces named `{prefix}c`, `{prefix}g` and `{prefix}l` (plus a unique suffix).
    pub fn build(prefix: &str) -> Result<Topology, SandboxError> {
        let topology = Topology {
            client: Netns::create(&format!("{prefix}c"))?,
            gw: Netns::create(&format!("{prefix}g"))?,
            lan: Netns::create(&format!("{prefix}l"))?,
        };
        topology.link()?;
        topology.route()?;
        topology.add_port_forward()?;
        Ok(topology)
    }

    fn link(&self) -> Result<(), SandboxError> {
        for (dev, peer) in [("wan0", &self.client), ("lan0", &self.lan)] {
            self.gw.ip(&[
                "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
            ])?;
        }
        for (ns, dev, addrs) in [
            (
                &self.client,
                "eth0",
                [CLIENT4, OTHER4, CLIENT6, OTHER6].as_slice(),
            ),
            (&self.gw, "wan0", [GW4, GW6].as_slice()),
            (&self.gw, "lan0", [GW_LAN4, GW_LAN6].as_slice()),
            (&self.lan, "eth0", [LAN4, LAN6].as_slice()),
        ] {
            for addr in addrs {
                add_address(ns, dev, addr)?;
            }
            ns.ip(&["link", "set", dev, "up"])?;
        }
        Ok(())
    }

    fn route(&self) -> Result<(), SandboxError> {
        self.client
            .ip(&["route", "add", "198.51.100.0/24", "via", GW4])?;
        self.client
            .ip(&["-6", "route", "add", "2001:db8:2::/64", "via", GW6])?;
        self.lan.ip(&["route", "add", "default", "via", GW_LAN4])?;
        self.lan
            .ip(&["-6", "route", "add", "default", "via", GW_LAN6])?;
        self.gw.sysctl("net.ipv4.ip_forward=1")?;
        self.gw.sysctl("net.ipv6.conf.all.forwarding=1")
    }

    /// gateway:8080 → LAN host:80, in a table of its own beside the ruleset under test.
    fn add_port_forward(&self) -> Result<(), SandboxError> {
        let rules = format!(
            "add table inet knock_sandbox_nat; \
             add chain inet knock_sandbox_nat pre {{ type nat hook prerouting priority dstnat; }}; \
             add rule inet knock_sandbox_nat pre meta nfproto ipv4 tcp dport 8080 dnat ip to {LAN4}:80; \
             add rule inet knock_sandbox_nat pre meta nfproto ipv6 tcp dport 8080 dnat ip6 to [{LAN6}]:80"
        );
        self.gw.exec("nft", &[&rules]).map(drop)
    }
}

fn add_address(ns: &Netns, dev: &str, addr: &str) -> Result<(), SandboxError> {
    let ipv6 = addr.contains(':');
    let prefixed = format!("{addr}/{}", if ipv6 { 64 } else { 24 });
    let mut args = vec!["addr", "add", &prefixed, "dev", dev];
    // nodad: a tentative IPv6 address would refuse connections for a second or two.
    if ipv6 {
        args.push("nodad");
    }
    // Deprecated at once, so only a socket bound to it explicitly uses it.
    if addr == OTHER4 || addr == OTHER6 {
        args.extend(["preferred_lft", "0"]);
    }
    ns.ip(&args).map(drop)
}
