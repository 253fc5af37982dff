//! Hostile clients hurt only themselves, part two (README, "Limits and abuse";
//! docs/PROTOCOL.md, "Flow control"): no collateral drops under a `/me` flood, a
//! reader that stops reading is still dropped, bounded `/who` and `/rooms`, the
//! per-address limit, `--flood-rate`, look-alike text, `--quiet-joins-above`. On
//! every transport, over
//! real loopback TCP, with small limits. No test asserts a duration: each checks
//! an outcome (who was dropped, what arrived, in which order).

#![cfg(feature = "net")]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use common::{conformance, conformance_bin, ChatClient, Server, Target};
use echochat::chat::ChatConfig;
use echochat::echo::EchoServerConfig;

conformance!(
    a_me_flood_drops_no_reader,
    a_reader_that_stops_reading_is_still_dropped,
    who_and_rooms_in_a_crowd_never_drop_the_asker,
    excess_connections_from_one_address_are_refused,
    loopback_is_exempt_by_default,
    flood_rate_delays_a_sender_without_dropping_it,
    look_alike_text_is_replaced_and_server_is_reserved,
    echo_refuses_excess_connections_from_one_address,
    quiet_rooms_announce_only_up_to_n_members,
);

conformance_bin!(
    a_me_flood_drops_no_reader,
    excess_connections_from_one_address_are_refused,
    echo_refuses_excess_connections_from_one_address,
    flood_rate_delays_a_sender_without_dropping_it,
    quiet_rooms_announce_only_up_to_n_members,
);

/// Reads lines on a thread until `done` matches one; returns every line read.
fn collect_until(
    mut client: ChatClient,
    done: impl Fn(&str) -> bool + Send + 'static,
) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        let mut lines = Vec::new();
        loop {
            match client.read_line() {
                Some(line) => {
                    let last = done(&line);
                    lines.push(line);
                    if last {
                        return lines;
                    }
                }
                None => panic!("closed before the end; last lines {:?}", tail(&lines)),
            }
        }
    })
}

fn tail(lines: &[String]) -> &[String] {
    &lines[lines.len().saturating_sub(5)..]
}

/// Issue: a max-rate `/me` flood of 1,000-byte lines got every other member of the
/// room dropped for `send queue exceeded`. Now the flooder is slowed to what its
/// readers drain, and every reader gets every line.
fn a_me_flood_drops_no_reader(t: Target) {
    const LINES: usize = 1500;
    let server = t.chat(ChatConfig::default().with_send_queue(16 * 1024));
    let attacker = ChatClient::connect(&server);
    let nick = attacker.nick.clone();
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let reader = ChatClient::connect(&server);
            let end = format!("* {nick} done");
            collect_until(reader, move |l| l == end)
        })
        .collect();
    let mut attacker = attacker;
    let mut writer = attacker.stream().try_clone().unwrap();
    let payload = format!("/me {}\n", "x".repeat(1000)).repeat(LINES);
    writer.write_all(payload.as_bytes()).unwrap();
    writer.write_all(b"/me done\n").unwrap();
    let flood_line = format!("* {nick} {}", "x".repeat(1000));
    for reader in readers {
        let lines = reader.join().expect("a reader was dropped or starved");
        let dropped: Vec<_> = lines.iter().filter(|l| l.contains(" left (")).collect();
        assert!(dropped.is_empty(), "members left: {dropped:?}");
        let got = lines.iter().filter(|l| **l == flood_line).count();
        assert_eq!(got, LINES, "a reader missed flood lines");
    }
    // The attacker was slowed, not dropped (nor anyone else).
    attacker.send_line("/who");
    attacker.expect_line(|l| l.starts_with("* in #lobby: "));
}

/// A connection with a small receive buffer that never reads.
fn non_reader(server: &Server) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    socket.into()
}

