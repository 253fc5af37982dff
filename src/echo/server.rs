//! [`EchoServer`]: the echo server's lifecycle as a sans-IO state machine.
//!
//! Echo connections are independent (each one is an [`EchoConn`](super::EchoConn)
//! in its own thread or task), so this is all the server decides as a whole:
//!
//! * **admission**: `handle_accept(now)` admits a connection (an id) or refuses it
//!   (`--max-conns` reached, `--once` already served, shutting down;
//!   `handle_accept_from(now, peer)`: also `--max-conns-per-ip` reached);
//! * **`--once`**: after the first admitted client it accepts no more, and is
//!   finished when that client is gone;
//! * **shutdown drain**: `shutdown(now)` stops accepting and asks for every live
//!   connection's read side to be closed ([`EchoAction::CloseRead`]: each then sends
//!   back what is pending and ends); whatever is still live when
//!   [`EchoServerConfig::shutdown_grace`](super::EchoServerConfig::shutdown_grace)
//!   has passed is aborted ([`EchoAction::Abort`]).
//!
//! ```
//! use echochat::echo::{EchoAction, EchoServer, EchoServerConfig};
//! use echochat::Instant;
//! use core::time::Duration;
//!
//! let mut config = EchoServerConfig::default();
//! config.max_conns = Some(1);
//! let mut server = EchoServer::new(config);
//! let now = Instant::ZERO;
//! let a = server.handle_accept(now).expect("admitted");
//! assert!(server.handle_accept(now).is_none(), "full");
//! server.shutdown(now);
//! assert_eq!(server.poll_action(), Some(EchoAction::CloseRead(a)));
//! assert_eq!(server.poll_timeout(), Some(now + Duration::from_secs(2)));
//! server.handle_closed(a);
//! assert!(server.is_finished());
//! ```

use alloc::collections::{BTreeSet, VecDeque};
use core::net::IpAddr;

use super::EchoServerConfig;
use crate::addr_limit::AddrLimit;
use crate::chat::ConnId;
use crate::Instant;

/// What the transport must do to a live echo connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EchoAction {
    /// Shut the connection's read side down: it sends back what is pending, then
    /// ends (and the transport reports [`EchoServer::handle_closed`]).
    CloseRead(ConnId),
    /// Shut the connection down at once (its shutdown grace ran out).
    Abort(ConnId),
}

/// The echo server's lifecycle. No I/O, no clock.
#[derive(Debug)]
pub struct EchoServer {
    config: EchoServerConfig,
    next: u64,
    live: BTreeSet<ConnId>,
    /// A client was admitted (for `--once`).
    served: bool,
    /// When shutdown's grace runs out (set by `shutdown`).
    grace_ends: Option<Instant>,
    /// The grace ran out and every live connection was aborted.
    aborted: bool,
    actions: VecDeque<EchoAction>,
    /// Live connections per client address.
    addr_limit: AddrLimit,
}

impl EchoServer {
    /// A server with no connections.
    pub fn new(config: EchoServerConfig) -> Self {
        EchoServer {
            config,
            next: 0,
            live: BTreeSet::new(),
            served: false,
            grace_ends: None,
            aborted: false,
            actions: VecDeque::new(),
            addr_limit: AddrLimit::new(config.max_conns_per_ip, config.loopback_exempt),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EchoServerConfig {
        &self.config
    }

    /// A connection was accepted: its id, or `None` to close it at once (full,
    /// `--once` already served, or shutting down).
    pub fn handle_accept(&mut self, now: Instant) -> Option<ConnId> {
        self.accept(now, None)
    }

    /// [`handle_accept`](Self::handle_accept) for a connection from `peer`: also
    /// `None` when [`EchoServerConfig::max_conns_per_ip`] connections from that
    /// address are live (loopback exempt if [`EchoServerConfig::loopback_exempt`]).
    pub fn handle_accept_from(&mut self, now: Instant, peer: IpAddr) -> Option<ConnId> {
        self.accept(now, Some(peer))
    }

    fn accept(&mut self, now: Instant, peer: Option<IpAddr>) -> Option<ConnId> {
        let _ = now;
        if peer.is_some_and(|ip| self.addr_limit.is_full(ip)) {
            return None;
        }
        let full = self.config.max_conns.is_some_and(|m| self.live.len() >= m);
        if !self.is_accepting() || full {
            return None;
        }
        let id = ConnId(self.next);
        self.next += 1;
        self.live.insert(id);
        self.served = true;
        if let Some(ip) = peer {
            self.addr_limit.count(id, ip);
        }
        Some(id)
    }

    /// Connection `id` ended (its socket is closed). Unknown ids are ignored.
    pub fn handle_closed(&mut self, id: ConnId) {
        self.live.remove(&id);
        self.addr_limit.forget(id);
    }

    /// The server stops at `now`: no more admissions, every live connection's read
    /// side is to be closed, and the shutdown grace starts. Idempotent.
    pub fn shutdown(&mut self, now: Instant) {
        if self.grace_ends.is_some() {
            return;
        }
        self.grace_ends = Some(now + self.config.shutdown_grace);
        self.actions
            .extend(self.live.iter().map(|&id| EchoAction::CloseRead(id)));
    }

    /// Time passed: at the end of the shutdown grace every live connection is aborted.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.aborted || self.grace_ends.is_none_or(|t| t > now) {
            return;
        }
        self.aborted = true;
        self.actions
            .extend(self.live.iter().map(|&id| EchoAction::Abort(id)));
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.grace_ends
            .filter(|_| !self.aborted && !self.live.is_empty())
    }

