//! Loading a ruleset (by default the shipped `deploy/nftables.conf`) into a namespace.
//!
//! Kernels built without nft's queue expression (`CONFIG_NFT_QUEUE` unset) reject `queue num N`
//! with a misleading "No such file or directory". There only the queue statement is replaced:
//! the chain marks the packet instead, and iptables-nft NFQUEUE rules (an xt target, which such
//! kernels do have) queue marked packets from the filter table's INPUT and FORWARD chains, which
//! run right after the ruleset's input and forward chains (priority filter - 10). Both are
//! needed: a packet the forward chain marks (a held connection) and no rule queues would be
//! accepted. Like the statement they replace, the rules have no `--queue-bypass`: with no
//! daemon bound the kernel drops the packet.

use std::fmt;
use std::io::Write;
use std::process::Stdio;

use super::{Netns, SandboxError};

/// The ruleset shipped in `deploy/`.
pub const SHIPPED: &str = include_str!("../../deploy/nftables.conf");

/// The packet mark the fallback's chain sets and its NFQUEUE rule matches (the daemon clears it
/// in the packets it admits: [`crate::queue::FALLBACK_MARK`]).
pub const FALLBACK_MARK: &str = "0x40000000";

/// Chains right after the iptables filter table that drop whatever still carries the mark: a
/// packet no NFQUEUE rule queued (the rule flushed by `iptables-restore`, shadowed, or never
/// added) ends unjudged, and must not be accepted. Loading twice keeps one rule each.
const UNJUDGED_CHAINS: &str = "
table inet knock_nfq {
\tchain unjudged_input { type filter hook input priority filter + 1; policy accept; }
\tchain unjudged_forward { type filter hook forward priority filter + 1; policy accept; }
}
flush chain inet knock_nfq unjudged_input
flush chain inet knock_nfq unjudged_forward
table inet knock_nfq {
\tchain unjudged_input { meta mark & 0x40000000 == 0x40000000 drop; }
\tchain unjudged_forward { meta mark & 0x40000000 == 0x40000000 drop; }
}
";

/// How the queue statement reached the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesetMode {
    /// As written: the kernel has nft's queue expression.
    NftQueue,
    /// As an iptables-nft NFQUEUE rule on [`FALLBACK_MARK`].
    IptablesFallback,
}

impl fmt::Display for RulesetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RulesetMode::NftQueue => "nft queue statement",
            RulesetMode::IptablesFallback => {
                "iptables-nft NFQUEUE rule, as this kernel lacks nft's queue expression"
            }
        })
    }
}

/// Loads `ruleset` into `ns`, falling back to iptables-nft for the queue where the kernel
/// needs it. Loading again (after the table was deleted) adds no second NFQUEUE rule.
pub fn load(ns: &Netns, ruleset: &str) -> Result<RulesetMode, SandboxError> {
    if queue_supported(ns) {
        nft_stdin(ns, &["-f", "-"], ruleset)?;
        return Ok(RulesetMode::NftQueue);
    }
    let options = nfqueue_options(ruleset)?;
    nft_stdin(ns, &["-f", "-"], &mark_instead_of_queue(ruleset))?;
    let mark = format!("{FALLBACK_MARK}/{FALLBACK_MARK}");
    for (tables, chain) in [
        ("iptables-nft", "INPUT"),
        ("iptables-nft", "FORWARD"),
        ("ip6tables-nft", "INPUT"),
        ("ip6tables-nft", "FORWARD"),
    ] {
        let mut rule = vec![chain, "-m", "mark", "--mark", &mark, "-j", "NFQUEUE"];
        rule.extend(options.iter().map(String::as_str));
        let present = ns.command(tables).arg("-C").args(&rule).output();
        if !present.is_ok_and(|out| out.status.success()) {
            ns.exec(tables, &[["-I"].as_slice(), &rule].concat())?;
        }
    }
    Ok(RulesetMode::IptablesFallback)
}

fn queue_supported(ns: &Netns) -> bool {
    let probe = "table inet knock_nfq_probe { chain c { type filter hook input priority 0; queue num 0; } }\n";
    nft_stdin(ns, &["-c", "-f", "-"], probe).is_ok()
}

/// The queue statements of `ruleset`: each line's text from `queue num` to `;`, `#` or its end.
fn queue_statements(ruleset: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    ruleset.lines().filter_map(|line| {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        body.starts_with("queue num").then(|| {
            let end = body.find([';', '#']).unwrap_or(body.len());
            (indent, body[..end].trim_end(), &body[end..])
        })
    })
}

