//! Chat over the simulated network: many clients, one real [`ChatServer`].
//!
//! Every client role is played from a script made from the seed. Server-side, the
//! simulator is the transport: it executes [`Output`]s (per-connection write queues
//! flushed into bounded socket windows, closes with or without flushing) and reports
//! reads, flushes, EOFs and resets. Client-side, it checks what arrives.
//!
//! Checked end to end (as seen by clients): valid UTF-8 lines without control
//! characters, no client receives its own message, per-sender order, nothing after
//! the server's close, and **nothing lost**: a well-behaved client that stays in its
//! room and reads promptly receives exactly the messages that were processed while
//! it was a member of the sender's room (or `/msg`ed to it). Server-side, every
//! output also goes through [`ChatChecker`].

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::{Buf, Bytes};
use core::time::Duration;

use super::{Digest, Queue, Rng, SimReport};
use crate::chat::{ChatConfig, ChatServer, CloseReason, ConnId, Output};
use crate::fuzzing::{forbidden_char, token, ChatChecker};
use crate::Instant;

/// Scripted activity ends here; the run stops `DRAIN` later.
const ACTIVE: u64 = 8_000;
const DRAIN: u64 = 2_000;
/// Longest gap between two lines of a client that must not be idle.
const MAX_GAP: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Joins a room, chats, reads promptly, stays: checked for losses.
    Stable,
    /// Chats and hops between rooms.
    Mover,
    /// Chats, then stops reading.
    Slow,
    /// Connects and never sends: must be dropped for idleness.
    Idle,
    /// Chats, then resets.
    Resetter,
    /// Chats, then `/quit`s.
    Quitter,
    /// Sends junk (long lines, bad UTF-8, control chars, odd commands), then EOF.
    Garbage,
}

const ROLES: &[Role] = &[
    Role::Stable,
    Role::Stable,
    Role::Stable,
    Role::Mover,
    Role::Slow,
    Role::Idle,
    Role::Resetter,
    Role::Quitter,
    Role::Garbage,
];

#[derive(Debug, Clone)]
enum Kind {
    Token { seq: u64, pm_to: Option<usize> },
    Join(String),
    Nick,
    Other,
}

#[derive(Debug, Clone)]
enum Action {
    Line(Vec<u8>, Kind),
    Eof,
    Reset,
    StopReading,
}

#[derive(Debug)]
enum Ev {
    Connect(usize),
    Act(usize),
    ToServer(usize, Vec<u8>),
    ServerEof(usize),
    ServerReset(usize),
    Pump(usize),
    ToClient(usize, Vec<u8>),
    ClientEof(usize, bool),
    Read(usize),
    Timeout,
}

#[derive(Debug)]
struct Client {
    role: Role,
    id: Option<ConnId>,
    script: VecDeque<(u64, Action)>,
    // client → server
    sent: u64,
    arrived: u64,
    lines: VecDeque<(u64, Kind)>,
    c2s_last: u64,
    // server-side transport
    server_open: bool,
    /// The server aborted the connection (its close grace ran out): unsent bytes dropped.
    aborted: bool,
    out: VecDeque<Bytes>,
    out_bytes: usize,
    close: Option<CloseReason>,
    close_sent: bool,
    pump_scheduled: bool,
    // server → client
    window: usize,
    in_flight: usize,
    s2c_last: u64,
    rbuf: Vec<u8>,
    reading: bool,
    read_scheduled: bool,
    gone: bool,
    eof: bool,
    /// Bytes of a telnet reply (`IAC verb option`) still to skip.
    telnet_skip: u8,
    partial: Vec<u8>,
    got: BTreeSet<(u64, u64)>,
    last_seq: BTreeMap<u64, u64>,
    // what the server has processed, as far as the simulator can tell
    room: String,
    nick_set: bool,
    expected: BTreeSet<(u64, u64)>,
    uncertain: BTreeSet<(u64, u64)>,
}

struct Sim {
    rng: Rng,
    now: u64,
    q: Queue<Ev>,
    server: ChatServer,
    check: ChatChecker,
    clients: Vec<Client>,
    by_id: BTreeMap<ConnId, usize>,
    timeout_at: Option<u64>,
    digest: Digest,
    report: SimReport,
    max_write: usize,
    max_latency: u64,
}

