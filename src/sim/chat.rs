//! Chat over the simulated network: many clients, the real driver layer.
//!
//! Server-side, the simulator runs the transports' own driver code: the real chat
//! hub (`transports/driver/hub.rs`, which owns the
//! [`ChatServer`](crate::chat::ChatServer)) and one real connection writer
//! (`ConnWriter`, `transports/driver/conn.rs`) per connection, over in-memory
//! sockets with bounded windows and random write sizes. It plays only what a
//! transport does around them (as `transports/threads.rs` and
//! `transports/runtime.rs` do):
//!
//! * the acceptor and the readers: a connect becomes `Accepted`, bytes that reach
//!   the server become `Data` (then `Eof` / `ReadError`), sent to the owner's inbox;
//!   like the real readers, each reads again only with the hub's permit (the
//!   `ConnReader` the hub made), so at most one read per connection waits;
//! * the owner loop: everything waiting in the inbox at the end of a virtual
//!   millisecond goes to the hub in one `handle_batch` call (at most `BATCH`
//!   events per call, like the real event channel: a flood makes big batches),
//!   and the core's timer through `handle_timeout`;
//! * the writers: `next()`, one vectored write into the socket (`WouldBlock` waits
//!   until the client reads), `written()`; when `Done`, the writer's `WriterDone`
//!   goes to the inbox, then the socket is shut down.
//!
//! Bytes written to a socket (by the hub's direct write or by the writer) travel
//! to the client with random latency and chunking. Client roles are played from a
//! script made from the seed.
//!
//! Checked end to end (as seen by clients): valid UTF-8 lines without control
//! characters, no client receives its own message, per-sender order, nothing after
//! the connection's close, and **nothing lost**: a well-behaved client that stays
//! in its room and reads promptly receives exactly the messages that were
//! processed while it was a member of the sender's room (or `/msg`ed to it).
//!
//! Checked server-side, after every hub call, from the hub's log of what it told
//! the core and what the core told it (every output and every flush report, in
//! order): each output goes through [`ChatChecker`]; the checker's per-connection
//! queue (transmitted minus reported flushed) must equal `queued()` of the core
//! exactly; what was reported flushed must equal what reached the socket (writers'
//! reports lag, but the hub drains them before every event, so after a call none
//! is pending); the bytes on each socket must be exactly the bytes transmitted to
//! that connection, in order (the direct write and the writer never reorder); a
//! writer that ends cleanly has written everything transmitted; and at the end the
//! hub is finished with every writer ended.
//!
//! [`run_flood`] is the regression scenario for fast readers dropped under a flood
//! (see its doc).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Digest, Queue, Rng, SimReport};
use crate::chat::{ChatConfig, CloseReason, ConnId, Output};
use crate::driver::conn::{ConnReader, ConnWriter, WriteStep, MAX_IOSLICES};
use crate::driver::hub::{Event, Hub, Logged, NewConn};
use crate::driver::Sock;
use crate::fuzzing::{forbidden_char, token, ChatChecker};
use crate::Instant;

/// Scripted activity ends here; the run stops `DRAIN` later.
const ACTIVE: u64 = 8_000;
const DRAIN: u64 = 2_000;
/// Longest gap between two lines of a client that must not be idle.
const MAX_GAP: u64 = 1_000;
/// When the flooders of [`run_flood`] start.
const FLOOD_AT: u64 = 3_000;

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
    /// Sends bursts of lines back to back ([`run_flood`]); reads promptly.
    Flooder,
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
    /// The client connects (the acceptor sends `Accepted`).
    Connect(usize),
    Act(usize),
    /// Bytes reach the server's socket (its reader sends `Data`).
    ToServer(usize, Vec<u8>),
    ServerEof(usize),
    ServerReset(usize),
    /// The connection's writer takes its next step.
    Pump(usize),
    ToClient(usize, Vec<u8>),
    ClientEof(usize, bool),
    Read(usize),
    Timeout,
}

