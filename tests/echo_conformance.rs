//! Echo conformance (RFC 862 as the README describes it): every test runs against every transport compiled
//! in, in-process (`threads::…`, `tokio::…`, `smol::…`), and a subset through the
//! `echochat` binary (`bin_threads::…`, …), over real loopback TCP.

#![cfg(feature = "net")]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown as How, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use common::{
    closed_at_once, conformance, conformance_bin, echo_once, read_to_close, Rng, Target, TIMEOUT,
};
use echochat::echo::EchoServerConfig;

conformance!(
    round_trip,
    bulk_8mib_random_bytes,
    many_concurrent_clients,
    half_close_flushes_then_closes,
    reader_that_never_reads_is_bounded,
    max_conns_refuses_extra_clients,
    once_serves_one_client,
    udp_datagrams,
    shutdown_with_clients_connected,
);

conformance_bin!(
    round_trip,
    bulk_8mib_random_bytes,
    half_close_flushes_then_closes,
    max_conns_refuses_extra_clients,
    once_serves_one_client,
    udp_datagrams,
    shutdown_with_clients_connected,
    accept_survives_fd_exhaustion,
    default_max_conns_is_what_the_process_can_hold,
);

fn config() -> EchoServerConfig {
    EchoServerConfig::default()
}

fn round_trip(t: Target) {
    let server = t.echo(config());
    let mut client = server.connect();
    for i in 0..100 {
        let line = format!("line {i}: hello, echo\n");
        assert_eq!(echo_once(&mut client, line.as_bytes()), line.as_bytes());
    }
    let many = b"one\ntwo\r\nthree\n\0\xff binary too";
    assert_eq!(echo_once(&mut client, many), many);
    client.shutdown(How::Write).unwrap();
    assert!(read_to_close(&mut client).is_empty());
}

fn bulk_8mib_random_bytes(t: Target) {
    const LEN: usize = 8 << 20;
    let server = t.echo(config());
    let client = server.connect();
    let data = Rng::new(0x5eed).bytes(LEN);
    let writer = {
        let mut client = client.try_clone().unwrap();
        let data = data.clone();
        thread::spawn(move || {
            let mut rng = Rng::new(7);
            let mut sent = 0;
            while sent < data.len() {
                // Odd sizes, from 1 byte to ~100 KiB.
                let n = rng.range(1, 100_003).min(data.len() - sent);
                client.write_all(&data[sent..sent + n]).unwrap();
                sent += n;
            }
            client.shutdown(How::Write).unwrap();
        })
    };
    let back = read_to_close(&mut client.try_clone().unwrap());
    writer.join().unwrap();
    assert_eq!(back.len(), LEN);
    assert!(back == data, "echoed bytes differ");
}

fn many_concurrent_clients(t: Target) {
    const CLIENTS: usize = 200;
    let server = t.echo(config());
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect()).collect();
    for round in 0..3 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(format!("client {i} round {round}\n").as_bytes())
                .unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let want = format!("client {i} round {round}\n");
            let mut back = vec![0; want.len()];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, want.as_bytes());
        }
    }
}

fn half_close_flushes_then_closes(t: Target) {
    let server = t.echo(config());
    let mut client = server.connect();
    let data = Rng::new(42).bytes(300_000);
    let writer = {
        let mut client = client.try_clone().unwrap();
        let data = data.clone();
        thread::spawn(move || {
            client.write_all(&data).unwrap();
            client.shutdown(How::Write).unwrap();
        })
    };
    let back = read_to_close(&mut client);
    writer.join().unwrap();
    assert!(
        back == data,
        "got {} of {} bytes back",
        back.len(),
        data.len()
    );
}

/// A client with tiny socket buffers that writes without ever reading.
fn hog(t: &common::Server) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.connect(&t.addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    // A write that makes no progress for this long means the server stopped reading.
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    stream
}

/// Writes up to `limit` bytes; returns how many the server accepted before writes stalled.
fn write_until_stalled(stream: &mut TcpStream, limit: usize) -> (usize, bool) {
    let chunk = vec![0x5a; 64 * 1024];
    let mut total = 0;
    while total < limit {
        match stream.write(&chunk) {
            Ok(n) => total += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (total, true);
            }
            Err(e) => panic!("hog write failed after {total} bytes: {e}"),
        }
    }
    (total, false)
}

