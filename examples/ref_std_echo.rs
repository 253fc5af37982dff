//! Reference echo server for `benches/compare.sh`: blocking std, one thread per
//! connection, a 64 KiB buffer, `TCP_NODELAY`. The classic baseline for bulk and
//! latency on few connections (and the one that does not scale to thousands).
//!
//! `cargo run --release --example ref_std_echo -- --addr 127.0.0.1:0`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// `--addr HOST:PORT` from the command line (default 127.0.0.1:0).
fn addr_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or("127.0.0.1:0".into())
}

fn serve(mut socket: TcpStream) {
    let _ = socket.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if socket.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(addr_arg())?;
    println!("listening on {}", listener.local_addr()?);
    for socket in listener.incoming() {
        match socket {
            Ok(socket) => {
                // Small stacks: 64 KiB buffers live on the heap.
                if let Err(e) = std::thread::Builder::new()
                    .stack_size(128 * 1024)
                    .spawn(move || serve(socket))
                {
                    eprintln!("spawn: {e}");
                }
            }
            Err(e) => {
                eprintln!("accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
    Ok(())
}