/// One simulated socket, server side: what the hub and the writer write into.
#[derive(Debug)]
struct SockState {
    /// The client's receive window: written bytes not yet read must fit in it.
    window: usize,
    /// Written and not yet read (or discarded) by the client.
    used: usize,
    /// Written, not yet put on the wire by the simulator.
    unsent: Vec<u8>,
    /// Most bytes one write takes (each write takes a random `1..=max_write`).
    max_write: usize,
    rng: Rng,
    /// Shut down (by the hub, or by the transport after the writer ended).
    shut: bool,
    /// The client reset the connection: writes fail.
    reset: bool,
    /// `try_write_now` writes (else it always says `WouldBlock`, like the default).
    direct: bool,
}

/// An in-memory socket: shared by the hub (direct writes, shutdown) and the
/// simulator (the writer's writes, the client's side). Deterministic: the size of
/// each write comes from the socket's own [`Rng`], seeded by the simulator.
#[derive(Debug, Clone)]
struct SimSock(Arc<Mutex<SockState>>);

impl SimSock {
    fn new(window: usize, max_write: usize, direct: bool, seed: u64) -> Self {
        SimSock(Arc::new(Mutex::new(SockState {
            window,
            used: 0,
            unsent: Vec::new(),
            max_write,
            rng: Rng::new(seed),
            shut: false,
            reset: false,
            direct,
        })))
    }

    fn state(&self) -> MutexGuard<'_, SockState> {
        self.0.lock().expect("sim socket lock")
    }

    /// One vectored write: at most the free window and a random `max_write`;
    /// `WouldBlock` when the window is full, an error once shut down or reset.
    fn write(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut s = self.state();
        if s.shut {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if s.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        let free = s.window - s.used;
        if free == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let max_write = s.max_write;
        let cap = s.rng.urange(1, max_write);
        let n = total.min(free).min(cap);
        let mut left = n;
        for buf in bufs {
            let k = left.min(buf.len());
            s.unsent.extend_from_slice(&buf[..k]);
            left -= k;
            if left == 0 {
                break;
            }
        }
        s.used += n;
        Ok(n)
    }
}

impl Sock for SimSock {
    fn shutdown(&self, _how: std::net::Shutdown) -> io::Result<()> {
        self.state().shut = true;
        Ok(())
    }

    fn try_write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.state().direct {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.write(bufs)
    }
}

/// Messages a `Data` event will deliver to other clients if its lines are
/// processed: (sender, [(recipient, (sender, seq))]).
type Tentative = (usize, Vec<(usize, (u64, u64))>);

struct Client {
    role: Role,
    id: Option<ConnId>,
    script: VecDeque<(u64, Action)>,
    // client → server
    sent: u64,
    arrived: u64,
    lines: VecDeque<(u64, Kind)>,
    c2s_last: u64,
    // server side
    sock: SimSock,
    /// Open in the core, as far as the simulator can tell (set on connect,
    /// cleared by the `Close` output).
    server_open: bool,
    /// The server-side reader still runs (accepted, no EOF/error/shutdown yet).
    reader_open: bool,
    /// The real reader step type (for its permits).
    reader: Option<ConnReader>,
    /// Bytes that reached the server's socket and were not read yet.
    unread: Vec<u8>,
    /// End of stream (`false`) or a reset (`true`) reached the server's socket.
    unread_end: Option<bool>,
    /// The reader may read: it has not sent data since its last permit.
    may_read: bool,
    writer: Option<ConnWriter>,
    /// The writer waits for window space (its write said `WouldBlock`).
    blocked: bool,
    pump_scheduled: bool,
    /// The simulator saw the socket shut down (and scheduled the client's EOF).
    shut_seen: bool,
    /// The core's close grace ran out (`Abort`).
    aborted: bool,
    close: Option<CloseReason>,
    /// Bytes written to the socket, by the hub or the writer.
    wire: usize,
    /// Bytes the hub reported flushed to the core.
    reported: usize,
    // server → client
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
    /// The core paused this client with lines unprocessed (see `SimReport::paused`).
    lax: bool,
}

/// Timing of one run.
#[derive(Debug, Clone, Copy)]
struct Pace {
    max_write: usize,
    max_latency: u64,
    /// Most milliseconds before a client reads what arrived.
    read_delay: u64,
    /// Most milliseconds before a writer takes its next step.
    pump_delay: u64,
    /// Sockets have a direct write (`try_write_now`); else only the writer writes.
    direct: bool,
    /// Well-behaved readers must not be closed at all ([`run_flood`]).
    strict: bool,
}

