//! The `echochat` command line. (Stub: to be completed by the CLI work.)
fn main() {}
