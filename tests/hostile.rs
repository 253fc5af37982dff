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
    a_closed_connection_that_never_reads_is_let_go,
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

/// A connection with a small receive buffer that never reads.
fn non_reader(server: &Server) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    stream
}

/// A client fills its buffers with unread output, then quits: its socket is closed
/// within the close grace, and its slot under `--max-conns` is given back.
fn a_closed_connection_that_never_reads_is_let_go(t: Target) {
    let send_queue = 16 << 20;
    let server = t.chat(
        ChatConfig::default()
            .with_max_conns(Some(2))
            .with_send_queue(send_queue),
    );
    let _keeper = ChatClient::connect(&server);
    let mut hog = non_reader(&server);
    // Enough `/help` (~450 bytes of reply each) to fill the kernel buffers and queue
    // more, but less than the send queue: the hog is not dropped for it, it quits.
    hog.write_all(&b"/help\n".repeat(20_000)).unwrap();
    hog.write_all(b"/quit\n").unwrap();
    // Once the grace has run out the server closes the hog's socket and admits a
    // newcomer. (Before: the socket was kept forever, outside --max-conns.)
    let deadline = Instant::now() + common::TIMEOUT;
    let mut refused = 0;
    let mut probe = loop {
        let mut c = ChatClient::connect_raw(server.connect());
        match c.read_line().as_deref() {
            Some(l) if l.starts_with("* welcome ") => break c,
            Some("! server full") => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
        assert!(Instant::now() < deadline, "the hog's slot never came back");
        thread::sleep(Duration::from_millis(100));
    };
    // Its slot was held while it flushed (it still counted against --max-conns).
    assert!(refused > 0, "the hog was not flushing when it quit");
    // The hog's socket was closed by the server (EOF or a reset), and what was
    // still queued for it was dropped: reading it now gives at most what the kernel
    // buffers held, far less than the replies it asked for.
    probe.send_line("/help");
    probe.send_line("/who");
    let mut help = 0;
    loop {
        let line = probe.read_line().expect("probe closed");
        if line.starts_with("* in #") {
            break;
        }
        if line.starts_with("* /") {
            help += line.len() + 1;
        }
    }
    let asked = 20_000 * help;
    let mut sink = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut hog, &mut sink) {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the hog's socket is still open: {e}"
        );
    }
    assert!(
        sink.len() < asked * 3 / 4,
        "the hog got {} of {asked} bytes: its queue was flushed, not dropped",
        sink.len()
    );
}