    /// The next thing the transport must do.
    pub fn poll_action(&mut self) -> Option<EchoAction> {
        self.actions.pop_front()
    }

    /// Whether new connections are admitted (false after `shutdown`, and after the
    /// first client with `--once`): the transport may stop accepting.
    pub fn is_accepting(&self) -> bool {
        self.grace_ends.is_none() && !(self.config.once && self.served)
    }

    /// Whether the server is done: it accepts no more and every connection ended
    /// (or was aborted). The transport may return.
    pub fn is_finished(&self) -> bool {
        !self.is_accepting() && (self.live.is_empty() || self.aborted)
    }

    /// Live connections.
    pub fn live(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn server(f: impl FnOnce(&mut EchoServerConfig)) -> EchoServer {
        let mut config = EchoServerConfig::default();
        f(&mut config);
        EchoServer::new(config)
    }

    #[test]
    fn max_conns_is_hit_and_released() {
        let mut s = server(|c| c.max_conns = Some(2));
        let now = Instant::ZERO;
        let a = s.handle_accept(now).unwrap();
        let b = s.handle_accept(now).unwrap();
        assert_ne!(a, b);
        assert_eq!(s.handle_accept(now), None);
        s.handle_closed(a);
        assert!(s.handle_accept(now).is_some());
        assert_eq!(s.live(), 2);
        assert!(!s.is_finished());
    }

    #[test]
    fn max_conns_per_ip_is_hit_and_released() {
        let mut s = server(|c| c.max_conns_per_ip = Some(1));
        let now = Instant::ZERO;
        let ip: IpAddr = [192, 0, 2, 7].into();
        let a = s.handle_accept_from(now, ip).unwrap();
        assert_eq!(s.handle_accept_from(now, ip), None);
        assert!(s.handle_accept_from(now, [192, 0, 2, 8].into()).is_some());
        s.handle_closed(a);
        assert!(s.handle_accept_from(now, ip).is_some());
    }

    #[test]
    fn once_serves_one_client_then_finishes() {
        let mut s = server(|c| c.once = true);
        let a = s.handle_accept(Instant::ZERO).unwrap();
        assert!(!s.is_accepting());
        assert_eq!(s.handle_accept(Instant::ZERO), None);
        assert!(!s.is_finished());
        s.handle_closed(a);
        assert!(s.is_finished());
    }

    #[test]
    fn shutdown_closes_reads_then_aborts_after_the_grace() {
        let mut s = server(|c| c.shutdown_grace = Duration::from_millis(500));
        let t0 = Instant::from_millis(100);
        let a = s.handle_accept(t0).unwrap();
        let b = s.handle_accept(t0).unwrap();
        s.shutdown(t0);
        s.shutdown(t0 + Duration::from_secs(9)); // idempotent
        assert_eq!(s.poll_action(), Some(EchoAction::CloseRead(a)));
        assert_eq!(s.poll_action(), Some(EchoAction::CloseRead(b)));
        assert_eq!(s.poll_action(), None);
        assert_eq!(s.handle_accept(t0), None, "refused while shutting down");
        s.handle_closed(a);
        assert_eq!(s.poll_timeout(), Some(Instant::from_millis(600)));
        s.handle_timeout(Instant::from_millis(599));
        assert_eq!(s.poll_action(), None);
        s.handle_timeout(Instant::from_millis(600));
        assert_eq!(s.poll_action(), Some(EchoAction::Abort(b)));
        assert_eq!(s.poll_timeout(), None);
        assert!(s.is_finished());
    }

    #[test]
    fn shutdown_with_no_clients_is_finished_at_once() {
        let mut s = server(|_| {});
        assert!(!s.is_finished());
        s.shutdown(Instant::ZERO);
        assert!(s.is_finished());
        assert_eq!(s.poll_timeout(), None);
    }
}
