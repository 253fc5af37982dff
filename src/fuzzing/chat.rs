//! Structure-aware fuzz body for [`ChatServer`]: random events over a few connections.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use crate::chat::{ChatConfig, ChatServer, CloseReason, ConnId};
use crate::Instant;

use super::check::{token, ChatChecker};
use super::model::Model;

/// Most connections one input opens.
const MAX_CONNS: usize = 8;

/// A whole fuzz input: limits, then events.
#[derive(Debug, Clone, Arbitrary)]
pub struct ChatInput {
    /// `max_line` is `8 + this % 64`.
    pub max_line: u8,
    /// `send_queue` is `64 + this % 4096`.
    pub send_queue: u16,
    /// `Some(s)`: idle timeout of `1 + s % 8` seconds.
    pub idle_secs: Option<u8>,
    /// `Some(n)`: `max_conns` of `1 + n % 8`.
    pub max_conns: Option<u8>,
    /// `Some((rate, burst))`: `flood_rate` of `1 + rate % 16` lines/s and
    /// `flood_burst` of `burst % 5` (0 counts as 1).
    pub flood: Option<(u8, u8)>,
    /// `Some(n)`: `max_conns_per_ip` of `1 + n % 3` (else none); `loopback_exempt`
    /// unless `n >= 128`.
    pub per_ip: Option<u8>,
    /// Act like a driver that honours [`ChatServer::wants_read`]: bytes and EOF for
    /// a paused connection are held back and delivered, in order, once it wants to
    /// be read. (Otherwise they are delivered at once and the core buffers them.)
    pub respect_reads: bool,
    /// The first connection is a prompt reader: everything transmitted to it is
    /// reported flushed after every call. Then `send_queue` is at least 8 KiB and
    /// `max_line` at most 200, and the run checks that it is never dropped for
    /// `send queue exceeded`, whatever the others send.
    pub reader: bool,
    /// `Some(n)`: `quiet_joins_above` of `n % 5` (0: off, as `None`). Decoded
    /// just before `events`, where one zero byte (`None`) was inserted into the
    /// checked-in inputs made before it existed, so they replay as they did.
    pub quiet: Option<u8>,
    /// What happens, in order.
    pub events: Vec<ChatEvent>,
}

/// One thing the transport reports. Connection numbers index the connections
/// opened so far (modulo their count), so closed ones are hit too.
#[derive(Debug, Clone, Arbitrary)]
pub enum ChatEvent {
    /// A new connection.
    Open,
    /// A new connection from address number `.0` of a small pool (loopback,
    /// private, IPv4-mapped IPv6, IPv6).
    OpenFrom(u8),
    /// Bytes from a connection; `split` cuts them into two reads.
    Data {
        /// Which connection.
        conn: u8,
        /// What it sends.
        payload: Payload,
        /// Where to split the bytes into two reads.
        split: u8,
    },
    /// The transport wrote `n % (queued + 1)` bytes.
    Flushed {
        /// Which connection.
        conn: u8,
        /// How much.
        n: u16,
    },
    /// EOF from a connection.
    PeerClosed(u8),
    /// A connection failed.
    Reset(u8),
    /// The transport reports a connection's socket closed (`handle_closed`).
    SocketClosed(u8),
    /// Time passes by this many milliseconds (times 16), then `handle_timeout`.
    Advance(u16),
    /// An event for an id the server never issued: must be an error, with no output.
    Bogus,
    /// The server shuts down (the last event: the rest is ignored).
    Shutdown,
}

/// What a connection sends: a line of a known shape, or raw bytes.
#[derive(Debug, Clone, Arbitrary)]
pub enum Payload {
    /// A numbered message (see [`token`]).
    Say,
    /// `/me` with a numbered message.
    Me,
    /// `/msg` to connection number `.0` with a numbered message.
    Msg(u8),
    /// `/nick` with a name from a small pool (collisions wanted).
    Nick(u8),
    /// `/join` with a room from a small pool.
    Join(u8),
    /// `/who`.
    Who,
    /// `/rooms`.
    Rooms,
    /// `/help`.
    Help,
    /// `/quit` with an optional reason.
    Quit(Option<String>),
    /// Anything (with `~` replaced so it cannot forge a token).
    Raw(Vec<u8>),
}