struct Sim {
    rng: Rng,
    now: u64,
    q: Queue<Ev>,
    hub: Hub<SimSock>,
    /// Events sent to the owner and not handled yet (the event channel).
    inbox: VecDeque<(Event<SimSock>, Option<Tentative>)>,
    check: ChatChecker,
    clients: Vec<Client>,
    timeout_at: Option<u64>,
    digest: Digest,
    report: SimReport,
    pace: Pace,
}

/// Runs the chat simulation for `seed`; panics (naming the invariant) on a bug.
pub fn run(seed: u64) -> SimReport {
    let mut rng = Rng::new(seed);
    let n = rng.urange(3, 14);
    let config = ChatConfig::default()
        .with_max_line(rng.urange(32, 256))
        .with_send_queue(rng.urange(256, 4096))
        .with_idle_timeout(Some(Duration::from_millis(rng.range(3_000, 5_000))))
        .with_max_conns(rng.chance(20).then(|| rng.urange(2, n)))
        // Every third seed has quiet rooms (from the seed, not `rng`: the other
        // seeds play exactly as before). Only notices change, which nothing checks
        // by content; the driver and the checks see the other code paths.
        .with_quiet_joins_above(seed.is_multiple_of(3).then(|| 1 + (seed / 3) as usize % n));
    let rooms = rng.urange(1, 3);
    let pace = Pace {
        max_write: rng.urange(1, 600),
        max_latency: rng.range(1, 60),
        read_delay: 5,
        pump_delay: 3,
        direct: true,
        strict: false,
    };
    let mut sim = Sim::new(seed, rng, config, pace);
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
        sim.add_client(role, script, window, start);
    }
    sim.finish()
}

/// The regression scenario for fast readers dropped under a flood.
///
/// 20 to 50 well-behaved clients that read promptly share one room with 3 to 6
/// flooders, each of which sends a burst of lines every millisecond for a while:
/// big batches of `Data` events reach the hub at once, and every line is broadcast
/// to everyone. A reader that keeps up must never be dropped (`send queue
/// exceeded`); panics if any well-behaved reader is closed before the shutdown,
/// besides the usual checks. That happened when writers' flush reports waited
/// behind the flood in the event channel, so the core counted bytes already
/// written as still queued.
///
/// Half the seeds use sockets with a direct write (`try_write_now`, as the
/// built-in transports have): the hub writes from the owner and the send queue may
/// be smaller than what one batch broadcasts. The other half use sockets without
/// one (the `Sock` trait's default, as a custom runtime may have): everything goes
/// through the writers, which keep up (they run as soon as they are woken), and
/// the send queue holds one batch's broadcast with a margin, not two: the core
/// must have applied the writers' reports of the previous batch before it counts
/// the next one.
pub fn run_flood(seed: u64) -> SimReport {
    let mut rng = Rng::new(seed ^ 0xF100D);
    let readers = rng.urange(20, 50);
    let flooders = rng.urange(3, 6);
    let n = readers + flooders;
    let flood = Flood {
        burst: rng.urange(4, 8),
        pad: rng.urange(8, 16),
        start: FLOOD_AT,
        end: FLOOD_AT + rng.range(25, 50),
    };
    // Bytes one millisecond of flood broadcasts to each reader, at most: a line is
    // `<uNN> ~NN.SEQ ` then the padding (SEQ below a million), plus what the core
    // counts per queued line.
    let per_batch = flooders * flood.burst * (24 + 6 * flood.pad + crate::chat::LINE_OVERHEAD);
    let direct = rng.chance(50);
    let send_queue = if direct {
        rng.urange(per_batch / 2, per_batch * 2)
    } else {
        per_batch * rng.urange(125, 150) / 100
    };
    let config = ChatConfig::default()
        .with_max_line(256)
        .with_send_queue(send_queue)
        .with_idle_timeout(None);
    let pace = Pace {
        max_write: rng.urange(512, 16 * 1024),
        // Every line of a burst arrives in the next millisecond's batch.
        max_latency: 1,
        read_delay: 1,
        pump_delay: u64::from(direct),
        direct,
        strict: true,
    };
    let mut sim = Sim::new(seed, rng, config, pace);
    let mut seq = 0u64;
    let mut starts: Vec<u64> = (0..n).map(|_| sim.rng.range(0, 500)).collect();
    starts.sort_unstable();
    for (idx, &start) in starts.iter().enumerate() {
        let (role, script) = if idx < readers {
            let script = reader_script(&mut sim.rng, idx, start, &flood, &mut seq);
            (Role::Stable, script)
        } else {
            let script = flood_script(&mut sim.rng, idx, start, &flood, &mut seq);
            (Role::Flooder, script)
        };
        let window = sim.rng.urange(4 * per_batch, 8 * per_batch);
        sim.add_client(role, script, window, start);
    }
    sim.finish()
}

