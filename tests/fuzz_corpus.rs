//! Replays every checked-in fuzz input (`fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/`) through the same bodies the fuzzers run
//! (`echochat::fuzzing`), so a crash saved as a regression file fails `cargo test`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

fn replay_target(target: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.expect("read fuzz dir").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        !files.is_empty() || target == "none",
        "no inputs for {target}"
    );
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("read fuzz input");
        let r = catch_unwind(AssertUnwindSafe(|| {
            assert!(echochat::fuzzing::replay(target, &data))
        }));
        if r.is_err() {
            failures.push(path.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} inputs fail (reproduce one with `cargo fuzz run {target} FILE`):\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    println!("{target}: replayed {} inputs", files.len());
}

#[test]
fn framer_inputs() {
    replay_target("framer");
}

#[test]
fn command_inputs() {
    replay_target("command");
}

#[test]
fn echo_inputs() {
    replay_target("echo");
}

#[test]
fn chat_inputs() {
    replay_target("chat");
}

#[test]
fn telnet_inputs() {
    replay_target("telnet");
}

#[test]
fn cluster_inputs() {
    replay_target("cluster");
}

#[cfg(feature = "tls")]
#[test]
fn tls_inputs() {
    replay_target("tls");
}

#[test]
fn every_target_has_a_test_here() {
    assert_eq!(
        echochat::fuzzing::TARGETS,
        ["framer", "command", "echo", "chat", "telnet", "cluster"]
    );
}
