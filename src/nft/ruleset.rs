//! Verifying the running ruleset for `knock-nfq check`: the daemon's table has the chains the
//! shipped ruleset defines, some rule queues packets to each queue the daemon reads, and no such
//! rule has `bypass` (which would open what it guards while the daemon is down).

use std::fmt;

use super::sys::{self, ChainInfo, QueueMode, QueueRule};
use super::{Nft, NftError};
use crate::nft::socket::{self, Reply};

/// `NFPROTO_INET`, `NF_INET_LOCAL_IN` and `NF_INET_FORWARD`.
const FAMILY_INET: u32 = 1;
const HOOK_INPUT: u32 = 1;
/// `NFPROTO_IPV4` and `NFPROTO_IPV6`.
const FAMILY_IPV4: u32 = 2;
const FAMILY_IPV6: u32 = 10;
const HOOK_FORWARD: u32 = 2;

/// The chains of the shipped ruleset, and the hook of each base chain. Without `scan_report`
/// (a ruleset from before scan bans) `[blocklist] scan` would never ban.
const CHAINS: [(&str, Option<u32>); 4] = [
    ("input", Some(HOOK_INPUT)),
    ("forward", Some(HOOK_FORWARD)),
    ("scan_report", None),
    ("to_daemon", None),
];

/// Something the running ruleset lacks or gets wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    MissingChain {
        chain: &'static str,
    },
    WrongHook {
        chain: &'static str,
    },
    /// The daemon reads this queue, but no rule sends packets to it: knocks never arrive.
    Unfed {
        queue: u16,
    },
    /// A rule of the daemon's table queues to a queue the daemon does not read.
    Unserved {
        queue: u16,
        rule: String,
    },
    /// A rule feeding the daemon's queue lets packets through while the daemon is down.
    Bypass {
        rule: String,
    },
    /// `to_daemon` queues nothing itself (it marks, for an iptables-nft NFQUEUE rule), and no
    /// such rule runs in this hook: what the chain sends there leaves it unjudged and accepted.
    UnqueuedHook {
        hook: &'static str,
        family: &'static str,
    },
}

/// What `check` learned from the running ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audit {
    /// One line per rule feeding a queue the daemon reads.
    pub feeders: Vec<String>,
    pub findings: Vec<Finding>,
}

impl Nft {
    /// Reads every chain and every queueing rule and compares them with what the daemon needs.
    pub fn audit_ruleset(&mut self, queues: &[u16]) -> Result<Audit, NftError> {
        let chains = self
            .dump(sys::dump_chains_request)?
            .iter()
            .filter_map(|message| sys::parse_chain(message))
            .collect::<Vec<_>>();
        let mut rules = Vec::new();
        for message in self.dump(sys::dump_rules_request)? {
            sys::parse_rule_queues(&message, &mut rules);
        }
        Ok(audit(&self.table, &chains, &rules, queues))
    }

    /// Sends one dump request and returns its data messages; a dump the kernel marks as
    /// interrupted by a concurrent ruleset change is read again.
    fn dump(&mut self, build: fn(&mut Vec<u8>, u32)) -> Result<Vec<Vec<u8>>, NftError> {
        const TRIES: usize = 3;
        for _ in 1..TRIES {
            let messages = self.dump_once(build)?;
            if !messages.iter().any(|m| socket::dump_interrupted(m)) {
                return Ok(messages);
            }
        }
        let messages = self.dump_once(build)?;
        if messages.iter().any(|m| socket::dump_interrupted(m)) {
            return Err(self.failed(Some(libc::EINTR), "a consistent ruleset dump".into()));
        }
        Ok(messages)
    }

    fn dump_once(&mut self, build: fn(&mut Vec<u8>, u32)) -> Result<Vec<Vec<u8>>, NftError> {
        let mut request = Vec::new();
        build(&mut request, 1);
        let replies = self
            .socket
            .transact([request.as_slice()])
            .map_err(NftError::Io)?;
        match socket::first_error(&replies) {
            None => {}
            Some(libc::EPERM) => return Err(NftError::Permission),
            errno => return Err(self.failed(errno, "a ruleset dump".into())),
        }
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                Reply::Data { message } => Some(message),
                Reply::Ack { .. } => None,
            })
            .collect())
    }
}

