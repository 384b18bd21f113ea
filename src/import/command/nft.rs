//! `nft add element inet t allow4 { %IP% . tcp . 22 timeout 30s }`,
//! `nft delete element ...`, and `nft add rule inet t input ip saddr %IP% tcp dport 22 accept`.

use std::time::Duration;

use crate::config::{Target, parse};

use super::{Admits, Grant, GrantOp, Hook, Unsupported, address, is_knocker, port, proto};

const FAMILIES: &[&str] = &["ip", "ip6", "inet", "arp", "bridge", "netdev"];

pub fn grant(args: &[String]) -> Result<Grant, Unsupported> {
    let mut args = args.iter().map(String::as_str).peekable();
    while let Some(option) = args.next_if(|a| a.starts_with('-')) {
        if !matches!(option, "-a" | "--handle" | "-e" | "--echo") {
            return Err(Unsupported::new(format!(
                "runs nft with {option}, which this import does not translate"
            )));
        }
    }
    // The words may have been quoted together (`nft 'add element ...'`): split them again, with
    // the braces and commas as tokens of their own.
    let text = args.collect::<Vec<_>>().join(" ");
    let spaced = text
        .replace('{', " { ")
        .replace('}', " } ")
        .replace(',', " , ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    if tokens.contains(&";") || text.contains(';') {
        return Err(Unsupported::new("runs several nft commands"));
    }
    match tokens.as_slice() {
        ["add" | "create", "element", rest @ ..] => element(GrantOp::Add, rest),
        ["delete" | "destroy", "element", rest @ ..] => element(GrantOp::Delete, rest),
        ["add" | "insert", "rule", rest @ ..] => rule(rest),
        ["delete", "rule", ..] => Err(Unsupported::new(
            "deletes a rule by its handle, which knockd cannot know for %IP%",
        )),
        [verb, object, ..] => Err(Unsupported::new(format!(
            "runs `nft {verb} {object}`, which this import does not translate"
        ))),
        _ => Err(Unsupported::new("runs nft without a command")),
    }
}