/// Runs the chat simulation for `seed`; panics (naming the invariant) on a bug.
pub fn run(seed: u64) -> SimReport {
    let mut rng = Rng::new(seed);
    let n = rng.urange(3, 14);
    let config = ChatConfig::default()
        .with_max_line(rng.urange(32, 256))
        .with_send_queue(rng.urange(256, 4096))
        .with_idle_timeout(Some(Duration::from_millis(rng.range(3_000, 5_000))))
        .with_max_conns(rng.chance(20).then(|| rng.urange(2, n)));
    let rooms = rng.urange(1, 3);
    let mut sim = Sim {
        max_write: rng.urange(1, 600),
        max_latency: rng.range(1, 60),
        now: 0,
        q: Queue::default(),
        server: ChatServer::new(config),
        check: ChatChecker::new(config.send_queue),
        clients: Vec::new(),
        by_id: BTreeMap::new(),
        timeout_at: None,
        digest: Digest::default(),
        report: SimReport {
            seed,
            ..SimReport::default()
        },
        rng,
    };
    let mut seq = 0u64;
    // Clients connect in index order, so client `idx` gets `ConnId(idx)`: tokens
    // name their sender by index and the server-side checker by id.
    let mut starts: Vec<u64> = (0..n).map(|_| sim.rng.range(0, 2_000)).collect();
    starts.sort_unstable();
    for (idx, &start) in starts.iter().enumerate() {
        let role = ROLES[sim.rng.urange(0, ROLES.len() - 1)];
        let script = script(
            &mut sim.rng,
            idx,
            n,
            role,
            rooms,
            start,
            config.max_line,
            &mut seq,
        );
        let window = sim.rng.urange(256, 4096);
        sim.clients.push(Client {
            role,
            id: None,
            script,
            sent: 0,
            arrived: 0,
            lines: VecDeque::new(),
            c2s_last: 0,
            server_open: false,
            aborted: false,
            out: VecDeque::new(),
            out_bytes: 0,
            close: None,
            close_sent: false,
            pump_scheduled: false,
            window,
            in_flight: 0,
            s2c_last: 0,
            rbuf: Vec::new(),
            reading: true,
            read_scheduled: false,
            gone: false,
            eof: false,
            telnet_skip: 0,
            partial: Vec::new(),
            got: BTreeSet::new(),
            last_seq: BTreeMap::new(),
            room: String::from("lobby"),
            nick_set: false,
            expected: BTreeSet::new(),
            uncertain: BTreeSet::new(),
        });
        sim.q.at(start, Ev::Connect(idx));
    }
    sim.run_until(ACTIVE + DRAIN);
    sim.verify_deliveries();
    sim.server.shutdown(Instant::from_millis(sim.now));
    sim.digest.num(0xD0);
    sim.drain();
    sim.run_until(u64::MAX);
    sim.verify_end();
    sim.report.digest = sim.digest.value();
    sim.report.millis = sim.now;
    sim.report
}

