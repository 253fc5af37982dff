//! Deterministic network simulation of the real chat and echo cores, the chat
//! running in the real driver layer (hub and connection writers) (`echochat::sim`).
//!
//! * `SIM_SEEDS=N` runs seeds `0..N` (default 200; the flood scenario runs a twentieth
//!   of them, at least 10); `SIM_SEED=S` replays seed `S` alone.
//! * A failing seed is printed with the exact command that replays it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use echochat::sim::{chat, cluster, echo, SimReport};

/// The seeds to run: `SIM_SEED`, or `0..SIM_SEEDS / divisor` (at least 10).
fn seeds(divisor: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_SEED") {
        return vec![s.parse().expect("SIM_SEED must be a number")];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200u64);
    (0..(n / divisor).max(10.min(n))).collect()
}

fn run_all(name: &str, test: &str, run: fn(u64) -> SimReport) -> Vec<SimReport> {
    run_seeds(name, test, run, seeds(1))
}

fn run_seeds(name: &str, test: &str, run: fn(u64) -> SimReport, seeds: Vec<u64>) -> Vec<SimReport> {
    let mut reports = Vec::new();
    for seed in seeds {
        match catch_unwind(AssertUnwindSafe(|| run(seed))) {
            Ok(r) => reports.push(r),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "{name} simulation failed for seed {seed}: {msg}\n\
                     replay: SIM_SEED={seed} cargo test --test sim {test} -- --nocapture"
                );
            }
        }
    }
    reports
}

#[test]
fn chat_seeds() {
    let reports = run_all("chat", "chat_seeds", chat::run);
    let sum = |f: fn(&SimReport) -> u64| reports.iter().map(f).sum::<u64>();
    let mut closes = std::collections::BTreeMap::new();
    for r in &reports {
        for (k, v) in &r.closes {
            *closes.entry(*k).or_insert(0u64) += v;
        }
    }
    println!(
        "chat: {} seeds, {} events, {} connections ({} paused by flow control), {} hub batches (largest {}), {} messages delivered, {} verified not lost, closes {closes:?}",
        reports.len(),
        sum(|r| r.events),
        sum(|r| r.connections),
        sum(|r| r.paused),
        sum(|r| r.batches),
        reports.iter().map(|r| r.max_batch).max().unwrap_or(0),
        sum(|r| r.delivered),
        sum(|r| r.verified),
    );
    if reports.len() >= 50 {
        // The scenarios must actually exercise the interesting paths.
        for reason in [
            "send_queue_exceeded",
            "idle_timeout",
            "reset",
            "quit",
            "peer_closed",
            "shutdown",
        ] {
            assert!(
                closes.get(reason).copied().unwrap_or(0) > 0,
                "no seed closed a connection for {reason}"
            );
        }
        assert!(sum(|r| r.verified) > 0);
    }
}

/// Regression: readers that keep up are never dropped (`send queue exceeded`)
/// under a flood, however late writers' flush reports would reach the core.
#[test]
fn flood_seeds() {
    let reports = run_seeds("flood", "flood_seeds", chat::run_flood, seeds(20));
    let sum = |f: fn(&SimReport) -> u64| reports.iter().map(f).sum::<u64>();
    println!(
        "flood: {} seeds, {} events, {} connections, {} hub batches (largest {}), {} messages delivered, {} verified not lost",
        reports.len(),
        sum(|r| r.events),
        sum(|r| r.connections),
        sum(|r| r.batches),
        reports.iter().map(|r| r.max_batch).max().unwrap_or(0),
        sum(|r| r.delivered),
        sum(|r| r.verified),
    );
    if reports.len() >= 10 {
        // The flood must actually make the hub handle big batches.
        assert!(reports.iter().map(|r| r.max_batch).max().unwrap_or(0) >= 32);
    }
}

#[test]
fn echo_seeds() {
    let reports = run_all("echo", "echo_seeds", echo::run);
    let bytes: u64 = reports.iter().map(|r| r.echoed).sum();
    println!("echo: {} seeds, {bytes} bytes echoed", reports.len());
}

#[test]
fn cluster_seeds() {
    let reports = run_all("cluster", "cluster_seeds", cluster::run);
    let sum = |f: fn(&SimReport) -> u64| reports.iter().map(f).sum::<u64>();
    println!(
        "cluster: {} seeds, {} events, {} users, {} lines delivered ({} in sequence, the rest after a loss notice)",
        reports.len(),
        sum(|r| r.events),
        sum(|r| r.connections),
        sum(|r| r.delivered),
        sum(|r| r.verified),
    );
    assert!(sum(|r| r.verified) > 0, "lines were checked");
}

#[test]
fn same_seed_same_run() {
    for seed in [1, 42, 1234] {
        let (a, b) = (chat::run(seed), chat::run(seed));
        assert_eq!(a, b, "chat seed {seed} is not deterministic");
        let (a, b) = (echo::run(seed), echo::run(seed));
        assert_eq!(a, b, "echo seed {seed} is not deterministic");
    }
    let (a, b) = (cluster::run(5), cluster::run(5));
    assert_eq!(a, b, "cluster seed 5 is not deterministic");
    let (a, b) = (chat::run_flood(7), chat::run_flood(7));
    assert_eq!(a, b, "flood seed 7 is not deterministic");
    assert_ne!(
        chat::run(1).digest,
        chat::run(2).digest,
        "different seeds, same digest"
    );
}
