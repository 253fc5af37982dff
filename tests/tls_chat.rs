//! Chat over TLS on every transport, over real loopback TCP: in-process
//! (`threads::…`, `tokio::…`, `smol::…`, `pool::…`) and a subset through the binary
//! (`bin_…`, with `--tls-self-signed`). TLS and plaintext clients share one server;
//! a TLS client is welcomed and announced only once its handshake completes, and
//! a hostile or stalled one leaves no trace.

#![cfg(all(feature = "net", feature = "tls"))]

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::tls::{connect_raw, TlsClient, Version};
use common::{conformance, conformance_bin, read_to_close, ChatClient, Rng, Target, Via};
use echochat::chat::ChatConfig;
use echochat::tls::rustls::ProtocolVersion;

conformance!(
    tls_and_plaintext_clients_talk,
    tls12_client_talks,
    close_notify_is_a_departure,
    slow_tls_reader_is_dropped,
    max_conns_counts_handshakes,
    shutdown_notice_then_close_notify,
    hostile_tls_clients_leave_no_trace,
);

conformance_bin!(
    tls_and_plaintext_clients_talk,
    slow_tls_reader_is_dropped,
    max_conns_counts_handshakes,
    shutdown_notice_then_close_notify,
    hostile_tls_clients_leave_no_trace,
);

fn tls_and_plaintext_clients_talk(t: Target) {
    let server = t.tls_beside().chat(ChatConfig::default());
    let mut a = ChatClient::connect(&server);
    let mut b = TlsClient::connect(&server);
    assert_eq!(b.version(), Some(ProtocolVersion::TLSv1_3));
    let b_nick = b.welcome();
    assert_ne!(a.nick, b_nick);
    a.expect_line(|l| l == format!("* {b_nick} joined #lobby"));
    a.send_line("hello, tls");
    assert_eq!(b.read_line().unwrap(), format!("<{}> hello, tls", a.nick));
    b.send_line("hi, plaintext");
    assert_eq!(a.read_line().unwrap(), format!("<{b_nick}> hi, plaintext"));
    b.send_line("/who");
    let who = b.expect_line(|l| l.starts_with("* in #lobby: "));
    assert!(who.contains(&a.nick) && who.contains(&b_nick), "{who}");
}

fn tls12_client_talks(t: Target) {
    let server = t.tls_beside().chat(ChatConfig::default());
    let mut a = ChatClient::connect(&server);
    let mut b = TlsClient::try_connect(&server, Version::Tls12).expect("TLS 1.2");
    assert_eq!(b.version(), Some(ProtocolVersion::TLSv1_2));
    let b_nick = b.welcome();
    b.send_line("over 1.2");
    a.expect_line(|l| l == format!("<{b_nick}> over 1.2"));
}

fn close_notify_is_a_departure(t: Target) {
    let server = t.tls_beside().chat(ChatConfig::default());
    let mut a = ChatClient::connect(&server);
    let mut b = TlsClient::connect(&server);
    let b_nick = b.welcome();
    b.write_all(b"last words\nunterminated");
    b.close_notify();
    a.expect_line(|l| l == format!("<{b_nick}> last words"));
    assert_eq!(a.read_line().unwrap(), format!("<{b_nick}> unterminated"));
    assert_eq!(
        a.read_line().unwrap(),
        format!("* {b_nick} left (connection closed)")
    );
    let (_, clean) = b.read_to_close();
    assert!(clean, "the server answers with its close_notify");
}

