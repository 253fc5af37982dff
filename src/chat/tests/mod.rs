//! Unit tests of the chat core, driven through a tiny in-memory harness ([`H`]): no
//! sockets, simulated time, every output checked against the invariants.
//!
//! * [`commands`]: arrival, every row of the command table in `docs/PROTOCOL.md`, the docs example;
//! * [`limits`]: bad input, departures, send queue, idle timeout, shutdown, and a
//!   randomized run checking invariants;
//! * [`telnet`]: telnet commands on the chat port (the Ctrl-C bug, refusals,
//!   TIMING-MARK order, floods against the send queue);
//! * [`quiet`]: quiet rooms (`quiet_joins_above`), on one node and across nodes.

use alloc::collections::{BTreeMap, BTreeSet};
#[cfg(not(feature = "std"))]
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bytes::Bytes;

use super::*;
use crate::Instant;

mod abuse;
mod cluster;
mod cluster_prop;
mod commands;
mod limits;
mod pending;
mod quiet;
mod telnet;

/// Drives a [`ChatServer`] and records what each connection was sent.
struct H {
    s: ChatServer,
    now: Instant,
    /// Text received per connection, not yet taken by the test.
    inbox: BTreeMap<ConnId, String>,
    /// Raw transmits in order (all of them, for allocation checks).
    log: Vec<(ConnId, Bytes)>,
    /// Every byte each connection received, telnet replies included, in order.
    raw: BTreeMap<ConnId, Vec<u8>>,
    closed: BTreeMap<ConnId, CloseReason>,
    /// Connections the core aborted (close grace ran out).
    aborted: BTreeSet<ConnId>,
    /// Report every transmit flushed at once (a fast reader).
    auto_flush: bool,
    /// Report every closed connection's socket closed at once (`handle_closed`).
    auto_close: bool,
}

impl H {
    fn new(config: ChatConfig) -> Self {
        H {
            s: ChatServer::new(config),
            now: Instant::ZERO,
            inbox: BTreeMap::new(),
            log: Vec::new(),
            raw: BTreeMap::new(),
            closed: BTreeMap::new(),
            aborted: BTreeSet::new(),
            auto_flush: true,
            auto_close: true,
        }
    }

    fn default() -> Self {
        H::new(ChatConfig::default())
    }

    fn drain(&mut self) {
        while let Some(out) = self.s.poll_output() {
            match out {
                Output::Transmit { to, bytes } => {
                    assert!(
                        !self.closed.contains_key(&to),
                        "output to {to:?} after its Close"
                    );
                    self.raw.entry(to).or_default().extend_from_slice(&bytes);
                    self.log.push((to, bytes.clone()));
                    if bytes[0] == crate::telnet::IAC {
                        assert_eq!(bytes.len(), 3, "one telnet reply per transmit");
                    } else {
                        let text = core::str::from_utf8(&bytes).expect("server output is UTF-8");
                        assert!(text.ends_with('\n'), "whole lines only: {text:?}");
                        self.inbox.entry(to).or_default().push_str(text);
                    }
                    if self.auto_flush {
                        self.s.handle_flushed(to, bytes.len()).unwrap();
                    }
                }
                Output::Close { id, reason } => {
                    assert!(
                        self.closed.insert(id, reason).is_none(),
                        "{id:?} closed twice"
                    );
                    assert!(!self.s.is_open(id));
                    if self.auto_close {
                        self.s.handle_closed(self.now, id).unwrap();
                    }
                }
                Output::Abort { id } => {
                    assert!(self.closed.contains_key(&id), "abort before close");
                    assert!(self.aborted.insert(id), "{id:?} aborted twice");
                }
                Output::Bus(action) => panic!("bus action from a single node: {action:?}"),
            }
        }
        // Invariants after every drain.
        for id in self.s.conn_ids().collect::<Vec<_>>() {
            assert!(self.s.queued(id).unwrap() <= self.s.config().send_queue);
            assert!(!self.closed.contains_key(&id));
        }
        let total: usize = self.s.rooms().map(|(_, n)| n).sum();
        assert_eq!(
            total,
            self.s.connections(),
            "every connection is in exactly one room"
        );
    }

    fn open(&mut self) -> ConnId {
        let id = self.s.handle_open(self.now);
        self.drain();
        id
    }

    /// Opens `n` connections and forgets their welcome traffic.
    fn open_n(&mut self, n: usize) -> Vec<ConnId> {
        let ids = (0..n).map(|_| self.open()).collect();
        self.inbox.clear();
        ids
    }

    fn send(&mut self, id: ConnId, data: &str) {
        self.send_bytes(id, data.as_bytes());
    }

    fn send_bytes(&mut self, id: ConnId, data: &[u8]) {
        self.s.handle_data(self.now, id, data).unwrap();
        self.drain();
    }

    fn eof(&mut self, id: ConnId) {
        self.s.handle_peer_closed(self.now, id).unwrap();
        self.drain();
    }

    /// Takes everything `id` received so far.
    fn take(&mut self, id: ConnId) -> String {
        self.inbox.remove(&id).unwrap_or_default()
    }

    fn lines(&mut self, id: ConnId) -> Vec<String> {
        self.take(id).lines().map(ToString::to_string).collect()
    }

    fn quiet(&mut self, ids: &[ConnId]) {
        for &id in ids {
            assert_eq!(self.take(id), "", "{id:?} got unexpected output");
        }
    }
}

fn cfg(f: impl FnOnce(&mut ChatConfig)) -> ChatConfig {
    let mut c = ChatConfig::default();
    f(&mut c);
    c
}
