//! The pure scan detector: which sources probed `distinct_ports` distinct ports within
//! `within`. Time is passed in; memory is bounded per source (fewer than `distinct_ports`
//! ports are ever kept for one) and in total (`capacity` sources, the one heard from least
//! recently making room).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::{KnockPort, ScanBan};

/// What one probe did to its source's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Still below the threshold: this many distinct ports within the window.
    Counting(usize),
    /// The threshold was reached: the source is to be banned. Its count starts afresh, after
    /// a quiet `within` in which its probes are ignored: reports of probes it sent before the
    /// ban took effect still arrive for a moment, and must not detect it again.
    Detected,
    /// Within the quiet time after a detection.
    Quiet,
}

/// Whether room for a new source cost another source its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    Free,
    Evicted,
}

#[derive(Debug)]
struct Probes {
    last: Instant,
    /// Set by a detection: probes before this instant are ignored.
    quiet_until: Option<Instant>,
    /// Distinct ports, each with when it was last probed; in probe order, oldest first.
    ports: Vec<(KnockPort, Instant)>,
}

#[derive(Debug)]
pub struct Detector {
    capacity: usize,
    sources: HashMap<IpAddr, Probes>,
    /// (last probe, source): the least recently heard source first.
    by_last: BTreeSet<(Instant, IpAddr)>,
}

