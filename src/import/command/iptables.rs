//! `iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT` and its relatives (`-I`, `-D`,
//! `ip6tables`, `-m multiport --dports`, FORWARD with `-d`).

use super::{Admits, Grant, GrantOp, Hook, Unsupported, address, is_knocker, port, proto};

/// Match modules that only restate what a grant is (a new TCP/UDP connection).
const HARMLESS_MATCHES: &[&str] = &["tcp", "udp", "state", "conntrack", "multiport", "comment"];

#[derive(Debug, Default)]
struct Rule<'a> {
    op: Option<(GrantOp, &'a str)>,
    source: Option<&'a str>,
    jump: Option<&'a str>,
    admits: Admits,
}

pub fn grant(args: &[String]) -> Result<Grant, Unsupported> {
    let mut rule = Rule::default();
    let mut args = args.iter().map(String::as_str);
    while let Some(option) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| Unsupported::new(format!("has {option} without a value")))
        };
        match option {
            "-A" | "--append" | "-I" | "--insert" => rule.op = Some((GrantOp::Add, value()?)),
            "-D" | "--delete" => rule.op = Some((GrantOp::Delete, value()?)),
            "-t" | "--table" => table(value()?)?,
            "-s" | "--source" | "--src" => rule.source = Some(value()?),
            "-d" | "--destination" | "--dst" => rule.admits.dest = Some(address(value()?)?),
            "-p" | "--protocol" => rule.admits.proto = Some(proto(value()?)?),
            "--dport" | "--destination-port" => rule.admits.ports.push(port(value()?)?),
            "--dports" | "--destination-ports" => {
                for item in value()?.split(',') {
                    rule.admits.ports.push(port(item)?);
                }
            }
            "-m" | "--match" => harmless_match(value()?)?,
            "--state" | "--ctstate" | "--comment" => drop(value()?),
            "-j" | "--jump" => rule.jump = Some(value()?),
            "-i" | "--in-interface" => {
                let interface = value()?;
                rule.admits.notes.push(format!(
                    "-i {interface} was dropped: knock-nfq guards the interfaces of [daemon] \
                     interfaces"
                ));
            }
            "--syn" | "-w" | "--wait" => {}
            // `-I INPUT 1` and `-w 5`: a rule position or a wait, nothing to translate.
            number if number.bytes().all(|b| b.is_ascii_digit()) => {}
            other => {
                return Err(Unsupported::new(format!(
                    "has {other:?}, which this import does not translate"
                )));
            }
        }
    }
    rule.finish()
}

impl Rule<'_> {
    fn finish(self) -> Result<Grant, Unsupported> {
        let Some((op, chain)) = self.op else {
            return Err(Unsupported::new(
                "neither adds (-A, -I) nor deletes (-D) a rule",
            ));
        };
        match self.source {
            Some(source) if is_knocker(source) => {}
            Some(source) => {
                return Err(Unsupported::new(format!(
                    "matches the source {source}, not the knocker (-s %IP%)"
                )));
            }
            None => {
                return Err(Unsupported::new(
                    "does not match the knocker (-s %IP%), so it would admit everyone",
                ));
            }
        }
        match self.jump {
            Some(jump) if jump.eq_ignore_ascii_case("ACCEPT") => {}
            other => {
                return Err(Unsupported::new(format!(
                    "jumps to {}, not ACCEPT",
                    other.unwrap_or("nothing")
                )));
            }
        }
        let no_port = "admits the knocker to every port (no --dport); knock-nfq opens \
                       PORT/PROTO targets";
        self.admits.targets(&Hook::of(chain)?, op, no_port)
    }
}

fn table(name: &str) -> Result<(), Unsupported> {
    if name == "filter" {
        Ok(())
    } else {
        Err(Unsupported::new(format!(
            "changes the {name} table, not filter"
        )))
    }
}

fn harmless_match(module: &str) -> Result<(), Unsupported> {
    if HARMLESS_MATCHES.contains(&module) {
        Ok(())
    } else {
        Err(Unsupported::new(format!(
            "uses the match module {module}, which this import does not translate"
        )))
    }
}
