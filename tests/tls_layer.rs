//! The sans-IO TLS layer (`echochat::tls::TlsServerLayer`) against a real rustls
//! client, in memory (no sockets): handshakes, round trips, backpressure,
//! close_notify, hostile input, the handshake bounds and the flush mapping.
#![cfg(feature = "tls")]

use std::time::Duration;

use echochat::fuzzing::TlsPair;
use echochat::tls::rustls::ProtocolVersion;
use echochat::tls::{TlsError, MAX_HANDSHAKE_BYTES, MAX_UNWRITTEN};
use echochat::Instant;

/// Deterministic pseudo-random bytes (xorshift).
fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[test]
fn tls13_handshake_and_round_trip() {
    let mut p = TlsPair::new(false);
    p.handshake();
    assert_eq!(p.server.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert!(p.server.is_tls13());
    assert_eq!(p.server.server_name(), Some("localhost"));
    assert_eq!(
        p.server.poll_timeout(),
        None,
        "no deadline after the handshake"
    );
    p.client_write(b"hello\n");
    p.pump();
    assert_eq!(p.server_got, b"hello\n");
    assert_eq!(p.server_write(b"hello back\n"), 11);
    p.pump();
    assert_eq!(p.client_got, b"hello back\n");
    assert_eq!(p.flushed, 11);
    assert_eq!(p.server.unwritten(), 0);
}

#[test]
fn tls12_handshake_and_round_trip() {
    let mut p = TlsPair::new(true);
    p.handshake();
    assert_eq!(p.server.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert!(!p.server.is_tls13());
    p.client_write(b"over 1.2\n");
    p.pump();
    assert_eq!(p.server_got, b"over 1.2\n");
    p.server_write(b"ok\n");
    p.pump();
    assert_eq!(p.client_got, b"ok\n");
    assert_eq!(p.flushed, 3);
}

#[test]
fn plaintext_written_during_the_handshake_goes_out_after_it() {
    for tls12 in [false, true] {
        let mut p = TlsPair::new(tls12);
        // The chat core greets a client as soon as it connects.
        assert_eq!(p.server_write(b"* welcome guest1\n"), 17);
        assert!(p.server.poll_ciphertext().is_none());
        assert_eq!(p.server.unflushed_plaintext(), 17);
        p.handshake();
        p.pump();
        assert_eq!(p.client_got, b"* welcome guest1\n");
        assert_eq!(p.flushed, 17, "tls12: {tls12}");
        assert_eq!(p.server.unflushed_plaintext(), 0);
    }
}

#[test]
fn a_mebibyte_both_ways_in_odd_chunks() {
    for tls12 in [false, true] {
        let mut p = TlsPair::new(tls12);
        p.handshake();
        let up = random_bytes(1 << 20, 1);
        let down = random_bytes(1 << 20, 2);
        let sizes = [1usize, 7, 1000, 4097, 16385, 3, 65537];
        let (mut i, mut j, mut k) = (0, 0, 0);
        while i < up.len() || j < down.len() {
            let n = sizes[k % sizes.len()];
            k += 1;
            if i < up.len() {
                let end = (i + n).min(up.len());
                p.client_write(&up[i..end]);
                i = end;
            }
            // Odd-sized deliveries of ciphertext both ways.
            p.deliver_to_server(sizes[(k + 3) % sizes.len()]);
            if j < down.len() {
                let end = (j + n).min(down.len());
                j += p.server_write(&down[j..end]);
            }
            p.deliver_to_client(sizes[(k + 5) % sizes.len()]);
            assert!(p.server.unwritten() <= MAX_UNWRITTEN + 128);
        }
        p.pump();
        assert!(p.server_got == up, "upstream differs (tls12 {tls12})");
        assert!(p.client_got == down, "downstream differs (tls12 {tls12})");
        assert_eq!(p.flushed, down.len());
        assert_eq!(p.server.unwritten(), 0);
    }
}

#[test]
fn unread_plaintext_stops_the_layer_taking_ciphertext() {
    let mut p = TlsPair::new(false);
    p.handshake();
    p.server_reads = false;
    let data = random_bytes(1 << 20, 3);
    p.client_write(&data);
    let offered = p.to_server.len();
    let taken = p.deliver_to_server(usize::MAX);
    assert!(
        taken < offered,
        "took all {offered} bytes with nobody reading"
    );
    let pending = p.server.plaintext_pending();
    assert!(
        pending > 0 && pending <= 48 * 1024,
        "{pending} bytes buffered"
    );
    // Nothing more while nobody reads.
    assert_eq!(p.deliver_to_server(usize::MAX), 0);
    assert_eq!(p.server.plaintext_pending(), pending);
    // Reading in small bites frees room; the rest then goes through.
    let mut rounds = 0;
    while !p.to_server.is_empty() || p.server.has_plaintext() {
        p.server_read(1000);
        p.deliver_to_server(usize::MAX);
        assert!(p.server.plaintext_pending() <= 48 * 1024);
        rounds += 1;
    }
    assert!(rounds > 100);
    assert!(p.server_got == data);
}

#[test]
fn write_capacity_bounds_unwritten_ciphertext() {
    let mut p = TlsPair::new(false);
    p.handshake();
    let data = random_bytes(1 << 20, 4);
    let mut taken = 0;
    loop {
        let n = p.server_write(&data[taken..]);
        if n == 0 {
            break;
        }
        taken += n;
    }
    assert_eq!(taken, MAX_UNWRITTEN);
    assert!(p.server.unwritten() >= MAX_UNWRITTEN);
    assert!(
        p.server.unwritten() < MAX_UNWRITTEN + 1024,
        "{}",
        p.server.unwritten()
    );
    assert_eq!(p.server.write_capacity(), 0);
    p.deliver_to_client(20_000);
    assert!(p.server.write_capacity() >= 16 * 1024);
}

#[test]
fn close_notify_from_the_client_is_its_half_close_on_tls13() {
    let mut p = TlsPair::new(false);
    p.handshake();
    p.client_write(b"last words\n");
    p.client.send_close_notify();
    p.pump();
    assert_eq!(p.server_got, b"last words\n");
    assert!(p.server.peer_closed());
    assert!(p.server.handle_eof(), "clean close");
    // More bytes after close_notify are discarded.
    assert_eq!(p.server.handle_ciphertext(b"junk").expect("ignored"), 4);
    // The server still sends what is pending, then its own close_notify.
    p.server_write(b"last words\n");
    p.server.close();
    p.pump();
    assert_eq!(p.client_got, b"last words\n");
    assert_eq!(p.flushed, 11);
    let mut buf = [0u8; 8];
    let r = std::io::Read::read(&mut p.client.reader(), &mut buf);
    assert_eq!(
        r.expect("clean EOF"),
        0,
        "client sees the server's close_notify"
    );
    assert_eq!(p.server.write_capacity(), 0, "nothing is taken after close");
    assert_eq!(p.server.write_plaintext(b"x"), 0);
}

#[test]
fn after_our_close_the_client_is_not_listened_to() {
    let mut p = TlsPair::new(false);
    p.handshake();
    p.server.close();
    p.pump();
    // A warning alert (illegal in TLS 1.3) would otherwise be answered with a
    // fatal alert after our close_notify.
    p.client_write(b"still talking\n");
    p.client.send_close_notify();
    p.client_output();
    let n = p.to_server.len();
    assert_eq!(p.deliver_to_server(n), n);
    assert_eq!(
        p.server
            .handle_ciphertext(&[21, 3, 3, 0, 2, 1, 90])
            .expect("ignored"),
        7
    );
    assert!(p.server_got.is_empty());
    assert!(p.server.poll_ciphertext().is_none());
    assert!(p.server.error().is_none());
}

#[test]
fn close_notify_on_tls12() {
    let mut p = TlsPair::new(true);
    p.handshake();
    p.client.send_close_notify();
    p.pump();
    assert!(p.server.peer_closed());
    p.server.close();
    p.pump();
    let mut buf = [0u8; 8];
    let r = std::io::Read::read(&mut p.client.reader(), &mut buf);
    assert_eq!(r.expect("clean EOF"), 0);
}

#[test]
fn eof_without_close_notify_is_a_truncation() {
    let mut p = TlsPair::new(false);
    p.handshake();
    assert!(!p.server.handle_eof());
}

/// Feeds `bytes` as a client's first flight; returns the error and the ciphertext
/// the layer had ready afterwards.
fn first_flight(bytes: &[u8]) -> (TlsError, Vec<u8>) {
    let p = TlsPair::new(false);
    let mut server = p.server;
    let err = server.handle_ciphertext(bytes).expect_err("must fail");
    let mut out = Vec::new();
    while let Some(b) = server.poll_ciphertext() {
        out.extend_from_slice(&b);
    }
    // The error sticks and nothing else comes out.
    assert_eq!(server.handle_ciphertext(b"more").expect_err("sticky"), err);
    assert!(server.poll_ciphertext().is_none());
    assert_eq!(server.write_plaintext(b"x"), 0);
    assert_eq!(server.poll_timeout(), None);
    (err, out)
}

/// A plaintext TLS alert record: `[21, 3, 3, 0, 2, level, description]`.
fn is_alert(out: &[u8]) -> bool {
    out.len() == 7 && out[0] == 21 && out[3..5] == [0, 2]
}

#[test]
fn garbage_instead_of_a_client_hello_gets_an_alert_and_a_close() {
    let (err, out) = first_flight(&random_bytes(300, 5));
    assert!(matches!(err, TlsError::Protocol(_)), "{err:?}");
    assert!(is_alert(&out), "no alert: {out:?}");
    // A record that claims to be a handshake but holds junk.
    let (err, out) = first_flight(&[22, 3, 1, 0, 5, 1, 0, 0, 1, 0xff]);
    assert!(matches!(err, TlsError::Protocol(_)), "{err:?}");
    assert!(is_alert(&out), "no alert: {out:?}");
}

#[test]
fn plaintext_on_the_tls_port_gets_an_alert_and_a_close() {
    let (err, out) = first_flight(b"hello\n");
    assert!(matches!(err, TlsError::Protocol(_)), "{err:?}");
    assert!(is_alert(&out), "no alert: {out:?}");
    let (_, out) = first_flight(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(is_alert(&out), "no alert: {out:?}");
}

#[test]
fn a_handshake_that_stops_halfway_is_dropped_at_the_deadline() {
    let mut p = TlsPair::new(false);
    p.client_output();
    let hello = p.to_server.len();
    assert!(hello > 100);
    p.deliver_to_server(hello / 2);
    assert!(p.server.is_handshaking());
    let deadline = Instant::ZERO + Duration::from_secs(10);
    assert_eq!(p.server.poll_timeout(), Some(deadline));
    assert_eq!(echochat::tls::handshake_deadline(Instant::ZERO), deadline);
    p.server
        .handle_timeout(Instant::from_millis(9_999))
        .expect("not yet");
    let err = p.server.handle_timeout(deadline).expect_err("too late");
    assert!(matches!(err, TlsError::HandshakeTimeout(_)), "{err:?}");
    assert_eq!(p.server.error(), Some(&err));
    assert_eq!(p.server.poll_timeout(), None);
    // A close_notify (where TLS allows one) goes out before the close.
    let out = p.server.poll_ciphertext().expect("close_notify");
    assert!(is_alert(&out), "{out:?}");
    assert!(p.server.handle_ciphertext(&p.to_server[..]).is_err());
}

#[test]
fn a_handshake_that_stops_after_the_server_flight_times_out_too() {
    let mut p = TlsPair::new(false);
    p.client_output();
    p.deliver_to_server(usize::MAX); // the whole ClientHello
    p.server_output();
    assert!(!p.to_client.is_empty(), "server flight");
    // The client never answers.
    let err = p
        .server
        .handle_timeout(Instant::from_millis(10_000))
        .expect_err("too late");
    assert!(matches!(err, TlsError::HandshakeTimeout(_)));
    assert!(
        p.server.poll_ciphertext().is_some(),
        "an encrypted close_notify"
    );
}

#[test]
fn an_oversized_handshake_is_refused() {
    // A ClientHello announcing 65535 bytes, sent in 16 KiB records: rustls would
    // buffer up to 64 KiB of it; the layer stops at its own bound.
    let mut flight = Vec::new();
    let mut body = vec![1u8, 0, 0xff, 0xff];
    body.resize(65535 + 4, 0x41);
    for chunk in body.chunks(16 * 1024) {
        flight.extend_from_slice(&[22, 3, 1]);
        flight.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        flight.extend_from_slice(chunk);
    }
    let mut p = TlsPair::new(false);
    let mut taken = 0;
    let err = loop {
        match p.server.handle_ciphertext(&flight[taken..]) {
            Ok(n) => {
                assert!(n > 0, "no progress");
                taken += n;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err, TlsError::HandshakeTooLarge(MAX_HANDSHAKE_BYTES));
    assert!(taken <= MAX_HANDSHAKE_BYTES);
}

#[test]
fn ciphertext_written_maps_back_to_plaintext() {
    let mut p = TlsPair::new(false);
    // Handshake bytes carry no plaintext.
    p.handshake();
    assert_eq!(p.flushed, 0);
    let pieces: [&[u8]; 3] = [b"a\n", b"bcdefgh\n", &[b'x'; 20_000]];
    for piece in pieces {
        assert_eq!(p.server_write(piece), piece.len());
    }
    let cipher = p.to_client.len();
    assert_eq!(p.server.unwritten(), cipher);
    assert!(cipher > 20_010);
    assert_eq!(p.server.unflushed_plaintext(), 20_010);
    // Byte by byte: plaintext is reported exactly at the end of each record.
    let mut reports = Vec::new();
    for at in 1..=cipher {
        let n = p.deliver_to_client(1);
        assert!(p.flushed <= 20_010);
        if n > 0 {
            reports.push((at, n));
        }
    }
    let sizes: Vec<usize> = reports.iter().map(|r| r.1).collect();
    // The 20 000 bytes go out as two records (16 KiB + the rest).
    assert_eq!(sizes, [2, 8, 16_384, 20_000 - 16_384]);
    assert_eq!(
        reports.last().expect("some").0,
        cipher,
        "the last byte completes it"
    );
    assert_eq!(p.client_got.len(), 20_010);
    // close_notify bytes map to nothing.
    p.server.close();
    p.server_output();
    let n = p.to_client.len();
    assert!(n > 0);
    assert_eq!(p.deliver_to_client(n), 0);
}
