//! A warm engine allocates nothing per packet: counted by a global allocator wrapping `System`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use knock_nfq::config::model::{
    Action, Door, KnockPort, Proto, ScanPolicy, Target, TcpFlags, tcp_flag,
};
use knock_nfq::engine::{Engine, Knock};

/// Counts allocations made by threads that opted in (the test harness allocates on its own).
struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the counting touches only an atomic and a const thread-local (no allocation).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded contract: `layout` has non-zero size, as `alloc` requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded contract, as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded contract: `ptr` came from this allocator (hence `System`) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract: `ptr` came from this allocator (hence `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn door(name: &str, ports: &[u16], action: Action) -> Door {
    Door {
        name: name.to_owned(),
        sequence: ports
            .iter()
            .map(|&port| KnockPort {
                port,
                proto: Proto::Tcp,
            })
            .collect(),
        seq_timeout: Duration::from_secs(5),
        tcp_flags: None,
        scan_policy: ScanPolicy::IgnoreOtherPorts,
        targets: vec![Target::Local {
            port: 22,
            proto: Proto::Tcp,
        }],
        open_for: Duration::from_secs(30),
        action,
        // No grant refused: these measure the engine, not its rate limit.
        max_grants_per_second: u32::MAX,
        origin: Default::default(),
        once: None,
        from: Vec::new(),
        interfaces: Vec::new(),
        spa: None,
    }
}

fn doors() -> Vec<Door> {
    let mut strict = door("strict", &[6000, 6001, 6002], Action::Open);
    strict.scan_policy = ScanPolicy::ResetOnOtherPorts;
    strict.tcp_flags = Some(TcpFlags {
        set: tcp_flag::SYN,
        clear: tcp_flag::ACK,
    });
    vec![
        door("ssh", &[7000, 8000, 9000], Action::Open),
        door("web", &[7000, 8001], Action::Open),
        door("close", &[9000, 8000, 7000], Action::Close),
        door("single", &[5000], Action::Open),
        strict,
    ]
}

/// Deterministic mixed traffic: knocks at every stage from a few thousand IPv4 and IPv6
/// sources (more than the table holds), wrong knocks, scans, flag mismatches, time passing.
struct Traffic {
    state: u64,
    now: Instant,
}

impl Traffic {
    fn next_random(&mut self) -> u64 {
        // xorshift64
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn next(&mut self) -> Knock {
        const PORTS: [u16; 12] = [
            7000, 7000, 8000, 9000, 8001, 6000, 6001, 6002, 5000, 22, 443, 7000,
        ];
        let r = self.next_random();
        self.now += Duration::from_micros(r % 1_000);
        let id = u32::try_from((r >> 8) % 6_000).expect("small");
        let source = if id % 3 == 0 {
            IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(id)))
        } else {
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | id))
        };
        let port = PORTS[usize::try_from((r >> 24) % 12).expect("small")];
        let (proto, tcp_flags) = match (r >> 32) % 10 {
            0 => (Proto::Udp, 0),
            1 => (Proto::Tcp, tcp_flag::SYN | tcp_flag::ACK),
            _ => (Proto::Tcp, tcp_flag::SYN),
        };
        Knock {
            source,
            proto,
            port,
            tcp_flags,
        }
    }
}

#[test]
fn a_warm_engine_allocates_nothing_per_packet() {
    let mut engine = Engine::new(doors(), 1_000);
    let mut traffic = Traffic {
        state: 0x9e37_79b9_7f4a_7c15,
        now: Instant::now(),
    };
    let mut grants = 0;
    let mut peak = 0;
    for _ in 0..200_000 {
        let knock = traffic.next();
        engine.on_packet(traffic.now, &knock);
        peak = peak.max(engine.tracked_sources());
    }
    assert_eq!(peak, 1_000, "warm: the table has been full");

    COUNTING.with(|counting| counting.set(true));
    for _ in 0..100_000 {
        let knock = traffic.next();
        grants += engine.on_packet(traffic.now, &knock).grants.len();
    }
    COUNTING.with(|counting| counting.set(false));

    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0);
    assert!(grants > 0, "the mix completes doors");
}