const NAMES: &[&str] = &[
    "ann", "Ann", "bob", "guest1", "guest2", "x-y_z", "bad name", "#rust", "rust", "", "é",
    "server", "SerVer",
];

/// Addresses `OpenFrom` picks from.
fn address(i: u8) -> IpAddr {
    match i % 6 {
        0 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        1 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        2 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        3 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        4 => IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
        _ => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    }
}

/// Input held back for a paused connection (`respect_reads`).
#[derive(Debug)]
enum Held {
    Data(Vec<u8>),
    Eof,
}

/// The server under test, the model, the checker and the harness's driver state.
struct Run {
    server: ChatServer,
    model: Model,
    check: ChatChecker,
    now: Instant,
    respect_reads: bool,
    reader: Option<ConnId>,
    held: BTreeMap<ConnId, VecDeque<Held>>,
}

impl Run {
    /// Drains outputs, compares with the model, lets the prompt reader flush.
    fn settle(&mut self) {
        loop {
            self.check.drain(&mut self.server);
            agree(&self.check, &self.model);
            for id in self.check.all_ids() {
                assert_eq!(
                    self.server.wants_read(id),
                    self.model.wants_read(id),
                    "wants_read({id:?}) differs from the model"
                );
            }
            if let Some(reader) = self.reader {
                assert_ne!(
                    self.check.close_reason(reader),
                    Some(&CloseReason::SendQueueExceeded),
                    "the prompt reader was dropped for others' output"
                );
                let n = self.check.queued(reader);
                if n > 0 && self.check.flushed(reader, n) {
                    self.model.flushed(reader, n);
                    self.server.handle_flushed(reader, n).expect("flushed");
                    continue;
                }
            }
            if !self.deliver_held() {
                break;
            }
        }
    }

    /// Delivers the first held input of the first connection that wants to be read
    /// again (or is closed: then it is dropped). Returns whether it did anything.
    fn deliver_held(&mut self) -> bool {
        let ready = self.held.iter().find_map(|(&id, q)| {
            (!q.is_empty() && (!self.check.is_open(id) || self.server.wants_read(id))).then_some(id)
        });
        let Some(id) = ready else {
            return false;
        };
        let item = self.held.get_mut(&id).and_then(VecDeque::pop_front);
        if self.check.is_open(id) {
            match item {
                Some(Held::Data(bytes)) => self.data_now(id, &bytes),
                Some(Held::Eof) => self.eof_now(id),
                None => {}
            }
        }
        true
    }

    fn blocked(&self, id: ConnId) -> bool {
        self.respect_reads
            && self.check.is_open(id)
            && (!self.server.wants_read(id) || self.held.get(&id).is_some_and(|q| !q.is_empty()))
    }

    fn data(&mut self, id: ConnId, bytes: &[u8]) {
        if self.blocked(id) {
            self.held
                .entry(id)
                .or_default()
                .push_back(Held::Data(bytes.to_vec()));
        } else {
            self.data_now(id, bytes);
        }
        self.settle();
    }

    fn data_now(&mut self, id: ConnId, bytes: &[u8]) {
        accept(
            self.check.is_open(id),
            self.server.handle_data(self.now, id, bytes).is_ok(),
            "handle_data",
        );
        self.model.data(self.now, id, bytes);
    }

    fn eof(&mut self, id: ConnId) {
        if self.blocked(id) {
            self.held.entry(id).or_default().push_back(Held::Eof);
        } else {
            self.eof_now(id);
        }
    }

    fn eof_now(&mut self, id: ConnId) {
        accept(
            self.check.is_open(id),
            self.server.handle_peer_closed(self.now, id).is_ok(),
            "handle_peer_closed",
        );
        self.model.peer_closed(self.now, id);
    }
}

/// Fuzz entry point: decodes a [`ChatInput`] and runs it.
pub fn chat(data: &[u8]) {
    let mut u = Unstructured::new(data);
    if let Ok(input) = ChatInput::arbitrary(&mut u) {
        run_chat(&input);
    }
}

