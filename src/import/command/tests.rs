//! Each command form that translates, and for the rest the reason a user reads.

use std::time::Duration;

use super::*;

fn local(port: u16, proto: Proto) -> Target {
    Target::Local { port, proto }
}

fn forward(addr: &str, port: u16) -> Target {
    Target::Forward {
        addr: addr.parse().unwrap(),
        port,
        proto: Proto::Tcp,
    }
}

fn targets(command: &str) -> (GrantOp, Vec<Target>) {
    let g = grant(command).unwrap_or_else(|u| panic!("{command}: {}", u.0));
    (g.op, g.targets)
}

fn reason(command: &str) -> String {
    match grant(command) {
        Ok(g) => panic!("{command}: translated to {g:?}"),
        Err(Unsupported(why)) => why,
    }
}

#[test]
fn iptables_rules_for_the_knocker() {
    let ssh = vec![local(22, Proto::Tcp)];
    for command in [
        "/sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT",
        "/sbin/iptables -I INPUT -s %IP% -p tcp --dport 22 -j ACCEPT",
        "iptables -I INPUT 1 -s %IP%/32 -p tcp -m tcp --dport 22 -j ACCEPT",
        "iptables -w -A INPUT -m conntrack --ctstate NEW -s %IP% -p tcp --syn --dport ssh -j ACCEPT",
        "sudo /usr/sbin/iptables-nft --append INPUT --source %IP% --protocol tcp --destination-port 22 --jump ACCEPT",
        "iptables -A INPUT -s %IP% -p tcp --dport 22 -m comment --comment 'knockd ssh' -j ACCEPT",
    ] {
        assert_eq!(targets(command), (GrantOp::Add, ssh.clone()), "{command}");
    }
    assert_eq!(
        targets("/sbin/iptables -D INPUT -s %IP% -p tcp --dport 22 -j ACCEPT"),
        (GrantOp::Delete, ssh)
    );
    assert_eq!(
        targets("ip6tables -A INPUT -s %IP% -p udp --dport 51820 -j ACCEPT"),
        (GrantOp::Add, vec![local(51820, Proto::Udp)])
    );
    assert_eq!(
        targets("iptables -A INPUT -s %IP% -p tcp -m multiport --dports 993,587 -j ACCEPT"),
        (
            GrantOp::Add,
            vec![local(993, Proto::Tcp), local(587, Proto::Tcp)]
        )
    );
}

#[test]
fn iptables_forward_rules_open_a_host_behind_the_gateway() {
    assert_eq!(
        targets("iptables -I FORWARD -s %IP% -d 198.51.100.10 -p tcp --dport 3389 -j ACCEPT"),
        (GrantOp::Add, vec![forward("198.51.100.10", 3389)])
    );
    assert_eq!(
        targets("ip6tables -A FORWARD -s %IP% -d 2001:db8:2::10/128 -p tcp --dport 80 -j ACCEPT"),
        (GrantOp::Add, vec![forward("2001:db8:2::10", 80)])
    );
}

#[test]
fn dropped_parts_are_noted() {
    let g =
        grant("iptables -A TCP -i eth0 -d 192.0.2.1 -s %IP% -p tcp --dport 22 -j ACCEPT").unwrap();
    assert_eq!(g.targets, vec![local(22, Proto::Tcp)]);
    assert_eq!(
        g.notes,
        [
            "-i eth0 was dropped: knock-nfq guards the interfaces of [daemon] interfaces",
            "the destination 192.0.2.1 was dropped: knock-nfq opens the port on every address \
             of this host",
            "chain TCP is taken to be called from INPUT, for a service on this host",
        ]
    );
}

#[test]
fn iptables_commands_that_are_not_a_grant_for_the_knocker() {
    let cases = [
        (
            "/sbin/iptables -A INPUT -s %IP% --dport 22 -j ACCEPT",
            "names a port without a protocol (-p tcp or -p udp), which iptables refuses",
        ),
        (
            "/usr/sbin/iptables -A INPUT -s %IP% -p tcp --syn -j ACCEPT",
            "admits the knocker to every port (no --dport); knock-nfq opens PORT/PROTO targets",
        ),
        (
            "iptables -A INPUT -p tcp --dport 22 -j ACCEPT",
            "does not match the knocker (-s %IP%), so it would admit everyone",
        ),
        (
            "iptables -A INPUT -s 10.0.0.0/8 -p tcp --dport 22 -j ACCEPT",
            "matches the source 10.0.0.0/8, not the knocker (-s %IP%)",
        ),
        (
            "iptables -A INPUT -s %IP% -p tcp --dport 22 -j LOG",
            "jumps to LOG, not ACCEPT",
        ),
        (
            "iptables -t nat -A PREROUTING -s %IP% -p tcp --dport 22 -j ACCEPT",
            "changes the nat table, not filter",
        ),
        (
            "iptables -A OUTPUT -s %IP% -p tcp --dport 22 -j ACCEPT",
            "adds to chain OUTPUT, where an accept does not admit the knocker to a service",
        ),
        (
            "iptables -A FORWARD -s %IP% -p tcp --dport 80 -j ACCEPT",
            "forwards to every host behind the gateway (no destination address); knock-nfq \
             opens ADDR:PORT/PROTO targets",
        ),
        (
            "iptables -A INPUT -s %IP% -p tcp --dport 6000:6010 -j ACCEPT",
            "opens the port range 6000:6010; knock-nfq opens single ports",
        ),
        (
            "iptables -A INPUT -s %IP% -p icmp -j ACCEPT",
            "uses protocol \"icmp\"; knock-nfq opens tcp and udp ports",
        ),
        (
            "iptables -A INPUT -s %IP% -p tcp ! --dport 22 -j ACCEPT",
            "has \"!\", which this import does not translate",
        ),
        (
            "iptables -A INPUT -s %IP% -p tcp --dport 22 -m recent --set -j ACCEPT",
            "uses the match module recent, which this import does not translate",
        ),
        (
            "iptables -A INPUT -s %IP% -p tcp --dport gopher -j ACCEPT",
            "names the port \"gopher\", which this import does not know; write its number",
        ),
        (
            "iptables -L",
            "has \"-L\", which this import does not translate",
        ),
    ];
    for (command, expected) in cases {
        assert_eq!(reason(command), expected, "{command}");
    }
}

