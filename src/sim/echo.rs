//! Echo over the simulated network: clients stream random bytes through real
//! [`EchoConn`]s with random read/write sizes, bounded windows and latency, and
//! half-close at the end; each must get back exactly what it sent, then EOF.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::{Digest, Queue, Rng, SimReport};
use crate::echo::{EchoConfig, EchoConn};

#[derive(Debug)]
enum Ev {
    /// Client sends its next chunk (or half-closes when done).
    Send(usize),
    /// Bytes (or EOF when empty) reach the server's socket buffer.
    ToServer(usize, Vec<u8>),
    /// The server transport reads and writes what it can.
    Serve(usize),
    /// Bytes (or EOF when empty) reach the client.
    ToClient(usize, Vec<u8>),
}

struct Conn {
    conn: EchoConn,
    max_pending: usize,
    to_send: Vec<u8>,
    sent: usize,
    c2s_last: u64,
    s2c_last: u64,
    /// Arrived at the server, not yet read by the transport.
    sock_in: VecDeque<u8>,
    sock_eof: bool,
    /// Written by the server, not yet read by the client (window-limited).
    in_flight: usize,
    window: usize,
    got: Vec<u8>,
    closed_sent: bool,
    eof: bool,
    serve_scheduled: bool,
}

/// Runs the echo simulation for `seed`; panics on a broken invariant.
pub fn run(seed: u64) -> SimReport {
    let mut rng = Rng::new(seed ^ 0xEC40);
    let mut q: Queue<Ev> = Queue::default();
    let mut digest = Digest::default();
    let mut report = SimReport {
        seed,
        ..SimReport::default()
    };
    let n = rng.urange(1, 6);
    let max_read = rng.urange(1, 2048);
    let max_write = rng.urange(1, 2048);
    let max_latency = rng.range(1, 30);
    let mut conns: Vec<Conn> = (0..n)
        .map(|i| {
            let max_pending = rng.urange(1, 4096);
            let mut config = EchoConfig::with_max_pending(max_pending);
            config.initial_buffer = rng.urange(1, 64);
            let len = rng.urange(0, 20_000);
            let to_send = (0..len).map(|_| rng.next_u64() as u8).collect();
            q.at(rng.range(0, 100), Ev::Send(i));
            Conn {
                conn: EchoConn::new(config),
                max_pending,
                to_send,
                sent: 0,
                c2s_last: 0,
                s2c_last: 0,
                sock_in: VecDeque::new(),
                sock_eof: false,
                in_flight: 0,
                window: rng.urange(1, 8192),
                got: Vec::new(),
                closed_sent: false,
                eof: false,
                serve_scheduled: false,
            }
        })
        .collect();
    report.connections = n as u64;
    let mut guard = 0u64;
    while let Some((now, ev)) = q.pop() {
        guard += 1;
        assert!(guard < 10_000_000, "echo simulation does not settle");
        report.events += 1;
        report.millis = now;
        digest.num(now);
        let mut serve = None;
        match ev {
            Ev::Send(i) => {
                digest.num(1);
                let c = &mut conns[i];
                let lat = rng.range(1, max_latency);
                let at = c.c2s_last.max(now + lat);
                c.c2s_last = at;
                if c.sent < c.to_send.len() {
                    let k = rng.urange(1, 3000).min(c.to_send.len() - c.sent);
                    q.at(at, Ev::ToServer(i, c.to_send[c.sent..c.sent + k].to_vec()));
                    c.sent += k;
                    q.at(now + rng.range(0, 20), Ev::Send(i));
                } else {
                    q.at(at, Ev::ToServer(i, Vec::new()));
                }
            }
            Ev::ToServer(i, data) => {
                digest.num(2);
                digest.bytes(&data);
                let c = &mut conns[i];
                if data.is_empty() {
                    c.sock_eof = true;
                } else {
                    c.sock_in.extend(data);
                }
                serve = Some(i);
            }
            Ev::Serve(i) => {
                digest.num(3);
                let c = &mut conns[i];
                c.serve_scheduled = false;
                // Read while the core wants to.
                let room = c.conn.read_buf().len();
                assert_eq!(
                    room == 0,
                    !c.conn.wants_read(),
                    "read_buf empty exactly when not wanting reads"
                );
                if room > 0 && !c.sock_in.is_empty() {
                    let k = rng.urange(1, max_read).min(room).min(c.sock_in.len());
                    let buf = c.conn.read_buf();
                    for (dst, src) in buf[..k].iter_mut().zip(c.sock_in.drain(..k)) {
                        *dst = src;
                    }
                    c.conn.handle_read(k).expect("read within room");
                } else if c.sock_in.is_empty() && c.sock_eof && c.conn.wants_read() {
                    c.conn.handle_peer_closed();
                }
                assert!(
                    c.conn.pending() <= c.max_pending,
                    "pending {} > {}",
                    c.conn.pending(),
                    c.max_pending
                );
                // Write what the window allows.
                let space = c.window - c.in_flight;
                if let (Some(p), true) = (c.conn.poll_transmit(), space > 0) {
                    let k = rng.urange(1, max_write).min(space).min(p.len());
                    let chunk = p[..k].to_vec();
                    c.conn.handle_written(k).expect("written within pending");
                    c.in_flight += k;
                    let at = c.s2c_last.max(now + rng.range(1, max_latency));
                    c.s2c_last = at;
                    q.at(at, Ev::ToClient(i, chunk));
                } else if c.conn.poll_close() && !c.closed_sent {
                    c.closed_sent = true;
                    let at = c.s2c_last.max(now + rng.range(1, max_latency));
                    c.s2c_last = at;
                    q.at(at, Ev::ToClient(i, Vec::new()));
                }
                let c = &conns[i];
                let more = (!c.sock_in.is_empty() && c.conn.wants_read())
                    || (c.sock_eof && c.sock_in.is_empty() && c.conn.wants_read())
                    || (c.conn.poll_transmit().is_some() && c.in_flight < c.window)
                    || (c.conn.poll_close() && !c.closed_sent);
                if more {
                    serve = Some(i);
                }
            }
            Ev::ToClient(i, data) => {
                digest.num(4);
                digest.bytes(&data);
                let c = &mut conns[i];
                assert!(!c.eof, "echo client {i} got bytes after EOF");
                if data.is_empty() {
                    c.eof = true;
                } else {
                    c.in_flight -= data.len();
                    c.got.extend_from_slice(&data);
                    assert_eq!(
                        &c.got[..],
                        &c.to_send[..c.got.len()],
                        "echo client {i}: bytes differ"
                    );
                    serve = Some(i);
                }
            }
        }
        if let Some(i) = serve {
            if !conns[i].serve_scheduled {
                conns[i].serve_scheduled = true;
                q.at(now + rng.range(0, 3), Ev::Serve(i));
            }
        }
    }
    for (i, c) in conns.iter().enumerate() {
        assert!(c.eof, "echo client {i} never got EOF");
        assert_eq!(
            c.got.len(),
            c.to_send.len(),
            "echo client {i}: lengths differ"
        );
        assert_eq!(c.got, c.to_send, "echo client {i}: bytes differ");
        report.echoed += c.got.len() as u64;
    }
    report.digest = digest.value();
    report
}
