//! Engine cost per packet at 1 k, 100 k and 1 M tracked sources, and heap bytes per tracked
//! source (a counting global allocator). Run: `cargo bench --bench engine`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use knock_nfq::config::model::{Action, Door, KnockPort, Proto, ScanPolicy, Target, tcp_flag};
use knock_nfq::engine::{Engine, Knock};

/// Live heap bytes.
struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees hold; the bookkeeping is one atomic add or subtract.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract: `layout` has non-zero size, as `alloc` requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract, as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract: `ptr` came from this allocator (hence `System`) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract: `ptr` came from this allocator (hence `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

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
        seq_timeout: Duration::from_secs(10),
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

/// Two doors share the first port, so most attempts track two doors.
fn doors() -> Vec<Door> {
    vec![
        door("ssh", &[7000, 8000, 9000], Action::Open),
        door("web", &[7000, 8001], Action::Open),
        door("close", &[9000, 8000, 7000], Action::Close),
    ]
}

/// What the measured packets are.
#[derive(Debug, Clone, Copy)]
enum Traffic {
    /// 60 % first knocks from new sources (each evicting the oldest attempt, as the table is
    /// full), 20 % second and 10 % third knocks from tracked sources, 10 % other ports.
    Mixed,
    /// Only first knocks from new sources: a spoofed-source flood of the first knock port.
    Flood,
}

/// Packets from a gateway's many sources; every eighth source is IPv6.
struct Mix {
    traffic: Traffic,
    state: u64,
    next_source: u32,
    tracked: u32,
    now: Instant,
}

impl Mix {
    fn new(tracked: usize, traffic: Traffic) -> Mix {
        let tracked = u32::try_from(tracked).expect("bench sizes fit u32");
        Mix {
            traffic,
            state: 0x9e37_79b9_7f4a_7c15,
            next_source: 0,
            tracked,
            now: Instant::now(),
        }
    }

    fn random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn source(id: u32) -> IpAddr {
        if id % 8 == 7 {
            IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(id)))
        } else {
            IpAddr::V4(Ipv4Addr::from(id))
        }
    }

    fn first_knock(&mut self) -> Knock {
        let id = self.next_source;
        self.next_source = self.next_source.wrapping_add(1);
        syn(Self::source(id), 7000)
    }

    fn next(&mut self) -> Knock {
        let r = self.random();
        self.now += Duration::from_micros(1);
        let recent = |r: u64, mix: &Mix| {
            let back = u32::try_from((r >> 8) % u64::from(mix.tracked)).expect("below tracked");
            Self::source(mix.next_source.wrapping_sub(1).wrapping_sub(back))
        };
        if let Traffic::Flood = self.traffic {
            return self.first_knock();
        }
        match r % 100 {
            0..60 => self.first_knock(),
            60..80 => syn(recent(r, self), 8000),
            80..90 => syn(recent(r, self), 9000),
            _ => syn(recent(r, self), 443),
        }
    }
}

fn syn(source: IpAddr, port: u16) -> Knock {
    Knock {
        source,
        proto: Proto::Tcp,
        port,
        tcp_flags: tcp_flag::SYN,
    }
}

/// An engine bounded at `tracked` sources, filled with that many first knocks.
fn warm_engine(tracked: usize, traffic: Traffic) -> (Engine, Mix) {
    let mut engine = Engine::new(doors(), tracked);
    let mut mix = Mix::new(tracked, traffic);
    for _ in 0..tracked {
        let knock = mix.first_knock();
        engine.on_packet(mix.now, &knock);
    }
    assert_eq!(engine.tracked_sources(), tracked);
    (engine, mix)
}

fn report_memory() {
    println!("engine heap bytes per tracked source (target <= 100):");
    for tracked in SIZES {
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let (mut engine, mut mix) = warm_engine(tracked, Traffic::Mixed);
        let filled = LIVE_BYTES.load(Ordering::Relaxed) - before;
        for _ in 0..2 * tracked {
            let knock = mix.next();
            engine.on_packet(mix.now, &knock);
        }
        let churned = LIVE_BYTES.load(Ordering::Relaxed) - before;
        let sources = engine.tracked_sources();
        #[allow(clippy::cast_precision_loss)] // byte counts far below 2^52
        let per_source = |bytes: usize, sources: usize| bytes as f64 / sources as f64;
        println!(
            "  {tracked:>9} sources: {:6.1} B after filling, {:6.1} B after {} packets of churn ({sources} tracked)",
            per_source(filled, tracked),
            per_source(churned, sources),
            2 * tracked,
        );
    }
}

fn bench_on_packet(c: &mut Criterion, traffic: Traffic, name: &str) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    for tracked in SIZES {
        let (mut engine, mut mix) = warm_engine(tracked, traffic);
        group.bench_function(BenchmarkId::new("tracked", tracked), |b| {
            b.iter(|| {
                let knock = mix.next();
                black_box(engine.on_packet(mix.now, &knock).verdict)
            });
        });
    }
    group.finish();
}

/// The machine's latency for one dependent random read from 128 MiB (4 KiB pages): the floor
/// for any packet whose state is not in cache.
fn bench_memory_latency(c: &mut Criterion) {
    const LINES: usize = 128 << 20 >> 6;
    const WORDS_PER_LINE: usize = 8;
    let mut mix = Mix::new(1, Traffic::Mixed);
    // A random cyclic order of cache lines (Sattolo's shuffle), chased one line at a time.
    let mut order: Vec<usize> = (0..LINES).collect();
    for i in (1..LINES).rev() {
        let j = usize::try_from(mix.random() % u64::try_from(i).expect("fits")).expect("fits");
        order.swap(i, j);
    }
    let mut next = vec![0usize; LINES * WORDS_PER_LINE];
    for (i, &line) in order.iter().enumerate() {
        next[line * WORDS_PER_LINE] = order[(i + 1) % LINES] * WORDS_PER_LINE;
    }
    let mut at = 0;
    c.bench_function("dependent_random_read_128MiB", |b| {
        b.iter(|| {
            at = next[at];
            black_box(at)
        });
    });
}

/// What the packet mix costs without the engine, to subtract.
fn bench_overheads(c: &mut Criterion) {
    let mut mix = Mix::new(1_000, Traffic::Mixed);
    c.bench_function("mix_generation", |b| b.iter(|| black_box(mix.next())));
    let hasher = RandomState::new();
    let mut key = 0u128;
    c.bench_function("source_key_siphash13", |b| {
        b.iter(|| {
            key = key.wrapping_add(0x0001_0000_0000_0001);
            black_box(hasher.hash_one(black_box(key)))
        });
    });
}

fn main() {
    report_memory();
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_on_packet(&mut criterion, Traffic::Mixed, "on_packet");
    bench_on_packet(&mut criterion, Traffic::Flood, "on_packet_flood");
    bench_overheads(&mut criterion);
    bench_memory_latency(&mut criterion);
    criterion.final_summary();
}