/// Most bytes the kernel may buffer for one loopback connection: the server's
/// receive and send buffers can autotune up to `tcp_rmem`/`tcp_wmem` maxima (here
/// typically 6 or 32 MiB + 4 MiB), plus 1 MiB for the client's small buffers and
/// the server's own bounded 64 KiB. What the server itself holds is what matters;
/// this is the most a black-box client can tell about it.
fn kernel_buffer_bound() -> usize {
    let max_of = |path: &str| -> Option<usize> {
        std::fs::read_to_string(path)
            .ok()?
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()
    };
    match (
        max_of("/proc/sys/net/ipv4/tcp_rmem"),
        max_of("/proc/sys/net/ipv4/tcp_wmem"),
    ) {
        (Some(r), Some(w)) => r + w + (1 << 20),
        _ => 48 << 20,
    }
}

fn reader_that_never_reads_is_bounded(t: Target) {
    let bound = kernel_buffer_bound();
    // A server that buffered without limit would take all of it.
    let limit = bound + (16 << 20);
    let server = t.echo(config());
    let mut hog = hog(&server);
    let writer = thread::spawn(move || {
        let result = write_until_stalled(&mut hog, limit);
        (result, hog)
    });
    // Meanwhile, and after it stalled, another client gets its echoes.
    let mut other = server.connect();
    for i in 0..20 {
        let msg = format!("still here {i}\n");
        assert_eq!(echo_once(&mut other, msg.as_bytes()), msg.as_bytes());
    }
    let ((accepted, stalled), hog) = writer.join().unwrap();
    eprintln!(
        "{:?}: {accepted} bytes accepted from a client that never reads (bound {bound})",
        t.transport
    );
    assert!(
        stalled,
        "the server read all {limit} bytes from a client that never reads"
    );
    assert!(
        accepted <= bound,
        "the server took {accepted} bytes: more than the kernel can buffer ({bound})"
    );
    for i in 0..20 {
        let msg = format!("after the stall {i}\n");
        assert_eq!(echo_once(&mut other, msg.as_bytes()), msg.as_bytes());
    }
    drop(hog);
}

fn max_conns_refuses_extra_clients(t: Target) {
    let mut config = config();
    config.max_conns = Some(2);
    let server = t.echo(config);
    let mut a = server.connect();
    let mut b = server.connect();
    assert_eq!(echo_once(&mut a, b"a\n"), b"a\n");
    assert_eq!(echo_once(&mut b, b"b\n"), b"b\n");
    let mut refused = server.connect();
    assert!(closed_at_once(&mut refused), "the third client got data");
    assert_eq!(echo_once(&mut a, b"a again\n"), b"a again\n");
    assert_eq!(echo_once(&mut b, b"b again\n"), b"b again\n");
    // One leaves (its EOF arrives after its slot is free): a new client is admitted.
    a.shutdown(How::Write).unwrap();
    assert!(read_to_close(&mut a).is_empty());
    let mut c = server.connect();
    assert_eq!(echo_once(&mut c, b"c\n"), b"c\n");
    assert_eq!(echo_once(&mut b, b"b still\n"), b"b still\n");
}

fn once_serves_one_client(t: Target) {
    let mut cfg = config();
    cfg.once = true;
    let mut server = t.echo(cfg);
    let mut client = server.connect();
    assert_eq!(echo_once(&mut client, b"only once\n"), b"only once\n");
    assert!(
        server.wait_exit(Duration::from_millis(1)).is_none(),
        "returned while its client was connected"
    );
    client.shutdown(How::Write).unwrap();
    assert!(read_to_close(&mut client).is_empty());
    match server.wait_exit(TIMEOUT) {
        Some(result) => result.expect("server failed"),
        None => panic!("a --once server still runs after its client left"),
    }
}

fn udp_datagrams(t: Target) {
    let server = t.echo_udp(config());
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut rng = Rng::new(3);
    let mut buf = vec![0u8; 70_000];
    for len in [1, 5, 1000, 1472, 9000, 60_000] {
        let datagram = rng.bytes(len);
        udp.send_to(&datagram, server.addr).unwrap();
        let (n, from) = udp.recv_from(&mut buf).expect("echoed datagram");
        assert_eq!(from, server.addr);
        assert!(
            buf[..n] == datagram[..],
            "datagram of {len} bytes came back as {n} bytes"
        );
    }
    // TCP still works alongside.
    let mut tcp = server.connect();
    assert_eq!(echo_once(&mut tcp, b"tcp\n"), b"tcp\n");
}