/// Flow control protects readers, not non-readers: one that stops reading is
/// dropped (its queue stays above half of `--send-queue`), and then the room
/// goes on at full speed.
fn a_reader_that_stops_reading_is_still_dropped(t: Target) {
    // More than the kernel's buffers can take (the server's send buffer grows to
    // a few MB), so the non-reader's queue in the server fills.
    const LINES: usize = 40_000;
    let server = t.chat(ChatConfig::default().with_send_queue(16 * 1024));
    let talker = ChatClient::connect(&server);
    let nick = talker.nick.clone();
    let mut stuck = non_reader(&server);
    stuck.write_all(b"/nick stuck\n").unwrap();
    let reader = ChatClient::connect(&server);
    let end = format!("<{nick}> done");
    let reader = collect_until(reader, move |l| l == end);
    let mut talker = talker;
    let mut writer = talker.stream().try_clone().unwrap();
    let line = format!("{}\n", "y".repeat(200));
    writer.write_all(line.repeat(LINES).as_bytes()).unwrap();
    writer.write_all(b"done\n").unwrap();
    let lines = reader.join().expect("the reader was dropped");
    assert!(
        lines
            .iter()
            .any(|l| l == "* stuck left (send queue exceeded)"),
        "the non-reader was not dropped; last lines {:?}",
        tail(&lines)
    );
    let got = lines
        .iter()
        .filter(|l| l.ends_with(&"y".repeat(200)))
        .count();
    assert_eq!(got, LINES, "the reader missed lines");
    talker.send_line("/who");
    talker.expect_line(|l| l.starts_with("* in #lobby: "));
    drop(stuck);
}

/// Reads one `/who` or `/rooms` reply (its lines start with `header`), checking
/// each line's length; returns the lines.
fn read_listing(client: &mut ChatClient, header: &str, width: usize) -> Vec<String> {
    let first = client.expect_line(|l| l.starts_with(header));
    let mut lines = vec![first];
    // The reply is complete when the listing ends (the `… and K more` marker, or
    // everything shown); a probe line after it marks the end either way.
    client.send_line("/nick probe-end");
    loop {
        let line = client.read_line().expect("the asker was dropped");
        if line.ends_with("probe-end") || line.starts_with("! ") {
            break;
        }
        if line.starts_with(header) {
            lines.push(line);
        }
    }
    for line in &lines {
        assert!(line.len() <= width, "a reply line of {} bytes", line.len());
    }
    lines
}

/// Issue: `/who` in a big room and `/rooms` with many rooms were one line past
/// `--send-queue`, and the asker was dropped. Now: bounded lines, the asker stays.
fn who_and_rooms_in_a_crowd_never_drop_the_asker(t: Target) {
    const CROWD: usize = 300;
    let max_line = 128;
    let server = t.chat(
        ChatConfig::default()
            .with_max_line(max_line)
            .with_send_queue(2048)
            .with_max_conns(Some(CROWD + 10)),
    );
    let mut asker = ChatClient::connect(&server);
    let mut crowd: Vec<ChatClient> = (0..CROWD).map(|_| ChatClient::connect(&server)).collect();
    // Everyone is in #lobby: `/who` lists 301 names (~3 KB), over the send queue.
    asker.send_line("/who");
    let who = read_listing(&mut asker, "* in #lobby: ", max_line);
    assert!(
        who.last().unwrap().contains(" more"),
        "no `… and K more` marker: {who:?}"
    );
    // Everyone goes to a room of their own with a long name.
    for (i, c) in crowd.iter_mut().enumerate() {
        c.send_line(&format!("/join long-room-name-xyz-{i:04}"));
    }
    for c in &mut crowd {
        c.expect_line(|l| l.contains(" joined #long-room-name-xyz-"));
    }
    asker.send_line("/rooms");
    let rooms = read_listing(&mut asker, "* rooms: ", max_line);
    assert!(rooms.last().unwrap().contains(" more"), "{rooms:?}");
}

