//! The iptables-nft queue fallback (kernels without nft's `queue` expression) fails closed and
//! leaves the operator's own iptables rules in charge: a marked packet no NFQUEUE rule queues is
//! dropped, and a packet the daemon admits is judged again by the chain that queued it. On a
//! kernel with the queue expression the same checks hold, for the plain reasons.

use std::time::Duration;

use crate::harness::*;
use crate::require_netns;

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn with_the_nfqueue_rules_flushed_a_recent_knocker_is_dropped_not_let_through() {
    require_netns!();
    let t = Topology::new();
    eprintln!("{}", t.ruleset_mode);
    let _daemon = Daemon::start(&t.gw, &config("5s", "30s"));
    // iptables-restore, ufw or a firewall reload took the NFQUEUE rules away.
    for tables in ["iptables-nft", "ip6tables-nft"] {
        t.gw.exec(tables, &["-F"]);
    }
    for _ in 0..3 {
        knock_from(&t, CLIENT4, GW4, &["7000"]);
        assert_eq!(t.reaches(CLIENT4, "192.0.2.1:22"), None);
        knock_from(&t, CLIENT6, GW6, &["7000"]);
        assert_eq!(t.reaches(CLIENT6, "[2001:db8:2::10]:80"), None);
    }
    assert!(
        set_elements(&t, "recent4").contains(CLIENT4),
        "the knocks were seen"
    );
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn what_the_daemon_admits_still_passes_the_operators_own_iptables_rules() {
    require_netns!();
    let t = Topology::new();
    serve(&t.gw, 3306, "db");
    // A strict door: every new connection goes through the daemon, which admits what is not
    // a knock. The operator's own iptables rule closes 3306 to everyone.
    let strict = config("5s", "30s").replacen(
        "tcp_flags = \"syn,!ack\"\n",
        "tcp_flags = \"syn,!ack\"\nstrict = true\n",
        1,
    );
    let daemon = Daemon::start(&t.gw, &strict);
    t.gw.exec(
        "iptables-nft",
        &["-A", "INPUT", "-p", "tcp", "--dport", "3306", "-j", "DROP"],
    );
    assert_eq!(
        t.reaches(OTHER4, "192.0.2.1:3306"),
        None,
        "the operator's DROP holds"
    );
    let accepted = daemon
        .metrics(&t.gw)
        .value("knock_nfq_verdicts_total", &[r#"verdict="accept""#]);
    assert!(
        accepted >= 1.0,
        "the daemon saw and admitted the connection"
    );
    // Without the operator's rule the same connection is admitted: the test can fail.
    t.gw.exec(
        "iptables-nft",
        &["-D", "INPUT", "-p", "tcp", "--dport", "3306", "-j", "DROP"],
    );
    let open = t.connect(
        OTHER4,
        "192.0.2.1:3306".parse().unwrap(),
        Duration::from_secs(1),
    );
    assert_eq!(open.map(|s| s.greeting).ok().as_deref(), Some("db"));
}