/// The NFQUEUE target's options for the ruleset's queue statement.
fn nfqueue_options(ruleset: &str) -> Result<Vec<String>, SandboxError> {
    let (_, statement, _) = queue_statements(ruleset)
        .next()
        .ok_or(SandboxError::NoQueue)?;
    let unsupported = || SandboxError::QueueStatement(statement.to_owned());
    let words: Vec<&str> = statement.split_whitespace().skip(2).collect();
    let (queues, flags) = words.split_first().ok_or_else(unsupported)?;
    let number = |n: &str| {
        n.parse::<u16>()
            .map(|_| n.to_owned())
            .map_err(|_| unsupported())
    };
    match (queues.split_once('-'), flags) {
        (None, []) => Ok(vec!["--queue-num".into(), number(queues)?]),
        (Some((first, last)), []) => Ok(vec![
            "--queue-balance".into(),
            format!("{}:{}", number(first)?, number(last)?),
        ]),
        (Some((first, last)), ["fanout"]) => Ok(vec![
            "--queue-balance".into(),
            format!("{}:{}", number(first)?, number(last)?),
            "--queue-cpu-fanout".into(),
        ]),
        _ => Err(unsupported()),
    }
}

/// `ruleset` with each queue statement replaced by one that sets [`FALLBACK_MARK`], and the
/// chains that drop what stays marked.
fn mark_instead_of_queue(ruleset: &str) -> String {
    let marked: String = ruleset
        .lines()
        .map(|line| match queue_statements(line).next() {
            Some((indent, _, rest)) => {
                format!("{indent}meta mark set mark or {FALLBACK_MARK}{rest}\n")
            }
            None => format!("{line}\n"),
        })
        .collect();
    marked + UNJUDGED_CHAINS
}

fn nft_stdin(ns: &Netns, args: &[&str], input: &str) -> Result<(), SandboxError> {
    let command = format!("nft {} (in {})", args.join(" "), ns.name);
    let io_error = |source| SandboxError::Io {
        what: command.clone(),
        source,
    };
    let mut child = ns
        .command("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(io_error)?;
    }
    let out = child.wait_with_output().map_err(io_error)?;
    if out.status.success() {
        return Ok(());
    }
    Err(SandboxError::Command {
        command,
        status: out.status,
        output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(statement: &str) -> Result<Vec<String>, SandboxError> {
        nfqueue_options(&format!(
            "table inet t {{\n\tchain c {{\n\t\t{statement}\n\t}}\n}}\n"
        ))
    }

    #[test]
    fn the_shipped_queue_becomes_queue_num_0_without_bypass() {
        assert_eq!(nfqueue_options(SHIPPED).unwrap(), ["--queue-num", "0"]);
    }

    #[test]
    fn a_range_balances_and_fanout_follows_the_cpu() {
        assert_eq!(
            options("queue num 0-3").unwrap(),
            ["--queue-balance", "0:3"]
        );
        assert_eq!(
            options("queue num 2-3 fanout; # per core").unwrap(),
            ["--queue-balance", "2:3", "--queue-cpu-fanout"]
        );
    }

    #[test]
    fn bypass_and_other_words_are_refused_not_dropped() {
        for statement in [
            "queue num 0 bypass",
            "queue num 0-1 fanout bypass",
            "queue num x",
        ] {
            let err = options(statement).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("cannot translate `{statement}`")),
                "{err}"
            );
        }
        assert!(matches!(
            nfqueue_options("table inet t {}\n"),
            Err(SandboxError::NoQueue)
        ));
    }

    #[test]
    fn only_the_queue_statement_is_replaced_by_the_mark() {
        let marked = mark_instead_of_queue(SHIPPED);
        assert!(!marked.lines().any(|l| l.trim_start().starts_with("queue")));
        assert!(marked.contains("\tchain to_daemon {\n\t\tmeta mark set mark or 0x40000000\n\t}"));
        // Comments that mention the queue, and every other line, are kept as they are; the
        // chains that drop what stays marked follow.
        let (ours, appended) = marked.split_at(marked.len() - UNJUDGED_CHAINS.len());
        assert_eq!(appended, UNJUDGED_CHAINS);
        assert_eq!(ours.lines().count(), SHIPPED.lines().count());
        let changed = SHIPPED.lines().zip(ours.lines()).filter(|(a, b)| a != b);
        assert_eq!(changed.count(), 1);
    }
}