fn shutdown_with_clients_connected(t: Target) {
    let mut server = t.echo(config());
    let mut idle = server.connect();
    let mut busy = server.connect();
    assert_eq!(echo_once(&mut idle, b"x"), b"x");
    assert_eq!(echo_once(&mut busy, b"y"), b"y");
    // One client stalls the server's writes, so only the grace period ends it.
    let mut stalled = hog(&server);
    let (_, was_stalled) = write_until_stalled(&mut stalled, kernel_buffer_bound() + (16 << 20));
    assert!(was_stalled);
    busy.write_all(b"pending at shutdown").unwrap();
    server.stop().expect("server failed");
    assert!(read_to_close(&mut idle).is_empty());
    let rest = read_to_close(&mut busy);
    assert!(
        b"pending at shutdown".starts_with(&rest),
        "unexpected bytes {rest:?}"
    );
}

/// Binary only (the limit applies to the server process): with more clients than
/// file descriptors, `accept` fails with EMFILE; the server backs off and keeps
/// serving, and accepts the waiting clients once descriptors are free again.
#[cfg(feature = "cli")]
fn accept_survives_fd_exhaustion(t: Target) {
    // util-linux is on every Debian system, and `.ci/run` installs it: a missing
    // `prlimit` fails this test rather than letting it pass without running.
    assert!(
        common::have_prlimit(),
        "this test needs `prlimit` (util-linux): apt-get install util-linux"
    );
    // A --max-conns above what 64 descriptors hold, so that accept runs into EMFILE
    // (the default would refuse the excess first: see `default_max_conns_...`).
    let mut config = config();
    config.max_conns = Some(1000);
    let mut server = t.with_fd_limit(64).echo(config);
    let mut clients: Vec<TcpStream> = (0..100).map(|_| server.connect()).collect();
    assert_eq!(echo_once(&mut clients[0], b"first\n"), b"first\n");
    let mut last = clients.pop().unwrap();
    last.write_all(b"waiting in the backlog\n").unwrap();
    for mut c in clients.drain(..) {
        c.shutdown(How::Write).unwrap();
        read_to_close(&mut c);
    }
    let mut back = vec![0; b"waiting in the backlog\n".len()];
    last.read_exact(&mut back)
        .expect("the server stopped accepting after EMFILE");
    assert_eq!(back, b"waiting in the backlog\n");
    let mut fresh = server.connect();
    assert_eq!(echo_once(&mut fresh, b"fresh\n"), b"fresh\n");
    server.stop().expect("server failed");
}

/// Binary only: with the default `--max-conns` the server holds what its 64
/// descriptors allow (three quarters of them) and closes the excess at once,
/// without ever running out of descriptors; it goes on serving.
#[cfg(feature = "cli")]
fn default_max_conns_is_what_the_process_can_hold(t: Target) {
    assert!(
        common::have_prlimit(),
        "this test needs `prlimit` (util-linux): apt-get install util-linux"
    );
    let mut server = t.with_fd_limit(64).echo(config());
    let mut held: Vec<TcpStream> = Vec::new();
    let mut refused = 0;
    for _ in 0..100 {
        let mut c = server.connect();
        c.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        match c.read(&mut one) {
            Ok(1) => held.push(c),
            _ => refused += 1, // closed at once: over the default limit
        }
    }
    assert_eq!(held.len(), 48, "3/4 of 64 descriptors");
    assert_eq!(refused, 52);
    // Once they are gone (the server notices each close), newcomers are served.
    for mut c in held.drain(..) {
        c.shutdown(How::Write).unwrap();
        read_to_close(&mut c);
    }
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    loop {
        let mut fresh = server.connect();
        fresh.write_all(b"fresh\n").unwrap();
        let mut back = [0u8; 6];
        if fresh.read_exact(&mut back).is_ok() {
            assert_eq!(&back, b"fresh\n");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no slot came back");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server.stop().expect("server failed");
}
