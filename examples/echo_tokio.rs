//! A TCP echo server on tokio, until Ctrl-C (or SIGTERM):
//! `cargo run --example echo_tokio [PORT]` (default: any free port), then
//! `nc 127.0.0.1 PORT`. Prints `listening on IP:PORT` first; on Ctrl-C it stops
//! accepting, flushes what it can and exits 0.
use echochat::echo::EchoServerConfig;
use echochat::net::{Listener, Shutdown};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "0".into());
    let listener = Listener::bind(&format!("127.0.0.1:{port}"), false)?;
    println!("listening on {}", listener.local_addr()?);
    // A cloneable stop signal, triggered on SIGINT or SIGTERM (the `ctrlc` crate's
    // `termination` feature; `tokio::signal::ctrl_c()` works as well, with tokio's
    // `signal` feature).
    let shutdown = Shutdown::new();
    let signal = shutdown.clone();
    ctrlc::set_handler(move || signal.trigger())?;
    echochat::tokio::run_echo(listener, EchoServerConfig::default(), shutdown).await?;
    Ok(())
}
