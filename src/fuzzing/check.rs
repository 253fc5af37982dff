//! [`ChatChecker`]: invariants of a [`ChatServer`]'s outputs, checked as they come.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::chat::{ChatServer, CloseReason, ConnId, Output, LINE_OVERHEAD};
use crate::telnet;

/// Whether `c` must never reach a client: C0 controls except tab and newline, DEL,
/// C1, and the look-alikes: zero-width and direction marks (U+200B–U+200F, U+2060,
/// U+FEFF), line and paragraph separators (U+2028, U+2029), bidirectional
/// embeddings, overrides (U+202A–U+202E) and isolates (U+2066–U+2069).
pub fn forbidden_char(c: char) -> bool {
    (c < ' ' && c != '\t' && c != '\n')
        || ('\u{7f}'..='\u{9f}').contains(&c)
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}')
        || matches!(c, '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// The text of message number `seq` from connection `sender`: `~sender.seq`.
/// Harnesses never send `~` otherwise, so a token in an output line identifies
/// exactly who sent it and in which order.
pub fn token(sender: ConnId, seq: u64) -> String {
    format!("~{}.{}", sender.0, seq)
}

/// Parses the first token in `line`, if any.
fn parse_token(line: &str) -> Option<(u64, u64)> {
    let at = line.find('~')?;
    let rest = &line[at + 1..];
    let (a, rest) = rest.split_once('.')?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Some((a.parse().ok()?, rest[..end].parse().ok()?))
}

#[derive(Debug, Default)]
struct Conn {
    queued: usize,
    /// Unflushed bytes of each transmit, oldest first (each costs `LINE_OVERHEAD` more).
    items: alloc::collections::VecDeque<usize>,
    /// Telnet refusals sent: `(verb, option)`.
    refused: alloc::collections::BTreeSet<(u8, u8)>,
    /// Highest token seq received from each sender.
    last_seq: BTreeMap<u64, u64>,
}

/// Watches every [`Output`] of one [`ChatServer`] and panics on a broken invariant:
///
/// * a connection gets nothing after its `Close` (and is closed at most once);
/// * every transmit is whole, valid UTF-8 lines starting with `<`, `* `, `! ` or
///   `(pm) `, with no [forbidden](forbidden_char) character, or one telnet reply:
///   `IAC WILL TIMING-MARK`, or `IAC WONT x` / `IAC DONT x` at most once per
///   (verb, option) and connection;
/// * no sender receives its own [token] (except by `/msg` to itself, or quoted in
///   an error line), and tokens from one sender reach each
///   recipient in increasing order;
/// * a connection's queued cost (bytes plus [`LINE_OVERHEAD`] per transmit not
///   fully flushed) never exceeds `send_queue`; bytes and cost agree with
///   [`ChatServer::queued`] and [`ChatServer::queued_cost`], the open set with
///   [`ChatServer::connections`]; closed connections never want to be read.
#[derive(Debug)]
pub struct ChatChecker {
    send_queue: usize,
    open: BTreeMap<ConnId, Conn>,
    closed: BTreeMap<ConnId, CloseReason>,
    /// Closed connections whose grace ran out (`Abort`), each at most once.
    aborted: BTreeSet<ConnId>,
    received: BTreeMap<ConnId, Vec<u8>>,
}

impl ChatChecker {
    /// A checker for a server with this `send_queue` limit.
    pub fn new(send_queue: usize) -> Self {
        ChatChecker {
            send_queue,
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            aborted: BTreeSet::new(),
            received: BTreeMap::new(),
        }
    }

    /// `handle_open` returned `id` (call before draining its outputs).
    pub fn opened(&mut self, id: ConnId) {
        assert!(
            !self.open.contains_key(&id) && !self.closed.contains_key(&id),
            "{id:?} issued twice"
        );
        if let Some(last) = self.received.keys().next_back() {
            assert!(id > *last, "ids must increase: {id:?} after {last:?}");
        }
        self.open.insert(id, Conn::default());
        self.received.insert(id, Vec::new());
    }

    /// Checks and records one output.
    pub fn output(&mut self, out: &Output) {
        match out {
            Output::Transmit { to, bytes } => {
                let Some(conn) = self.open.get_mut(to) else {
                    panic!("transmit to {to:?} which is {}", self.state(*to));
                };
                assert!(!bytes.is_empty(), "empty transmit to {to:?}");
                if bytes[0] == telnet::IAC {
                    check_telnet_reply(*to, conn, bytes);
                } else {
                    assert_eq!(
                        bytes.last(),
                        Some(&b'\n'),
                        "transmit to {to:?} is not whole lines: {bytes:?}"
                    );
                    let text = core::str::from_utf8(bytes)
                        .unwrap_or_else(|e| panic!("invalid UTF-8 to {to:?}: {e}"));
                    for line in text.split_terminator('\n') {
                        check_line(*to, conn, line);
                    }
                }
                conn.queued += bytes.len();
                conn.items.push_back(bytes.len());
                // A refusal (the only output before a connection's `Close`) is static
                // and not queued against `send_queue`.
                let refusal = self.received.get(to).is_some_and(Vec::is_empty)
                    && matches!(
                        &bytes[..],
                        b"! server full\n"
                            | b"* server shutting down\n"
                            | b"! too many connections from your address\n"
                    );
                assert!(
                    refusal || conn.cost() <= self.send_queue,
                    "{to:?} has {} bytes queued costing {}, send_queue is {}",
                    conn.queued,
                    conn.cost(),
                    self.send_queue
                );
                self.received
                    .get_mut(to)
                    .expect("received")
                    .extend_from_slice(bytes);
            }
            Output::Close { id, reason } => {
                assert!(
                    self.open.remove(id).is_some(),
                    "close of {id:?} which is {}",
                    self.state(*id)
                );
                self.closed.insert(*id, reason.clone());
            }
            Output::Abort { id } => {
                assert!(
                    self.closed.contains_key(id) && self.aborted.insert(*id),
                    "abort of {id:?} which is {}",
                    self.state(*id)
                );
            }
            // Cluster traffic is checked by the cluster checks, not by this one.
            Output::Bus(_) => {}
        }
    }

    /// The transport flushed `n` bytes of `id`'s queue; returns false (and records
    /// nothing) if `id` is not open.
    pub fn flushed(&mut self, id: ConnId, n: usize) -> bool {
        match self.open.get_mut(&id) {
            Some(c) => {
                assert!(n <= c.queued, "harness flushed more than queued");
                c.queued -= n;
                let mut left = n;
                while let Some(first) = c.items.front_mut() {
                    if left < *first {
                        *first -= left;
                        break;
                    }
                    left -= *first;
                    c.items.pop_front();
                }
                true
            }
            None => false,
        }
    }

    /// Bytes transmitted to `id` and not yet flushed (0 when not open).
    pub fn queued(&self, id: ConnId) -> usize {
        self.open.get(&id).map_or(0, |c| c.queued)
    }

    /// What `id`'s queue counts against `send_queue` (0 when not open).
    pub fn cost(&self, id: ConnId) -> usize {
        self.open.get(&id).map_or(0, Conn::cost)
    }

    /// Whether `id` is open.
    pub fn is_open(&self, id: ConnId) -> bool {
        self.open.contains_key(&id)
    }

    /// Open connections, in id order.
    pub fn open_ids(&self) -> Vec<ConnId> {
        self.open.keys().copied().collect()
    }

    /// Every id issued so far, in order.
    pub fn all_ids(&self) -> Vec<ConnId> {
        self.received.keys().copied().collect()
    }

    /// Everything transmitted to `id`.
    pub fn received(&self, id: ConnId) -> &[u8] {
        self.received.get(&id).map_or(&[], |v| v)
    }

    /// The connections aborted after their grace ran out.
    pub fn aborted(&self) -> &BTreeSet<ConnId> {
        &self.aborted
    }

    /// Why `id` was closed, if it was.
    pub fn close_reason(&self, id: ConnId) -> Option<&CloseReason> {
        self.closed.get(&id)
    }

    /// Drains `server`'s outputs through [`output`](Self::output), then checks its accessors.
    pub fn drain(&mut self, server: &mut ChatServer) {
        while let Some(out) = server.poll_output() {
            self.output(&out);
        }
        self.check_server(server);
    }

    /// Checks `server`'s accessors against what the outputs said.
    pub fn check_server(&self, server: &ChatServer) {
        assert_eq!(
            server.connections(),
            self.open.len(),
            "connections() disagrees with outputs"
        );
        for (id, c) in &self.open {
            assert_eq!(server.queued(*id), Some(c.queued), "queued({id:?})");
            assert_eq!(
                server.queued_cost(*id),
                Some(c.cost()),
                "queued_cost({id:?})"
            );
        }
        for id in self.closed.keys() {
            assert_eq!(
                server.queued(*id),
                None,
                "queued({id:?}) of a closed connection"
            );
            assert!(!server.wants_read(*id), "closed {id:?} wants to be read");
        }
        let mut nicks = alloc::collections::BTreeSet::new();
        for id in self.open.keys() {
            let nick = server
                .nick(*id)
                .unwrap_or_else(|| panic!("open {id:?} has no nick"));
            assert!(
                crate::chat::valid_name(nick),
                "{id:?} has an invalid nick {nick:?}"
            );
            assert!(
                nicks.insert(nick.to_ascii_lowercase()),
                "nick {nick:?} is not unique ignoring case"
            );
        }
    }

    fn state(&self, id: ConnId) -> String {
        match self.closed.get(&id) {
            Some(r) => format!("closed ({r:?})"),
            None => String::from("never opened"),
        }
    }
}

impl Conn {
    fn cost(&self) -> usize {
        self.queued + LINE_OVERHEAD * self.items.len()
    }
}

fn check_telnet_reply(to: ConnId, conn: &mut Conn, bytes: &[u8]) {
    let &[telnet::IAC, verb, opt] = bytes else {
        panic!("transmit to {to:?} starts with IAC but is no telnet reply: {bytes:?}");
    };
    match verb {
        telnet::WILL => assert_eq!(
            opt,
            telnet::TIMING_MARK,
            "{to:?} was offered telnet option {opt}"
        ),
        telnet::WONT | telnet::DONT => assert!(
            conn.refused.insert((verb, opt)),
            "{to:?} got telnet refusal {verb} {opt} twice"
        ),
        _ => panic!("{to:?} got an unasked telnet command {bytes:?}"),
    }
}

fn check_line(to: ConnId, conn: &mut Conn, line: &str) {
    if let Some(c) = line.chars().find(|&c| forbidden_char(c)) {
        panic!("line to {to:?} contains {c:?}: {line:?}");
    }
    assert!(
        line.starts_with('<')
            || line.starts_with("* ")
            || line.starts_with("! ")
            || line.starts_with("(pm) <"),
        "line to {to:?} has no known prefix: {line:?}"
    );
    // Error lines (`! unknown command /~3.1`) may quote the recipient's own text.
    if line.starts_with("! ") {
        return;
    }
    if let Some((sender, seq)) = parse_token(line) {
        // `/msg` to one's own nick is delivered (as IRC does); nothing else comes back.
        if !line.starts_with("(pm) ") {
            assert_ne!(sender, to.0, "{to:?} received its own message: {line:?}");
        }
        let last = conn.last_seq.entry(sender).or_insert(0);
        assert!(
            seq > *last,
            "{to:?} got message {seq} from {sender} after {}: {line:?}",
            *last
        );
        *last = seq;
    }
}