/// Compares the chains and queueing rules found with what the daemon reading `queues` needs.
pub fn audit(table: &str, chains: &[ChainInfo], rules: &[QueueRule], queues: &[u16]) -> Audit {
    let mut findings = Vec::new();
    for (chain, hook) in CHAINS {
        let found = chains
            .iter()
            .find(|c| c.family == FAMILY_INET && c.table == table && c.name == chain);
        match found {
            None => findings.push(Finding::MissingChain { chain }),
            Some(found) if found.hook != hook => findings.push(Finding::WrongHook { chain }),
            Some(_) => {}
        }
    }
    let serves = |rule: &QueueRule| {
        let range = u32::from(rule.first)..u32::from(rule.first) + u32::from(rule.total);
        queues.iter().any(|q| range.contains(&u32::from(*q)))
    };
    let mut feeders = Vec::new();
    for rule in rules {
        let ours = rule.family == FAMILY_INET && rule.table == table;
        if serves(rule) {
            feeders.push(describe(rule));
            if rule.mode == QueueMode::Bypass {
                findings.push(Finding::Bypass {
                    rule: describe(rule),
                });
            }
        } else if ours {
            let queue = rule.first;
            findings.push(Finding::Unserved {
                queue,
                rule: describe(rule),
            });
        }
    }
    let in_to_daemon =
        |r: &QueueRule| r.family == FAMILY_INET && r.table == table && r.chain == "to_daemon";
    if !rules.iter().any(|r| serves(r) && in_to_daemon(r)) {
        // Each (hook, IP family) needs a queueing rule of its own family, or of inet.
        let hooks = [(HOOK_INPUT, "input"), (HOOK_FORWARD, "forward")];
        for ((hook, hook_name), (family, family_name)) in hooks
            .into_iter()
            .flat_map(|h| [(h, (FAMILY_IPV4, "ip")), (h, (FAMILY_IPV6, "ip6"))])
        {
            let fed_here = rules
                .iter()
                .filter(|r| serves(r) && [FAMILY_INET, family].contains(&r.family))
                .any(|r| {
                    chains.iter().any(|c| {
                        (c.family, &c.table, &c.name) == (r.family, &r.table, &r.chain)
                            && c.hook == Some(hook)
                    })
                });
            if !fed_here {
                let (hook, family) = (hook_name, family_name);
                findings.push(Finding::UnqueuedHook { hook, family });
            }
        }
    }
    for &queue in queues {
        let fed = rules
            .iter()
            .any(|r| (r.first..r.first.saturating_add(r.total)).contains(&queue));
        if !fed {
            findings.push(Finding::Unfed { queue });
        }
    }
    Audit { feeders, findings }
}