/// Runs `input` against a real [`ChatServer`] and the reference [`Model`] in
/// lockstep; after every event the [`ChatChecker`] invariants hold and every
/// connection's bytes and close reason agree with the model. Returns the checker
/// (transcripts and closes) for further comparison.
pub fn run_chat(input: &ChatInput) -> ChatChecker {
    run_chat_chunked(input, &[])
}

/// [`run_chat`], but each `Data` event's bytes are cut into reads of the given sizes
/// (cycled; `[]`: use the event's own `split`), to check chunking invariance.
pub fn run_chat_chunked(input: &ChatInput, chunks: &[u8]) -> ChatChecker {
    let (send_queue, max_line) = if input.reader {
        (
            8192 + usize::from(input.send_queue % 4096),
            8 + usize::from(input.max_line % 192),
        )
    } else {
        (
            64 + usize::from(input.send_queue % 4096),
            8 + usize::from(input.max_line % 64),
        )
    };
    let config = ChatConfig::default()
        .with_max_line(max_line)
        .with_send_queue(send_queue)
        .with_idle_timeout(
            input
                .idle_secs
                .map(|s| Duration::from_secs(1 + u64::from(s % 8))),
        )
        .with_max_conns(input.max_conns.map(|n| 1 + usize::from(n % 8)))
        .with_flood_rate(input.flood.map(|(r, _)| 1 + u32::from(r % 16)))
        .with_flood_burst(input.flood.map_or(10, |(_, b)| u32::from(b % 5)))
        .with_max_conns_per_ip(input.per_ip.map(|n| 1 + usize::from(n % 3)))
        .with_loopback_exempt(!matches!(input.per_ip, Some(n) if n >= 128))
        .with_quiet_joins_above(input.quiet.map(|n| usize::from(n % 5)));
    let mut run = Run {
        server: ChatServer::new(config),
        model: Model::new(config),
        check: ChatChecker::new(config.send_queue),
        now: Instant::ZERO,
        respect_reads: input.respect_reads,
        reader: None,
        held: BTreeMap::new(),
    };
    let mut seq = 0u64;
    let mut ids: Vec<ConnId> = Vec::new();
    let pick = |ids: &[ConnId], c: u8| (!ids.is_empty()).then(|| ids[usize::from(c) % ids.len()]);
    for ev in &input.events {
        match ev {
            ChatEvent::Open | ChatEvent::OpenFrom(_) => {
                if ids.len() < MAX_CONNS {
                    let (id, model_id) = match ev {
                        ChatEvent::OpenFrom(a) => (
                            run.server.handle_open_from(run.now, address(*a)),
                            run.model.open_from(run.now, address(*a)),
                        ),
                        _ => (run.server.handle_open(run.now), run.model.open(run.now)),
                    };
                    assert_eq!(id, model_id, "ids differ from the model's");
                    run.check.opened(id);
                    if input.reader && ids.is_empty() {
                        run.reader = Some(id);
                    }
                    ids.push(id);
                }
            }
            ChatEvent::Data {
                conn,
                payload,
                split,
            } => {
                let Some(id) = pick(&ids, *conn) else {
                    continue;
                };
                let bytes = render(payload, id, &ids, &mut seq);
                let at = usize::from(*split).min(bytes.len());
                let parts = if chunks.is_empty() {
                    alloc::vec![&bytes[..at], &bytes[at..]]
                } else {
                    super::framer::chunk(&bytes, chunks)
                };
                for part in parts {
                    run.data(id, part);
                }
            }
            ChatEvent::Flushed { conn, n } => {
                let Some(id) = pick(&ids, *conn) else {
                    continue;
                };
                let n = usize::from(*n) % (run.check.queued(id) + 1);
                let open = run.check.flushed(id, n);
                run.model.flushed(id, n);
                accept(
                    open,
                    run.server.handle_flushed(id, n).is_ok(),
                    "handle_flushed",
                );
            }
            ChatEvent::PeerClosed(c) => {
                let Some(id) = pick(&ids, *c) else { continue };
                run.eof(id);
            }
            ChatEvent::Reset(c) => {
                let Some(id) = pick(&ids, *c) else { continue };
                accept(
                    run.check.is_open(id),
                    run.server.handle_reset(run.now, id).is_ok(),
                    "handle_reset",
                );
                run.model.reset(run.now, id);
            }
            ChatEvent::SocketClosed(c) => {
                let Some(id) = pick(&ids, *c) else { continue };
                accept(
                    true,
                    run.server.handle_closed(run.now, id).is_ok(),
                    "handle_closed",
                );
                run.model.closed(run.now, id);
            }
            ChatEvent::Advance(ms) => {
                run.now = run.now + Duration::from_millis(u64::from(*ms) * 16);
                run.server.handle_timeout(run.now);
                run.model.timeout_at(run.now);
                if let Some(t) = run.server.poll_timeout() {
                    assert!(
                        t > run.now,
                        "poll_timeout {t:?} not after handle_timeout({:?})",
                        run.now
                    );
                }
            }
            ChatEvent::Bogus => {
                let id = ConnId(u64::MAX);
                assert!(
                    run.server.handle_data(run.now, id, b"hi\n").is_err(),
                    "unknown id accepted"
                );
                assert!(
                    run.server.handle_flushed(id, 0).is_err(),
                    "unknown id accepted"
                );
                assert!(!run.server.wants_read(id), "unknown id wants to be read");
            }
            ChatEvent::Shutdown => {
                run.server.shutdown(run.now);
                run.model.shutdown(run.now);
                run.settle();
                assert_eq!(
                    run.server.connections(),
                    0,
                    "connections left after shutdown"
                );
                break;
            }
        }
        run.settle();
    }
    run.check
}

