//! Echo over TLS on every transport, over real loopback TCP: in-process
//! (`threads::…`, `tokio::…`, `smol::…`, `pool::…`) and a subset through the binary
//! (`bin_…`, with `--tls-self-signed`). Everything in echo holds over TLS: byte-exact
//! echo, backpressure, limits, half-close (TLS 1.3 `close_notify`), shutdown.

#![cfg(all(feature = "net", feature = "tls"))]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::tls::{connect_raw, TlsClient, Version};
use common::{conformance, conformance_bin, echo_once, read_to_close, Rng, Target};
use echochat::echo::EchoServerConfig;
use echochat::tls::rustls::ProtocolVersion;

conformance!(
    round_trip,
    eight_mib_in_odd_writes,
    tls13_half_close_gets_everything_then_close_notify,
    tls12_works,
    max_conns,
    shutdown_ends_with_close_notify,
    plaintext_beside_tls,
    bad_input_is_closed_others_undisturbed,
    a_handshake_that_stops_halfway_is_dropped,
);

conformance_bin!(
    round_trip,
    eight_mib_in_odd_writes,
    tls13_half_close_gets_everything_then_close_notify,
    max_conns,
    shutdown_ends_with_close_notify,
    plaintext_beside_tls,
    bad_input_is_closed_others_undisturbed,
);

fn round_trip(t: Target) {
    let server = t.tls().echo(EchoServerConfig::default());
    let mut c = TlsClient::connect(&server);
    assert_eq!(c.version(), Some(ProtocolVersion::TLSv1_3));
    c.write_all(b"hello over tls\n");
    assert_eq!(c.read_exact(15), b"hello over tls\n");
    c.write_all(&[0xff, 0xf4, 0xff, 0xfd, 0x06]);
    assert_eq!(
        c.read_exact(5),
        [0xff, 0xf4, 0xff, 0xfd, 0x06],
        "IAC is data"
    );
}

fn eight_mib_in_odd_writes(t: Target) {
    const TOTAL: usize = 8 * 1024 * 1024;
    /// Most bytes sent and not yet echoed (well under the server's buffers).
    const WINDOW: usize = 48 * 1024;
    let server = t.tls().echo(EchoServerConfig::default());
    let mut c = TlsClient::connect(&server);
    let mut rng = Rng::new(0x7157);
    let data = rng.bytes(TOTAL);
    let (mut sent, mut got) = (0, Vec::with_capacity(TOTAL));
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < TOTAL {
        if sent < TOTAL && sent - got.len() < WINDOW {
            let n = rng.range(1, 7919).min(TOTAL - sent);
            c.write_all(&data[sent..sent + n]);
            sent += n;
            continue;
        }
        let n = c.read(&mut buf).expect("read the echo");
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data, "the echo differs");
}

fn tls13_half_close_gets_everything_then_close_notify(t: Target) {
    let server = t.tls().echo(EchoServerConfig::default());
    let mut c = TlsClient::connect(&server);
    let data = Rng::new(3).bytes(200_000);
    c.write_all(&data);
    c.close_notify();
    let (back, clean) = c.read_to_close();
    assert!(back == data, "got {} of {} bytes", back.len(), data.len());
    assert!(clean, "the server ends with its close_notify");
}

fn tls12_works(t: Target) {
    let server = t.tls().echo(EchoServerConfig::default());
    let mut c = TlsClient::try_connect(&server, Version::Tls12).expect("TLS 1.2");
    assert_eq!(c.version(), Some(ProtocolVersion::TLSv1_2));
    c.write_all(b"twelve");
    assert_eq!(c.read_exact(6), b"twelve");
    c.close_notify();
    // TLS 1.2 has no half-close: the server may close at once; it closes cleanly.
    let (_, clean) = c.read_to_close();
    assert!(clean);
}

fn max_conns(t: Target) {
    let mut config = EchoServerConfig::default();
    config.max_conns = Some(1);
    let server = t.tls().echo(config);
    let mut a = TlsClient::connect(&server);
    a.write_all(b"a");
    assert_eq!(a.read_exact(1), b"a");
    assert!(
        TlsClient::try_connect(&server, Version::Default).is_err(),
        "the second is closed at once"
    );
    a.write_all(b"still");
    assert_eq!(a.read_exact(5), b"still");
}

fn shutdown_ends_with_close_notify(t: Target) {
    let mut server = t.tls().echo(EchoServerConfig::default());
    let mut c = TlsClient::connect(&server);
    c.write_all(b"before");
    assert_eq!(c.read_exact(6), b"before");
    server.stop().expect("server stops");
    let (rest, clean) = c.read_to_close();
    assert!(rest.is_empty());
    assert!(clean, "close_notify before the close");
}

fn plaintext_beside_tls(t: Target) {
    let server = t.tls_beside().echo(EchoServerConfig::default());
    let mut plain = server.connect();
    assert_eq!(echo_once(&mut plain, b"plain"), b"plain");
    let mut c = TlsClient::connect(&server);
    c.write_all(b"secret");
    assert_eq!(c.read_exact(6), b"secret");
    assert_eq!(echo_once(&mut plain, b"again"), b"again");
}

/// The first bytes of a real ClientHello (a handshake that stops halfway).
pub fn half_a_client_hello() -> Vec<u8> {
    use echochat::tls::rustls::{pki_types::ServerName, ClientConnection};
    let config = echochat::tls::client_config(None, true).unwrap();
    let mut conn =
        ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello.truncate(hello.len() / 2);
    hello
}

fn bad_input_is_closed_others_undisturbed(t: Target) {
    let server = t.tls().echo(EchoServerConfig::default());
    let mut good = TlsClient::connect(&server);
    // Plaintext on the TLS port: an alert (or nothing), then the close.
    let mut plain = connect_raw(&server);
    plain.write_all(b"hello\n").unwrap();
    let got = read_to_close(&mut plain);
    assert!(got.is_empty() || got[0] == 0x15, "an alert record: {got:?}");
    // Garbage.
    let mut garbage = connect_raw(&server);
    let _ = garbage.write_all(&Rng::new(9).bytes(4000));
    read_to_close(&mut garbage);
    good.write_all(b"fine");
    assert_eq!(good.read_exact(4), b"fine");
}

fn a_handshake_that_stops_halfway_is_dropped(t: Target) {
    let server = t.tls().echo(EchoServerConfig::default());
    let mut good = TlsClient::connect(&server);
    let mut stalled = connect_raw(&server);
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stalled.write_all(&half_a_client_hello()).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match stalled.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(25),
        "dropped after {took:?} (the handshake has 10 s)"
    );
    good.write_all(b"ok");
    assert_eq!(good.read_exact(2), b"ok");
}