/// A socket bound to `local` (another loopback address) connected to `server`.
fn connect_from(local: &str, server: SocketAddr) -> ChatClient {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{local}:0").parse().unwrap();
    socket
        .bind(&local.into())
        .expect("bind a second loopback address");
    socket.connect(&server.into()).unwrap();
    ChatClient::connect_raw(socket.into())
}

/// `--max-conns-per-ip 3 --no-loopback-exempt`: from 127.0.0.2 the fourth is
/// refused, 127.0.0.1 has its own count, and a slot comes back once a socket closes.
fn excess_connections_from_one_address_are_refused(t: Target) {
    let server = t.chat(
        ChatConfig::default()
            .with_max_conns_per_ip(Some(3))
            .with_loopback_exempt(false),
    );
    let mut three: Vec<ChatClient> = (0..3)
        .map(|_| {
            let mut c = connect_from("127.0.0.2", server.addr);
            c.expect_line(|l| l.starts_with("* welcome "));
            c
        })
        .collect();
    let mut fourth = connect_from("127.0.0.2", server.addr);
    assert_eq!(
        fourth.expect_close(),
        ["! too many connections from your address"]
    );
    let mut local = connect_from("127.0.0.1", server.addr);
    local.expect_line(|l| l.starts_with("* welcome "));
    // One of the three quits; once its socket is closed the address has a slot.
    let mut gone = three.pop().unwrap();
    gone.send_line("/quit");
    gone.expect_close();
    let mut tries = 0;
    loop {
        let mut again = connect_from("127.0.0.2", server.addr);
        match again.read_line().as_deref() {
            Some(l) if l.starts_with("* welcome ") => break,
            Some("! too many connections from your address") => tries += 1,
            other => panic!("unexpected {other:?}"),
        }
        assert!(tries < 50, "the slot never came back");
        thread::sleep(Duration::from_millis(100));
    }
}

/// The default: loopback sources are exempt from the per-address limit.
fn loopback_is_exempt_by_default(t: Target) {
    let server = t.chat(ChatConfig::default().with_max_conns_per_ip(Some(2)));
    let _clients: Vec<ChatClient> = (0..5)
        .map(|_| {
            let mut c = connect_from("127.0.0.2", server.addr);
            c.expect_line(|l| l.starts_with("* welcome "));
            c
        })
        .collect();
}

/// `--flood-rate 2 --flood-burst 1`: six lines sent at once are all delivered, but
/// paced, so a line another client sends right after them overtakes most of them.
fn flood_rate_delays_a_sender_without_dropping_it(t: Target) {
    let mut config = ChatConfig::default().with_flood_rate(Some(2));
    config.flood_burst = 1;
    let server = t.chat(config);
    let mut fast = ChatClient::connect(&server);
    let mut other = ChatClient::connect(&server);
    let mut reader = ChatClient::connect(&server);
    fast.send_raw(b"f1\nf2\nf3\nf4\nf5\nf6\n");
    // `fast`'s first line is through: the rest wait unread behind the rate.
    reader.expect_line(|l| l == format!("<{}> f1", fast.nick));
    other.send_line("overtake");
    let mut order = Vec::new();
    while order.len() < 6 {
        let line = reader.read_line().expect("the reader was closed");
        if line.starts_with(&format!("<{}> ", fast.nick)) || line.ends_with("> overtake") {
            order.push(line.rsplit(' ').next().unwrap().to_string());
        }
    }
    assert_eq!(order.iter().filter(|w| w.starts_with('f')).count(), 5);
    let at = order.iter().position(|w| w == "overtake").unwrap();
    assert!(at <= 1, "the flood was not paced: {order:?}");
    // Nobody was dropped.
    fast.send_line("/who");
    fast.expect_line(|l| l.starts_with("* in #lobby: "));
}

