//! Reference chat server for `benches/compare.sh`: the usual hand-written tokio chat.
//! Peers live in a `HashMap` behind a `Mutex`, each with an unbounded mpsc channel of
//! `String`s; every message is formatted into a new `String` for every peer
//! (`<nick> text`) and written with one `write_all` per line. Nicks are `guestN`.
//! No commands, no limits, no slow-consumer policy (a slow reader grows without
//! bound). `TCP_NODELAY` is set, as in our servers, so the comparison measures the
//! design rather than Nagle's algorithm.
//!
//! `cargo run --release --example ref_tokio_chat -- --addr 127.0.0.1:0`

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

type Peers = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<String>>>>;

/// `--addr HOST:PORT` from the command line (default 127.0.0.1:0).
fn addr_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--addr")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or("127.0.0.1:0".into())
}

/// Sends `line` to every peer but `except`.
fn broadcast(peers: &Peers, except: u64, line: &str) {
    let peers = peers.lock().unwrap_or_else(|p| p.into_inner());
    for (id, tx) in peers.iter() {
        if *id != except {
            let _ = tx.send(format!("{line}\n"));
        }
    }
}

async fn serve(socket: TcpStream, id: u64, peers: Peers) {
    let _ = socket.set_nodelay(true);
    let nick = format!("guest{id}");
    let (rd, mut wr) = socket.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let online = {
        let mut p = peers.lock().unwrap_or_else(|p| p.into_inner());
        p.insert(id, tx.clone());
        p.len()
    };
    let _ = tx.send(format!("* welcome {nick}, {online} users online\n"));
    broadcast(&peers, id, &format!("* {nick} joined #lobby"));
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if wr.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut lines = BufReader::new(rd).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if !line.is_empty() {
            broadcast(&peers, id, &format!("<{nick}> {line}"));
        }
    }
    peers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    broadcast(&peers, id, &format!("* {nick} left (quit)"));
    drop(tx);
    let _ = writer.await;
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(addr_arg()).await?;
    println!("listening on {}", listener.local_addr()?);
    let peers: Peers = Arc::default();
    let next = AtomicU64::new(1);
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                let id = next.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(socket, id, Arc::clone(&peers)));
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
