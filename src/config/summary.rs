//! One line per door for `knock-nfq check`.

use humantime::format_duration;

use super::model::{Action, Door, GrantAddress, ScanPolicy, SequenceOrigin};

impl Door {
    /// What the door does, in the config's own syntax, e.g.
    /// `ssh: 7000:tcp 8000:tcp 9000:udp within 15s, flags syn,!ack -> open 22/tcp for 30s`.
    pub fn summary(&self) -> String {
        let knocks: Vec<String> = self.sequence.iter().map(ToString::to_string).collect();
        let mut line = match &self.spa {
            // The key is never shown: only the file it is read from.
            Some(spa) => format!(
                "{}: SPA on {}/udp, key {}, max age {}{}",
                self.name,
                spa.port,
                spa.key_file.display(),
                format_duration(spa.max_age),
                match spa.grant_address {
                    GrantAddress::Sender => "",
                    GrantAddress::NamedOrSender => ", may name the address to grant",
                }
            ),
            None => format!(
                "{}: {} within {}",
                self.name,
                match &self.origin {
                    SequenceOrigin::Fixed => knocks.join(" "),
                    // The secret is never shown: only the file it is read from.
                    SequenceOrigin::Totp(t) => format!(
                        "TOTP ({} tcp ports of {}-{} every {}, ±{} steps, secret {})",
                        t.length,
                        t.ports.0,
                        t.ports.1,
                        format_duration(t.step),
                        t.skew,
                        t.secret_file.display()
                    ),
                    SequenceOrigin::OneTime(one) => format!(
                        "one-time sequences from {} ({} unused)",
                        one.file.display(),
                        one.lines.len()
                    ),
                },
                format_duration(self.seq_timeout)
            ),
        };
        if let Some(flags) = self.tcp_flags {
            line.push_str(&format!(", flags {flags}"));
        }
        if self.scan_policy == ScanPolicy::ResetOnOtherPorts {
            line.push_str(", strict");
        }
        if !self.interfaces.is_empty() {
            line.push_str(&format!(", on {}", self.interfaces.join(" ")));
        }
        if !self.from.is_empty() {
            let from: Vec<String> = self.from.iter().map(ToString::to_string).collect();
            line.push_str(&format!(", from {}", from.join(" ")));
        }
        let targets: Vec<String> = self.targets.iter().map(ToString::to_string).collect();
        line.push_str(&format!(
            " -> {} {}",
            self.action.name(),
            targets.join(", ")
        ));
        // A close door revokes; its grant lifetime means nothing.
        if self.action == Action::Open {
            line.push_str(&format!(" for {}", format_duration(self.open_for)));
        }
        line
    }
}

impl super::model::Cluster {
    /// One line for `knock-nfq check`, e.g. `cluster: etcd https://10.0.0.5:2379 as gw1 under
    /// /knock-nfq/, TLS (CA /etc/…/ca.pem, client cert /etc/…/gw1.pem)`. Key contents never.
    pub fn summary(&self) -> String {
        let tls = match &self.tls {
            None => "no TLS".to_owned(),
            Some(tls) => {
                let mut parts = Vec::new();
                if let Some(ca) = &tls.ca {
                    parts.push(format!("CA {}", ca.path.display()));
                }
                if let Some((cert, key)) = &tls.identity {
                    parts.push(format!(
                        "client cert {}, key {}",
                        cert.path.display(),
                        key.path.display()
                    ));
                }
                format!("TLS ({})", parts.join(", "))
            }
        };
        format!(
            "cluster: etcd {} as {} under {}, {tls}",
            self.endpoints.join(" "),
            self.node,
            self.prefix
        )
    }
}
