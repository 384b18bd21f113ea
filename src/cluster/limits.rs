//! What another gateway's record may open here: only a target that one of this gateway's own
//! open doors opens, for at most that door's `open_for`. A record written with a stolen etcd
//! credential, or by a peer running another config, opens nothing this gateway's doors could
//! not. Pure: rebuilt from the doors at start and at every reload.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{Action, Door, Target};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    longest: HashMap<Target, Duration>,
}

impl Limits {
    pub fn of(doors: &[Door]) -> Limits {
        let mut longest: HashMap<Target, Duration> = HashMap::new();
        for door in doors.iter().filter(|d| d.action == Action::Open) {
            for &target in &door.targets {
                let entry = longest.entry(target).or_default();
                *entry = (*entry).max(door.open_for);
            }
        }
        Limits { longest }
    }

    /// The timeout a peer's grant of `target` gets here, or `None` if no door opens it.
    pub fn cap(&self, target: Target, wanted: Duration) -> Option<Duration> {
        self.longest.get(&target).map(|&most| wanted.min(most))
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
        assert_eq!(limits.cap(ssh(), S(86_400)), Some(S(3600)));
        assert_eq!(limits.cap(ssh(), S(5)), Some(S(5)));
        let web = Target::Forward {
            addr: [10, 0, 0, 5].into(),
            port: 80,
            proto: Proto::Tcp,
        };
        assert_eq!(limits.cap(web, S(86_400)), Some(S(3600)));
        // Only a close door names 443/tcp: a peer's grant of it opens nothing here.
        let https = Target::Local {
            port: 443,
            proto: Proto::Tcp,
        };
        assert_eq!(limits.cap(https, S(5)), None);
    }
}
