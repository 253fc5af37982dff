//! A TCP (and UDP) echo server on smol, until Ctrl-C (or SIGTERM):
//! `cargo run --example echo_smol [PORT]` (default: any free port), then
//! `nc 127.0.0.1 PORT` (or `nc -u`). Prints `listening on IP:PORT (tcp and udp)`
//! first; on Ctrl-C it stops accepting, flushes what it can and exits 0.
use echochat::echo::EchoServerConfig;
use echochat::net::{Listener, Shutdown};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "0".into());
    let listener = Listener::bind(&format!("127.0.0.1:{port}"), true)?;
    println!("listening on {} (tcp and udp)", listener.local_addr()?);
    // A cloneable stop signal, triggered on SIGINT or SIGTERM.
    let shutdown = Shutdown::new();
    let signal = shutdown.clone();
    ctrlc::set_handler(move || signal.trigger())?;
    smol::block_on(echochat::smol::run_echo(
        listener,
        EchoServerConfig::default(),
        shutdown,
    ))?;
    Ok(())
}
