//! Hostile clients hurt only themselves (README, "Limits and abuse"): attack
//! reproductions at small scale, on every transport, over real loopback TCP.
//!
//! None of these asserts a duration. Each checks an order of events that only a
//! fair server produces: e.g. an idle client is dropped *while* a flood is still
//! running (an unfair server drops it only once the flood ends, after the test's
//! deadline).

#![cfg(feature = "net")]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{conformance, conformance_bin, ChatClient, Server, Target, STOP_TIMEOUT};
use echochat::chat::ChatConfig;

conformance!(
    idle_timeout_fires_during_a_flood,
    shutdown_is_prompt_during_a_flood,
    others_are_served_during_a_flood,
);

conformance_bin!(shutdown_is_prompt_during_a_flood);

/// A client that sends `x\n` as fast as the server takes it, alone in a room of its
/// own (so its lines produce no output), until stopped or `limit` passes.
struct Flooder {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<u64>>,
    /// When it stops by itself.
    ends: Instant,
}

impl Flooder {
    fn start(server: &Server, limit: Duration) -> Flooder {
        let mut stream: TcpStream = server.connect();
        stream.write_all(b"/join flood\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let ends = Instant::now() + limit;
        let thread = thread::spawn(move || {
            let chunk = b"x\n".repeat(32 * 1024);
            let deadline = ends;
            let mut sent = 0u64;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match stream.write_all(&chunk) {
                    Ok(()) => sent += chunk.len() as u64,
                    Err(_) => break, // the server closed it (shutdown)
                }
            }
            sent
        });
        Flooder {
            stop,
            thread: Some(thread),
            ends,
        }
    }

    /// Whether it is still sending.
    fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops it; returns the bytes it sent.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap())
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How long a flood may last: longer than any wait of the test, so that an unfair
/// server (one that serves others only after the flood) fails the test.
const FLOOD: Duration = Duration::from_secs(45);

fn idle_timeout_fires_during_a_flood(t: Target) {
    let server = t.chat(ChatConfig::default().with_idle_timeout(Some(Duration::from_secs(1))));
    let flooder = Flooder::start(&server, FLOOD);
    let mut silent = ChatClient::connect(&server);
    // The flooder sends no data the core counts as idle... it is busy: only the
    // silent client times out, and it does so while the flood goes on.
    silent.expect_close();
    assert!(
        flooder.running(),
        "the idle timeout waited for the flood to end"
    );
    let sent = flooder.stop();
    assert!(sent > 0);
}

fn shutdown_is_prompt_during_a_flood(t: Target) {
    let mut server = t.chat(ChatConfig::default());
    let flooder = Flooder::start(&server, FLOOD);
    let mut other = ChatClient::connect(&server);
    // Let the flood get going (its bytes are being handled) before stopping.
    other.send_line("/who");
    other.expect_line(|l| l.starts_with("* in #lobby: "));
    server.stop().expect("server failed");
    // The flood was cut by the stop (its writes fail), it did not run out first.
    assert!(
        Instant::now() < flooder.ends,
        "the server stopped only after the flood ended (the stop waited behind data); \
         stop timeout is {STOP_TIMEOUT:?}"
    );
    other.expect_line(|l| l == "* server shutting down");
    drop(flooder);
}

fn others_are_served_during_a_flood(t: Target) {
    let server = t.chat(ChatConfig::default());
    let flooder = Flooder::start(&server, FLOOD);
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    for i in 0..50 {
        a.send_line(&format!("ping {i}"));
        b.expect_line(|l| l == format!("<{}> ping {i}", a.nick));
    }
    assert!(
        flooder.running(),
        "the others were served only after the flood"
    );
    drop(flooder);
}