#[test]
fn nft_set_elements() {
    let g =
        grant("/usr/sbin/nft add element inet knock_nfq allow4 { %IP% . tcp . 22 timeout 30s }")
            .unwrap();
    assert_eq!(g.op, GrantOp::Add);
    assert_eq!(g.targets, vec![local(22, Proto::Tcp)]);
    assert_eq!(g.timeout, Some(Duration::from_secs(30)));

    assert_eq!(
        targets("nft delete element inet knock_nfq allow4 { %IP% . tcp . 22 }"),
        (GrantOp::Delete, vec![local(22, Proto::Tcp)])
    );
    // Quoted as one word, braces without spaces, several elements, a forwarded service.
    let g = grant(
        "nft 'add element inet t fwd {%IP% . 198.51.100.10 . tcp . 80 timeout 2m, %IP% . udp . 53}'",
    )
    .unwrap();
    assert_eq!(
        g.targets,
        vec![forward("198.51.100.10", 80), local(53, Proto::Udp)]
    );
    assert_eq!(g.timeout, Some(Duration::from_secs(120)));
    // The family may be left out (nft's default, ip).
    assert_eq!(
        targets("nft add element filter knocked { %IP% . tcp . 22 }").1,
        vec![local(22, Proto::Tcp)]
    );
}

#[test]
fn nft_rules() {
    assert_eq!(
        targets("nft add rule inet filter input ip saddr %IP% tcp dport 22 accept"),
        (GrantOp::Add, vec![local(22, Proto::Tcp)])
    );
    assert_eq!(
        targets(
            "nft insert rule inet filter input ip6 saddr %IP% ct state new tcp dport { 80, 443 } counter accept"
        )
        .1,
        vec![local(80, Proto::Tcp), local(443, Proto::Tcp)]
    );
    assert_eq!(
        targets("nft add rule inet filter forward ip saddr %IP% ip daddr 198.51.100.10 tcp dport 8080 accept").1,
        vec![forward("198.51.100.10", 8080)]
    );
}

#[test]
fn nft_commands_that_are_not_a_grant_for_the_knocker() {
    let cases = [
        (
            "nft add element inet filter knocked { %IP% }",
            "adds the knocker's address alone to set knocked; what that opens depends on the \
             rules that use the set, which this import cannot see",
        ),
        (
            "nft add element inet filter s { %IP% . 22 }",
            "adds the element \"%IP% . 22\" to set s; this import reads %IP% . PROTO . PORT and \
             %IP% . ADDR . PROTO . PORT",
        ),
        (
            "nft delete rule inet filter input handle 7",
            "deletes a rule by its handle, which knockd cannot know for %IP%",
        ),
        (
            "nft add rule inet filter input tcp dport 22 accept",
            "does not match the knocker (saddr %IP%), so it would admit everyone",
        ),
        (
            "nft add rule inet filter input ip saddr %IP% tcp dport 22 drop",
            "has \"drop\", which this import does not translate",
        ),
        (
            "nft add rule inet filter input ip saddr %IP% accept",
            "admits the knocker to every port (no dport); knock-nfq opens PORT/PROTO targets",
        ),
        (
            "nft -f /etc/knock.nft",
            "runs nft with -f, which this import does not translate",
        ),
        (
            "nft flush set inet filter knocked",
            "runs `nft flush set`, which this import does not translate",
        ),
        (
            "nft 'add element inet t s { %IP% . tcp . 22 }; add element inet t s { %IP% . tcp . 80 }'",
            "runs several nft commands",
        ),
    ];
    for (command, expected) in cases {
        assert_eq!(reason(command), expected, "{command}");
    }
}

#[test]
fn other_programs_and_shell_lines_are_not_translated() {
    assert_eq!(
        reason("/usr/local/sbin/knock_add -i -c INPUT -p tcp -d 443 -f %IP%"),
        "runs /usr/local/sbin/knock_add, and knock-nfq runs no commands: it only opens ports it \
         is told about with open = [...]"
    );
    assert_eq!(
        reason(
            "/sbin/iptables -D INPUT -p tcp --dport 10022 -j DROP && /sbin/iptables -A INPUT -s %IP% -p tcp --dport 10022 -j ACCEPT"
        ),
        "is a shell command line ('&'); this import translates one iptables, ip6tables or nft \
         command"
    );
    assert_eq!(
        reason("iptables -A INPUT -s $(echo %IP%) -p tcp --dport 22 -j ACCEPT"),
        "is a shell command line ('$'); this import translates one iptables, ip6tables or nft \
         command"
    );
    assert_eq!(reason("iptables -A 'INPUT"), "has an unbalanced ' quote");
    assert_eq!(reason("   "), "is empty");
    // A trailing shell comment is not part of the command.
    assert_eq!(
        targets("iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT # ssh").1,
        vec![local(22, Proto::Tcp)]
    );
}
