//! Chat conformance (SPEC §3): every test runs against every transport compiled
//! in, in-process (`threads::…`, `tokio::…`, `smol::…`), and a subset through the
//! `echochat` binary (`bin_threads::…`, …), over real loopback TCP. Each command's
//! details are unit-tested on the core (src/chat/); these prove the transports
//! deliver them.

#![cfg(feature = "net")]

mod common;

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use common::{conformance, conformance_bin, read_to_close, ChatClient, Server, Target};
use echochat::chat::ChatConfig;

conformance!(
    welcome_and_message,
    lines_survive_any_chunking,
    quit_and_disconnect_notices,
    slow_reader_is_dropped_others_keep_receiving,
    max_conns_server_full,
    idle_timeout_drops_silent_clients,
    shutdown_notice,
);

conformance_bin!(
    welcome_and_message,
    slow_reader_is_dropped_others_keep_receiving,
    max_conns_server_full,
    idle_timeout_drops_silent_clients,
    shutdown_notice,
);

fn config() -> ChatConfig {
    ChatConfig::default()
}

fn welcome_and_message(t: Target) {
    let server = t.chat(config());
    let mut a = ChatClient::connect(&server);
    assert!(a.nick.starts_with("guest"), "nick {:?}", a.nick);
    let mut b = ChatClient::connect(&server);
    assert_ne!(a.nick, b.nick);
    a.expect_line(|l| l == format!("* {} joined #lobby", b.nick));
    a.send_line("hello, b");
    assert_eq!(b.read_line().unwrap(), format!("<{}> hello, b", a.nick));
    b.send_line("hi a");
    assert_eq!(a.read_line().unwrap(), format!("<{}> hi a", b.nick));
}

fn lines_survive_any_chunking(t: Target) {
    let server = t.chat(config());
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    a.expect_line(|l| l.ends_with("joined #lobby"));
    // One line over several writes, several lines in one write, `\r\n` endings.
    for part in ["hel", "lo wo", "rld\r", "\nsecond\nthird\r\nfou", "rth\n"] {
        a.send_raw(part.as_bytes());
    }
    for want in ["hello world", "second", "third", "fourth"] {
        assert_eq!(b.read_line().unwrap(), format!("<{}> {want}", a.nick));
    }
}

fn quit_and_disconnect_notices(t: Target) {
    let server = t.chat(config());
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    let mut c = ChatClient::connect(&server);
    a.expect_line(|l| l == format!("* {} joined #lobby", c.nick));
    b.send_line("/quit gone fishing");
    b.expect_line(|l| l == "* bye");
    assert!(b.expect_close().is_empty());
    a.expect_line(|l| l.starts_with(&format!("* {} left (", b.nick)) && l.contains("gone fishing"));
    c.shutdown_write();
    c.expect_close();
    a.expect_line(|l| l.starts_with(&format!("* {} left (", c.nick)));
}

fn slow_reader_is_dropped_others_keep_receiving(t: Target) {
    const LISTENERS: usize = 18;
    // The talker stays at most this many messages (~23 KB) ahead of the slowest
    // listener, well under the send queue: only the client that never reads can
    // exceed it, however the test threads are scheduled.
    const WINDOW: u64 = 200;
    let mut config = config();
    config.send_queue = 64 * 1024;
    let server = t.chat(config);
    let mut talker = ChatClient::connect(&server);
    let slow = small_buffer_client(&server);
    let slow_nick = talker.expect_line(|l| l.ends_with(" joined #lobby"))["* ".len()..]
        .replace(" joined #lobby", "");
    let left = format!("* {slow_nick} left (send queue exceeded)");
    let listeners: Vec<ChatClient> = (0..LISTENERS).map(|_| big_buffer_client(&server)).collect();
    let last_nick = listeners.last().unwrap().nick.clone();
    talker.expect_line(|l| l == format!("* {last_nick} joined #lobby"));
    let progress = Arc::new(Progress::new(LISTENERS));
    let readers: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(slot, mut c)| {
            let (talker, left, progress) =
                (talker.nick.clone(), left.clone(), Arc::clone(&progress));
            thread::spawn(move || {
                let (mut next, mut saw_left) = (0u64, false);
                loop {
                    let Some(line) = c.read_line() else {
                        panic!("{} was closed after {next} messages", c.nick)
                    };
                    if line == left {
                        saw_left = true;
                        progress.dropped.store(true, Ordering::Release);
                    } else if let Some(text) = line.strip_prefix(&format!("<{talker}> ")) {
                        if text == "done" {
                            return (next, saw_left);
                        }
                        let i: u64 = text
                            .split(' ')
                            .nth(1)
                            .and_then(|i| i.parse().ok())
                            .expect("message number");
                        assert_eq!(
                            i, next,
                            "{}: message lost, merged or reordered: {line:?}",
                            c.nick
                        );
                        next += 1;
                        if next % 32 == 0 {
                            progress.set(slot, next);
                        }
                    }
                }
            })
        })
        .collect();
    let padding = "x".repeat(100);
    let mut sent = 0u64;
    while !progress.dropped.load(Ordering::Acquire) {
        // Bounded: a server that never drops the slow reader fails here, not by hanging.
        assert!(
            sent < 400_000,
            "the slow reader was never dropped ({sent} messages sent)"
        );
        progress.wait_for(sent.saturating_sub(WINDOW));
        talker.send_line(&format!("msg {sent} {padding}"));
        sent += 1;
    }
    talker.send_line("done");
    eprintln!(
        "{:?}: the slow reader was dropped after {sent} messages",
        t.transport
    );
    for reader in readers {
        let (received, saw_left) = reader.join().expect("listener failed");
        assert_eq!(received, sent, "a listener missed messages");
        assert!(saw_left, "a listener did not see {left:?}");
    }
    // The slow client's connection is closed (after what was already in flight).
    read_to_close(&mut slow.try_clone().unwrap());
}

