//! A TCP (and UDP) echo server on smol: `cargo run --example echo_smol [PORT]` (default: any free port).
use echochat::echo::EchoServerConfig;
use echochat::net::{Listener, Shutdown};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "0".into());
    let listener = Listener::bind(&format!("127.0.0.1:{port}"), true)?;
    println!("listening on {} (tcp and udp)", listener.local_addr()?);
    smol::block_on(echochat::smol::run_echo(
        listener,
        EchoServerConfig::default(),
        Shutdown::new(),
    ))?;
    Ok(())
}
