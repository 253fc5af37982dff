//! Chat conformance (`docs/PROTOCOL.md`): every test runs against every transport compiled
//! in, in-process (`threads::…`, `tokio::…`, `smol::…`), and a subset through the
//! `echochat` binary (`bin_threads::…`, …), over real loopback TCP. Each command's
//! details are unit-tested on the core (src/chat/); these prove the transports
//! deliver them.

#![cfg(feature = "net")]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
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
    // docs/PROTOCOL.md over sockets, row by row (tests below).
    welcome_counts_users_in_every_room,
    messages_go_to_the_others_only,
    nick_command,
    join_who_and_rooms,
    private_messages,
    help_unknown_and_quit,
    line_too_long_is_refused_connection_stays,
    invalid_utf8_is_refused,
    control_characters_are_replaced,
    crlf_is_stripped_and_empty_lines_ignored,
    abrupt_reset_is_a_departure,
    garbage_bytes_do_no_harm,
    half_close_still_gets_the_reply,
    raw_tcp_like_nc,
    many_clients_lose_nothing,
    telnet_ctrl_c_keeps_receiving,
);

conformance_bin!(
    welcome_and_message,
    slow_reader_is_dropped_others_keep_receiving,
    max_conns_server_full,
    idle_timeout_drops_silent_clients,
    shutdown_notice,
    welcome_counts_users_in_every_room,
    messages_go_to_the_others_only,
    nick_command,
    join_who_and_rooms,
    private_messages,
    help_unknown_and_quit,
    line_too_long_is_refused_connection_stays,
    control_characters_are_replaced,
    raw_tcp_like_nc,
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
    let mut b = ChatClient::connect(&server);
    let mut extra = ChatClient::connect_raw(server.connect());
    assert_eq!(extra.read_line().as_deref(), Some("! server full"));
    assert!(extra.expect_close().is_empty());
    // The others are undisturbed; once one has left and its socket is closed (a
    // closing connection still counts against --max-conns), a newcomer is admitted.
    a.send_line("still here");
    b.shutdown_write();
    a.expect_line(|l| l.starts_with(&format!("* {} left (", b.nick)));
    b.expect_close();
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

// ---------------------------------------------------------------------------
// docs/PROTOCOL.md row by row. Exact texts are the core's (docs/PROTOCOL.md).

/// Connects a client and renames it to `nick` (waits for its own rename notice).
fn named(server: &Server, nick: &str) -> ChatClient {
    let mut c = ChatClient::connect(server);
    let old = c.nick.clone();
    c.send_line(&format!("/nick {nick}"));
    c.expect_line(|l| l == format!("* {old} is now known as {nick}"));
    c.nick = nick.to_string();
    c
}

/// Reads everything already queued for `c` (arrivals, renames…) by asking `/who`
/// and skipping up to its answer. Afterwards the next line is the next event.
fn settle(c: &mut ChatClient) {
    c.send_line("/who");
    c.expect_line(|l| l.starts_with("* in #"));
}

/// Proves `c` was sent nothing since its last read: the server answers in order,
/// so the next line must be the answer to a fresh `/who`.
fn assert_got_nothing(c: &mut ChatClient) {
    c.send_line("/who");
    let line = c.read_line();
    assert!(
        line.as_deref().is_some_and(|l| l.starts_with("* in #")),
        "{} expected nothing before its /who answer, got {line:?}",
        c.nick
    );
}

/// `c`'s next line is exactly `want`.
fn expect_next(c: &mut ChatClient, want: &str) {
    assert_eq!(
        c.read_line().as_deref(),
        Some(want),
        "next line of {}",
        c.nick
    );
}

/// Three renamed clients in `#lobby` with nothing pending.
fn trio(server: &Server) -> (ChatClient, ChatClient, ChatClient) {
    let mut a = named(server, "alice");
    let mut b = named(server, "bob");
    let mut c = named(server, "carol");
    for x in [&mut a, &mut b, &mut c] {
        settle(x);
    }
    (a, b, c)
}

fn welcome_counts_users_in_every_room(t: Target) {
    let server = t.chat(config());
    let mut a = ChatClient::connect_raw(server.connect());
    expect_next(&mut a, "* welcome guest1, 1 users online");
    a.nick = "guest1".into();
    let mut b = ChatClient::connect_raw(server.connect());
    expect_next(&mut b, "* welcome guest2, 2 users online");
    b.nick = "guest2".into();
    expect_next(&mut a, "* guest2 joined #lobby");
    a.send_line("/join side");
    expect_next(&mut a, "* guest1 joined #side");
    expect_next(&mut b, "* guest1 left #lobby");
    // K counts everyone connected, in every room.
    let mut c = ChatClient::connect_raw(server.connect());
    expect_next(&mut c, "* welcome guest3, 3 users online");
    expect_next(&mut b, "* guest3 joined #lobby");
    assert_got_nothing(&mut a); // not in #lobby any more
    b.send_line("/quit");
    b.expect_close();
    expect_next(&mut c, "* guest2 left (quit)");
    let mut d = ChatClient::connect_raw(server.connect());
    expect_next(&mut d, "* welcome guest4, 3 users online");
    expect_next(&mut c, "* guest4 joined #lobby");
}

fn messages_go_to_the_others_only(t: Target) {
    let server = t.chat(config());
    let (mut a, mut b, mut c) = trio(&server);
    a.send_line("hello all");
    expect_next(&mut b, "<alice> hello all");
    expect_next(&mut c, "<alice> hello all");
    assert_got_nothing(&mut a);
    // `//text` sends `/text`; a line of spaces is a message.
    a.send_line("//shrug");
    a.send_line("   ");
    for x in [&mut b, &mut c] {
        expect_next(x, "<alice> /shrug");
        expect_next(x, "<alice>    ");
    }
    assert_got_nothing(&mut a);
    // `/me`: the others get `* nick text`.
    b.send_line("/me waves");
    expect_next(&mut a, "* bob waves");
    expect_next(&mut c, "* bob waves");
    assert_got_nothing(&mut b);
    b.send_line("/me");
    expect_next(&mut b, "! usage: /me text");
}

fn nick_command(t: Target) {
    let server = t.chat(config());
    let (mut a, mut b, mut c) = trio(&server);
    // Success: the whole room, renamer included, gets the notice.
    a.send_line("/NICK Alice_2");
    for x in [&mut a, &mut b, &mut c] {
        expect_next(x, "* alice is now known as Alice_2");
    }
    a.nick = "Alice_2".into();
    // Errors go to the sender alone.
    for bad in ["a b", "al.ice", "#x", &"x".repeat(25)] {
        a.send_line(&format!("/nick {bad}"));
        expect_next(&mut a, "! invalid nick");
    }
    b.send_line("/nick ALICE_2");
    expect_next(&mut b, "! nick ALICE_2 is taken");
    b.send_line("/nick carol");
    expect_next(&mut b, "! nick carol is taken");
    b.send_line("/nick");
    expect_next(&mut b, "! usage: /nick NAME");
    a.send_line("/nick Alice_2");
    expect_next(&mut a, "* you are already Alice_2");
    // Only `a`'s case change reaches the room.
    a.send_line("/nick alice_2");
    for x in [&mut a, &mut b, &mut c] {
        expect_next(x, "* Alice_2 is now known as alice_2");
    }
    assert_got_nothing(&mut c);
    // Up to 24 characters is valid.
    let long = "y".repeat(24);
    c.send_line(&format!("/nick {long}"));
    expect_next(&mut c, &format!("* carol is now known as {long}"));
}

fn join_who_and_rooms(t: Target) {
    let server = t.chat(config());
    let (mut a, mut b, mut c) = trio(&server);
    c.send_line("/who");
    expect_next(&mut c, "* in #lobby: alice, bob, carol");
    // Created on demand; the ones left behind and the joiner are told.
    c.send_line("/join rust");
    expect_next(&mut c, "* carol joined #rust");
    expect_next(&mut a, "* carol left #lobby");
    expect_next(&mut b, "* carol left #lobby");
    // Leading `#` optional, names compared ignoring case; the creator's spelling stays.
    b.send_line("/join #RUST");
    expect_next(&mut b, "* bob joined #rust");
    expect_next(&mut c, "* bob joined #rust");
    expect_next(&mut a, "* bob left #lobby");
    b.send_line("/who");
    expect_next(&mut b, "* in #rust: bob, carol");
    a.send_line("/rooms");
    expect_next(&mut a, "* rooms: #lobby (1), #rust (2)");
    // Messages stay in their room.
    a.send_line("lobby only");
    c.send_line("rust only");
    expect_next(&mut b, "<carol> rust only");
    assert_got_nothing(&mut b);
    assert_got_nothing(&mut a);
    b.send_line("/join rust");
    expect_next(&mut b, "! already in #rust");
    b.send_line("/join no.dots");
    expect_next(&mut b, "! invalid room");
    b.send_line("/join");
    expect_next(&mut b, "! usage: /join ROOM");
    // `/who` and `/rooms` ignore arguments; an emptied room disappears.
    a.send_line("/join rust");
    expect_next(&mut a, "* alice joined #rust");
    a.send_line("/rooms please");
    expect_next(&mut a, "* rooms: #rust (3)");
    a.send_line("/who is here");
    expect_next(&mut a, "* in #rust: alice, bob, carol");
}

fn private_messages(t: Target) {
    let server = t.chat(config());
    let (mut a, mut b, mut c) = trio(&server);
    c.send_line("/join elsewhere");
    expect_next(&mut c, "* carol joined #elsewhere");
    for x in [&mut a, &mut b] {
        expect_next(x, "* carol left #lobby");
    }
    // Any room, nick ignoring case; the sender gets no copy, nobody else sees it.
    a.send_line("/msg CAROL psst  two spaces");
    expect_next(&mut c, "(pm) <alice> psst  two spaces");
    assert_got_nothing(&mut a);
    assert_got_nothing(&mut b);
    a.send_line("/msg alice note to self");
    expect_next(&mut a, "(pm) <alice> note to self");
    a.send_line("/msg nobody hello");
    expect_next(&mut a, "! no such nick nobody");
    a.send_line("/msg carol");
    expect_next(&mut a, "! usage: /msg NICK text");
    assert_got_nothing(&mut c);
}

fn help_unknown_and_quit(t: Target) {
    let server = t.chat(config());
    let (mut a, mut b, mut c) = trio(&server);
    a.send_line("/help");
    let help: Vec<String> = (0..8).map(|_| a.read_line().expect("help line")).collect();
    assert!(help.iter().all(|l| l.starts_with("* /")), "{help:?}");
    for cmd in ["nick", "join", "who", "rooms", "msg", "me", "quit", "help"] {
        assert!(
            help.iter().any(|l| l.starts_with(&format!("* /{cmd} "))),
            "/{cmd} missing from {help:?}"
        );
    }
    assert_got_nothing(&mut a); // exactly 8 lines
    a.send_line("/frobnicate now");
    expect_next(&mut a, "! unknown command /frobnicate");
    a.send_line("/Help");
    assert!(a.read_line().unwrap().starts_with("* /"));
    // `/quit reason`: `* bye`, the close, and the room is told; later input ignored.
    a.expect_line(|l| l.starts_with("* /help"));
    b.send_raw(b"/quit lunch time\nignored after quit\n");
    expect_next(&mut b, "* bye");
    assert!(b.expect_close().is_empty());
    expect_next(&mut a, "* bob left (lunch time)");
    expect_next(&mut c, "* bob left (lunch time)");
    assert_got_nothing(&mut c);
}

fn line_too_long_is_refused_connection_stays(t: Target) {
    let server = t.chat(config().with_max_line(32));
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    a.expect_line(|l| l.ends_with("joined #lobby"));
    a.send_line(&"x".repeat(33));
    expect_next(&mut a, "! line too long (max 32 bytes)");
    // Exactly the limit is fine, `\r\n` not counted.
    let limit = "y".repeat(32);
    a.send_raw(format!("{limit}\r\n").as_bytes());
    expect_next(&mut b, &format!("<{}> {limit}", a.nick));
    // A huge line (many reads) is one error and is discarded up to its `\n`.
    let mut huge = "z".repeat(100_000);
    huge.push_str("\nafter\n");
    a.send_raw(huge.as_bytes());
    expect_next(&mut a, "! line too long (max 32 bytes)");
    expect_next(&mut b, &format!("<{}> after", a.nick));
    assert_got_nothing(&mut a);
    assert_got_nothing(&mut b);
}

fn invalid_utf8_is_refused(t: Target) {
    let server = t.chat(config());
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    a.expect_line(|l| l.ends_with("joined #lobby"));
    for bad in [
        &b"caf\xe9"[..],
        // `\xff\xff` is telnet's escaped 0xFF byte (a bare 0xFF starts a command).
        b"\xff\xff\xfe",
        b"\xed\xa0\x80 surrogate",
        b"\xc0\xaf",
    ] {
        a.send_raw(bad);
        a.send_raw(b"\n");
        expect_next(&mut a, "! invalid utf-8");
    }
    a.send_line("still fine: café");
    expect_next(&mut b, &format!("<{}> still fine: café", a.nick));
}

fn control_characters_are_replaced(t: Target) {
    let server = t.chat(config());
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    a.expect_line(|l| l.ends_with("joined #lobby"));
    // ESC (a colour escape), BEL, backspace, a lone CR, DEL, C1 CSI (U+009B); tab stays.
    a.send_raw(b"red \x1b[31mtext\x07\x08 cr\rx del\x7f csi\xc2\x9b1m\ttab\n");
    let got = b.read_raw_line().expect("the message");
    assert!(!got.contains(&0x1b), "ESC reached a client: {got:?}");
    assert!(!got.iter().any(|&c| c < 0x20 && c != b'\t'), "{got:?}");
    let got = String::from_utf8(got).expect("valid UTF-8");
    assert!(got.contains('\u{FFFD}'), "{got:?}");
    assert_eq!(
        got,
        format!("<{}> red �[31mtext�� cr�x del� csi�1m\ttab", a.nick)
    );
    // In a quit reason too.
    a.send_line("/quit bye\x1b[2J");
    expect_next(&mut b, &format!("* {} left (bye�[2J)", a.nick));
}

fn crlf_is_stripped_and_empty_lines_ignored(t: Target) {
    let server = t.chat(config());
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    a.expect_line(|l| l.ends_with("joined #lobby"));
    a.send_raw(b"\n\r\n\none\r\n\r\n/who\r\ntwo\n\n");
    let who = format!("* in #lobby: {}, {}", a.nick, b.nick);
    expect_next(&mut a, &who);
    expect_next(&mut b, &format!("<{}> one", a.nick));
    expect_next(&mut b, &format!("<{}> two", a.nick));
    assert_got_nothing(&mut a);
    assert_got_nothing(&mut b);
}

fn abrupt_reset_is_a_departure(t: Target) {
    let server = t.chat(config());
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    a.expect_line(|l| l.ends_with("joined #lobby"));
    // `b` reads everything first, so no write to it is in flight when it resets.
    a.send_line("read by b");
    b.expect_line(|l| l.ends_with("> read by b"));
    let nick = b.nick.clone();
    b.reset();
    // Accept either wording. A RST normally fails the server's read: `connection
    // reset` (what every transport reports when nothing is being written to `b`).
    // But Linux reports a reset to one socket call only, later reads see EOF: if a
    // write to `b` happens to take the error, the reader sees `connection closed`.
    let line = a.read_line().expect("a departure notice");
    assert!(
        line == format!("* {nick} left (connection reset)")
            || line == format!("* {nick} left (connection closed)"),
        "{line:?}"
    );
    eprintln!("{:?}: reset seen as {line:?}", t.transport);
    // The server keeps serving.
    let mut c = ChatClient::connect(&server);
    expect_next(&mut a, &format!("* {} joined #lobby", c.nick));
    c.send_line("/who");
    let who = format!("* in #lobby: {}, {}", a.nick, c.nick);
    expect_next(&mut c, &who);
}

fn garbage_bytes_do_no_harm(t: Target) {
    let server = t.chat(config().with_max_line(256));
    let mut g = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    g.expect_line(|l| l.ends_with("joined #lobby"));
    // Random binary lines and random 7-bit lines (valid UTF-8, full of controls).
    let mut rng = common::Rng::new(0x5eed_6a5b);
    let mut garbage = Vec::new();
    while garbage.len() < 48 * 1024 {
        let len = rng.range(0, 400);
        let mut line = rng.bytes(len);
        if rng.range(0, 1) == 1 {
            line.iter_mut().for_each(|c| *c &= 0x7f);
        }
        garbage.extend_from_slice(&line);
        garbage.push(b'\n');
    }
    for chunk in garbage.chunks(1000) {
        g.send_raw(chunk);
    }
    // Random bytes hold telnet commands too (0xFF starts one): end whatever may be
    // open (a subnegotiation, a command waiting for its option byte), then ask.
    g.send_raw(b"\xff\xf0\xff\xf0\n\n/who\n");
    // The garbage client only ever gets errors (and telnet refusals); it is served.
    let mut errors = 0;
    loop {
        let mut line = g.read_raw_line().expect("garbage client closed");
        // Answers to options the garbage asked for (`IAC WILL/WONT/DONT x`), 3 bytes each.
        while line.len() >= 3 && line[0] == 0xff && matches!(line[1], 0xfb | 0xfc | 0xfe) {
            line.drain(..3);
        }
        if line.starts_with(b"* in #lobby: ") {
            break;
        }
        assert!(
            line.starts_with(b"! "),
            "{:?}",
            String::from_utf8_lossy(&line)
        );
        errors += 1;
    }
    g.send_line("end of garbage");
    // Whatever reached the other client is sanitized UTF-8 messages from `g`.
    let end = format!("<{}> end of garbage", g.nick);
    let mut messages = 0;
    loop {
        let line = b.read_raw_line().expect("b closed");
        let line = String::from_utf8(line).expect("the server sent invalid UTF-8");
        if line == end {
            break;
        }
        assert!(line.starts_with(&format!("<{}> ", g.nick)), "{line:?}");
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "{line:?}"
        );
        messages += 1;
    }
    eprintln!(
        "{:?}: garbage gave {errors} errors, {messages} messages",
        t.transport
    );
    // And the server still admits newcomers.
    let mut c = ChatClient::connect(&server);
    c.send_line("/who");
    let who = format!("* in #lobby: {}, {}, {}", g.nick, b.nick, c.nick);
    expect_next(&mut c, &who);
}