/// The flood of [`run_flood`]: from `start` to `end`, every flooder sends `burst`
/// lines padded with `pad` words every millisecond.
struct Flood {
    burst: usize,
    pad: usize,
    start: u64,
    end: u64,
}

/// A reader of [`run_flood`]: joins `#r0`, and sends a few messages before and
/// after the flood (not during it: the send queue is sized for the flood alone).
fn reader_script(
    rng: &mut Rng,
    idx: usize,
    start: u64,
    flood: &Flood,
    seq: &mut u64,
) -> VecDeque<(u64, Action)> {
    let line = |text: String, kind: Kind| Action::Line(format!("{text}\n").into_bytes(), kind);
    let mut s = VecDeque::new();
    let t = start + rng.range(1, 100);
    s.push_back((t, line(format!("/nick u{idx}"), Kind::Nick)));
    let t = t + rng.range(1, 200);
    let room = String::from("r0");
    s.push_back((t, line(format!("/join #{room}"), Kind::Join(room))));
    let mut times: Vec<u64> = (0..rng.urange(2, 8))
        .map(|_| {
            if rng.chance(50) {
                rng.range(t + 1, flood.start - 100)
            } else {
                rng.range(flood.end + 100, ACTIVE)
            }
        })
        .collect();
    times.sort_unstable();
    for t in times {
        *seq += 1;
        let tok = token(ConnId(idx as u64), *seq);
        let kind = Kind::Token {
            seq: *seq,
            pm_to: None,
        };
        s.push_back((t, line(format!("{tok} hello"), kind)));
    }
    s
}

/// A flooder of [`run_flood`]: joins `#r0`, floods, then stays quiet.
fn flood_script(
    rng: &mut Rng,
    idx: usize,
    start: u64,
    flood: &Flood,
    seq: &mut u64,
) -> VecDeque<(u64, Action)> {
    let line = |text: String, kind: Kind| Action::Line(format!("{text}\n").into_bytes(), kind);
    let mut s = VecDeque::new();
    let t = start + rng.range(1, 100);
    s.push_back((t, line(format!("/nick u{idx}"), Kind::Nick)));
    let t = t + rng.range(1, 200);
    let room = String::from("r0");
    s.push_back((t, line(format!("/join #{room}"), Kind::Join(room))));
    let pad = "flood ".repeat(flood.pad);
    for t in flood.start..flood.end {
        for _ in 0..flood.burst {
            *seq += 1;
            let kind = Kind::Token {
                seq: *seq,
                pm_to: None,
            };
            let tok = token(ConnId(idx as u64), *seq);
            s.push_back((t, line(format!("{tok} {pad}"), kind)));
        }
    }
    s
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
        CloseReason::HandshakeTimeout => "handshake_timeout",
        CloseReason::TooManyFromAddress => "too_many_from_address",
    }
}

impl Sim {
    fn new(seed: u64, rng: Rng, config: ChatConfig, pace: Pace) -> Self {
        let mut hub = Hub::new(config);
        hub.record();
        Sim {
            rng,
            now: 0,
            q: Queue::default(),
            hub,
            inbox: VecDeque::new(),
            check: ChatChecker::new(config.send_queue),
            clients: Vec::new(),
            timeout_at: None,
            digest: Digest::default(),
            report: SimReport {
                seed,
                ..SimReport::default()
            },
            pace,
        }
    }

