//! Many seeds with faults, determinism, and replay of one seed.

use std::time::Instant;
use wharf_sim::{Config, Report, Sim};

/// Seeds per chunk; the chunks run as separate tests so the harness
/// spreads them over the cores.
const CHUNK: u64 = 50;

fn run_chunk(chunk: u64) -> Vec<Report> {
    let start = Instant::now();
    let reports: Vec<Report> = (chunk * CHUNK..(chunk + 1) * CHUNK)
        .map(|seed| Sim::new(seed, Config::default()).run())
        .collect();
    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    eprintln!(
        "seeds {}..{}: {:?}, {} steps, {} tasks started, {} hosts lost, {} disconnects, {} drains, {} deploys ({} broken), {} rollbacks, {} plans discarded, {} at rest (checked), {} services deleted, max settle {} ms",
        chunk * CHUNK,
        (chunk + 1) * CHUNK,
        start.elapsed(),
        sum(|r| r.steps),
        sum(|r| r.tasks_started),
        sum(|r| r.hosts_lost),
        sum(|r| r.disconnects),
        sum(|r| r.drains),
        sum(|r| r.deploys),
        sum(|r| r.broken_deploys),
        sum(|r| r.rollbacks),
        sum(|r| r.plans_discarded),
        sum(|r| r.rests),
        sum(|r| r.deletes),
        reports.iter().map(|r| r.settle_ms).max().unwrap_or(0),
    );
    reports
}

#[test]
fn seeds_0_to_49() {
    run_chunk(0);
}

#[test]
fn seeds_50_to_99() {
    run_chunk(1);
}

#[test]
fn seeds_100_to_149() {
    run_chunk(2);
}

#[test]
fn seeds_150_to_199() {
    let reports = run_chunk(3);
    // The faults the runs are meant to exercise did happen.
    assert!(reports.iter().any(|r| r.rollbacks > 0));
    assert!(reports.iter().any(|r| r.deletes > 0));
    assert!(reports.iter().all(|r| r.hosts_lost + r.disconnects > 0));
    assert!(reports.iter().all(|r| r.rests > 0));
}

/// A few big clusters (the scheduler's DAEMON pass is quadratic in
/// instances, so these cost seconds each in debug builds).
#[test]
fn large_clusters() {
    let start = Instant::now();
    for seed in 1_000..1_002 {
        let r = Sim::new(
            seed,
            Config {
                hosts: (400, 500),
                ..Config::default()
            },
        )
        .run();
        assert!(r.hosts >= 400);
    }
    eprintln!("2 seeds on 400-500 hosts: {:?}", start.elapsed());
}

#[test]
fn same_seed_same_trace() {
    let cfg = Config {
        keep_trace: true,
        ..Config::default()
    };
    let a = Sim::new(42, cfg.clone()).run();
    let b = Sim::new(42, cfg).run();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a, b);
    let c = Sim::new(43, Config::default()).run();
    assert_ne!(a.trace_hash, c.trace_hash, "another seed, another run");
}

/// `WHARF_SIM_SEED=N cargo test -p wharf-sim replay -- --nocapture` reruns
/// seed N alone and prints its trace; skipped when the variable is unset.
#[test]
fn replay() {
    let Ok(seed) = std::env::var("WHARF_SIM_SEED") else {
        eprintln!("WHARF_SIM_SEED is not set: nothing to replay");
        return;
    };
    let seed: u64 = seed.parse().expect("WHARF_SIM_SEED is a u64");
    let r = Sim::new(
        seed,
        Config {
            keep_trace: true,
            ..Config::default()
        },
    )
    .run();
    for line in &r.trace {
        println!("{line}");
    }
    println!("{r:#?}", r = Report { trace: vec![], ..r });
}
