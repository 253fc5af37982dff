//! [`ChatServer`]: connections, nicks, rooms, queues and timeouts.

use bytes::Bytes;
use core::time::Duration;

use crate::Instant;

/// A connection's identity: issued by [`ChatServer::handle_open`], monotonic, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Limits of the chat service (SPEC §1 flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChatConfig {
    /// Longest accepted line in bytes, without `\r\n` (`--max-line`, default 1024).
    pub max_line: usize,
    /// Most bytes queued for one client before it is dropped (`--send-queue`, default 256 KiB).
    pub send_queue: usize,
    /// Drop clients silent for this long (`--idle-timeout`, default off).
    pub idle_timeout: Option<Duration>,
    /// Most simultaneous clients (`--max-conns`, default unlimited).
    pub max_conns: Option<usize>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig { max_line: 1024, send_queue: 256 * 1024, idle_timeout: None, max_conns: None }
    }
}

/// Why the core closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent `/quit`.
    Quit,
    /// The client finished sending (EOF).
    PeerClosed,
    /// The connection failed (reset, I/O error).
    Reset,
    /// The client read too slowly: its queue passed `send_queue`.
    SendQueueExceeded,
    /// The client was silent longer than `idle_timeout`.
    IdleTimeout,
    /// `max_conns` clients were already connected.
    ServerFull,
    /// The server is shutting down.
    Shutdown,
}

impl CloseReason {
    /// Whether the transport should first write what is still queued for the
    /// connection (false: drop it and close at once).
    pub fn flush(&self) -> bool {
        !matches!(self, CloseReason::SendQueueExceeded | CloseReason::Reset)
    }
}

/// What the transport must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Queue `bytes` (one or more whole lines) for `to`; report with `handle_flushed`.
    Transmit {
        /// Recipient.
        to: ConnId,
        /// Encoded lines; broadcasts share one allocation.
        bytes: Bytes,
    },
    /// Close `id` (after flushing its queue if `reason.flush()`). The core has forgotten it.
    Close {
        /// The connection.
        id: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

/// The caller broke the [`ChatServer`] protocol (a transport bug, never a peer's doing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// An id that `handle_open` never returned.
    #[error("unknown connection {0:?}")]
    UnknownConn(ConnId),
    /// More bytes reported flushed than were queued.
    #[error("{id:?}: reported {reported} bytes flushed, but only {queued} were queued")]
    FlushOverflow {
        /// The connection.
        id: ConnId,
        /// Bytes reported.
        reported: usize,
        /// Bytes queued.
        queued: usize,
    },
}

/// The whole chat server's state. No I/O, no clock.
#[derive(Debug)]
pub struct ChatServer {
    config: ChatConfig,
}

impl ChatServer {
    /// A server with no connections.
    pub fn new(config: ChatConfig) -> Self {
        ChatServer { config }
    }

    /// The configuration.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// A connection was accepted at `now`; returns its id. When the server is full
    /// the outputs are `! server full` and a `Close`.
    pub fn handle_open(&mut self, now: Instant) -> ConnId {
        todo!("{now:?}")
    }

    /// Bytes received from `id`.
    pub fn handle_data(&mut self, now: Instant, id: ConnId, data: &[u8]) -> Result<(), ChatError> {
        todo!("{now:?} {id:?} {data:?}")
    }

    /// The transport wrote `n` more bytes of what was transmitted to `id`.
    pub fn handle_flushed(&mut self, id: ConnId, n: usize) -> Result<(), ChatError> {
        todo!("{id:?} {n}")
    }

    /// `id` finished sending (EOF): its last unterminated line is processed, then it leaves.
    pub fn handle_peer_closed(&mut self, now: Instant, id: ConnId) -> Result<(), ChatError> {
        todo!("{now:?} {id:?}")
    }

    /// `id` failed (reset, I/O error): it leaves at once.
    pub fn handle_reset(&mut self, now: Instant, id: ConnId) -> Result<(), ChatError> {
        todo!("{now:?} {id:?}")
    }

    /// Time passed: drop idle clients.
    pub fn handle_timeout(&mut self, now: Instant) {
        todo!("{now:?}")
    }

    /// The server stops: everyone gets `* server shutting down`, then a `Close`.
    pub fn shutdown(&mut self) {
        todo!()
    }

    /// The next thing the transport must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        todo!()
    }

    /// When `handle_timeout` should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        todo!()
    }

    /// Bytes transmitted to `id` and not yet reported flushed (`None`: not open).
    pub fn queued(&self, id: ConnId) -> Option<usize> {
        todo!("{id:?}")
    }
}
