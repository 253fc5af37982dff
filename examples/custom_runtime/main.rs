//! The chat server on a runtime defined outside echochat (see `pool.rs`), until
//! Ctrl-C: `cargo run --example custom_runtime [PORT]`, then `nc 127.0.0.1 PORT`.
//! Ctrl-C tells connected users `* server shutting down` and exits 0.

mod pool;

use echochat::chat::ChatConfig;
use echochat::net::{Listener, Shutdown};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = std::env::args().nth(1).unwrap_or_else(|| "0".into());
    let listener = Listener::bind(&format!("127.0.0.1:{port}"), false)?;
    println!("listening on {}", listener.local_addr()?);
    let shutdown = Shutdown::new();
    let signal = shutdown.clone();
    ctrlc::set_handler(move || signal.trigger())?;
    let rt = pool::PoolRuntime::new(2)?;
    // The owner of the chat core is this thread's future; its tasks run on the pool.
    futures_executor::block_on(echochat::runtime::serve_chat(
        rt,
        listener,
        ChatConfig::default(),
        shutdown,
    ))?;
    Ok(())
}