impl Detector {
    /// `capacity` below 1 is taken as 1.
    pub fn new(capacity: usize) -> Detector {
        Detector {
            capacity: capacity.max(1),
            sources: HashMap::new(),
            by_last: BTreeSet::new(),
        }
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Counts `source`'s probe of `port` at `now` under `limits` (passed each time, so that a
    /// reload applies at once). Ports probed more than `within` ago no longer count.
    pub fn observe(
        &mut self,
        now: Instant,
        (source, port): (IpAddr, KnockPort),
        limits: ScanBan,
    ) -> (Observation, Room) {
        let room = match self.sources.contains_key(&source) {
            true => Room::Free,
            false => self.make_room(now, limits.within),
        };
        let probes = self.sources.entry(source).or_insert(Probes {
            last: now,
            quiet_until: None,
            ports: Vec::new(),
        });
        self.by_last.remove(&(probes.last, source));
        probes.last = probes.last.max(now);
        self.by_last.insert((probes.last, source));
        match probes.quiet_until {
            Some(until) if now < until => return (Observation::Quiet, room),
            Some(_) => probes.quiet_until = None,
            None => {}
        }
        let since = now.checked_sub(limits.within);
        probes
            .ports
            .retain(|&(p, seen)| p != port && since.is_none_or(|since| seen > since));
        probes.ports.push((port, now));
        let count = probes.ports.len();
        if count >= usize::from(limits.distinct_ports) {
            probes.ports.clear();
            probes.quiet_until = Some(now + limits.within);
            return (Observation::Detected, room);
        }
        (Observation::Counting(count), room)
    }

    /// Drops sources silent for longer than `within`; if none was, the least recent one.
    /// Each source is dropped once, so the sweep costs no more than the inserts did.
    fn make_room(&mut self, now: Instant, within: Duration) -> Room {
        if self.sources.len() < self.capacity {
            return Room::Free;
        }
        let mut room = Room::Evicted;
        while let Some(&(last, source)) = self.by_last.first() {
            let stale = now.saturating_duration_since(last) >= within;
            if !stale && room == Room::Free {
                break;
            }
            self.by_last.pop_first();
            self.sources.remove(&source);
            if !stale {
                break;
            }
            room = Room::Free;
        }
        room
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Proto;
    use proptest::prelude::*;

    const LIMITS: ScanBan = ScanBan {
        distinct_ports: 4,
        within: Duration::from_secs(5),
        ban_for: Duration::from_secs(600),
    };

    fn tcp(port: u16) -> KnockPort {
        KnockPort {
            port,
            proto: Proto::Tcp,
        }
    }

    fn source(n: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, n])
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_threshold_of_distinct_ports_detects_once_then_stays_quiet_for_the_window() {
        let (mut d, t0) = (Detector::new(16), Instant::now());
        let seen: Vec<Observation> = (1..=4)
            .map(|p| {
                d.observe(at(t0, u64::from(p)), (source(1), tcp(p)), LIMITS)
                    .0
            })
            .collect();
        assert_eq!(
            seen,
            [
                Observation::Counting(1),
                Observation::Counting(2),
                Observation::Counting(3),
                Observation::Detected
            ]
        );
        // Late reports of probes sent before the ban: ignored for `within`.
        for p in 5..40 {
            let late = d
                .observe(at(t0, u64::from(p)), (source(1), tcp(p)), LIMITS)
                .0;
            assert_eq!(late, Observation::Quiet);
        }
        let again = d.observe(at(t0, 4 + 5000), (source(1), tcp(5)), LIMITS).0;
        assert_eq!(again, Observation::Counting(1));
    }

    #[test]
    fn repeats_and_other_sources_do_not_count() {
        let (mut d, t0) = (Detector::new(16), Instant::now());
        for i in 0..20 {
            let port = tcp(u16::from(i % 3 == 0) + 80);
            let seen = d.observe(at(t0, i), (source(1), port), LIMITS).0;
            assert!(matches!(seen, Observation::Counting(1 | 2)), "{seen:?}");
            d.observe(
                at(t0, i),
                (source(u8::try_from(i).unwrap() + 2), tcp(443)),
                LIMITS,
            );
        }
        // The same number over UDP is another port.
        let udp = KnockPort {
            port: 80,
            proto: Proto::Udp,
        };
        let seen = d.observe(at(t0, 30), (source(1), udp), LIMITS).0;
        assert_eq!(seen, Observation::Counting(3));
    }

    #[test]
    fn ports_older_than_the_window_no_longer_count() {
        let (mut d, t0) = (Detector::new(16), Instant::now());
        d.observe(t0, (source(1), tcp(1)), LIMITS);
        d.observe(at(t0, 1000), (source(1), tcp(2)), LIMITS);
        d.observe(at(t0, 2000), (source(1), tcp(3)), LIMITS);
        // 5 s after the first: port 1 is out (the window is open at its far end).
        let seen = d.observe(at(t0, 5000), (source(1), tcp(4)), LIMITS).0;
        assert_eq!(seen, Observation::Counting(3));
        // A port probed again is counted from its latest probe.
        d.observe(at(t0, 5500), (source(1), tcp(2)), LIMITS);
        // At 7.5 s port 3 (2 s) is out too: 4, 2 and 5 count.
        let seen = d.observe(at(t0, 7500), (source(1), tcp(5)), LIMITS).0;
        assert_eq!(seen, Observation::Counting(3));
        let seen = d.observe(at(t0, 7600), (source(1), tcp(6)), LIMITS).0;
        assert_eq!(seen, Observation::Detected);
    }

    #[test]
    fn a_full_detector_drops_stale_sources_first_then_the_least_recent() {
        let (mut d, t0) = (Detector::new(2), Instant::now());
        d.observe(t0, (source(1), tcp(1)), LIMITS);
        d.observe(at(t0, 100), (source(2), tcp(1)), LIMITS);
        d.observe(at(t0, 200), (source(1), tcp(2)), LIMITS);
        // Both are recent: the least recently heard (2) makes room.
        let room = d.observe(at(t0, 300), (source(3), tcp(1)), LIMITS).1;
        assert_eq!((room, d.tracked()), (Room::Evicted, 2));
        assert_eq!(
            d.observe(at(t0, 400), (source(1), tcp(3)), LIMITS).0,
            Observation::Counting(3)
        );
        // Later both are stale: room without evicting a live count.
        let room = d.observe(at(t0, 10_000), (source(4), tcp(1)), LIMITS).1;
        assert_eq!((room, d.tracked()), (Room::Free, 1));
    }

    /// A source's probes since its last detection or eviction, and the end of its quiet time.
    type ModelSource = (Vec<(u16, Instant)>, Option<Instant>);

    proptest! {
        #[test]
        fn counts_match_a_naive_model_and_memory_stays_bounded(
            probes in prop::collection::vec((0u8..6, 0u16..12, 0u64..400), 1..300),
            capacity in 1usize..8,
        ) {
            let (mut d, t0) = (Detector::new(capacity), Instant::now());
            // The model: each source's probes since its last detection or eviction, and the
            // end of its quiet time.
            let mut history: HashMap<IpAddr, ModelSource> = HashMap::new();
            let mut now = t0;
            for (src, port, step) in probes {
                now += Duration::from_millis(step * 20);
                let seen = d.observe(now, (source(src), tcp(port)), LIMITS).0;
                let (h, quiet) = history.entry(source(src)).or_default();
                if quiet.is_some_and(|until| now < until) {
                    prop_assert_eq!(seen, Observation::Quiet);
                } else {
                    h.push((port, now));
                    let mut distinct: Vec<u16> = h
                        .iter()
                        .filter(|(_, t)| now.duration_since(*t) < LIMITS.within)
                        .map(|(p, _)| *p)
                        .collect();
                    distinct.sort_unstable();
                    distinct.dedup();
                    match seen {
                        Observation::Detected => {
                            prop_assert_eq!(distinct.len(), usize::from(LIMITS.distinct_ports));
                            h.clear();
                            *quiet = Some(now + LIMITS.within);
                        }
                        Observation::Counting(n) => prop_assert_eq!(n, distinct.len()),
                        Observation::Quiet => prop_assert!(false, "quiet without a detection"),
                    }
                }
                // Evicted sources start afresh.
                history.retain(|s, _| d.sources.contains_key(s));
                prop_assert!(d.tracked() <= capacity);
                prop_assert_eq!(d.by_last.len(), d.tracked());
                for probes in d.sources.values() {
                    prop_assert!(probes.ports.len() < usize::from(LIMITS.distinct_ports));
                }
            }
        }
    }
}