/// What client `idx` will do, from `start` on.
#[allow(clippy::too_many_arguments)]
fn script(
    rng: &mut Rng,
    idx: usize,
    n: usize,
    role: Role,
    rooms: usize,
    start: u64,
    max_line: usize,
    seq: &mut u64,
) -> VecDeque<(u64, Action)> {
    let mut s = VecDeque::new();
    let mut t = start + rng.range(1, 100);
    let line = |text: String, kind: Kind| Action::Line(format!("{text}\n").into_bytes(), kind);
    if role == Role::Idle {
        return s;
    }
    let from = ConnId(idx as u64);
    s.push_back((t, line(format!("/nick u{idx}"), Kind::Nick)));
    let room = format!("r{}", rng.urange(0, rooms - 1));
    if role != Role::Garbage {
        t += rng.range(1, 200);
        s.push_back((t, line(format!("/join #{room}"), Kind::Join(room))));
    }
    let lines = rng.urange(3, 60);
    let step = (ACTIVE - t.min(ACTIVE - 1)) / (lines as u64 + 1);
    let stop_reading_at = rng.urange(0, lines);
    for k in 0..lines {
        t += rng.range(1, step.clamp(2, MAX_GAP));
        if t >= ACTIVE {
            break;
        }
        if role == Role::Slow && k == stop_reading_at {
            s.push_back((t, Action::StopReading));
        }
        let action = match role {
            Role::Garbage => Action::Line(garbage(rng, max_line), Kind::Other),
            Role::Mover if rng.chance(25) => {
                let room = format!("r{}", rng.urange(0, rooms));
                line(format!("/join {room}"), Kind::Join(room))
            }
            _ if rng.chance(5) => line(
                String::from(["/who", "/rooms", "/help", "", "//x"][rng.urange(0, 4)]),
                Kind::Other,
            ),
            _ => {
                *seq += 1;
                let tok = token(from, *seq);
                match rng.next_u64() % 10 {
                    0 => {
                        let to = rng.urange(0, n - 1);
                        line(
                            format!("/msg U{to} {tok}"),
                            Kind::Token {
                                seq: *seq,
                                pm_to: Some(to),
                            },
                        )
                    }
                    1 => line(
                        format!("/me {tok}"),
                        Kind::Token {
                            seq: *seq,
                            pm_to: None,
                        },
                    ),
                    _ => line(
                        format!("{tok} \x1b[1mhi\u{9b}"),
                        Kind::Token {
                            seq: *seq,
                            pm_to: None,
                        },
                    ),
                }
            }
        };
        s.push_back((t, action));
    }
    t += rng.range(1, 300);
    match role {
        Role::Resetter => s.push_back((t, Action::Reset)),
        Role::Quitter => {
            s.push_back((t, line(String::from("/quit gone \x07fishing"), Kind::Other)));
            s.push_back((t + 5, Action::Eof));
        }
        Role::Garbage => s.push_back((t, Action::Eof)),
        _ => {
            // Empty lines keep well-behaved clients from being dropped as idle.
            while t < ACTIVE + DRAIN {
                t += rng.range(100, MAX_GAP);
                s.push_back((t, Action::Line(b"\n".to_vec(), Kind::Other)));
            }
        }
    }
    s
}

/// Junk a misbehaving client sends (never `~`, so it cannot forge a token).
fn garbage(rng: &mut Rng, max_line: usize) -> Vec<u8> {
    let mut v: Vec<u8> = match rng.next_u64() % 8 {
        0 => alloc::vec![b'y'; rng.urange(max_line, max_line * 3)],
        // Telnet: TIMING-MARK and an option offer (answered), then bad UTF-8.
        1 => b"\xff\xfd\x06\xff\xfb\x18bad \xfe\xc3 utf8".to_vec(),
        2 => b"esc \x1b]0;pwned\x07 \x1b[2J \x7f \xc2\x85".to_vec(),
        3 => b"/frob".to_vec(),
        4 => b"/nick guest1".to_vec(),
        5 => b"/join bad#room".to_vec(),
        6 => b"/msg nobody hello".to_vec(),
        _ => (0..rng.urange(0, 50))
            .map(|_| rng.next_u64() as u8)
            .collect(),
    };
    for b in &mut v {
        if *b == b'~' || *b == b'\n' {
            *b = b'_';
        }
    }
    v.push(b'\n');
    v
}

fn reason_name(r: &CloseReason) -> &'static str {
    match r {
        CloseReason::Quit => "quit",
        CloseReason::PeerClosed => "peer_closed",
        CloseReason::Reset => "reset",
        CloseReason::SendQueueExceeded => "send_queue_exceeded",
        CloseReason::IdleTimeout => "idle_timeout",
        CloseReason::ServerFull => "server_full",
        CloseReason::Shutdown => "shutdown",
        CloseReason::TooManyFromAddress => "too_many_from_address",
    }
}

impl Sim {
    fn latency(&mut self) -> u64 {
        self.rng.range(1, self.max_latency)
    }

    fn ms(t: Instant) -> u64 {
        t.since_origin().as_millis() as u64
    }

