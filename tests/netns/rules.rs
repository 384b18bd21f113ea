//! Per-door source rules: a door with `from` counts only knocks from its networks, one with
//! `interfaces` only knocks arriving on them.

use crate::harness::*;
use crate::require_netns;
use crate::{CLIENT4, CLIENT6, GW_SSH4, GW_SSH6, OTHER4, OTHER6, assert_closed, assert_open};

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn a_door_with_from_opens_only_for_its_networks_ipv4_and_ipv6() {
    require_netns!();
    let config = config("5s", "30s").replacen(
        "open = ",
        &format!("from = [\"{OTHER4}/32\", \"{OTHER6}\"]\nopen = "),
        1,
    );
    let t = Topology::new();
    let daemon = Daemon::start(&t.gw, &config);
    let ssh = ["7000", "8000", "9000:udp"];

    t.knock(GW4, &ssh);
    t.knock(GW6, &ssh);
    assert_closed(&t, CLIENT4, &[GW_SSH4]);
    assert_closed(&t, CLIENT6, &[GW_SSH6]);

    knock_from(&t, OTHER4, GW4, &ssh);
    knock_from(&t, OTHER6, GW6, &ssh);
    assert_open(&t, OTHER4, GW_SSH4, "gw");
    assert_open(&t, OTHER6, GW_SSH6, "gw");
    assert_closed(&t, CLIENT4, &[GW_SSH4]);
    let grants = daemon.metrics(&t.gw).value(
        "knock_nfq_grants_total",
        &[r#"door="ssh""#, r#"action="open""#],
    );
    assert_eq!(grants, 2.0, "one grant per family, none for the outsider");
}

#[test]
#[ignore = "needs root and network namespaces; `cargo xtask test` runs it"]
fn a_door_with_interfaces_counts_only_knocks_arriving_there() {
    require_netns!();
    let on = |interfaces: &str| {
        config("5s", "30s").replacen(
            "open = ",
            &format!("interfaces = [{interfaces}]\nopen = "),
            1,
        )
    };
    let t = Topology::new();
    let ssh = ["7000", "8000", "9000:udp"];

    // The client's knocks arrive on wan0: a door for lan0 ignores them.
    let daemon = Daemon::start(&t.gw, &on("\"lan0\""));
    t.knock(GW4, &ssh);
    t.knock(GW6, &ssh);
    assert_closed(&t, CLIENT4, &[GW_SSH4]);
    assert_closed(&t, CLIENT6, &[GW_SSH6]);
    drop(daemon);

    let daemon = Daemon::start(&t.gw, &on("\"wan*\""));
    t.knock(GW4, &ssh);
    t.knock(GW6, &ssh);
    assert_open(&t, CLIENT4, GW_SSH4, "gw");
    assert_open(&t, CLIENT6, GW_SSH6, "gw");
    let grants = daemon.metrics(&t.gw).value(
        "knock_nfq_grants_total",
        &[r#"door="ssh""#, r#"action="open""#],
    );
    assert_eq!(grants, 2.0);
}
