//! Reference echo server for `benches/compare.sh`: the straightforward tokio echo
//! (a task per connection, a 4 KiB buffer, read then `write_all`), as found in
//! tokio's own examples. It has no limits and no backpressure policy beyond TCP's.
//! `TCP_NODELAY` is set (as in our servers) so a comparison measures the design,
//! not a socket option.
//!
//! `cargo run --release --example ref_tokio_echo -- --addr 127.0.0.1:0`

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// `--addr HOST:PORT` from the command line (default 127.0.0.1:0).
fn addr_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or("127.0.0.1:0".into())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(addr_arg()).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (mut socket, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if socket.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}