    fn add_client(&mut self, role: Role, script: VecDeque<(u64, Action)>, window: usize, at: u64) {
        let idx = self.clients.len();
        let seed = self.rng.next_u64();
        let sock = SimSock::new(window, self.pace.max_write, self.pace.direct, seed);
        self.clients.push(Client {
            role,
            id: None,
            script,
            sent: 0,
            arrived: 0,
            lines: VecDeque::new(),
            c2s_last: 0,
            sock,
            server_open: false,
            reader_open: false,
            reader: None,
            unread: Vec::new(),
            unread_end: None,
            may_read: true,
            writer: None,
            blocked: false,
            pump_scheduled: false,
            shut_seen: false,
            aborted: false,
            close: None,
            wire: 0,
            reported: 0,
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
            lax: false,
        });
        self.q.at(at, Ev::Connect(idx));
    }

    /// Runs the scripts, checks deliveries, shuts the server down and runs until
    /// everything ended.
    fn finish(mut self) -> SimReport {
        self.run_until(ACTIVE + DRAIN);
        self.verify_deliveries();
        // The acceptor stopped: it sends `Shutdown`.
        self.digest.num(0xD0);
        self.inbox.push_back((Event::Shutdown, None));
        self.run_until(u64::MAX);
        self.verify_end();
        self.report.digest = self.digest.value();
        self.report.millis = self.now;
        self.report
    }

    fn latency(&mut self) -> u64 {
        self.rng.range(1, self.pace.max_latency)
    }

    fn ms(t: Instant) -> u64 {
        t.since_origin().as_millis() as u64
    }

