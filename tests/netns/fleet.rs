//! The fleet: two gateways, each with its own daemon, sharing grants through a real etcd.
//!
//! ```text
//!            client (bridge br0: 192.0.2.2, .4, .100-.219)
//!             │ c1                         │ c2
//!       wan0 192.0.2.1 [gw1]        wan0 192.0.2.11 [gw2]
//!        cl0 198.18.0.11              cl0 198.18.0.12
//!             │ e1                         │ e2
//!            etcd (bridge br0: 198.18.0.1, etcd on :2379, its peer port on loopback)
//! ```

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use knock_nfq::config::Proto;
use knock_nfq::nft::{Attempt, Nft};
use knock_nfq::sandbox::{self, ruleset};

use crate::harness::netns::Netns;
use crate::harness::prometheus::{self, Prometheus};
use crate::harness::topology::{load_ruleset, serve};
use crate::harness::{Daemon, knock_in};
use crate::ops::dashboard;
use crate::require_netns;

const GW1: &str = "192.0.2.1";
const GW2: &str = "192.0.2.11";
const CLIENT: &str = "192.0.2.2";
/// A second source, for the knocks made while etcd or a daemon is away.
const LATE: &str = "192.0.2.4";
const ETCD: &str = "198.18.0.1";
/// Sources of the latency measurement: 192.0.2.100 onwards.
const BENCH_FIRST: u8 = 100;
const BENCH_SOURCES: u8 = 120;
/// A source granted only briefly, while etcd is away.
const BRIEF: &str = "192.0.2.219";
const OPEN: [&str; 3] = ["7000", "8000", "9000:udp"];
const CLOSE: [&str; 2] = ["9100", "9200"];

/// How the gateways and etcd talk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    /// TLS both ways: etcd asks for a client certificate signed by the test CA.
    MutualTls,
}

/// The one-time door's lines, the same file at each gateway (knockd's format).
const LINES: &str = "7501,7502\n7503,7504\n";