    fn instant(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    fn run_until(&mut self, end: u64) {
        let mut guard = 0u64;
        while let Some(t) = self.q.peek_time() {
            if t > end {
                break;
            }
            let (t, ev) = self.q.pop().expect("peeked");
            self.now = t;
            self.report.events += 1;
            guard += 1;
            assert!(guard < 5_000_000, "simulation does not settle");
            self.step(ev);
        }
    }

    fn step(&mut self, ev: Ev) {
        self.digest.num(self.now);
        match ev {
            Ev::Connect(i) => {
                self.digest.num(1);
                let id = self.server.handle_open(self.instant());
                self.check.opened(id);
                self.by_id.insert(id, i);
                self.report.connections += 1;
                let c = &mut self.clients[i];
                c.id = Some(id);
                c.server_open = true;
                self.drain();
                self.schedule_act(i);
            }
            Ev::Act(i) => self.act(i),
            Ev::ToServer(i, data) => self.deliver(i, data),
            Ev::ServerEof(i) => {
                self.digest.num(3);
                if let (true, Some(id)) = (self.clients[i].server_open, self.clients[i].id) {
                    self.server
                        .handle_peer_closed(self.instant(), id)
                        .expect("peer_closed");
                    self.drain();
                }
            }
            Ev::ServerReset(i) => {
                self.digest.num(4);
                if let (true, Some(id)) = (self.clients[i].server_open, self.clients[i].id) {
                    self.server.handle_reset(self.instant(), id).expect("reset");
                    self.drain();
                }
            }
            Ev::Pump(i) => self.pump(i),
            Ev::ToClient(i, data) => {
                self.digest.num(6);
                self.digest.bytes(&data);
                let c = &mut self.clients[i];
                c.in_flight -= data.len();
                assert!(
                    !c.eof,
                    "client {i} got {} bytes after the server closed it",
                    data.len()
                );
                if !c.gone {
                    c.rbuf.extend_from_slice(&data);
                    self.schedule_read(i);
                }
            }
            Ev::ClientEof(i, reset) => {
                self.digest.num(7 + u64::from(reset));
                self.read(i);
                let c = &mut self.clients[i];
                assert!(!c.eof, "client {i} closed twice");
                c.eof = true;
            }
            Ev::Read(i) => {
                self.clients[i].read_scheduled = false;
                self.read(i);
                self.schedule_pump(i);
            }
            Ev::Timeout => {
                self.digest.num(9);
                self.timeout_at = None;
                let now = self.instant();
                self.server.handle_timeout(now);
                if let Some(t) = self.server.poll_timeout() {
                    assert!(
                        t > now,
                        "poll_timeout {t:?} not after handle_timeout({now:?})"
                    );
                }
                self.drain();
            }
        }
    }

    fn schedule_act(&mut self, i: usize) {
        if let Some(&(t, _)) = self.clients[i].script.front() {
            self.q.at(t.max(self.now), Ev::Act(i));
        }
    }

    fn act(&mut self, i: usize) {
        let Some((_, action)) = self.clients[i].script.pop_front() else {
            return;
        };
        self.digest.num(2);
        if self.clients[i].eof || self.clients[i].gone {
            return;
        }
        match action {
            Action::Line(bytes, kind) => {
                let c = &mut self.clients[i];
                c.sent += bytes.len() as u64;
                c.lines.push_back((c.sent, kind));
                // Random chunking: the line may arrive over several reads.
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let n = if self.rng.chance(70) {
                        rest.len()
                    } else {
                        self.rng.urange(1, rest.len())
                    };
                    let lat = self.latency();
                    let c = &mut self.clients[i];
                    let at = c.c2s_last.max(self.now + lat);
                    c.c2s_last = at;
                    self.q.at(at, Ev::ToServer(i, rest[..n].to_vec()));
                    rest = &rest[n..];
                }
            }
            Action::Eof | Action::Reset => {
                let lat = self.latency();
                let c = &mut self.clients[i];
                let at = c.c2s_last.max(self.now + lat);
                c.c2s_last = at;
                if matches!(action, Action::Reset) {
                    c.gone = true;
                    c.reading = false;
                    self.q.at(at, Ev::ServerReset(i));
                } else {
                    self.q.at(at, Ev::ServerEof(i));
                }
            }
            Action::StopReading => self.clients[i].reading = false,
        }
        self.schedule_act(i);
    }