/// Every connection got the same bytes and the same close from core and model.
pub fn agree(check: &ChatChecker, model: &Model) {
    for id in check.all_ids() {
        let got = check.received(id);
        let want = model.sent.get(&id).map_or(&[][..], |v| v);
        if got != want {
            let (g, w) = (String::from_utf8_lossy(got), String::from_utf8_lossy(want));
            let common = g.chars().zip(w.chars()).take_while(|(a, b)| a == b).count();
            let from = g
                .char_indices()
                .nth(common.saturating_sub(40))
                .map_or(0, |(i, _)| i);
            let wfrom = w
                .char_indices()
                .nth(common.saturating_sub(40))
                .map_or(0, |(i, _)| i);
            panic!(
                "{id:?} received differs from the model\n core: …{:?}\nmodel: …{:?}",
                &g[from..],
                &w[wfrom..]
            );
        }
        assert_eq!(
            check.close_reason(id),
            model.closes.get(&id),
            "{id:?} close differs from the model"
        );
        assert_eq!(
            check.aborted().contains(&id),
            model.aborted.contains(&id),
            "{id:?} abort differs from the model"
        );
        assert_eq!(
            check.is_open(id).then(|| check.queued(id)),
            model.queued(id),
            "{id:?} queued differs"
        );
    }
}

/// An event for a closed connection may be ignored or refused; one for an open
/// connection must be accepted.
fn accept(open: bool, ok: bool, what: &str) {
    assert!(ok || !open, "{what} refused for an open connection");
}

fn render(p: &Payload, from: ConnId, ids: &[ConnId], seq: &mut u64) -> Vec<u8> {
    let mut next = || {
        *seq += 1;
        token(from, *seq)
    };
    let name = |i: &u8| NAMES[usize::from(*i) % NAMES.len()];
    let line = match p {
        Payload::Say => next(),
        Payload::Me => format!("/me {}", next()),
        Payload::Msg(to) => {
            let to = ids[usize::from(*to) % ids.len()];
            format!("/msg guest{} {}", to.0 + 1, next())
        }
        Payload::Nick(i) => format!("/nick {}", name(i)),
        Payload::Join(i) => format!("/join {}", name(i)),
        Payload::Who => "/who".into(),
        Payload::Rooms => "/rooms".into(),
        Payload::Help => "/help".into(),
        Payload::Quit(None) => "/quit".into(),
        Payload::Quit(Some(r)) => format!("/quit {}", r.replace(['~', '\n'], "_")),
        Payload::Raw(b) => {
            return b
                .iter()
                .map(|&b| if b == b'~' { b'_' } else { b })
                .collect();
        }
    };
    let mut v = line.into_bytes();
    v.push(b'\n');
    v
}
