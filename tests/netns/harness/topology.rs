//! client ── wan0 [gateway] lan0 ── LAN host, all in namespaces of their own.
//!
//! Addresses are TEST-NET (RFC 5737) and documentation (RFC 3849) prefixes. The gateway runs
//! the ruleset, the daemon and a service on port 22; the LAN host serves port 80, reachable
//! through the gateway directly and by DNAT from the gateway's port 8080.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::netns::{Netns, run_ok};

pub const GW4: &str = "192.0.2.1";
pub const CLIENT4: &str = "192.0.2.2";
/// A second source on the client side: grants must not leak to it.
pub const OTHER4: &str = "192.0.2.3";
pub const GW6: &str = "2001:db8:1::1";
pub const CLIENT6: &str = "2001:db8:1::2";
pub const OTHER6: &str = "2001:db8:1::3";
pub const LAN4: &str = "198.51.100.10";
pub const LAN6: &str = "2001:db8:2::10";

/// The ruleset loader, as a user runs it.
pub fn ruleset_script() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/netns/ruleset"))
}

#[derive(Debug)]
pub struct Topology {
    pub client: Netns,
    pub gw: Netns,
    pub lan: Netns,
    /// What `ruleset` printed (its mode).
    pub ruleset_mode: String,
}

impl Topology {
    pub fn new() -> Topology {
        let (client, gw, lan) = (
            Netns::create("kc"),
            Netns::create("kg"),
            Netns::create("kl"),
        );
        gw.ip(&[
            "link",
            "add",
            "wan0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &client.name,
        ]);
        gw.ip(&[
            "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", &lan.name,
        ]);
        for (ns, dev, addrs) in [
            (
                &client,
                "eth0",
                [
                    format!("{CLIENT4}/24"),
                    format!("{OTHER4}/24"),
                    format!("{CLIENT6}/64"),
                    format!("{OTHER6}/64"),
                ]
                .as_slice(),
            ),
            (
                &gw,
                "wan0",
                [format!("{GW4}/24"), format!("{GW6}/64")].as_slice(),
            ),
            (
                &gw,
                "lan0",
                ["198.51.100.1/24".to_owned(), "2001:db8:2::1/64".to_owned()].as_slice(),
            ),
            (
                &lan,
                "eth0",
                [format!("{LAN4}/24"), format!("{LAN6}/64")].as_slice(),
            ),
        ] {
            for addr in addrs {
                // nodad: a tentative IPv6 address would refuse connections for a second or two.
                let mut args = vec!["addr", "add", addr.as_str(), "dev", dev];
                if addr.contains(':') {
                    args.push("nodad");
                }
                // The second client addresses are never picked as a default source.
                if addr.starts_with(OTHER4) || addr.starts_with(OTHER6) {
                    args.extend(["preferred_lft", "0"]);
                }
                ns.ip(&args);
            }
            ns.ip(&["link", "set", dev, "up"]);
        }
        client.ip(&["route", "add", "198.51.100.0/24", "via", GW4]);
        client.ip(&["-6", "route", "add", "2001:db8:2::/64", "via", GW6]);
        lan.ip(&["route", "add", "default", "via", "198.51.100.1"]);
        lan.ip(&["-6", "route", "add", "default", "via", "2001:db8:2::1"]);
        gw.sysctl("net.ipv4.ip_forward=1");
        gw.sysctl("net.ipv6.conf.all.forwarding=1");
        let out = run_ok(std::process::Command::new(ruleset_script()).arg(&gw.name));
        let ruleset_mode = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let topology = Topology {
            client,
            gw,
            lan,
            ruleset_mode,
        };
        topology.add_port_forward();
        topology.start_services();
        topology
    }

    /// gateway:8080 → LAN host:80, as a router's port forward does.
    fn add_port_forward(&self) {
        let rules = format!(
            "add table inet knock_test_nat; \
             add chain inet knock_test_nat pre {{ type nat hook prerouting priority dstnat; }}; \
             add rule inet knock_test_nat pre meta nfproto ipv4 tcp dport 8080 dnat ip to {LAN4}:80; \
             add rule inet knock_test_nat pre meta nfproto ipv6 tcp dport 8080 dnat ip6 to [{LAN6}]:80"
        );
        self.gw.exec("nft", &[&rules]);
    }

    fn start_services(&self) {
        serve(&self.gw, 22, "gw");
        serve(&self.lan, 80, "lan");
    }

    /// Connects from `source` (an address of the client) and reads the service's greeting.
    pub fn connect(
        &self,
        source: &str,
        dest: SocketAddr,
        timeout: Duration,
    ) -> io::Result<Session> {
        let source: IpAddr = source.parse().expect("a literal address");
        self.client.run(move || {
            let stream = connect_from(source, dest, timeout)?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut session = Session {
                reader: BufReader::new(stream.try_clone()?),
                stream,
                greeting: String::new(),
            };
            session.greeting = session.read_line()?;
            Ok(session)
        })
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

/// A TCP connection from a chosen source address.
pub fn connect_from(source: IpAddr, dest: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(dest), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
    socket.connect_timeout(&SockAddr::from(dest), timeout)?;
    Ok(socket.into())
}

/// An open connection to a test service.
#[derive(Debug)]
pub struct Session {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// The service's first line: `gw` or `lan`.
    pub greeting: String,
}

impl Session {
    fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_owned())
    }

    /// Sends a line and reads the echo: the connection still carries traffic.
    pub fn echo(&mut self, line: &str) -> io::Result<String> {
        self.stream.write_all(format!("{line}\n").as_bytes())?;
        self.read_line()
    }
}

/// A dual-stack TCP service that greets each client with `name`, then echoes lines.
pub fn serve(ns: &Netns, port: u16, name: &'static str) {
    let listener = ns.run(move || {
        let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        socket.set_only_v6(false).expect("dual stack");
        socket.set_reuse_address(true).expect("reuse");
        let addr: SocketAddr = format!("[::]:{port}").parse().expect("literal");
        socket.bind(&SockAddr::from(addr)).expect("bind");
        socket.listen(64).expect("listen");
        TcpListener::from(socket)
    });
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || echo(stream, name));
        }
    });
}

fn echo(mut stream: TcpStream, name: &str) {
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    if writeln!(stream, "{name}").is_err() {
        return;
    }
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { return };
        if writeln!(stream, "{line}").is_err() {
            return;
        }
    }
}