fn half_close_still_gets_the_reply(t: Target) {
    let server = t.chat(config());
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    a.expect_line(|l| l.ends_with("joined #lobby"));
    // The last line has no `\n`: it is still processed at EOF.
    a.send_raw(b"hello\n/who");
    a.shutdown_write();
    let who = format!("* in #lobby: {}, {}", a.nick, b.nick);
    expect_next(&mut a, &who);
    assert!(a.expect_close().is_empty());
    expect_next(&mut b, &format!("<{}> hello", a.nick));
    expect_next(&mut b, &format!("* {} left (connection closed)", a.nick));
}

/// Reads raw bytes from `s` until `n` newlines have arrived.
fn read_raw_lines(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.iter().filter(|&&c| c == b'\n').count() < n {
        let got = s.read(&mut buf).expect("read before the timeout");
        assert!(got > 0, "closed after {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..got]);
    }
    out
}

fn raw_tcp_like_nc(t: Target) {
    let server = t.chat(config());
    let mut a = server.connect();
    assert_eq!(
        read_raw_lines(&mut a, 1),
        b"* welcome guest1, 1 users online\n"
    );
    let mut b = server.connect();
    assert_eq!(
        read_raw_lines(&mut b, 1),
        b"* welcome guest2, 2 users online\n"
    );
    assert_eq!(read_raw_lines(&mut a, 1), b"* guest2 joined #lobby\n");
    for byte in b"hello\n" {
        a.write_all(&[*byte]).unwrap();
    }
    a.write_all(b"one\ntwo\r\nthree\n").unwrap();
    let want = b"<guest1> hello\n<guest1> one\n<guest1> two\n<guest1> three\n";
    assert_eq!(
        String::from_utf8_lossy(&read_raw_lines(&mut b, 4)),
        String::from_utf8_lossy(want)
    );
}

fn many_clients_lose_nothing(t: Target) {
    const CLIENTS: usize = 50;
    const LINES: usize = 200;
    const BATCH: usize = 10;
    // Ample send queues: every client reads all the time, so nobody may be dropped.
    let server = t.chat(config().with_send_queue(4 << 20));
    let clients: Vec<ChatClient> = (0..CLIENTS).map(|_| ChatClient::connect(&server)).collect();
    // Every client is in #lobby now: each welcome came after the earlier arrivals.
    let index: Arc<HashMap<String, usize>> = Arc::new(
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| (c.nick.clone(), i))
            .collect(),
    );
    let mut threads = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let mut out = c.stream().try_clone().unwrap();
        threads.push(thread::spawn(move || {
            for batch in 0..LINES / BATCH {
                let lines: String = (batch * BATCH..(batch + 1) * BATCH)
                    .map(|seq| format!("c{i}-{seq}\n"))
                    .collect();
                out.write_all(lines.as_bytes()).expect("send a batch");
            }
            None
        }));
        let index = Arc::clone(&index);
        threads.push(thread::spawn(move || {
            let mut next = [0usize; CLIENTS];
            let mut left = (CLIENTS - 1) * LINES;
            while left > 0 {
                let Some(line) = c.read_line() else {
                    panic!("{} closed with {left} messages missing", c.nick)
                };
                if line.starts_with("* guest") && line.ends_with(" joined #lobby") {
                    continue;
                }
                let parsed = line
                    .strip_prefix('<')
                    .and_then(|l| l.split_once("> "))
                    .and_then(|(nick, text)| {
                        let (from, seq) = text.strip_prefix('c')?.split_once('-')?;
                        Some((
                            nick,
                            from.parse::<usize>().ok()?,
                            seq.parse::<usize>().ok()?,
                        ))
                    });
                let Some((nick, from, seq)) = parsed else {
                    panic!("{}: unexpected line {line:?}", c.nick)
                };
                assert_eq!(
                    line,
                    format!("<{nick}> c{from}-{seq}"),
                    "{}: merged or mangled",
                    c.nick
                );
                assert_eq!(
                    index.get(nick),
                    Some(&from),
                    "{}: wrong sender {line:?}",
                    c.nick
                );
                assert_ne!(from, i, "{} got its own message back", c.nick);
                assert_eq!(seq, next[from], "{}: lost or reordered: {line:?}", c.nick);
                next[from] += 1;
                left -= 1;
            }
            // Nothing else is queued: the next line answers a fresh /who.
            assert_got_nothing(&mut c);
            // Kept open until every client is done (a departure would be a line).
            Some(c)
        }));
    }
    let done: Vec<Option<ChatClient>> = threads
        .into_iter()
        .map(|thread| thread.join().expect("a client failed"))
        .collect();
    drop(done);
}

