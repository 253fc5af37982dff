//! A chat server on plain threads, stopped after 10 minutes:
//! `cargo run --example chat_threads [PORT]`, then `nc 127.0.0.1 PORT` from a few terminals.
use std::time::Duration;

use echochat::chat::ChatConfig;
use echochat::net::{Listener, Shutdown};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "0".into());
    let listener = Listener::bind(&format!("127.0.0.1:{port}"), false)?;
    println!("listening on {}", listener.local_addr()?);
    let shutdown = Shutdown::new();
    let timer = shutdown.clone();
    std::thread::spawn(move || {
        if !timer.wait_timeout(Duration::from_secs(600)) {
            timer.trigger(); // connected users get `* server shutting down`
        }
    });
    echochat::threads::run_chat(listener, ChatConfig::default(), shutdown)?;
    Ok(())
}