    fn instant(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    fn run_until(&mut self, end: u64) {
        let mut guard = 0u64;
        loop {
            let next = self.q.peek_time().filter(|&t| t <= end);
            // The owner takes what waits in its inbox once this millisecond's other
            // events have happened: all of them in one batch.
            if !self.inbox.is_empty() && next.is_none_or(|t| t > self.now) {
                self.owner();
                continue;
            }
            if next.is_none() {
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
                // Open as far as the simulator can tell: a refusal closes it.
                self.clients[i].server_open = true;
                let sock = self.clients[i].sock.clone();
                self.inbox.push_back((Event::Accepted(sock), None));
                self.schedule_act(i);
            }
            Ev::Act(i) => self.act(i),
            Ev::ToServer(i, data) => {
                self.clients[i].unread.extend_from_slice(&data);
                self.reader_step(i);
            }
            Ev::ServerEof(i) => {
                self.digest.num(3);
                self.clients[i].unread_end = Some(false);
                self.reader_step(i);
            }
            Ev::ServerReset(i) => {
                self.digest.num(4);
                // Writes fail from now on; unread bytes are discarded (as a kernel
                // does on a reset) and the reader's next read reports an error.
                let c = &mut self.clients[i];
                c.sock.state().reset = true;
                c.unread.clear();
                c.unread_end = Some(true);
                self.reader_step(i);
            }
            Ev::Pump(i) => self.pump(i),
            Ev::ToClient(i, data) => {
                self.digest.num(6);
                self.digest.bytes(&data);
                let c = &mut self.clients[i];
                assert!(
                    !c.eof,
                    "client {i} got {} bytes after the server closed it",
                    data.len()
                );
                if c.gone {
                    c.sock.state().used -= data.len();
                } else {
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
            }
            Ev::Timeout => {
                self.digest.num(9);
                self.timeout_at = None;
                let now = self.instant();
                self.hub.handle_timeout(now);
                if let Some(t) = self.hub.poll_timeout() {
                    assert!(
                        t > now,
                        "poll_timeout {t:?} not after handle_timeout({now:?})"
                    );
                }
                self.after_hub(Vec::new(), Vec::new());
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

    /// The server-side reader, as the transports run it: it reads what reached the
    /// socket only with a permit (the first read needs none; after each `Data` it
    /// waits for the hub's next permit, and stops if the hub dropped its sender),
    /// so at most one read per connection waits for the owner.
    fn reader_step(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if !c.reader_open {
            return;
        }
        if !c.may_read {
            let Some(reader) = &c.reader else { return };
            match reader.permit().try_recv() {
                Ok(()) => c.may_read = true,
                Err(flume::TryRecvError::Empty) => return,
                Err(flume::TryRecvError::Disconnected) => {
                    // Closed by the core: the reader stops without a word.
                    c.reader_open = false;
                    return;
                }
            }
        }
        if !c.unread.is_empty() {
            let n = c.unread.len().min(crate::driver::conn::READ_CHUNK);
            let data: Vec<u8> = c.unread.drain(..n).collect();
            c.may_read = false;
            self.server_read(i, data);
        } else if let Some(reset) = c.unread_end {
            self.reader_ends(i, reset);
        }
    }

    /// The server-side reader read `data`: it sends `Data` to the owner. Notes
    /// which messages the lines it completes will deliver, if the core processes
    /// them (events are handled in the order they are sent).
    fn server_read(&mut self, i: usize, data: Vec<u8>) {
        self.digest.num(5);
        self.digest.bytes(&data);
        let c = &mut self.clients[i];
        let (true, Some(id)) = (c.reader_open, c.id) else {
            return; // the socket was shut down: nobody reads any more
        };
        c.arrived += data.len() as u64;
        let open = c.server_open;
        let mut tentative: Vec<(usize, (u64, u64))> = Vec::new();
        while let Some((end, _)) = self.clients[i].lines.front() {
            if *end > self.clients[i].arrived {
                break;
            }
            let (_, kind) = self.clients[i].lines.pop_front().expect("front");
            if !open {
                continue; // closed by the core: its lines are not processed
            }
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
        self.inbox
            .push_back((Event::Data(id, Bytes::from(data)), Some((i, tentative))));
    }

    /// The server-side reader of `i` stops: end of stream (or an error, `reset`),
    /// or its socket was shut down (it reads end of stream).
    fn reader_ends(&mut self, i: usize, reset: bool) {
        let c = &mut self.clients[i];
        if let (true, Some(id)) = (c.reader_open, c.id) {
            c.reader_open = false;
            let event = if reset {
                Event::ReadError(id)
            } else {
                Event::Eof(id)
            };
            self.inbox.push_back((event, None));
        }
    }

    /// The owner loop: one `handle_batch` with everything waiting (at most `BATCH`).
    fn owner(&mut self) {
        let now = self.instant();
        let mut spawned = Vec::new();
        let mut handled = Vec::new();
        let inbox = &mut self.inbox;
        let mut next = || {
            let (event, tentative) = inbox.pop_front()?;
            handled.extend(tentative);
            Some(event)
        };
        let first = next().expect("an event waits");
        let n = self.hub.handle_batch(
            now,
            false,
            first,
            core::iter::from_fn(next),
            &mut |conn: NewConn<SimSock>| {
                spawned.push(conn);
                true
            },
        );
        self.digest.num(12);
        self.digest.num(n as u64);
        self.report.batches += 1;
        self.report.max_batch = self.report.max_batch.max(n as u64);
        self.after_hub(spawned, handled);
    }

    /// After every hub call: starts new connections' writers, checks the hub's log
    /// and the core, puts what was written on the wire, and wakes the writers and
    /// clients concerned.
    fn after_hub(&mut self, spawned: Vec<NewConn<SimSock>>, handled: Vec<Tentative>) {
        for conn in spawned {
            let id = conn.reader.id();
            let i = usize::try_from(id.0).expect("small ids");
            let c = &mut self.clients[i];
            // Clients connect in index order, so client `i` gets `ConnId(i)`.
            assert!(
                Arc::ptr_eq(&conn.sock.0, &c.sock.0) && c.id.is_none(),
                "{id:?} is not the socket of client {i}"
            );
            c.id = Some(id);
            c.reader_open = true;
            c.reader = Some(conn.reader);
            c.writer = Some(conn.writer);
            self.check.opened(id);
            self.report.connections += 1;
        }
        for entry in self.hub.take_log() {
            match entry {
                Logged::Output(out) => self.output(out),
                Logged::Flushed(id, n) => {
                    self.digest.num(40 + id.0);
                    self.digest.num(n as u64);
                    self.check.flushed(id, n);
                    self.clients[usize::try_from(id.0).expect("small ids")].reported += n;
                }
            }
        }
        // If the sender was dropped, later lines were never processed; if it is
        // paused (flow control), some may still wait, and are lost if it is dropped.
        for (sender, tokens) in handled {
            let c = &self.clients[sender];
            let paused = c
                .id
                .is_some_and(|id| self.hub.core().is_open(id) && !self.hub.core().wants_read(id));
            if paused && !c.lax {
                self.clients[sender].lax = true;
                self.report.paused += 1;
            }
            let c = &self.clients[sender];
            let sure = c.server_open && !paused;
            for (r, tok) in tokens {
                let c = &mut self.clients[r];
                if sure {
                    c.expected.insert(tok);
                } else {
                    c.uncertain.insert(tok);
                }
            }
        }
        // Exact, not `>=`: the checker saw every `handle_flushed` the hub made, in
        // order with the outputs (writers' reports too, when the hub drained them).
        // That the reports are timely and true is checked below (reported ==
        // written after every call) and by the flood scenario.
        self.check.check_server(self.hub.core());
        for i in 0..self.clients.len() {
            if self.clients[i].id.is_none() {
                continue;
            }
            self.ship(i);
            let c = &self.clients[i];
            // The writers' reports were drained at the start of the call and the
            // hub reports its own writes at once: nothing written is unreported.
            assert_eq!(
                c.reported, c.wire,
                "client {i}: the hub reported {} bytes flushed, {} were written",
                c.reported, c.wire
            );
            let shut = c.sock.state().shut;
            if shut && !c.shut_seen {
                // Shut down by the hub before its writer was done: a reset.
                self.shut(i, true);
            }
            let wake = self.clients[i].writer.as_ref().is_some_and(|w| {
                let queue = w.queue();
                !queue.is_empty() || queue.is_disconnected() || shut
            });
            if wake {
                self.schedule_pump(i);
            }
        }
        // Permits the hub granted (and new readers) let readers read what waits.
        for i in 0..self.clients.len() {
            self.reader_step(i);
        }
        if let Some(t) = self.hub.poll_timeout() {
            let t = Self::ms(t);
            if self.timeout_at.is_none_or(|s| t < s) {
                self.timeout_at = Some(t);
                self.q.at(t.max(self.now), Ev::Timeout);
            }
        }
    }

    /// Checks and records one output the hub executed.
    fn output(&mut self, out: Output) {
        self.check.output(&out);
        match out {
            Output::Transmit { to, bytes } => {
                self.digest.num(10 + to.0);
                self.digest.bytes(&bytes);
            }
            Output::Close { id, reason } => {
                self.digest.num(20 + id.0);
                *self.report.closes.entry(reason_name(&reason)).or_default() += 1;
                let c = &mut self.clients[usize::try_from(id.0).expect("small ids")];
                c.server_open = false;
                c.close = Some(reason);
            }
            Output::Abort { id } => {
                self.digest.num(30 + id.0);
                self.clients[usize::try_from(id.0).expect("small ids")].aborted = true;
            }
            Output::Bus(_) => unreachable!("a single-node simulation has no bus"),
        }
    }

    /// Puts what was written to `i`'s socket on the wire, checking that it is
    /// exactly the next bytes transmitted to it.
    fn ship(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let data = core::mem::take(&mut c.sock.state().unsent);
        if data.is_empty() {
            return;
        }
        let id = c.id.expect("accepted");
        let sent = self.check.received(id);
        assert!(
            sent.get(c.wire..c.wire + data.len()) == Some(&data[..]),
            "client {i}: bytes {}..{} on the socket are not what was transmitted",
            c.wire,
            c.wire + data.len()
        );
        c.wire += data.len();
        let lat = self.latency();
        let c = &mut self.clients[i];
        let at = c.s2c_last.max(self.now + lat);
        c.s2c_last = at;
        self.q.at(at, Ev::ToClient(i, data));
    }

    /// `i`'s socket is shut down: its reader reads end of stream, the client sees
    /// EOF (`reset`: a reset) after what is on the wire.
    fn shut(&mut self, i: usize, reset: bool) {
        self.clients[i].shut_seen = true;
        self.reader_ends(i, false);
        let lat = self.latency();
        let c = &mut self.clients[i];
        let at = c.s2c_last.max(self.now + lat);
        c.s2c_last = at;
        self.q.at(at, Ev::ClientEof(i, reset));
    }

    fn schedule_pump(&mut self, i: usize) {
        if !self.clients[i].pump_scheduled && self.clients[i].writer.is_some() {
            self.clients[i].pump_scheduled = true;
            let at = self.now + self.rng.range(0, self.pace.pump_delay);
            self.q.at(at, Ev::Pump(i));
        }
    }

    fn schedule_read(&mut self, i: usize) {
        let c = &self.clients[i];
        if c.reading && !c.read_scheduled {
            self.clients[i].read_scheduled = true;
            let at = self.now + self.rng.range(0, self.pace.read_delay);
            self.q.at(at, Ev::Read(i));
        }
    }

    /// One step of `i`'s writer, as a transport's writer task runs it.
    fn pump(&mut self, i: usize) {
        self.digest.num(11);
        let c = &mut self.clients[i];
        c.pump_scheduled = false;
        let Some(writer) = c.writer.as_mut() else {
            return;
        };
        match writer.next() {
            // Woken when the hub queues bytes or drops the queue.
            WriteStep::NeedBytes => c.blocked = false,
            WriteStep::Write => {
                let result = {
                    let mut slices = [IoSlice::new(&[]); MAX_IOSLICES];
                    let k = writer.slices(&mut slices);
                    c.sock.write(&slices[..k])
                };
                match result {
                    // A blocking write waits until the client reads.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.digest.num(13);
                        c.blocked = true;
                    }
                    result => {
                        c.blocked = false;
                        if let Some(wake) = writer.written(result) {
                            self.inbox.push_back((wake, None));
                        }
                        self.ship(i);
                        self.schedule_pump(i);
                    }
                }
            }
            WriteStep::Done => {
                let event = writer.done_event();
                c.writer = None;
                let Event::WriterDone(id, failed) = event else {
                    unreachable!("a writer's last event is WriterDone");
                };
                self.digest.num(14 + u64::from(failed));
                if !failed {
                    // The core closed it and the writer wrote everything first.
                    assert_eq!(
                        c.wire,
                        self.check.received(id).len(),
                        "client {i}: its writer ended cleanly with bytes unwritten"
                    );
                }
                // Tell the core first, then shut the socket down.
                self.inbox.push_back((event, None));
                let was_shut = {
                    let mut s = c.sock.state();
                    core::mem::replace(&mut s.shut, true)
                };
                if !was_shut {
                    self.shut(i, failed);
                }
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
        c.sock.state().used -= data.len();
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
        if self.clients[i].blocked {
            // The window has room again.
            self.schedule_pump(i);
        }
    }

    fn verify_deliveries(&mut self) {
        for (i, c) in self.clients.iter().enumerate() {
            let closed = c.close.as_ref().map(reason_name);
            match c.role {
                Role::Stable if self.pace.strict => assert!(
                    closed.is_none(),
                    "flood: well-behaved reader {i} was closed: {closed:?}"
                ),
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
            let Some(id) = c.id else { continue };
            if c.role != Role::Stable || c.close.is_some() {
                continue;
            }
            let used = c.sock.state().used;
            assert_eq!(
                (c.wire, used),
                (self.check.received(id).len(), 0),
                "stable client {i} not drained at the end (bytes on the socket, unread)"
            );
            let missing: Vec<_> = c.expected.difference(&c.got).collect();
            assert!(
                missing.is_empty(),
                "stable client {i} never got (sender, seq) {missing:?}"
            );
            let extra: Vec<_> = c
                .got
                .iter()
                .filter(|t| {
                    !c.lax
                        && !self.clients[t.0 as usize].lax
                        && !c.expected.contains(t)
                        && !c.uncertain.contains(t)
                })
                .collect();
            assert!(
                extra.is_empty(),
                "client {i} got (sender, seq) {extra:?} it should not have (room leak?)"
            );
            self.report.verified += c.expected.len() as u64;
        }
    }

    fn verify_end(&mut self) {
        assert!(self.inbox.is_empty(), "events left in the owner's inbox");
        assert!(
            self.hub.finished(),
            "the hub is not finished after shutdown"
        );
        assert_eq!(
            self.hub.core().connections(),
            0,
            "connections left after shutdown"
        );
        for (i, c) in self.clients.iter().enumerate() {
            if c.id.is_none() {
                continue;
            }
            assert!(
                c.writer.is_none() && !c.reader_open && c.sock.state().shut,
                "client {i}: writer, reader or socket left after shutdown"
            );
            // A client that stopped reading may never see a flushing close.
            if !c.gone && c.reading {
                assert!(c.eof, "client {i} never saw its connection closed");
            }
        }
    }
}