fn describe(rule: &QueueRule) -> String {
    let family = match rule.family {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "?",
    };
    let last = rule.first + rule.total.saturating_sub(1);
    let queues = match rule.total {
        1 => format!("queue {}", rule.first),
        _ => format!("queues {}-{last}", rule.first),
    };
    format!("{family} {} chain {}: {queues}", rule.table, rule.chain)
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::MissingChain { chain } => write!(
                f,
                "chain {chain} is missing: load the shipped ruleset (deploy/nftables.conf)"
            ),
            Finding::WrongHook { chain } => write!(
                f,
                "chain {chain} does not have the shipped ruleset's hook (input chain on the \
                 input hook, forward on forward, scan_report and to_daemon regular chains)"
            ),
            Finding::Unfed { queue } => write!(
                f,
                "no rule queues packets to queue {queue}, which the daemon reads \
                 (daemon.queues): knocks will never reach it"
            ),
            Finding::Unserved { queue, rule } => write!(
                f,
                "{rule}, but the daemon does not read queue {queue} (daemon.queues): those \
                 packets are dropped unjudged"
            ),
            Finding::UnqueuedHook { hook, family } => write!(
                f,
                "chain to_daemon has no queue statement, and no {family} NFQUEUE rule runs in \
                 the {hook} hook: {family} packets it marks there are never judged (add the \
                 {family}tables-nft NFQUEUE rule on the mark, as the README's Deploy section \
                 shows)"
            ),
            Finding::Bypass { rule } => write!(
                f,
                "{rule} has `bypass`: while the daemon is down the kernel accepts what it \
                 queues; remove `bypass` (or --queue-bypass) so the queue fails closed"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(name: &str, hook: Option<u32>) -> ChainInfo {
        let (family, table, name) = (FAMILY_INET, "knock_nfq".into(), name.into());
        ChainInfo {
            family,
            table,
            name,
            hook,
        }
    }

    fn shipped_chains() -> Vec<ChainInfo> {
        CHAINS
            .iter()
            .map(|(name, hook)| chain(name, *hook))
            .collect()
    }

    fn queue(family: u32, table: &str, first: u16, total: u16, mode: QueueMode) -> QueueRule {
        let (table, chain) = (table.into(), "to_daemon".into());
        QueueRule {
            family,
            table,
            chain,
            first,
            total,
            mode,
        }
    }

    #[test]
    fn the_shipped_ruleset_has_no_finding() {
        let rules = [queue(FAMILY_INET, "knock_nfq", 0, 1, QueueMode::FailClosed)];
        let audit = audit("knock_nfq", &shipped_chains(), &rules, &[0]);
        assert_eq!(audit.findings, []);
        assert_eq!(audit.feeders, ["inet knock_nfq chain to_daemon: queue 0"]);
    }

    #[test]
    fn iptables_fallback_rules_feed_the_queue_in_both_hooks_or_are_named_missing() {
        let mut chains = shipped_chains();
        let ip_filter = |name: &str, hook| ChainInfo {
            family: 2,
            table: "filter".into(),
            name: name.into(),
            hook: Some(hook),
        };
        for family in [FAMILY_IPV4, FAMILY_IPV6] {
            chains.push(ChainInfo {
                family,
                ..ip_filter("INPUT", HOOK_INPUT)
            });
            chains.push(ChainInfo {
                family,
                ..ip_filter("FORWARD", HOOK_FORWARD)
            });
        }
        let nfqueue = |family, chain: &str| QueueRule {
            chain: chain.into(),
            ..queue(family, "filter", 0, 2, QueueMode::FailClosed)
        };
        let all = [
            nfqueue(FAMILY_IPV4, "INPUT"),
            nfqueue(FAMILY_IPV4, "FORWARD"),
            nfqueue(FAMILY_IPV6, "INPUT"),
            nfqueue(FAMILY_IPV6, "FORWARD"),
        ];
        let found = audit("knock_nfq", &chains, &all, &[0, 1]);
        assert_eq!(found.findings, []);
        assert_eq!(
            found.feeders[..2],
            [
                "ip filter chain INPUT: queues 0-1",
                "ip filter chain FORWARD: queues 0-1"
            ]
        );
        let found = audit("knock_nfq", &chains, &all[..3], &[0, 1]);
        let missing = Finding::UnqueuedHook {
            hook: "forward",
            family: "ip6",
        };
        assert_eq!(found.findings, [missing]);
    }

    #[test]
    fn missing_chains_wrong_numbers_and_bypass_are_each_named() {
        let chains = [chain("input", Some(HOOK_FORWARD)), chain("to_daemon", None)];
        let rules = [
            queue(FAMILY_INET, "knock_nfq", 1, 1, QueueMode::FailClosed),
            queue(10, "filter", 2, 1, QueueMode::Bypass),
            queue(2, "other_program", 7, 1, QueueMode::Bypass),
        ];
        let audit = audit("knock_nfq", &chains, &rules, &[0, 2]);
        assert_eq!(
            audit.findings,
            [
                Finding::WrongHook { chain: "input" },
                Finding::MissingChain { chain: "forward" },
                Finding::MissingChain {
                    chain: "scan_report"
                },
                Finding::Unserved {
                    queue: 1,
                    rule: "inet knock_nfq chain to_daemon: queue 1".into()
                },
                Finding::Bypass {
                    rule: "ip6 filter chain to_daemon: queue 2".into()
                },
                Finding::UnqueuedHook {
                    hook: "input",
                    family: "ip"
                },
                Finding::UnqueuedHook {
                    hook: "input",
                    family: "ip6"
                },
                Finding::UnqueuedHook {
                    hook: "forward",
                    family: "ip"
                },
                Finding::UnqueuedHook {
                    hook: "forward",
                    family: "ip6"
                },
                Finding::Unfed { queue: 0 },
            ],
            "another program's queue 7 is none of our business"
        );
    }
}
