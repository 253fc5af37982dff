//! The `echochat` command line (flags in the README): echo and chat servers on a chosen
//! runtime, matching clients, and the `bench` load generator.
//!
//! Everything lives in [`cli`]; this file only turns its outcome into an exit code.

mod bench;
mod cli;

fn main() {
    std::process::exit(cli::main());
}