    fn deliver(&mut self, i: usize, data: Vec<u8>) {
        self.digest.num(5);
        self.digest.bytes(&data);
        let (true, Some(id)) = (self.clients[i].server_open, self.clients[i].id) else {
            return;
        };
        // Lines completed by this read are processed, in order, inside handle_data.
        self.clients[i].arrived += data.len() as u64;
        let mut tentative: Vec<(usize, (u64, u64))> = Vec::new();
        while let Some((end, _)) = self.clients[i].lines.front() {
            if *end > self.clients[i].arrived {
                break;
            }
            let (_, kind) = self.clients[i].lines.pop_front().expect("front");
            match kind {
                Kind::Join(room) => self.clients[i].room = room.to_ascii_lowercase(),
                Kind::Nick => self.clients[i].nick_set = true,
                Kind::Token {
                    seq,
                    pm_to: Some(to),
                } => {
                    let t = &self.clients[to];
                    if t.server_open && t.nick_set {
                        tentative.push((to, (i as u64, seq)));
                    }
                }
                Kind::Token { seq, pm_to: None } => {
                    let room = self.clients[i].room.clone();
                    for (r, c) in self.clients.iter().enumerate() {
                        if r != i && c.server_open && c.room == room {
                            tentative.push((r, (i as u64, seq)));
                        }
                    }
                }
                Kind::Other => {}
            }
        }
        self.server
            .handle_data(self.instant(), id, &data)
            .expect("handle_data");
        self.drain();
        // If the sender was dropped during the read, later lines were never processed;
        // if it is paused (flow control), some may wait and be lost if it is dropped.
        let sure = self.clients[i].server_open && self.server.wants_read(id);
        for (r, tok) in tentative {
            let c = &mut self.clients[r];
            if sure {
                c.expected.insert(tok);
            } else {
                c.uncertain.insert(tok);
            }
        }
    }

    /// Executes every pending output, like a transport.
    fn drain(&mut self) {
        while let Some(out) = self.server.poll_output() {
            self.check.output(&out);
            match out {
                Output::Transmit { to, bytes } => {
                    self.digest.num(10 + to.0);
                    self.digest.bytes(&bytes);
                    let i = self.by_id[&to];
                    let c = &mut self.clients[i];
                    c.out_bytes += bytes.len();
                    c.out.push_back(bytes);
                    self.schedule_pump(i);
                }
                Output::Close { id, reason } => {
                    self.digest.num(20 + id.0);
                    *self.report.closes.entry(reason_name(&reason)).or_default() += 1;
                    let i = self.by_id[&id];
                    let c = &mut self.clients[i];
                    c.server_open = false;
                    if !reason.flush() {
                        c.out.clear();
                        c.out_bytes = 0;
                    }
                    c.close = Some(reason);
                    self.schedule_pump(i);
                }
                Output::Abort { id } => {
                    self.digest.num(30 + id.0);
                    let i = self.by_id[&id];
                    let c = &mut self.clients[i];
                    c.aborted = true;
                    c.out.clear();
                    c.out_bytes = 0;
                    self.schedule_pump(i);
                }
            }
        }
        self.check.check_server(&self.server);
        if let Some(t) = self.server.poll_timeout() {
            let t = Self::ms(t);
            if self.timeout_at.map_or(true, |s| t < s) {
                self.timeout_at = Some(t);
                self.q.at(t.max(self.now), Ev::Timeout);
            }
        }
    }

    fn schedule_pump(&mut self, i: usize) {
        if !self.clients[i].pump_scheduled {
            self.clients[i].pump_scheduled = true;
            let at = self.now + self.rng.range(0, 3);
            self.q.at(at, Ev::Pump(i));
        }
    }

    fn schedule_read(&mut self, i: usize) {
        let c = &self.clients[i];
        if c.reading && !c.read_scheduled {
            self.clients[i].read_scheduled = true;
            let at = self.now + self.rng.range(0, 5);
            self.q.at(at, Ev::Read(i));
        }
    }

    /// The server-side writer: moves queued bytes into the socket window.
    fn pump(&mut self, i: usize) {
        self.digest.num(11);
        self.clients[i].pump_scheduled = false;
        let c = &self.clients[i];
        let space = c.window.saturating_sub(c.in_flight + c.rbuf.len());
        if c.out_bytes > 0 && space > 0 {
            let n = self
                .rng
                .urange(1, self.max_write)
                .min(space)
                .min(c.out_bytes);
            let mut chunk = Vec::with_capacity(n);
            let c = &mut self.clients[i];
            while chunk.len() < n {
                let front = c.out.front_mut().expect("queued bytes");
                let k = (n - chunk.len()).min(front.len());
                chunk.extend_from_slice(&front[..k]);
                front.advance(k);
                if front.is_empty() {
                    c.out.pop_front();
                }
            }
            c.out_bytes -= n;
            c.in_flight += n;
            let id = c.id.expect("opened");
            if self.check.flushed(id, n) {
                self.server.handle_flushed(id, n).expect("flushed");
                self.drain();
            }
            let lat = self.latency();
            let c = &mut self.clients[i];
            let at = c.s2c_last.max(self.now + lat);
            c.s2c_last = at;
            self.q.at(at, Ev::ToClient(i, chunk));
            self.schedule_pump(i);
        } else if c.out_bytes == 0 && !c.close_sent {
            if let Some(reason) = &c.close {
                let reset = !reason.flush() || c.aborted;
                let lat = self.latency();
                let c = &mut self.clients[i];
                c.close_sent = true;
                let at = c.s2c_last.max(self.now + lat);
                c.s2c_last = at;
                self.q.at(at, Ev::ClientEof(i, reset));
                // The writer ended: the socket is closed (no-op after an abort).
                let id = c.id.expect("opened");
                let now = Instant::from_millis(self.now);
                self.server.handle_closed(now, id).expect("closed");
                self.drain();
            }
        }
    }

