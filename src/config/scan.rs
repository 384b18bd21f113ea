//! Whether a port scan that walks the ports in order (`nmap -r`, or any scanner going up or
//! down the port numbers) can complete a door: the warning of `knock-nfq check` and of the
//! knockd import.

use std::fmt;

use super::model::{Action, Door, KnockPort, ScanPolicy, SequenceOrigin};

/// How a scan in port order completes a door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanRisk {
    /// One knock: any scan that reaches its port.
    SingleKnock,
    /// Ports strictly increasing or decreasing on a door that is not strict: the ports a scan
    /// sends between two knocks are not knock ports, so they don't disturb the attempt.
    Monotonic(Order),
    /// A strict door whose knocks are neighbouring ports of one protocol: the scan sends
    /// nothing in between that could reset it.
    Neighbouring(Order),
    /// A TOTP door that is not strict: now and then a step's ports happen to rise or fall.
    RotatingNotStrict,
    /// A one-time line (its number) has one of the other risks.
    OneTimeLine(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Increasing,
    Decreasing,
}

impl Door {
    /// How a port scan completes this door, if one can. Close doors are left out: completing
    /// one only revokes the scanner's own grants.
    pub fn scan_risk(&self) -> Option<ScanRisk> {
        // A scan cannot forge an SPA message.
        if self.action == Action::Close || self.spa.is_some() {
            return None;
        }
        match &self.origin {
            SequenceOrigin::Fixed => sequence_risk(&self.sequence, self.scan_policy),
            SequenceOrigin::Totp(_) => (self.scan_policy == ScanPolicy::IgnoreOtherPorts)
                .then_some(ScanRisk::RotatingNotStrict),
            SequenceOrigin::OneTime(one) => one
                .lines
                .iter()
                .find(|line| sequence_risk(&line.sequence, self.scan_policy).is_some())
                .map(|line| ScanRisk::OneTimeLine(line.number)),
        }
    }
}

fn sequence_risk(sequence: &[KnockPort], policy: ScanPolicy) -> Option<ScanRisk> {
    if sequence.len() == 1 {
        return Some(ScanRisk::SingleKnock);
    }
    match policy {
        ScanPolicy::IgnoreOtherPorts => order(sequence, Steps::Any).map(ScanRisk::Monotonic),
        ScanPolicy::ResetOnOtherPorts => {
            order(sequence, Steps::Neighbours).map(ScanRisk::Neighbouring)
        }
    }
}

/// Which steps between two knocks `order` counts.
#[derive(Debug, Clone, Copy)]
enum Steps {
    Any,
    /// Only to the next port up or down, of the same protocol.
    Neighbours,
}

/// The direction every step of the sequence takes, if all counted steps go the same way.
fn order(sequence: &[KnockPort], steps: Steps) -> Option<Order> {
    let directions = sequence.windows(2).map(|pair| {
        let diff = i32::from(pair[1].port) - i32::from(pair[0].port);
        match steps {
            Steps::Any => diff.signum(),
            Steps::Neighbours if diff.abs() == 1 && pair[0].proto == pair[1].proto => diff,
            Steps::Neighbours => 0,
        }
    });
    let all = |direction| directions.clone().all(|d| d == direction);
    if all(1) {
        Some(Order::Increasing)
    } else if all(-1) {
        Some(Order::Decreasing)
    } else {
        None
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Order::Increasing => "increasing",
            Order::Decreasing => "decreasing",
        })
    }
}

/// What the door's exposure is and how to remove it, to follow `door "NAME": `.
impl fmt::Display for ScanRisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanRisk::SingleKnock => write!(
                f,
                "it has a single knock, so any port scan that reaches it opens the door; use \
                 three knocks or more, in a mixed order, with strict = true"
            ),
            ScanRisk::Monotonic(order) => write!(
                f,
                "its ports are in {order} order and it is not strict, so a port scan in {order} \
                 order opens it; knock in a mixed order (e.g. 7000, 9000, 8000) and set \
                 strict = true"
            ),
            ScanRisk::Neighbouring(order) => write!(
                f,
                "each knock is the port next to the one before, so a port scan in {order} \
                 order opens it even though it is strict; leave gaps between the ports"
            ),
            ScanRisk::RotatingNotStrict => write!(
                f,
                "it is not strict, and now and then a step's ports happen to rise or fall, so a \
                 port scan of its range in that order opens it; set strict = true"
            ),
            ScanRisk::OneTimeLine(number) => write!(
                f,
                "line {number} of its sequence file is in port order (or a single knock), so a \
                 port scan can open it; use lines of three knocks or more in a mixed order, \
                 and strict = true"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    /// The only door of a config made of `body` and the keys every door needs.
    fn door(body: &str) -> Door {
        let toml = format!("[[door]]\nname = \"d\"\nopen = [\"22/tcp\"]\n{body}\n");
        let mut config = Config::from_toml_str(&toml, Path::new("scan.toml")).expect("valid");
        config.doors.remove(0)
    }

    fn risk(body: &str) -> Option<ScanRisk> {
        door(body).scan_risk()
    }

    #[test]
    fn monotonic_ports_on_a_door_that_is_not_strict_are_a_risk() {
        assert_eq!(
            risk("sequence = [7000, 8000, 9000]"),
            Some(ScanRisk::Monotonic(Order::Increasing))
        );
        assert_eq!(
            risk(r#"sequence = ["9000:tcp", "8000:udp", "7000:tcp"]"#),
            Some(ScanRisk::Monotonic(Order::Decreasing))
        );
    }

    #[test]
    fn mixed_order_or_strict_removes_the_risk() {
        assert_eq!(risk("sequence = [7000, 9000, 8000]"), None);
        assert_eq!(risk("sequence = [7000, \"7000:udp\", 9000]"), None);
        assert_eq!(risk("sequence = [7000, 8000, 9000]\nstrict = true"), None);
        assert_eq!(risk("sequence = [7000, 7001, 7003]\nstrict = true"), None);
    }

    #[test]
    fn a_strict_door_of_neighbouring_ports_is_still_a_risk() {
        assert_eq!(
            risk("sequence = [7000, 7001, 7002]\nstrict = true"),
            Some(ScanRisk::Neighbouring(Order::Increasing))
        );
        assert_eq!(
            risk("sequence = [\"7002:udp\", \"7001:udp\"]\nstrict = true"),
            Some(ScanRisk::Neighbouring(Order::Decreasing))
        );
        // A UDP knock between TCP neighbours: a TCP scan sends 7001/tcp, which resets it.
        assert_eq!(
            risk("sequence = [7000, \"7001:udp\", 7002]\nstrict = true"),
            None
        );
    }

    #[test]
    fn a_single_knock_is_a_risk_even_when_strict() {
        assert_eq!(risk("sequence = [7000]"), Some(ScanRisk::SingleKnock));
        assert_eq!(
            risk("sequence = [7000]\nstrict = true"),
            Some(ScanRisk::SingleKnock)
        );
    }

    #[test]
    fn a_close_door_is_no_risk() {
        assert_eq!(risk("sequence = [7000, 8000]\naction = \"close\""), None);
    }
}