/// `[FAMILY] TABLE NAME` before a set's elements or a rule's statements.
fn object_name<'a, 'b>(tokens: &'b [&'a str]) -> Result<(&'a str, &'b [&'a str]), Unsupported> {
    let tokens = match tokens {
        [family, rest @ ..] if FAMILIES.contains(family) => rest,
        _ => tokens,
    };
    match tokens {
        [_table, name, rest @ ..] => Ok((name, rest)),
        _ => Err(Unsupported::new("names no table and set or chain")),
    }
}

fn element(op: GrantOp, tokens: &[&str]) -> Result<Grant, Unsupported> {
    let (set, rest) = object_name(tokens)?;
    let ["{", inner @ .., "}"] = rest else {
        return Err(Unsupported::new("has no { element } list"));
    };
    let mut grant = Grant {
        op,
        targets: Vec::new(),
        timeout: None,
        notes: Vec::new(),
    };
    for element in inner.split(|t| *t == ",") {
        let (target, timeout) = set_element(set, element)?;
        grant.targets.push(target);
        grant.timeout = grant.timeout.max(timeout);
    }
    Ok(grant)
}

/// `%IP% . tcp . 22 [timeout 30s]` (a local service) or `%IP% . ADDR . tcp . 80` (forwarded).
fn set_element(set: &str, tokens: &[&str]) -> Result<(Target, Option<Duration>), Unsupported> {
    let key_len = tokens
        .iter()
        .position(|t| is_keyword(t))
        .unwrap_or(tokens.len());
    let (key, extras) = tokens.split_at(key_len);
    let parts: Vec<&str> = key.iter().copied().filter(|t| *t != ".").collect();
    let target = match parts.as_slice() {
        [ip, proto_name, port_name] if is_knocker(ip) => Target::Local {
            port: port(port_name)?,
            proto: proto(proto_name)?,
        },
        [ip, addr, proto_name, port_name] if is_knocker(ip) => Target::Forward {
            addr: address(addr)?,
            port: port(port_name)?,
            proto: proto(proto_name)?,
        },
        [ip] if is_knocker(ip) => {
            return Err(Unsupported::new(format!(
                "adds the knocker's address alone to set {set}; what that opens depends on the \
                 rules that use the set, which this import cannot see"
            )));
        }
        _ => {
            return Err(Unsupported::new(format!(
                "adds the element {:?} to set {set}; this import reads %IP% . PROTO . PORT \
                 and %IP% . ADDR . PROTO . PORT",
                key.join(" ")
            )));
        }
    };
    Ok((target, element_timeout(extras)?))
}

fn is_keyword(token: &str) -> bool {
    matches!(token, "timeout" | "expires" | "comment")
}

/// `timeout 30s` ends the grant in the kernel; `expires` and `comment` change nothing here.
fn element_timeout(extras: &[&str]) -> Result<Option<Duration>, Unsupported> {
    let mut timeout = None;
    let mut pairs = extras.chunks(2);
    for pair in &mut pairs {
        match pair {
            ["timeout", value] => {
                timeout = Some(parse::duration(value).ok_or_else(|| {
                    Unsupported::new(format!("has the timeout {value:?}, not a duration"))
                })?);
            }
            ["expires" | "comment", _] => {}
            other => {
                return Err(Unsupported::new(format!(
                    "has {:?} in a set element, which this import does not translate",
                    other.join(" ")
                )));
            }
        }
    }
    Ok(timeout)
}

/// `[ip|ip6] saddr %IP% [ip daddr ADDR] tcp dport (22 | { 22, 80 }) [ct state new] [counter]
/// accept`.
fn rule(tokens: &[&str]) -> Result<Grant, Unsupported> {
    let (chain, mut rest) = object_name(tokens)?;
    let mut admits = Admits::default();
    let mut knocker = false;
    let mut verdict = None;
    while let Some((&first, tail)) = rest.split_first() {
        if verdict.is_some() {
            return Err(Unsupported::new(format!("has {first:?} after its verdict")));
        }
        rest = match (first, tail) {
            ("ip" | "ip6", ["saddr", value, tail @ ..]) => {
                if !is_knocker(value) {
                    return Err(Unsupported::new(format!(
                        "matches the source {value}, not the knocker (saddr %IP%)"
                    )));
                }
                knocker = true;
                tail
            }
            ("ip" | "ip6", ["daddr", value, tail @ ..]) => {
                admits.dest = Some(address(value)?);
                tail
            }
            ("tcp" | "udp", ["dport", tail @ ..]) => {
                admits.proto = Some(proto(first)?);
                dports(tail, &mut admits.ports)?
            }
            // Restatements of a grant (a new connection), a counter, a comment.
            ("ct", ["state", _, tail @ ..]) | ("counter", tail) | ("comment", [_, tail @ ..]) => {
                tail
            }
            ("iifname" | "iif", [interface, tail @ ..]) => {
                admits.notes.push(format!(
                    "{first} {interface} was dropped: knock-nfq guards the interfaces of \
                     [daemon] interfaces"
                ));
                tail
            }
            ("accept", tail) => {
                verdict = Some(first);
                tail
            }
            _ => {
                return Err(Unsupported::new(format!(
                    "has {:?}, which this import does not translate",
                    rest.join(" ")
                )));
            }
        };
    }
    if !knocker {
        return Err(Unsupported::new(
            "does not match the knocker (saddr %IP%), so it would admit everyone",
        ));
    }
    if verdict.is_none() {
        return Err(Unsupported::new("does not accept"));
    }
    let no_port = "admits the knocker to every port (no dport); knock-nfq opens PORT/PROTO \
                   targets";
    admits.targets(&Hook::of(chain)?, GrantOp::Add, no_port)
}

/// `22` or `{ 22, 80 }`; returns what follows.
fn dports<'a, 'b>(
    tokens: &'b [&'a str],
    ports: &mut Vec<u16>,
) -> Result<&'b [&'a str], Unsupported> {
    match tokens {
        ["{", tail @ ..] => {
            let end = tail
                .iter()
                .position(|t| *t == "}")
                .ok_or_else(|| Unsupported::new("has an unclosed { in dport"))?;
            for item in tail[..end].iter().filter(|t| **t != ",") {
                ports.push(port(item)?);
            }
            Ok(&tail[end + 1..])
        }
        [value, tail @ ..] => {
            ports.push(port(value)?);
            Ok(tail)
        }
        [] => Err(Unsupported::new("has dport without a port")),
    }
}