    /// The client reads what arrived and checks each line.
    fn read(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if !c.reading || c.gone {
            return;
        }
        let data = core::mem::take(&mut c.rbuf);
        // Telnet replies (to IAC bytes in junk) are 3 bytes starting with 0xFF, which
        // no UTF-8 line contains; a reply may be split across reads.
        for b in data {
            if c.telnet_skip > 0 {
                c.telnet_skip -= 1;
            } else if b == crate::telnet::IAC {
                c.telnet_skip = 2;
            } else {
                c.partial.push(b);
            }
        }
        while let Some(p) = c.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = c.partial.drain(..=p).collect();
            let text = core::str::from_utf8(&line[..p])
                .unwrap_or_else(|e| panic!("client {i}: invalid UTF-8 line: {e}"));
            if let Some(ch) = text.chars().find(|&ch| forbidden_char(ch)) {
                panic!("client {i} got {ch:?} in {text:?}");
            }
            let Some(at) = text.find('~') else { continue };
            let (sender, seq) = text[at + 1..]
                .split_once('.')
                .and_then(|(a, b)| {
                    let b = &b[..b.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(b.len())];
                    Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
                })
                .unwrap_or_else(|| panic!("client {i}: malformed token in {text:?}"));
            if !text.starts_with("(pm) ") {
                assert_ne!(
                    sender, i as u64,
                    "client {i} received its own message {text:?}"
                );
            }
            let last = c.last_seq.entry(sender).or_insert(0);
            assert!(
                seq > *last,
                "client {i}: message {seq} from {sender} after {}",
                *last
            );
            *last = seq;
            assert!(
                c.got.insert((sender, seq)),
                "client {i}: message {seq} from {sender} twice"
            );
            self.report.delivered += 1;
        }
    }

    fn verify_deliveries(&mut self) {
        for (i, c) in self.clients.iter().enumerate() {
            let closed = c.close.as_ref().map(reason_name);
            match c.role {
                Role::Idle => assert!(
                    matches!(closed, Some("idle_timeout" | "server_full")),
                    "idle client {i} not dropped for idleness: {closed:?}"
                ),
                Role::Stable | Role::Mover | Role::Slow => assert!(
                    matches!(closed, None | Some("send_queue_exceeded" | "server_full")),
                    "{:?} client {i} closed: {closed:?}",
                    c.role
                ),
                _ => {}
            }
            if c.role != Role::Stable || c.close.is_some() || c.id.is_none() {
                continue;
            }
            assert_eq!(
                c.out_bytes + c.in_flight + c.rbuf.len(),
                0,
                "stable client {i} not drained at the end"
            );
            let missing: Vec<_> = c.expected.difference(&c.got).collect();
            assert!(
                missing.is_empty(),
                "stable client {i} never got (sender, seq) {missing:?}"
            );
            let extra: Vec<_> = c
                .got
                .iter()
                .filter(|t| !c.expected.contains(t) && !c.uncertain.contains(t))
                .collect();
            assert!(
                extra.is_empty(),
                "client {i} got (sender, seq) {extra:?} it should not have (room leak?)"
            );
            self.report.verified += c.expected.len() as u64;
        }
    }

    fn verify_end(&mut self) {
        assert_eq!(
            self.server.connections(),
            0,
            "connections left after shutdown"
        );
        for (i, c) in self.clients.iter().enumerate() {
            // A client that stopped reading may never see a flushing close.
            if c.id.is_some() && !c.gone && c.reading {
                assert!(c.eof, "client {i} never saw its connection closed");
            }
        }
    }
}