/// Bidirectional overrides become `�`, and nobody may be `server`.
fn look_alike_text_is_replaced_and_server_is_reserved(t: Target) {
    let server = t.chat(ChatConfig::default());
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    a.send_line("/nick SERVER");
    a.expect_line(|l| l == "! nick SERVER is reserved");
    a.send_line("hi \u{202E}olleh\u{2028}x");
    b.expect_line(|l| l == format!("<{}> hi \u{FFFD}olleh\u{FFFD}x", a.nick));
}

/// The echo server's per-address limit: the third connection from 127.0.0.2 is
/// closed at once, the others echo; a slot comes back once one closes.
fn echo_refuses_excess_connections_from_one_address(t: Target) {
    let mut config = EchoServerConfig::default();
    config.max_conns_per_ip = Some(2);
    config.loopback_exempt = false;
    let server = t.echo(config);
    // Whether a new connection from 127.0.0.2 is served (echoes) or closed.
    let served = || {
        let c = connect_from("127.0.0.2", server.addr);
        let mut s = c.stream().try_clone().unwrap();
        if s.write_all(b"p\n").is_err() {
            return None;
        }
        let mut buf = [0u8; 2];
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(n) if n > 0 => Some(s),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => panic!("no answer"),
            Err(_) => None,
        }
    };
    let a = served().expect("the first is served");
    let _b = served().expect("the second is served");
    assert!(served().is_none(), "the third was served");
    drop(a);
    let mut tries = 0;
    while served().is_none() {
        tries += 1;
        assert!(tries < 50, "the slot never came back");
        thread::sleep(Duration::from_millis(100));
    }
}

/// `--quiet-joins-above 2`: arrivals, departures and renames are announced in a
/// room of 2 (counting the user concerned) and not in a room of 3 or 4, whether
/// they come from connecting, `/join`, `/nick`, `/quit` or a disconnect; the user
/// concerned still gets its own lines. Each check reads the watcher's very next
/// line: a notice the server should have kept back would come before it.
fn quiet_rooms_announce_only_up_to_n_members(t: Target) {
    let server = t.chat(ChatConfig::default().with_quiet_joins_above(Some(2)));
    let mut a = ChatClient::connect(&server);
    let mut b = ChatClient::connect(&server);
    let next = |c: &mut ChatClient| c.read_line().expect("closed");
    assert_eq!(next(&mut a), format!("* {} joined #lobby", b.nick));
    // A third arrival (3 members): nobody is told.
    let mut c = ChatClient::connect(&server);
    c.send_line("hi from c");
    for w in [&mut a, &mut b] {
        assert_eq!(next(w), format!("<{}> hi from c", c.nick));
    }
    // A rename in a room of 3: the renamer alone.
    c.send_line("/nick carol");
    assert_eq!(next(&mut c), format!("* {} is now known as carol", c.nick));
    c.send_line("renamed");
    for w in [&mut a, &mut b] {
        assert_eq!(next(w), "<carol> renamed");
    }
    // A fourth arrives and disconnects: neither is announced.
    let d = ChatClient::connect(&server);
    d.shutdown_write();
    let mut d = d;
    assert_eq!(d.expect_close(), Vec::<String>::new());
    c.send_line("after d");
    for w in [&mut a, &mut b] {
        assert_eq!(next(w), "<carol> after d");
    }
    // carol hops out of a room of 3: only her own `joined`.
    c.send_line("/join side");
    assert_eq!(next(&mut c), "* carol joined #side");
    b.send_line("after hop");
    assert_eq!(next(&mut a), format!("<{}> after hop", b.nick));
    // #lobby is down to a and b: a departure, an arrival and a rename are told.
    b.send_line("/quit");
    assert_eq!(next(&mut b), "* bye");
    assert_eq!(next(&mut a), format!("* {} left (quit)", b.nick));
    c.send_line("/join lobby");
    assert_eq!(next(&mut c), "* carol joined #lobby");
    assert_eq!(next(&mut a), "* carol joined #lobby");
    c.send_line("/nick cy");
    assert_eq!(next(&mut c), "* carol is now known as cy");
    assert_eq!(next(&mut a), "* carol is now known as cy");
}
