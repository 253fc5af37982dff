#![no_main]
// Body and invariants: echochat::fuzzing::cluster (replayed by `cargo test --test fuzz_corpus`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| echochat::fuzzing::cluster(data));
