//! A TCP echo server on tokio: `cargo run --example echo_tokio [PORT]` (default: any free port).
use echochat::echo::EchoServerConfig;
use echochat::net::{Listener, Shutdown};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "0".into());
    let listener = Listener::bind(&format!("127.0.0.1:{port}"), false)?;
    println!("listening on {}", listener.local_addr()?);
    echochat::tokio::run_echo(listener, EchoServerConfig::default(), Shutdown::new()).await?;
    Ok(())
}