/// How many messages each listener has received.
struct Progress {
    received: Mutex<Vec<u64>>,
    changed: Condvar,
    dropped: AtomicBool,
}

impl Progress {
    fn new(listeners: usize) -> Self {
        Progress {
            received: Mutex::new(vec![0; listeners]),
            changed: Condvar::new(),
            dropped: AtomicBool::new(false),
        }
    }

    fn set(&self, slot: usize, received: u64) {
        self.received.lock().unwrap()[slot] = received;
        self.changed.notify_all();
    }

    /// Waits until every listener has received at least `n` messages.
    fn wait_for(&self, n: u64) {
        let guard = self.received.lock().unwrap();
        let (_guard, timeout) = self
            .changed
            .wait_timeout_while(guard, common::TIMEOUT, |r| r.iter().any(|&got| got < n))
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "listeners stopped receiving before message {n}"
        );
    }
}

/// A client that never reads, with a small receive buffer.
fn small_buffer_client(server: &Server) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    stream
}

/// A reading client with room to spare, so a busy test machine does not make it slow.
fn big_buffer_client(server: &Server) -> ChatClient {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(1 << 20).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut client = ChatClient::connect_raw(socket.into());
    let welcome = client.expect_line(|l| l.starts_with("* welcome "));
    client.nick = welcome["* welcome ".len()..]
        .split(',')
        .next()
        .unwrap()
        .to_string();
    client
}

fn max_conns_server_full(t: Target) {
    let mut config = config();
    config.max_conns = Some(2);
    let server = t.chat(config);
    let mut a = ChatClient::connect(&server);
    let b = ChatClient::connect(&server);
    let mut extra = ChatClient::connect_raw(server.connect());
    assert_eq!(extra.read_line().as_deref(), Some("! server full"));
    assert!(extra.expect_close().is_empty());
    // The others are undisturbed; once one leaves, a newcomer is admitted.
    a.send_line("still here");
    b.shutdown_write();
    a.expect_line(|l| l.starts_with(&format!("* {} left (", b.nick)));
    let mut c = ChatClient::connect(&server);
    c.send_line("/who");
    c.expect_line(|l| l.starts_with("* in #lobby: "));
}

fn idle_timeout_drops_silent_clients(t: Target) {
    let mut config = config();
    config.idle_timeout = Some(Duration::from_secs(1));
    let server = t.chat(config);
    let mut silent = ChatClient::connect(&server);
    let mut observer = ChatClient::connect(&server);
    // The observer joined later, so its own deadline comes after the silent one's.
    observer.expect_line(|l| l == format!("* {} left (idle timeout)", silent.nick));
    silent.expect_close();
    observer.expect_close();
}

fn shutdown_notice(t: Target) {
    let mut server = t.chat(config());
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    a.expect_line(|l| l.ends_with("joined #lobby"));
    // A client that reads nothing does not hold the shutdown up.
    let _silent = small_buffer_client(&server);
    server.stop().expect("server failed");
    for c in [&mut a, &mut b] {
        c.expect_line(|l| l == "* server shutting down");
        assert!(c.expect_close().is_empty());
    }
}
