//! The protected services, as the queue sees them. The ruleset queues a new connection to one
//! only when its source knocked in the last seconds, right behind that knock; by the time the
//! worker reaches it the knock's grant is committed, so it is admitted if the kernel now holds
//! a grant for it, and dropped otherwise. It never reaches the engine.

use std::collections::HashSet;

use crate::config::{Door, Proto, Target};
use crate::nft::Attempt;
use crate::packet::Packet;

/// The netfilter hook a packet was queued from (`NF_INET_LOCAL_IN`, `NF_INET_FORWARD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Input,
    Forward,
    Other,
}

impl Hook {
    pub fn from_number(hook: u8) -> Hook {
        match hook {
            1 => Hook::Input,
            2 => Hook::Forward,
            _ => Hook::Other,
        }
    }
}

/// The services of this host that some door opens: the contents of the `protected` set.
#[derive(Debug, Default)]
pub struct Protected {
    local: HashSet<(Proto, u16)>,
}

impl Protected {
    pub fn new(doors: &[Door]) -> Protected {
        let local = doors
            .iter()
            .flat_map(|d| &d.targets)
            .filter_map(|target| match *target {
                Target::Local { port, proto } => Some((proto, port)),
                Target::Forward { .. } => None,
            })
            .collect();
        Protected { local }
    }

    /// Both sets of services: what a worker must treat as protected while a reload moves the
    /// kernel's set from one to the other.
    pub fn union(&self, other: &Protected) -> Protected {
        Protected {
            local: self.local.union(&other.local).copied().collect(),
        }
    }

    /// The attempt `packet` makes on a protected service, if it is one. The forward chain
    /// queues nothing else, so every forwarded packet is judged as one: a forwarded packet to an
    /// unprotected address (a reload in between) finds no grant and is dropped.
    pub fn attempt(&self, hook: Hook, packet: &Packet) -> Option<Attempt> {
        let knock = &packet.knock;
        let (source, proto, port) = (knock.source, knock.proto, knock.port);
        match hook {
            Hook::Input if self.local.contains(&(proto, port)) => Some(Attempt::Local {
                source,
                proto,
                port,
            }),
            Hook::Forward => Some(Attempt::Forward {
                source,
                destination: packet.destination,
                proto,
                port,
            }),
            Hook::Input | Hook::Other => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Knock;
    use std::net::IpAddr;

    fn packet(port: u16) -> Packet {
        let knock = Knock {
            source: IpAddr::from([192, 0, 2, 7]),
            proto: Proto::Tcp,
            port,
            tcp_flags: 0x02,
        };
        Packet {
            knock,
            destination: IpAddr::from([198, 51, 100, 10]),
        }
    }

    #[test]
    fn only_protected_ports_on_input_and_everything_forwarded_are_attempts() {
        let protected = Protected {
            local: HashSet::from([(Proto::Tcp, 22)]),
        };
        assert!(matches!(
            protected.attempt(Hook::Input, &packet(22)),
            Some(Attempt::Local { port: 22, .. })
        ));
        assert_eq!(protected.attempt(Hook::Input, &packet(7000)), None);
        assert_eq!(protected.attempt(Hook::Other, &packet(22)), None);
        assert!(matches!(
            protected.attempt(Hook::Forward, &packet(8080)),
            Some(Attempt::Forward { port: 8080, .. })
        ));
    }

    #[test]
    fn during_a_reload_the_old_and_the_new_services_are_protected() {
        let old = Protected {
            local: HashSet::from([(Proto::Tcp, 22)]),
        };
        let new = Protected {
            local: HashSet::from([(Proto::Tcp, 2222)]),
        };
        let both = old.union(&new);
        for port in [22, 2222] {
            assert!(both.attempt(Hook::Input, &packet(port)).is_some(), "{port}");
        }
    }
}
