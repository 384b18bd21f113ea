//! One line per door for `knock-nfq check`.

use std::fmt::Write;

use super::model::{Action, Door, ScanPolicy};

impl Door {
    /// What the door does, in the config's own syntax, e.g.
    /// `ssh: 7000:tcp 8000:tcp 9000:udp within 15s, flags syn,!ack -> open 22/tcp for 30s`.
    pub fn summary(&self) -> String {
        let mut line = format!("{}:", self.name);
        for knock in &self.sequence {
            let _ = write!(line, " {knock}");
        }
        let _ = write!(
            line,
            " within {}",
            humantime::format_duration(self.seq_timeout)
        );
        if let Some(flags) = self.tcp_flags {
            let _ = write!(line, ", flags {flags}");
        }
        if self.scan_policy == ScanPolicy::ResetOnOtherPorts {
            line.push_str(", strict");
        }
        let targets: Vec<String> = self.targets.iter().map(ToString::to_string).collect();
        let _ = write!(line, " -> {} {}", self.action.name(), targets.join(", "));
        if self.action == Action::Open {
            let _ = write!(line, " for {}", humantime::format_duration(self.open_for));
        }
        line
    }
}