/// `node`'s config; its state directory and one-time file go under `dir`.
fn config(node: &str, pki: Option<&Pki>, dir: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let state = dir.join(node);
    std::fs::create_dir_all(&state).expect("state dir");
    let lines = state.join("lines.seq");
    std::fs::write(&lines, LINES).expect("one-time file");
    std::fs::set_permissions(&lines, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let spa_key = spa_key(dir);
    let cluster = match pki {
        None => format!("endpoints = [\"http://{ETCD}:2379\"]\n"),
        Some(pki) => format!(
            "endpoints = [\"https://{ETCD}:2379\"]\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
            pki.path("ca.pem"),
            pki.path(&format!("{node}.pem")),
            pki.path(&format!("{node}.key")),
        ),
    };
    format!(
        r#"[daemon]
queues = [0]
interfaces = ["wan0"]
metrics = "127.0.0.1:9469"
state_dir = "{state}"

[[door]]
name = "spa"
spa = {{ port = "62201/udp", key_file = "{spa_key}" }}
open = ["22/tcp"]

[[door]]
name = "once"
one_time_sequences = "{lines}"
open = ["22/tcp"]

[[door]]
name = "ssh"
sequence = ["7000:tcp", "8000:tcp", "9000:udp"]
seq_timeout = "10s"
tcp_flags = "syn,!ack"
open = ["22/tcp"]
open_for = "60s"
max_grants_per_second = 1000

[[door]]
name = "brief"
sequence = ["7100:tcp", "7200:tcp"]
open = ["22/tcp"]
open_for = "1s"

[[door]]
name = "ssh-close"
sequence = ["9100:tcp", "9200:tcp"]
action = "close"
open = ["22/tcp"]

[cluster]
backend = "etcd"
{cluster}prefix = "/knock-nfq/"
node = "{node}"
"#,
        state = state.display(),
        lines = lines.display(),
        spa_key = spa_key.display(),
    )
}

/// The SPA door's key, one for the fleet, made by `knock-nfq keygen` the first time.
fn spa_key(dir: &std::path::Path) -> std::path::PathBuf {
    let key = dir.join("spa.key");
    if !key.exists() {
        let out = std::process::Command::new(crate::harness::daemon::BINARY)
            .args(["keygen", "--output"])
            .arg(&key)
            .output()
            .expect("run keygen");
        assert!(
            out.status.success(),
            "keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    key
}

/// A CA, etcd's server certificate (for its address) and a client certificate per gateway,
/// made with openssl; keys mode 0600.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=knock-nfq test CA",
        ]);
        pki.sign(
            "etcd",
            &format!("subjectAltName=IP:{ETCD}\nextendedKeyUsage=serverAuth"),
        );
        for node in ["gw1", "gw2"] {
            pki.sign(node, "extendedKeyUsage=clientAuth");
        }
        pki
    }

    fn sign(&self, name: &str, extensions: &str) {
        let ext = format!("{name}.ext");
        std::fs::write(self.dir.path().join(&ext), extensions).expect("write extensions");
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            &ext,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A real etcd in its own namespace; killed on drop (the namespace goes with it).
struct Etcd {
    ns: Netns,
    data: tempfile::TempDir,
    child: Option<Child>,
    pki: Option<Pki>,
}

impl Etcd {
    fn start(ns: Netns, pki: Option<Pki>) -> Etcd {
        let mut etcd = Etcd {
            ns,
            data: tempfile::tempdir().expect("tempdir"),
            child: None,
            pki,
        };
        etcd.resume();
        etcd
    }

    /// Starts etcd on its data directory (again, after `kill`) and waits until it answers.
    fn resume(&mut self) {
        let scheme = match self.pki {
            None => "http",
            Some(_) => "https",
        };
        let client_url = format!("{scheme}://{ETCD}:2379");
        let tls: Vec<String> = match &self.pki {
            None => Vec::new(),
            Some(pki) => vec![
                format!("--cert-file={}", pki.path("etcd.pem")),
                format!("--key-file={}", pki.path("etcd.key")),
                format!("--trusted-ca-file={}", pki.path("ca.pem")),
                "--client-cert-auth".to_owned(),
            ],
        };
        // etcdctl authenticates as gw1 would.
        let ctl_tls: Vec<String> = match &self.pki {
            None => Vec::new(),
            Some(pki) => vec![
                format!("--cacert={}", pki.path("ca.pem")),
                format!("--cert={}", pki.path("gw1.pem")),
                format!("--key={}", pki.path("gw1.key")),
            ],
        };
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.data.path().join("etcd.log"))
            .expect("etcd log");
        let child = self
            .ns
            .command("etcd")
            .args(["--name", "e", "--data-dir"])
            .arg(self.data.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "e=http://127.0.0.1:2380"])
            .args(&tls)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn etcd (cargo xtask test installs etcd-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let healthy = self
                .ns
                .command("etcdctl")
                .args(["--endpoints", &client_url])
                .args(&ctl_tls)
                .args(["endpoint", "health"])
                .output()
                .is_ok_and(|o| o.status.success());
            if healthy {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd did not become healthy within 20 s; its log:\n{}",
            self.log()
        );
    }

    /// Writes a key as anyone holding an etcd credential could (plain transport only).
    fn put(&self, key: &str, value: &str) {
        let out = self
            .ns
            .command("etcdctl")
            .args([
                "--endpoints",
                &format!("http://{ETCD}:2379"),
                "put",
                key,
                value,
            ])
            .output()
            .expect("run etcdctl");
        assert!(out.status.success(), "etcdctl put {key}: {out:?}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Fleet {
    /// The gateways' state directories and one-time files.
    _dir: tempfile::TempDir,
    client: Netns,
    gw1: Netns,
    gw2: Netns,
    etcd: Etcd,
    d1: Daemon,
    d2: Daemon,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet::with(Transport::Plain)
    }

    fn with(transport: Transport) -> Fleet {
        let client = Netns::create("fc");
        let (gw1, gw2) = (Netns::create("f1"), Netns::create("f2"));
        let etcd_ns = Netns::create("fe");
        for ns in [&client, &etcd_ns] {
            ns.ip(&["link", "add", "br0", "type", "bridge"]);
            ns.ip(&["link", "set", "br0", "up"]);
        }
        for (gw, i, wan, cl) in [(&gw1, 1, GW1, "198.18.0.11"), (&gw2, 2, GW2, "198.18.0.12")] {
            for (dev, peer, ns, addr) in [
                ("wan0", format!("c{i}"), &client, wan),
                ("cl0", format!("e{i}"), &etcd_ns, cl),
            ] {
                gw.ip(&[
                    "link", "add", dev, "type", "veth", "peer", "name", &peer, "netns", &ns.name,
                ]);
                ns.ip(&["link", "set", &peer, "master", "br0"]);
                ns.ip(&["link", "set", &peer, "up"]);
                gw.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev]);
                gw.ip(&["link", "set", dev, "up"]);
            }
            let mode = load_ruleset(gw, ruleset::SHIPPED);
            println!("ruleset: loaded into netns {} (mode: {mode})", gw.name);
        }
        serve(&gw1, 22, "gw1");
        serve(&gw2, 22, "gw2");
        etcd_ns.ip(&["addr", "add", &format!("{ETCD}/24"), "dev", "br0"]);
        for last in [2, 4]
            .into_iter()
            .chain(BENCH_FIRST..BENCH_FIRST + BENCH_SOURCES)
        {
            client.ip(&["addr", "add", &format!("192.0.2.{last}/24"), "dev", "br0"]);
        }
        let pki = (transport == Transport::MutualTls).then(Pki::new);
        let etcd = Etcd::start(etcd_ns, pki);
        let dir = tempfile::tempdir().expect("tempdir");
        let d1 = Daemon::start_at_info(&gw1, &config("gw1", etcd.pki.as_ref(), dir.path()));
        let d2 = Daemon::start_at_info(&gw2, &config("gw2", etcd.pki.as_ref(), dir.path()));
        let fleet = Fleet {
            _dir: dir,
            client,
            gw1,
            gw2,
            etcd,
            d1,
            d2,
        };
        fleet.wait_up(1.0);
        fleet
    }

    fn wait_up(&self, value: f64) {
        for (daemon, gw) in [(&self.d1, &self.gw1), (&self.d2, &self.gw2)] {
            wait_for(Duration::from_secs(15), || {
                daemon.metrics(gw).value("knock_nfq_cluster_up", &[]) == value
            })
            .unwrap_or_else(|| {
                panic!(
                    "knock_nfq_cluster_up never became {value} in {}; its log:\n{}",
                    gw.name,
                    daemon.log()
                )
            });
        }
    }

    fn knock(&self, source: &str, gw: &str, ports: &[&str]) {
        knock_in(&self.client, source, gw, ports);
    }

    /// A datagram for the SPA door, signed by our client: it is sent to a socket on the
    /// client's loopback and kept (the message does not name the address it is sent to).
    fn signed_datagram(&self) -> Vec<u8> {
        let key = spa_key(self._dir.path());
        let listener = self
            .client
            .run(|| UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let port = listener.local_addr().expect("address").port().to_string();
        let out = self
            .client
            .command(crate::harness::daemon::BINARY)
            .args(["spa", "127.0.0.1", "--door", "spa", "--key-file"])
            .arg(&key)
            .args(["--port", &port])
            .output()
            .expect("run the spa client");
        assert!(
            out.status.success(),
            "spa: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut buf = [0u8; 512];
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let n = listener.recv(&mut buf).expect("the client's datagram");
        buf[..n].to_vec()
    }

    fn send_datagram(&self, source: &str, gw: &str, datagram: &[u8]) {
        let source: IpAddr = source.parse().expect("literal");
        let dest = SocketAddr::new(gw.parse().expect("literal"), 62201);
        let datagram = datagram.to_vec();
        self.client.run(move || {
            let socket = UdpSocket::bind(SocketAddr::new(source, 0)).expect("bind");
            socket.send_to(&datagram, dest).expect("send");
        });
        sleep(Duration::from_millis(20));
    }

    /// Knocks the open door, and returns when its last knock (a datagram) was sent.
    fn knock_timed(&self, source: &str, gw: &str) -> Instant {
        knock_in(&self.client, source, gw, &OPEN[..2]);
        let source: IpAddr = source.parse().expect("literal");
        let dest = SocketAddr::new(gw.parse().expect("literal"), 9000);
        self.client.run(move || {
            let socket = UdpSocket::bind(SocketAddr::new(source, 0)).expect("bind");
            socket.send_to(b"knock", dest).expect("send");
            Instant::now()
        })
    }

    /// Whether a connection from `source` to the gateway's port 22 is admitted (its greeting)
    /// or silently dropped (`None`).
    fn reaches(&self, source: &str, gw: &str) -> Option<String> {
        let source: IpAddr = source.parse().expect("literal");
        let dest = SocketAddr::new(gw.parse().expect("literal"), 22);
        let result = self
            .client
            .run(move || sandbox::Session::open(source, dest, Duration::from_millis(800)));
        match result {
            Ok(session) => Some(session.greeting),
            Err(err) if err.kind() == io::ErrorKind::TimedOut => None,
            Err(err) => panic!("{source} -> {dest}: expected admitted or dropped, got: {err}"),
        }
    }

    fn received(&self, daemon: &Daemon, gw: &Netns, action: &str) -> f64 {
        let label = format!("action=\"{action}\"");
        daemon
            .metrics(gw)
            .value("knock_nfq_cluster_received_total", &[&label])
    }
}

/// Polls `done` every millisecond for up to `limit`; how long it took, or `None`.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        sleep(Duration::from_millis(1));
    }
    None
}

