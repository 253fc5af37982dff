//! Structure-aware fuzz body for [`ChatServer`]: random events over a few connections.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use crate::chat::{ChatConfig, ChatServer, ConnId};
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
    /// `send_queue` is `64 + this % 2048`.
    pub send_queue: u16,
    /// `Some(s)`: idle timeout of `1 + s % 8` seconds.
    pub idle_secs: Option<u8>,
    /// `Some(n)`: `max_conns` of `1 + n % 8`.
    pub max_conns: Option<u8>,
    /// What happens, in order.
    pub events: Vec<ChatEvent>,
}

/// One thing the transport reports. Connection numbers index the connections
/// opened so far (modulo their count), so closed ones are hit too.
#[derive(Debug, Clone, Arbitrary)]
pub enum ChatEvent {
    /// A new connection.
    Open,
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
];

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
    let config = ChatConfig::default()
        .with_max_line(8 + usize::from(input.max_line % 64))
        .with_send_queue(64 + usize::from(input.send_queue % 2048))
        .with_idle_timeout(
            input
                .idle_secs
                .map(|s| Duration::from_secs(1 + u64::from(s % 8))),
        )
        .with_max_conns(input.max_conns.map(|n| 1 + usize::from(n % 8)));
    let mut server = ChatServer::new(config);
    let mut check = ChatChecker::new(config.send_queue);
    let mut model = Model::new(config);
    let mut now = Instant::ZERO;
    let mut seq = 0u64;
    let mut ids: Vec<ConnId> = Vec::new();
    let pick = |ids: &[ConnId], c: u8| (!ids.is_empty()).then(|| ids[usize::from(c) % ids.len()]);
    for ev in &input.events {
        match ev {
            ChatEvent::Open => {
                if ids.len() < MAX_CONNS {
                    let id = server.handle_open(now);
                    assert_eq!(id, model.open(now), "ids differ from the model's");
                    check.opened(id);
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
                    accept(
                        check.is_open(id),
                        server.handle_data(now, id, part).is_ok(),
                        "handle_data",
                    );
                    model.data(now, id, part);
                    check.drain(&mut server);
                    agree(&check, &model);
                }
            }
            ChatEvent::Flushed { conn, n } => {
                let Some(id) = pick(&ids, *conn) else {
                    continue;
                };
                let n = usize::from(*n) % (check.queued(id) + 1);
                let open = check.flushed(id, n);
                model.flushed(id, n);
                accept(open, server.handle_flushed(id, n).is_ok(), "handle_flushed");
            }
            ChatEvent::PeerClosed(c) => {
                let Some(id) = pick(&ids, *c) else { continue };
                accept(
                    check.is_open(id),
                    server.handle_peer_closed(now, id).is_ok(),
                    "handle_peer_closed",
                );
                model.peer_closed(id);
            }
            ChatEvent::Reset(c) => {
                let Some(id) = pick(&ids, *c) else { continue };
                accept(
                    check.is_open(id),
                    server.handle_reset(now, id).is_ok(),
                    "handle_reset",
                );
                model.reset(id);
            }
            ChatEvent::SocketClosed(c) => {
                let Some(id) = pick(&ids, *c) else { continue };
                accept(true, server.handle_closed(now, id).is_ok(), "handle_closed");
                model.closed(id);
            }
            ChatEvent::Advance(ms) => {
                now = now + Duration::from_millis(u64::from(*ms) * 16);
                server.handle_timeout(now);
                model.timeout_at(now);
                if let Some(t) = server.poll_timeout() {
                    assert!(
                        t > now,
                        "poll_timeout {t:?} not after handle_timeout({now:?})"
                    );
                }
            }
            ChatEvent::Bogus => {
                let id = ConnId(u64::MAX);
                assert!(
                    server.handle_data(now, id, b"hi\n").is_err(),
                    "unknown id accepted"
                );
                assert!(server.handle_flushed(id, 0).is_err(), "unknown id accepted");
            }
            ChatEvent::Shutdown => {
                server.shutdown(now);
                model.shutdown(now);
                check.drain(&mut server);
                agree(&check, &model);
                assert_eq!(server.connections(), 0, "connections left after shutdown");
                break;
            }
        }
        check.drain(&mut server);
        agree(&check, &model);
    }
    check
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
