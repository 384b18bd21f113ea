//! The table: every row side by side with its reference and target, as Markdown.

use std::fmt::Write;
use std::time::Duration;

use crate::Figures;
use crate::connect::percentile;
use crate::flood::{Pace, Step};
use crate::knock::{Grants, median};

/// Fails the run unless every row measured something: a row of zeros is a broken bench.
pub fn check_measured(f: &Figures) {
    assert!(
        f.kernel_only.offered > 0.0,
        "kernel-only flood: nothing received"
    );
    for step in &f.steps {
        assert!(
            step.offered > 0.0,
            "{}: nothing received",
            step.pace.label()
        );
        assert!(
            step.verdicts_per_s > 0.0,
            "{}: no verdicts",
            step.pace.label()
        );
        assert!(
            step.reached_queue > 0.0,
            "{}: nothing reached the queue",
            step.pace.label()
        );
    }
    for backlog in &f.backlogs {
        assert!(backlog.queued > 0, "backlog: nothing queued while stopped");
        assert!(
            backlog.verdicts >= backlog.queued as f64 && backlog.worker_ns > 0,
            "backlog: {backlog:?}: not drained"
        );
    }
    assert_eq!(f.kernel_connect.len(), f.size.connects);
    assert_eq!(f.queued_connect.len(), f.size.connects);
    assert!(f.first_syns.0 > 0, "knock-nfq admitted no first SYN");
    assert_eq!(f.polled.0.len(), f.size.polled);
    assert_eq!(f.polled.1.len(), f.size.polled);
    assert!(
        f.grants.0.granted > 0,
        "knock-nfq granted none of the forged sources"
    );
    assert!(
        f.grants.1.granted > 0,
        "knockd granted none of the forged sources"
    );
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

/// The highest verdict rate without queue loss, and the first step that lost packets.
fn loss_point(steps: &[Step]) -> (Option<&Step>, Option<&Step>) {
    let first_loss = steps.iter().find(|s| s.queue_drops > 0);
    let best_clean = steps
        .iter()
        .filter(|s| s.queue_drops == 0)
        .max_by(|a, b| a.verdicts_per_s.total_cmp(&b.verdicts_per_s));
    (best_clean, first_loss)
}

pub fn markdown(f: &Figures) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(out, "{} ({} run)\n", f.ruleset_mode, f.size.name);
    let _ = writeln!(out, "| figure | knock-nfq | reference | target | met |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for row in rows(f) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    let _ = writeln!(
        out,
        "\nFlood steps (hping3 SYNs from random sources at the first knock port, {} s each):\n",
        f.size.step.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| hping3 pace | offered (packets/s at wan0) | reached the queue (packets/s) | verdicts/s | queue drops | input backlog drops | daemon CPU per verdict | of which queue workers |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for s in f.steps.iter().chain(std::iter::once(&f.kernel_only)) {
        let what = match std::ptr::eq(s, &f.kernel_only) {
            true => format!("{} (kernel only, port 22)", s.pace.label()),
            false => s.pace.label(),
        };
        let _ = writeln!(
            out,
            "| {what} | {:.0} | {:.0} | {:.0} | {} | {} | {:.2} µs | {:.2} µs |",
            s.offered,
            s.reached_queue,
            s.verdicts_per_s,
            s.queue_drops,
            s.backlog_drops,
            s.cpu_us_per_verdict,
            s.worker_us_per_verdict
        );
    }
    out
}

fn rows(f: &Figures) -> Vec<Vec<String>> {
    let kernel = &f.kernel_only;
    let flood = f.steps.iter().find(|s| s.pace == Pace::Flood);
    let mut rows = Vec::new();
    if let Some(flood) = flood {
        let share = flood.verdicts_per_s / kernel.offered;
        // Like for like: both counted at wan0, where hping3's multicast sources (never queued,
        // never verdicted) are counted too.
        let generator_share = flood.offered / kernel.offered;
        let all_judged = flood.verdicts_per_s >= flood.reached_queue;
        rows.push(vec![
            "verdicts/s, hping3 `--flood` at the first knock port".into(),
            format!(
                "{:.0} ({:.0} % of the kernel-only rate; at wan0 the generator's rate was \
                 {:.0} % of its kernel-only rate, and every packet that reached the queue was \
                 judged: {}; {} lost at the queue)",
                flood.verdicts_per_s,
                100.0 * share,
                100.0 * generator_share,
                match all_judged {
                    true => "yes",
                    false => "no",
                },
                flood.queue_drops
            ),
            format!(
                "kernel only (`protected` drop rule): {:.0} packets/s",
                kernel.offered
            ),
            "≥ 90 %, no queue loss".into(),
            met(generator_share >= 0.9 && all_judged && flood.queue_drops == 0).into(),
        ]);
    }
    let (clean, lost) = loss_point(&f.steps);
    let clean = clean.map_or("loss at every step".into(), |s| {
        format!(
            "no loss up to {:.0} verdicts/s ({})",
            s.verdicts_per_s,
            s.pace.label()
        )
    });
    let lost = lost.map_or("; no loss at any step".into(), |s| {
        format!(
            "; first loss at {:.0} packets/s offered ({}): {} dropped",
            s.offered,
            s.pace.label(),
            s.queue_drops
        )
    });
    rows.push(vec![
        "loss point (stepped rates)".into(),
        clean + &lost,
        format!(
            "kernel only: {:.0} packets/s, nothing queued",
            kernel.offered
        ),
        "—".into(),
        "—".into(),
    ]);
    if let Some(fixed) = f.steps.iter().find(|s| s.pace == f.size.fixed) {
        rows.push(vec![
            format!(
                "daemon CPU per verdict at a fixed rate ({}, {:.0} verdicts/s)",
                fixed.pace.label(),
                fixed.verdicts_per_s
            ),
            match fixed.cpu_us_per_verdict > 0.0 {
                true => format!(
                    "{:.2} µs ({:.2} µs in the queue worker)",
                    fixed.cpu_us_per_verdict, fixed.worker_us_per_verdict
                ),
                false => "under one clock tick: not measured at this rate".into(),
            },
            "—".into(),
            "≤ 2 µs".into(),
            match fixed.cpu_us_per_verdict > 0.0 {
                true => met(fixed.cpu_us_per_verdict <= 2.0),
                false => "—",
            }
            .into(),
        ]);
    }
    let middle = &f.backlogs[f.backlogs.len() / 2];
    let (lowest, highest) = (&f.backlogs[0], &f.backlogs[f.backlogs.len() - 1]);
    rows.push(vec![
        format!(
            "queue worker CPU per verdict draining a backlog ({} SYNs queued while the daemon was stopped: full receives), median of {}",
            middle.queued,
            f.backlogs.len()
        ),
        format!(
            "{:.2} µs ({:.2}–{:.2}; {:.0} verdicts in {:.1} ms)",
            middle.worker_us_per_verdict(),
            lowest.worker_us_per_verdict(),
            highest.worker_us_per_verdict(),
            middle.verdicts,
            middle.drained_in.as_secs_f64() * 1e3
        ),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);
    rows.push(connect_row(f));
    let (ours, theirs) = f.first_syns;
    rows.push(vec![
        "first SYN right behind the last knock admitted".into(),
        format!("{ours} of {}", f.size.first_syns),
        format!("knockd: {theirs} of {}", f.size.knockd_first_syns),
        "≥ 99 of 100".into(),
        met(ours * 100 >= 99 * f.size.first_syns).into(),
    ]);
    let (ours, theirs) = (median(&f.polled.0), median(&f.polled.1));
    let ratio = theirs.as_secs_f64() / ours.as_secs_f64();
    rows.push(vec![
        format!(
            "knock → open, polled every 100 µs, median of {}",
            f.size.polled
        ),
        format!("{:.3} ms ({ratio:.0}× knockd)", ours.as_secs_f64() * 1e3),
        format!("knockd: {:.3} ms", theirs.as_secs_f64() * 1e3),
        "≥ 40× knockd".into(),
        met(ratio >= 40.0).into(),
    ]);
    let grants = |g: &Grants| {
        format!(
            "{:.0}/s ({} of {}; sent at {:.0} sources/s)",
            g.per_second, g.granted, f.size.grants, g.offered
        )
    };
    let (one, two) = &f.workers;
    rows.push(vec![
        format!(
            "verdicts/s, hping3 `{}` from a generator on each CPU: two workers (`queue num 0-1 fanout`, one pinned per CPU)",
            two.pace.label()
        ),
        format!(
            "{:.0} of {:.0} that reached the queue, {:.0} offered ({} lost at the queue)",
            two.verdicts_per_s, two.reached_queue, two.offered, two.queue_drops
        ),
        format!(
            "one worker: {:.0} of {:.0} that reached the queue, {:.0} offered ({} lost)",
            one.verdicts_per_s, one.reached_queue, one.offered, one.queue_drops
        ),
        "—".into(),
        format!("{:.2}× one worker", two.verdicts_per_s / one.verdicts_per_s),
    ]);
    rows.push(vec![
        "grants/s from distinct (forged) sources".into(),
        grants(&f.grants.0),
        format!("knockd: {}", grants(&f.grants.1)),
        "—".into(),
        "—".into(),
    ]);
    rows
}

fn connect_row(f: &Figures) -> Vec<String> {
    let (q, k) = (&f.queued_connect, &f.kernel_connect);
    let added = |p| us(percentile(q, p)) - us(percentile(k, p));
    vec![
        format!(
            "connect latency of a queued SYN, p50 / p99 over {}",
            q.len()
        ),
        format!(
            "{:.0} / {:.0} µs (added: {:.0} / {:.0} µs)",
            us(percentile(q, 50)),
            us(percentile(q, 99)),
            added(50),
            added(99)
        ),
        format!(
            "kernel only: {:.0} / {:.0} µs",
            us(percentile(k, 50)),
            us(percentile(k, 99))
        ),
        "added p50 ≤ 20 µs".into(),
        met(added(50) <= 20.0).into(),
    ]
}

/// CPUs, model and kernel, from /proc.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown", |m| m.trim_start_matches([' ', '\t', ':']));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Machine: {} CPUs ({model}), kernel {}",
        crate::cpus(),
        kernel.trim()
    )
}