/// Waits in `gw` until its kernel holds (`true`) or lacks the grant of `source` to port 22;
/// when it saw it, or `None`.
fn wait_grant(gw: &Netns, source: &str, held: bool, limit: Duration) -> Option<Instant> {
    let source: IpAddr = source.parse().expect("literal");
    gw.run(move || {
        let mut nft = Nft::open("knock_nfq").expect("netlink");
        let attempt = Attempt::Local {
            source,
            proto: Proto::Tcp,
            port: 22,
        };
        let start = Instant::now();
        while start.elapsed() < limit {
            if nft.is_granted(attempt).expect("lookup") == held {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        None
    })
}

#[test]
#[ignore = "needs root, network namespaces and etcd; `cargo xtask test` runs it"]
fn a_knock_at_one_gateway_opens_the_other_and_a_revoke_at_either_closes_both() {
    require_netns!();
    let f = Fleet::new();
    assert_eq!(f.reaches(CLIENT, GW1), None);
    assert_eq!(f.reaches(CLIENT, GW2), None);

    let knocked = f.knock_timed(CLIENT, GW1);
    let seen = wait_grant(&f.gw2, CLIENT, true, Duration::from_secs(2));
    let took = seen.map(|seen| seen - knocked);
    assert!(
        took.is_some_and(|took| took < Duration::from_millis(100)),
        "gw2 did not hold gw1's grant within 100 ms of the last knock ({took:?}); gw1's log:\n{}\ngw2's log:\n{}",
        f.d1.log(),
        f.d2.log()
    );
    assert_eq!(f.reaches(CLIENT, GW1).as_deref(), Some("gw1"));
    assert_eq!(f.reaches(CLIENT, GW2).as_deref(), Some("gw2"));
    assert_eq!(f.received(&f.d2, &f.gw2, "open"), 1.0);
    // Its own grant coming back on the watch is not installed again.
    assert_eq!(f.received(&f.d1, &f.gw1, "open"), 0.0);

    f.knock(CLIENT, GW2, &CLOSE);
    let closed = wait_grant(&f.gw1, CLIENT, false, Duration::from_secs(1));
    assert!(closed.is_some(), "gw2's revoke did not reach gw1");
    assert_eq!(f.reaches(CLIENT, GW1), None);
    assert_eq!(f.reaches(CLIENT, GW2), None);
    assert_eq!(f.received(&f.d1, &f.gw1, "close"), 1.0);
}

#[test]
#[ignore = "needs root, network namespaces, etcd and Prometheus; `cargo xtask test` runs it"]
fn the_dashboards_fleet_panels_show_a_peers_grant() {
    require_netns!();
    if let Some(why) = prometheus::unavailable() {
        panic!("cannot run: {why}");
    }
    let f = Fleet::new();
    let server = Prometheus::start(&f.gw2, "127.0.0.1:9469");
    let open = r#"knock_nfq_cluster_received_total{action="open"}"#;
    let scrape_wait = Duration::from_secs(15);
    server.wait_for_value(&f.gw2, open, 0.0, scrape_wait);
    f.knock(CLIENT, GW1, &OPEN);
    server.wait_for_value(&f.gw2, open, 1.0, scrape_wait);
    server.wait_for_value(&f.gw2, "knock_nfq_cluster_up", 1.0, scrape_wait);

    let board = dashboard::load();
    let fleet: Vec<String> = dashboard::queries(&board)
        .into_iter()
        .filter(|q| dashboard::fleet_only(q))
        .collect();
    assert!(
        fleet.len() >= 3,
        "the dashboard has no fleet panels: {fleet:?}"
    );
    for query in fleet {
        let promql = dashboard::substitute(&query);
        let answer = server.query(&f.gw2, &promql);
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        let result = answer["data"]["result"]
            .as_array()
            .expect("a result vector");
        assert!(!result.is_empty(), "{promql} returned no data");
    }
}

/// The timeout of `source`'s 22/tcp element in `gw`'s allow4 set, as the kernel holds it.
fn element_timeout(gw: &Netns, source: &str) -> Option<u64> {
    let out = gw
        .command("nft")
        .args(["-j", "list", "set", "inet", "knock_nfq", "allow4"])
        .output()
        .expect("run nft");
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j output");
    let set = listing["nftables"]
        .as_array()?
        .iter()
        .find_map(|item| item.get("set"))?;
    set["elem"].as_array()?.iter().find_map(|elem| {
        let elem = &elem["elem"];
        let key = elem["val"]["concat"].as_array()?;
        (key[0] == source && key[2] == 22).then(|| elem["timeout"].as_u64())?
    })
}

#[test]
#[ignore = "needs root, network namespaces and etcd; `cargo xtask test` runs it"]
fn a_forged_record_opens_only_what_a_door_opens_and_for_no_longer() {
    require_netns!();
    let f = Fleet::new();
    let day_ms = 86_400_000u64;
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let forged = format!(
        r#"{{"node":"mallory","expires_unix_ms":{},"open_for_ms":{day_ms}}}"#,
        now_ms + day_ms
    );
    // No door opens 80/tcp; the longest door opening 22/tcp lasts 60 s.
    f.etcd
        .put(&format!("/knock-nfq/grants/{LATE}/80/tcp"), &forged);
    f.etcd
        .put(&format!("/knock-nfq/grants/{LATE}/22/tcp"), &forged);
    let both = wait_for(Duration::from_secs(2), || {
        f.received(&f.d1, &f.gw1, "refused") == 1.0 && f.received(&f.d1, &f.gw1, "open") == 1.0
    });
    assert!(both.is_some(), "gw1's log:\n{}", f.d1.log());
    let timeout = element_timeout(&f.gw1, LATE);
    assert!(
        timeout.is_some_and(|t| t <= 60),
        "the forged day-long grant should be capped at 60 s: {timeout:?}"
    );
    assert!(f.d1.log().contains("refused another gateway's grant"));
}

#[test]
#[ignore = "needs root, network namespaces and etcd; `cargo xtask test` runs it"]
fn without_etcd_a_gateway_opens_alone_and_the_fleet_converges_when_etcd_is_back() {
    require_netns!();
    let mut f = Fleet::new();
    f.etcd.kill();
    f.wait_up(0.0);
    f.knock(BRIEF, GW1, &["7100", "7200"]);
    let brief = Instant::now();
    assert_eq!(f.reaches(BRIEF, GW1).as_deref(), Some("gw1"));

    f.knock(LATE, GW1, &OPEN);
    assert_eq!(f.reaches(LATE, GW1).as_deref(), Some("gw1"));
    assert_eq!(f.reaches(LATE, GW2), None, "gw2 cannot know yet");
    let m1 = f.d1.metrics(&f.gw1);
    assert_eq!(m1.value("knock_nfq_cluster_up", &[]), 0.0);
    wait_for(Duration::from_secs(5), || {
        f.d1.metrics(&f.gw1)
            .value("knock_nfq_cluster_publish_errors_total", &[])
            >= 1.0
    })
    .expect("the failed publication is counted");

    // A daemon that starts while etcd is away starts all the same, and works alone.
    f.d2.kill9();
    f.d2.restart(&f.gw2);
    assert_eq!(f.d2.metrics(&f.gw2).value("knock_nfq_cluster_up", &[]), 0.0);
    f.knock(CLIENT, GW2, &OPEN);
    assert_eq!(f.reaches(CLIENT, GW2).as_deref(), Some("gw2"));

    // The brief grant ends while etcd is away: it must not be published late.
    sleep(Duration::from_millis(1500).saturating_sub(brief.elapsed()));
    f.etcd.resume();
    f.wait_up(1.0);
    let converged = wait_grant(&f.gw2, LATE, true, Duration::from_secs(10));
    assert!(
        converged.is_some(),
        "gw1's grant made while etcd was away never reached gw2; gw1's log:\n{}",
        f.d1.log()
    );
    assert_eq!(f.reaches(LATE, GW2).as_deref(), Some("gw2"));
    // ...and gw2's own grant made alone reaches gw1 the same way.
    assert!(wait_grant(&f.gw1, CLIENT, true, Duration::from_secs(10)).is_some());
    assert_eq!(f.reaches(CLIENT, GW1).as_deref(), Some("gw1"));
    assert_eq!(f.reaches(BRIEF, GW1), None, "the brief grant ran out");
    assert_eq!(
        f.reaches(BRIEF, GW2),
        None,
        "an ended grant is never published"
    );
}

#[test]
#[ignore = "needs root, network namespaces and etcd; `cargo xtask test` runs it"]
fn a_restarted_daemon_installs_the_grants_made_while_it_was_down() {
    require_netns!();
    let mut f = Fleet::new();
    f.d2.kill9();
    f.knock(CLIENT, GW1, &OPEN);
    assert_eq!(f.reaches(CLIENT, GW1).as_deref(), Some("gw1"));
    assert_eq!(f.reaches(CLIENT, GW2), None, "gw2's daemon is down");

    f.d2.restart(&f.gw2);
    let installed = wait_grant(&f.gw2, CLIENT, true, Duration::from_secs(10));
    assert!(
        installed.is_some(),
        "the restarted gw2 did not install the live grant; its log:\n{}",
        f.d2.log()
    );
    assert_eq!(f.reaches(CLIENT, GW2).as_deref(), Some("gw2"));
    assert_eq!(f.received(&f.d2, &f.gw2, "open"), 1.0);
}

#[test]
#[ignore = "needs root, network namespaces and etcd; `cargo xtask test` runs it"]
fn over_mutual_tls_a_knock_at_one_gateway_opens_the_other() {
    require_netns!();
    let f = Fleet::with(Transport::MutualTls);
    assert_eq!(f.reaches(CLIENT, GW2), None);
    f.knock(CLIENT, GW1, &OPEN);
    let seen = wait_grant(&f.gw2, CLIENT, true, Duration::from_secs(2));
    assert!(
        seen.is_some(),
        "no grant at gw2 over TLS; gw1's log:\n{}\netcd's log:\n{}",
        f.d1.log(),
        f.etcd.log()
    );
    assert_eq!(f.reaches(CLIENT, GW2).as_deref(), Some("gw2"));
    assert_eq!(f.received(&f.d2, &f.gw2, "open"), 1.0);
}

#[test]
#[ignore = "needs root, network namespaces and etcd; `cargo xtask test` runs it"]
fn a_one_time_line_used_at_one_gateway_is_refused_at_the_other() {
    require_netns!();
    let f = Fleet::new();
    f.knock(CLIENT, GW1, &["7501", "7502"]);
    assert_eq!(f.reaches(CLIENT, GW1).as_deref(), Some("gw1"));

    // The same line at gw2, whose own file still holds it: the fleet says it was used.
    f.knock(LATE, GW2, &["7501", "7502"]);
    assert_eq!(f.reaches(LATE, GW2), None);
    let refused = |f: &Fleet| {
        f.d2.metrics(&f.gw2).value(
            "knock_nfq_grants_refused_total",
            &[r#"door="once""#, r#"reason="used""#],
        )
    };
    assert_eq!(refused(&f), 1.0, "gw2's log:\n{}", f.d2.log());

    // The next line is unused anywhere: it opens gw2.
    f.knock(LATE, GW2, &["7503", "7504"]);
    assert_eq!(f.reaches(LATE, GW2).as_deref(), Some("gw2"));
    assert_eq!(refused(&f), 1.0);
}

#[test]
#[ignore = "needs root, network namespaces and etcd; `cargo xtask test` runs it"]
fn an_spa_datagram_accepted_at_one_gateway_is_a_replay_at_the_other() {
    require_netns!();
    let f = Fleet::new();
    let datagram = f.signed_datagram();
    f.send_datagram(CLIENT, GW1, &datagram);
    assert_eq!(f.reaches(CLIENT, GW1).as_deref(), Some("gw1"));

    // Captured and sent on to gw2 from another address: gw2's own cache has never seen it.
    let replayed = |f: &Fleet| {
        f.d2.metrics(&f.gw2).value(
            "knock_nfq_spa_rejected_total",
            &[r#"door="spa""#, r#"reason="replayed""#],
        )
    };
    assert_eq!(replayed(&f), 0.0);
    f.send_datagram(LATE, GW2, &datagram);
    wait_for(Duration::from_secs(2), || replayed(&f) == 1.0).unwrap_or_else(|| {
        panic!(
            "the replay was not refused at gw2; its log:\n{}",
            f.d2.log()
        )
    });
    assert_eq!(f.reaches(LATE, GW2), None);

    // A fresh datagram opens gw2.
    let fresh = f.signed_datagram();
    f.send_datagram(LATE, GW2, &fresh);
    assert_eq!(f.reaches(LATE, GW2).as_deref(), Some("gw2"));
    assert_eq!(replayed(&f), 1.0);
}

/// The HA pair's virtual address, held by whichever gateway keepalived makes master.
const VIP: &str = "192.0.2.50";

/// keepalived in a gateway's namespace, VRRP on `wan0`; killed on drop.
struct Keepalived {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Keepalived {
    fn start(gw: &Netns, name: &str, state: &str, priority: u8) -> Keepalived {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("keepalived.conf");
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  router_id {name}\n}}\n\
                 vrrp_instance fleet {{\n  state {state}\n  interface wan0\n  \
                 virtual_router_id 51\n  priority {priority}\n  advert_int 1\n  \
                 virtual_ipaddress {{\n    {VIP}/24 dev wan0\n  }}\n}}\n"
            ),
        )
        .expect("write keepalived.conf");
        let path = |file: &str| dir.path().join(file);
        let log = std::fs::File::create(path("keepalived.log")).expect("log");
        let child = gw
            .command("keepalived")
            .args(["--dont-fork", "--log-console", "--vrrp", "--use-file"])
            .arg(&conf)
            .arg("--pid")
            .arg(path("keepalived.pid"))
            .arg("--vrrp_pid")
            .arg(path("vrrp.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn keepalived (cargo xtask test installs it)");
        Keepalived { child, _dir: dir }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn holds_vip(gw: &Netns) -> bool {
    let out = gw.exec("ip", &["-4", "addr", "show", "dev", "wan0"]);
    String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
}

#[test]
#[ignore = "needs root, network namespaces, etcd and keepalived; `cargo xtask test` runs it"]
fn an_ha_pair_keeps_a_knocked_source_open_when_the_virtual_address_moves() {
    require_netns!();
    let f = Fleet::new();
    let _k1 = Keepalived::start(&f.gw1, "gw1", "MASTER", 150);
    let _k2 = Keepalived::start(&f.gw2, "gw2", "BACKUP", 100);
    wait_for(Duration::from_secs(10), || {
        holds_vip(&f.gw1) && !holds_vip(&f.gw2)
    })
    .expect("gw1 becomes master and holds the virtual address");
    assert_eq!(f.reaches(CLIENT, VIP), None);

    f.knock(CLIENT, VIP, &OPEN);
    assert_eq!(f.reaches(CLIENT, VIP).as_deref(), Some("gw1"));
    assert!(wait_grant(&f.gw2, CLIENT, true, Duration::from_secs(1)).is_some());

    // gw1's uplink fails: keepalived there drops the address, gw2 takes it over.
    f.gw1.ip(&["link", "set", "wan0", "down"]);
    wait_for(Duration::from_secs(10), || holds_vip(&f.gw2))
        .expect("gw2 takes the virtual address over");
    // The same source, no new knock: the backup admits it.
    assert_eq!(f.reaches(CLIENT, VIP).as_deref(), Some("gw2"));
    assert_eq!(f.reaches(LATE, VIP), None, "only the knocking source");
}

/// Last knock at gw1 → grant in gw2's kernel, for 100 sources: the figure in
/// docs/BENCHMARKS.md. `cargo xtask test` runs it alone, optimized, and prints it.
#[test]
#[ignore = "needs root, network namespaces and etcd; `cargo xtask test` runs it"]
fn fleet_propagation_latency_over_100_grants() {
    require_netns!();
    let f = Fleet::new();
    let mut samples = Vec::new();
    for last in BENCH_FIRST..BENCH_FIRST + 100 {
        let source = format!("192.0.2.{last}");
        let knocked = f.knock_timed(&source, GW1);
        let seen = wait_grant(&f.gw2, &source, true, Duration::from_secs(2))
            .unwrap_or_else(|| panic!("{source}: gw2 never held the grant"));
        samples.push(seen - knocked);
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100 - 1];
    println!(
        "fleet propagation, last knock at gw1 -> grant in gw2's kernel, {} grants: \
         median {median:?}, p99 {p99:?}, max {:?} (upper bounds: includes the knock's own commit)",
        samples.len(),
        samples[samples.len() - 1]
    );
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
}
