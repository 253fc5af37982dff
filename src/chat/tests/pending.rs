//! Pending connections (a TLS handshake under way): invisible until ready, counted
//! against `max_conns`, closed silently when they fail or time out.

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::*;

impl H {
    fn open_pending(&mut self) -> ConnId {
        let id = self.s.handle_open_pending(self.now);
        self.drain();
        id
    }

    fn ready(&mut self, id: ConnId) {
        self.s.handle_ready(self.now, id).unwrap();
        self.drain();
    }

    fn at(&mut self, millis: u64) {
        self.now = Instant::from_millis(millis);
        self.s.handle_timeout(self.now);
        self.drain();
    }
}

#[test]
fn a_pending_connection_is_invisible_until_ready() {
    let mut h = H::default();
    let a = h.open();
    assert_eq!(h.take(a), "* welcome guest1, 1 users online\n");
    let p = h.open_pending();
    assert!(h.s.is_pending(p) && !h.s.is_open(p));
    assert_eq!(h.s.pending(), 1);
    assert_eq!(h.take(p), "", "no welcome before the handshake");
    h.send(a, "/who\n");
    assert_eq!(h.take(a), "* in #lobby: guest1\n");
    // Data before ready is ignored (the hub never sends any).
    h.send(p, "hello\n");
    assert_eq!(h.take(a), "");
    h.ready(p);
    assert!(h.s.is_open(p) && !h.s.is_pending(p));
    assert_eq!(h.take(p), "* welcome guest2, 2 users online\n");
    assert_eq!(h.take(a), "* guest2 joined #lobby\n");
    // Ready twice, or for a closed id: nothing happens.
    h.ready(p);
    assert_eq!(h.take(p), "");
    assert_eq!(
        h.s.handle_ready(h.now, ConnId(99)),
        Err(ChatError::UnknownConn(ConnId(99)))
    );
}

#[test]
fn pending_connections_count_against_max_conns_and_are_refused_silently() {
    let mut h = H::new(cfg(|c| c.max_conns = Some(2)));
    let a = h.open();
    let p = h.open_pending();
    // Full: a plaintext newcomer gets `! server full`, a pending one just a Close.
    let b = h.open();
    assert_eq!(h.take(b), "! server full\n");
    assert_eq!(h.closed[&b], CloseReason::ServerFull);
    let q = h.open_pending();
    assert_eq!(h.take(q), "");
    assert_eq!(h.closed[&q], CloseReason::ServerFull);
    h.ready(p);
    assert_eq!(h.take(p), "* welcome guest2, 2 users online\n");
    assert_eq!(
        h.take(a),
        "* welcome guest1, 1 users online\n* guest2 joined #lobby\n"
    );
}

#[test]
fn a_handshake_that_times_out_leaves_no_trace() {
    let mut h = H::new(cfg(|c| c.ready_timeout = Duration::from_secs(1)));
    let a = h.open();
    h.take(a);
    let p = h.open_pending();
    assert_eq!(h.s.poll_timeout(), Some(Instant::from_millis(1000)));
    h.at(999);
    assert!(h.s.is_pending(p));
    h.at(1000);
    assert_eq!(h.closed[&p], CloseReason::HandshakeTimeout);
    assert!(CloseReason::HandshakeTimeout.flush(), "the alert goes out");
    assert!(!h.s.is_pending(p) && !h.s.is_open(p));
    assert_eq!(h.s.poll_timeout(), None);
    assert_eq!(h.take(a), "", "nobody is told");
    h.send(a, "/who\n");
    assert_eq!(h.take(a), "* in #lobby: guest1\n");
    // Ready after the timeout: too late, ignored.
    h.ready(p);
    assert!(!h.s.is_open(p));
    // The next guest number was not used by it.
    let b = h.open();
    assert_eq!(h.take(b), "* welcome guest2, 2 users online\n");
}

#[test]
fn eof_reset_and_close_of_a_pending_connection_are_silent() {
    let mut h = H::default();
    let a = h.open();
    h.take(a);
    let ids: Vec<ConnId> = (0..3).map(|_| h.open_pending()).collect();
    h.eof(ids[0]);
    h.s.handle_reset(h.now, ids[1]).unwrap();
    h.drain();
    h.s.handle_closed(h.now, ids[2]).unwrap();
    h.drain();
    assert_eq!(h.closed[&ids[0]], CloseReason::PeerClosed);
    assert_eq!(h.closed[&ids[1]], CloseReason::Reset);
    assert_eq!(h.closed[&ids[2]], CloseReason::Reset);
    assert_eq!(h.s.pending(), 0);
    assert_eq!(h.s.closing(), 0, "every socket reported closed");
    assert_eq!(h.take(a), String::new(), "no `left` notices");
}

#[test]
fn shutdown_closes_pending_connections_without_text() {
    let mut h = H::default();
    let a = h.open();
    let p = h.open_pending();
    h.s.shutdown(h.now);
    h.drain();
    assert_eq!(h.closed[&p], CloseReason::Shutdown);
    assert_eq!(h.take(p), "");
    assert!(h.take(a).ends_with("* server shutting down\n"));
    assert!(h.s.is_finished());
    // After shutdown a pending open is closed at once.
    let q = h.open_pending();
    assert_eq!(h.closed[&q], CloseReason::Shutdown);
    assert_eq!(h.take(q), "");
}

#[test]
fn pending_connections_count_against_their_address() {
    let ip: core::net::IpAddr = [192, 0, 2, 9].into();
    let mut h = H::default();
    h.auto_close = false;
    h.s = ChatServer::new(ChatConfig::default().with_max_conns_per_ip(Some(2)));
    let a = h.s.handle_open_pending_from(h.now, ip);
    let b = h.s.handle_open_pending_from(h.now, ip);
    let c = h.s.handle_open_pending_from(h.now, ip);
    h.drain();
    assert!(h.s.is_pending(a) && h.s.is_pending(b) && !h.s.is_pending(c));
    assert_eq!(h.closed.get(&c), Some(&CloseReason::TooManyFromAddress));
    assert_eq!(
        h.take(c),
        "",
        "refused silently: no text before the handshake"
    );
    // A plaintext connection from the same address is refused too, with text.
    let d = h.s.handle_open_from(h.now, ip);
    h.drain();
    assert_eq!(h.take(d), "! too many connections from your address\n");
    // Once a's handshake fails and its socket is closed, the address has a slot.
    h.s.handle_reset(h.now, a).unwrap();
    h.drain();
    h.s.handle_closed(h.now, a).unwrap();
    h.s.handle_closed(h.now, c).unwrap();
    h.s.handle_closed(h.now, d).unwrap();
    let e = h.s.handle_open_pending_from(h.now, ip);
    h.drain();
    assert!(h.s.is_pending(e));
}
