//! What completing a door does, compiled once per configuration: the engine hands it out with
//! each [`Grant`](super::Grant), so the dataplane carries it out without looking up the config.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::model::{Action, Door, OnceUse, SequenceOrigin, Target};

/// A door's grant: which targets it opens (or revokes) for a source, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSpec {
    /// The door's name, for logs and metric labels.
    pub door: String,
    /// How many knocks complete the door, for the log line.
    pub knocks: usize,
    pub action: Action,
    /// The kernel element timeout of an open grant.
    pub open_for: Duration,
    /// Every target, as configured.
    pub targets: Vec<Target>,
    /// The targets an IPv4 source can reach: local ones and IPv4 LAN hosts.
    targets_v4: Vec<Target>,
    /// The targets an IPv6 source can reach (no NAT64: IPv4 LAN hosts are not among them).
    targets_v6: Vec<Target>,
    /// The TOTP step or one-time line the grant uses up, and the door's origin it is from.
    pub once: Option<OnceUse>,
    pub origin: SequenceOrigin,
}

impl GrantSpec {
    pub fn of(door: &Door) -> GrantSpec {
        let reachable = |v4: bool| {
            door.targets
                .iter()
                .copied()
                .filter(|target| match target {
                    Target::Local { .. } => true,
                    Target::Forward { addr, .. } => addr.is_ipv4() == v4,
                })
                .collect()
        };
        GrantSpec {
            door: door.name.clone(),
            knocks: door.sequence.len(),
            action: door.action,
            open_for: door.open_for,
            targets: door.targets.clone(),
            targets_v4: reachable(true),
            targets_v6: reachable(false),
            once: door.once,
            origin: door.origin.clone(),
        }
    }

    /// The same grant for only the targets `keep` selects (an SPA message asking for fewer).
    pub fn narrowed(&self, keep: impl Fn(&Target) -> bool) -> GrantSpec {
        let only = |targets: &[Target]| targets.iter().copied().filter(|t| keep(t)).collect();
        GrantSpec {
            door: self.door.clone(),
            knocks: self.knocks,
            action: self.action,
            open_for: self.open_for,
            targets: only(&self.targets),
            targets_v4: only(&self.targets_v4),
            targets_v6: only(&self.targets_v6),
            once: self.once,
            origin: self.origin.clone(),
        }
    }

    /// The targets `source`'s address family can reach; empty when the grant opens nothing.
    pub fn targets_for(&self, source: IpAddr) -> &[Target] {
        match source {
            IpAddr::V4(_) => &self.targets_v4,
            IpAddr::V6(_) => &self.targets_v6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Proto;

    #[test]
    fn each_family_reaches_local_targets_and_lan_hosts_of_its_own_family() {
        let local = Target::Local {
            port: 22,
            proto: Proto::Tcp,
        };
        let lan = |addr: &str| Target::Forward {
            addr: addr.parse().unwrap(),
            port: 80,
            proto: Proto::Tcp,
        };
        let door = Door {
            name: "ssh".into(),
            sequence: Vec::new(),
            seq_timeout: Duration::from_secs(5),
            tcp_flags: None,
            scan_policy: Default::default(),
            targets: vec![local, lan("198.51.100.10"), lan("2001:db8:2::10")],
            open_for: Duration::from_secs(30),
            action: Action::Open,
            max_grants_per_second: 10,
            origin: Default::default(),
            once: None,
            from: Vec::new(),
            interfaces: Vec::new(),
            spa: None,
        };
        let spec = GrantSpec::of(&door);
        let v4: IpAddr = "192.0.2.2".parse().unwrap();
        let v6: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(spec.targets_for(v4), [local, lan("198.51.100.10")]);
        assert_eq!(spec.targets_for(v6), [local, lan("2001:db8:2::10")]);
    }
}
