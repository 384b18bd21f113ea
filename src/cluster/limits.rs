//! What another gateway's record may open here: only a target that one of this gateway's own
//! open doors opens, for at most that door's `open_for`. A record written with a stolen etcd
//! credential, or by a peer running another config, opens nothing this gateway's doors could
//! not. Pure: rebuilt from the doors at start and at every reload.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::config::{Action, Door, Target};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Per target, the open doors that open it: who may use each (`from`) and for how long.
    doors: HashMap<Target, Vec<Opener>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Opener {
    from: Vec<ipnet::IpNet>,
    open_for: Duration,
}

impl Limits {
    pub fn of(doors: &[Door]) -> Limits {
        let mut by_target: HashMap<Target, Vec<Opener>> = HashMap::new();
        for door in doors.iter().filter(|d| d.action == Action::Open) {
            for &target in &door.targets {
                by_target.entry(target).or_default().push(Opener {
                    from: door.from.clone(),
                    open_for: door.open_for,
                });
            }
        }
        Limits { doors: by_target }
    }

    /// The timeout a peer's grant of `target` to `source` gets here: at most the longest
    /// `open_for` of the doors that open it and that `source` may use; `None` if there is none.
    pub fn cap(&self, source: IpAddr, target: Target, wanted: Duration) -> Option<Duration> {
        let admits = |o: &&Opener| o.from.is_empty() || o.from.iter().any(|n| n.contains(&source));
        let most = self
            .doors
            .get(&target)?
            .iter()
            .filter(admits)
            .map(|o| o.open_for)
            .max()?;
        Some(wanted.min(most))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::{Config, Proto};
    use std::path::Path;

    const S: fn(u64) -> Duration = Duration::from_secs;

    pub fn ssh() -> Target {
        Target::Local {
            port: 22,
            proto: Proto::Tcp,
        }
    }

    pub fn limits(toml: &str) -> Limits {
        Limits::of(
            &Config::from_toml_str(toml, Path::new("t.toml"))
                .expect("valid")
                .doors,
        )
    }

    /// One door opening 22/tcp for 60 s.
    pub fn ssh_for_a_minute() -> Limits {
        limits(
            "[[door]]\nname = \"ssh\"\nsequence = [7000, 8000]\nopen = [\"22/tcp\"]\nopen_for = \"60s\"\n",
        )
    }

    #[test]
    fn a_target_gets_the_longest_open_for_of_the_doors_that_open_it() {
        let limits = limits(
            "[[door]]\nname = \"a\"\nsequence = [7000]\nopen = [\"22/tcp\"]\nopen_for = \"60s\"\n\
             [[door]]\nname = \"b\"\nsequence = [8000]\nopen = [\"22/tcp\", \"10.0.0.5:80/tcp\"]\nopen_for = \"1h\"\n\
             [[door]]\nname = \"c\"\nsequence = [9000]\nopen = [\"443/tcp\"]\naction = \"close\"\n",
        );
        let anyone = IpAddr::from([203, 0, 113, 7]);
        assert_eq!(limits.cap(anyone, ssh(), S(86_400)), Some(S(3600)));
        assert_eq!(limits.cap(anyone, ssh(), S(5)), Some(S(5)));
        let web = Target::Forward {
            addr: [10, 0, 0, 5].into(),
            port: 80,
            proto: Proto::Tcp,
        };
        assert_eq!(limits.cap(anyone, web, S(86_400)), Some(S(3600)));
        // Only a close door names 443/tcp: a peer's grant of it opens nothing here.
        let https = Target::Local {
            port: 443,
            proto: Proto::Tcp,
        };
        assert_eq!(limits.cap(anyone, https, S(5)), None);
    }

    #[test]
    fn a_door_limited_by_from_caps_only_the_sources_it_admits() {
        let limits = limits(
            "[[door]]\nname = \"office\"\nsequence = [7000]\nopen = [\"22/tcp\"]\nopen_for = \"1h\"\n\
             from = [\"198.51.100.0/24\"]\n\
             [[door]]\nname = \"all\"\nsequence = [8000]\nopen = [\"22/tcp\"]\nopen_for = \"60s\"\n\
             [[door]]\nname = \"lan\"\nsequence = [9000]\nopen = [\"10.0.0.5:80/tcp\"]\n\
             from = [\"198.51.100.0/24\"]\n",
        );
        let office = IpAddr::from([198, 51, 100, 9]);
        let outsider = IpAddr::from([203, 0, 113, 66]);
        assert_eq!(limits.cap(office, ssh(), S(86_400)), Some(S(3600)));
        assert_eq!(limits.cap(outsider, ssh(), S(86_400)), Some(S(60)));
        let web = Target::Forward {
            addr: [10, 0, 0, 5].into(),
            port: 80,
            proto: Proto::Tcp,
        };
        assert_eq!(limits.cap(outsider, web, S(5)), None);
        assert!(limits.cap(office, web, S(5)).is_some());
    }
}
