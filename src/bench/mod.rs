//! `echochat bench`: load generator for echo and chat servers. (Stub: to be completed by the benchmark work.)

/// `echochat bench …` arguments.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Runs a benchmark; the error is printed as one line by `main`.
pub fn run(args: BenchArgs) -> Result<(), String> {
    let _ = args;
    Err("bench: not implemented yet".into())
}
