//! A chat server on plain threads, until Ctrl-C (or SIGTERM):
//! `cargo run --example chat_threads [PORT]` (default: any free port), then
//! `nc 127.0.0.1 PORT` from a few terminals. Prints `listening on IP:PORT` first;
//! it runs with no time limit until Ctrl-C, which tells connected users
//! `* server shutting down` and exits 0.
use echochat::chat::ChatConfig;
use echochat::net::{Listener, Shutdown};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "0".into());
    let listener = Listener::bind(&format!("127.0.0.1:{port}"), false)?;
    println!("listening on {}", listener.local_addr()?);
    // A cloneable stop signal, triggered on SIGINT or SIGTERM: connected users get
    // `* server shutting down`, then `run_chat` returns.
    let shutdown = Shutdown::new();
    let signal = shutdown.clone();
    ctrlc::set_handler(move || signal.trigger())?;
    echochat::threads::run_chat(listener, ChatConfig::default(), shutdown)?;
    Ok(())
}