/// `telnet HOST PORT` (Debian's): typing `hello` Enter sends `hello\r\n`; Ctrl-C
/// sends `IAC IP IAC DO TIMING-MARK` and then discards output until the server
/// answers `IAC WILL TIMING-MARK`. The line after it must be a line, not
/// `! invalid utf-8`, and the telnet user must keep receiving messages.
fn telnet_ctrl_c_keeps_receiving(t: Target) {
    let server = t.chat(config());
    let mut tn = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    tn.expect_line(|l| l == format!("* {} joined #lobby", b.nick));
    tn.send_raw(b"hello\r\n");
    expect_next(&mut b, &format!("<{}> hello", tn.nick));
    tn.send_raw(b"\xff\xf4\xff\xfd\x06");
    tn.send_raw(b"again\r\n");
    expect_next(&mut b, &format!("<{}> again", tn.nick));
    b.send_line("can you hear me?");
    // Exactly the TIMING-MARK answer, then b's message: no error line in between.
    let mut want = b"\xff\xfb\x06".to_vec();
    want.extend_from_slice(format!("<{}> can you hear me?", b.nick).as_bytes());
    assert_eq!(tn.read_raw_line(), Some(want));
    tn.send_raw(b"\xff\xf4\xff\xfd\x06bye\r\n");
    expect_next(&mut b, &format!("<{}> bye", tn.nick));
    b.send_line("bye");
    let mut want = b"\xff\xfb\x06".to_vec();
    want.extend_from_slice(format!("<{}> bye", b.nick).as_bytes());
    assert_eq!(tn.read_raw_line(), Some(want), "answered every time");
}