fn slow_tls_reader_is_dropped(t: Target) {
    let config = ChatConfig::default().with_send_queue(64 * 1024);
    let server = t.tls_beside().chat(config);
    let mut talker = ChatClient::connect(&server);
    let mut slow = TlsClient::connect(&server);
    let slow_nick = slow.welcome();
    talker.expect_line(|l| l == format!("* {slow_nick} joined #lobby"));
    let mut observer = ChatClient::connect(&server);
    talker.expect_line(|l| l == format!("* {} joined #lobby", observer.nick));
    let left = format!("* {slow_nick} left (send queue exceeded)");
    let seen = Arc::new(AtomicBool::new(false));
    // The observer keeps reading throughout (one that stopped would be dropped as a
    // non-reader too, docs/PROTOCOL.md "Flow control"): first the notice, then the
    // talker's line after it.
    let watcher = {
        let (seen, left) = (Arc::clone(&seen), left.clone());
        let after = format!("<{}> after", talker.nick);
        thread::spawn(move || {
            observer.expect_line(|l| l == left);
            seen.store(true, Ordering::Release);
            observer.expect_line(|l| l == after);
        })
    };
    let line = "x".repeat(1000);
    let mut sent = 0;
    while !seen.load(Ordering::Acquire) {
        assert!(sent < 50_000, "the slow TLS reader was never dropped");
        talker.send_line(&line);
        sent += 1;
    }
    talker.expect_line(|l| l == left);
    // The others keep talking.
    talker.send_line("after");
    watcher
        .join()
        .expect("the observer missed the talker's line after the drop");
    drop(slow);
}

fn max_conns_counts_handshakes(t: Target) {
    let config = ChatConfig::default().with_max_conns(Some(2));
    let server = t.tls_beside().chat(config);
    let mut a = ChatClient::connect(&server);
    let mut b = TlsClient::connect(&server);
    let b_nick = b.welcome();
    a.expect_line(|l| l == format!("* {b_nick} joined #lobby"));
    // Full: a TLS newcomer is closed without text, a plaintext one told.
    assert!(TlsClient::try_connect(&server, Version::Default).is_err());
    let mut extra = ChatClient::connect_raw(server.connect());
    assert_eq!(extra.read_line().as_deref(), Some("! server full"));
    a.send_line("/who");
    let who = a.expect_line(|l| l.starts_with("* in #lobby: "));
    assert_eq!(who, format!("* in #lobby: {}, {b_nick}", a.nick));
}

fn shutdown_notice_then_close_notify(t: Target) {
    let mut server = t.tls().chat(ChatConfig::default());
    let mut c = TlsClient::connect(&server);
    c.welcome();
    server.stop().expect("server stops");
    let (rest, clean) = c.read_to_close();
    assert_eq!(String::from_utf8_lossy(&rest), "* server shutting down\n");
    assert!(clean, "close_notify after the notice");
}

/// The first bytes of a real ClientHello (a handshake that stops halfway).
fn half_a_client_hello() -> Vec<u8> {
    use echochat::tls::rustls::{pki_types::ServerName, ClientConnection};
    let config = echochat::tls::client_config(None, true).unwrap();
    let mut conn =
        ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello.truncate(hello.len() / 2);
    hello
}

fn hostile_tls_clients_leave_no_trace(t: Target) {
    let config = ChatConfig::default().with_ready_timeout(Duration::from_secs(1));
    let server = t.tls_beside().chat(config);
    let mut a = ChatClient::connect(&server);
    a.send_line("/who");
    assert_eq!(a.read_line().unwrap(), format!("* in #lobby: {}", a.nick));
    // Plaintext on the TLS port: an alert (or nothing), then the close.
    let mut plain = connect_raw(&server);
    plain.write_all(b"hello\n").unwrap();
    let got = read_to_close(&mut plain);
    assert!(got.is_empty() || got[0] == 0x15, "an alert record: {got:?}");
    // Garbage.
    let mut garbage = connect_raw(&server);
    let _ = garbage.write_all(&Rng::new(5).bytes(3000));
    read_to_close(&mut garbage);
    // A handshake that stops halfway (the binary's ready timeout is 10 s: lib only).
    if t.via == Via::Lib {
        let mut stalled = connect_raw(&server);
        stalled.write_all(&half_a_client_hello()).unwrap();
        read_to_close(&mut stalled);
    }
    // Nobody noticed: the next line `a` gets is the answer to `/who`.
    a.send_line("/who");
    assert_eq!(a.read_line().unwrap(), format!("* in #lobby: {}", a.nick));
    let mut b = TlsClient::connect(&server);
    let welcome = b.expect_line(|l| l.starts_with("* welcome "));
    assert!(welcome.ends_with(", 2 users online"), "{welcome}");
    assert_eq!(a.read_line().unwrap(), "* guest2 joined #lobby");
}
