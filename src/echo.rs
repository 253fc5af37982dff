//! The echo service (RFC 862): a per-connection state machine ([`EchoConn`]) and
//! the server's lifecycle ([`EchoServer`]: admission, `--once`, the shutdown drain).
//!
//! An [`EchoConn`] owns one connection's pending bytes: what was received and not
//! yet written back. The transport reads straight into [`EchoConn::read_buf`]
//! (no extra copy), reports how much arrived with [`EchoConn::handle_read`], writes
//! what [`EchoConn::poll_transmit`] returns and reports it with
//! [`EchoConn::handle_written`].
//!
//! * **Bounded**: pending bytes never exceed [`EchoConfig::max_pending`]; when the
//!   buffer is full [`EchoConn::wants_read`] is false and the transport must stop
//!   reading until some of it is written (a client that does not read its echoes
//!   stalls only itself).
//! * **Small when idle**: no buffer until the first [`EchoConn::read_buf`] (a
//!   transport that can wait for readability first keeps silent connections at zero
//!   bytes); then [`EchoConfig::initial_buffer`] bytes, doubling (up to the limit)
//!   only when a read fills all the room offered, so thousands of idle connections
//!   stay cheap and bulk transfers still get large reads.
//! * **Half-close**: after [`EchoConn::handle_peer_closed`] everything pending is
//!   still transmitted, then [`EchoConn::poll_close`] says to close.
//!
//! ```
//! use echochat::echo::{EchoConfig, EchoConn};
//! let mut conn = EchoConn::new(EchoConfig::default());
//! let buf = conn.read_buf();
//! buf[..5].copy_from_slice(b"hello");          // the transport's read()
//! conn.handle_read(5).unwrap();
//! assert_eq!(conn.poll_transmit(), Some(&b"hello"[..]));
//! conn.handle_written(5).unwrap();               // the transport's write()
//! conn.handle_peer_closed();                     // read() returned 0
//! assert!(conn.poll_close());
//! ```

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

mod server;

pub use crate::chat::ConnId;
pub use server::{EchoAction, EchoServer};

/// Limits of one echo connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EchoConfig {
    /// Most bytes received but not yet echoed (default 64 KiB).
    pub max_pending: usize,
    /// Size of the buffer a new connection starts with (default 4 KiB).
    pub initial_buffer: usize,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            max_pending: 64 * 1024,
            initial_buffer: 4 * 1024,
        }
    }
}

impl EchoConfig {
    /// The default configuration with another pending-bytes limit (at least 1).
    pub fn with_max_pending(max_pending: usize) -> Self {
        let max_pending = max_pending.max(1);
        EchoConfig {
            max_pending,
            initial_buffer: EchoConfig::default().initial_buffer.min(max_pending),
        }
    }
}

/// Server-wide echo settings, honoured identically by every transport (they are
/// decided by [`EchoServer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EchoServerConfig {
    /// Per-connection limits.
    pub conn: EchoConfig,
    /// Most simultaneous TCP clients (`--max-conns`); extra ones are closed at once.
    pub max_conns: Option<usize>,
    /// Serve a single TCP client, then return (`--once`).
    pub once: bool,
    /// After shutdown, how long clients may take to get their pending echoes before
    /// their sockets are closed anyway (default 2 s).
    pub shutdown_grace: Duration,
    /// Most connections from one address (`--max-conns-per-ip`, default `Some(32)`;
    /// `None` or `Some(0)`: no limit); extra ones are closed at once. Applies to
    /// [`EchoServer::handle_accept_from`] only.
    pub max_conns_per_ip: Option<usize>,
    /// Whether loopback sources are exempt from `max_conns_per_ip` (default true;
    /// `--no-loopback-exempt`).
    pub loopback_exempt: bool,
}

impl Default for EchoServerConfig {
    fn default() -> Self {
        EchoServerConfig {
            conn: EchoConfig::default(),
            max_conns: None,
            once: false,
            shutdown_grace: Duration::from_secs(2),
            max_conns_per_ip: Some(32),
            loopback_exempt: true,
        }
    }
}

/// The caller broke the [`EchoConn`] protocol (a transport bug, never the peer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EchoError {
    /// `handle_read(n)` with more bytes than `read_buf()` offered.
    #[error("reported {reported} bytes read, but only {room} bytes of buffer were offered")]
    ReadOverflow {
        /// Bytes reported.
        reported: usize,
        /// Bytes of buffer offered.
        room: usize,
    },
    /// `handle_written(n)` with more bytes than were pending.
    #[error("reported {reported} bytes written, but only {pending} were pending")]
    WriteOverflow {
        /// Bytes reported.
        reported: usize,
        /// Bytes pending.
        pending: usize,
    },
    /// Bytes reported read after the peer closed its side.
    #[error("data reported after the peer closed")]
    ReadAfterClose,
}

/// One echo connection: pending bytes plus half-close state. No I/O inside.
#[derive(Debug)]
pub struct EchoConn {
    buf: Vec<u8>,
    /// Pending bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    max_pending: usize,
    /// Size of the first buffer, allocated on the first `read_buf`.
    initial_buffer: usize,
    peer_closed: bool,
    /// The last read filled all the room offered: the peer sends in bulk.
    read_was_full: bool,
    received: u64,
}

impl EchoConn {
    /// A fresh connection.
    pub fn new(config: EchoConfig) -> Self {
        let max_pending = config.max_pending.max(1);
        EchoConn {
            buf: Vec::new(),
            initial_buffer: config.initial_buffer.clamp(1, max_pending),
            start: 0,
            end: 0,
            max_pending,
            peer_closed: false,
            read_was_full: false,
            received: 0,
        }
    }

    /// The pending-bytes limit.
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// Whether the transport should read more from the peer now.
    pub fn wants_read(&self) -> bool {
        !self.peer_closed && self.pending() < self.max_pending
    }

    /// Buffer space to read into (empty when [`wants_read`](Self::wants_read) is false).
    /// Report how much was filled with [`handle_read`](Self::handle_read).
    pub fn read_buf(&mut self) -> &mut [u8] {
        if !self.wants_read() {
            return &mut [];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.is_empty() {
            // First read: allocate only now, so a connection that never sends costs nothing.
            self.buf = vec![0; self.initial_buffer];
        }
        if core::mem::take(&mut self.read_was_full) && self.buf.len() < self.max_pending {
            // Bulk traffic: grow towards the limit so reads and writes get larger.
            let len = (self.buf.len() * 2).min(self.max_pending);
            self.buf.resize(len, 0);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                // Slide pending bytes to the front to reuse the space already echoed.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                // The last reads filled the whole buffer: grow towards the limit.
                let len = (self.buf.len() * 2).min(self.max_pending);
                self.buf.resize(len, 0);
            }
        }
        let room_end = (self.start + self.max_pending).min(self.buf.len());
        &mut self.buf[self.end..room_end]
    }

    /// `n` bytes were read into the slice just returned by [`read_buf`](Self::read_buf)
    /// (call `read_buf` before every read: it is what makes room).
    pub fn handle_read(&mut self, n: usize) -> Result<(), EchoError> {
        if self.peer_closed && n > 0 {
            return Err(EchoError::ReadAfterClose);
        }
        let room = (self.start + self.max_pending).min(self.buf.len()) - self.end;
        if n > room {
            return Err(EchoError::ReadOverflow { reported: n, room });
        }
        self.end += n;
        self.read_was_full = n > 0 && n == room;
        self.received += n as u64;
        Ok(())
    }

    /// Copies `data` in (for transports that own their read buffer); returns how many
    /// bytes fitted. The rest must be offered again after some are written.
    pub fn handle_data(&mut self, data: &[u8]) -> Result<usize, EchoError> {
        let mut taken = 0;
        while taken < data.len() {
            let buf = self.read_buf();
            if buf.is_empty() {
                break;
            }
            let n = buf.len().min(data.len() - taken);
            buf[..n].copy_from_slice(&data[taken..taken + n]);
            self.handle_read(n)?;
            taken += n;
        }
        if self.peer_closed && taken < data.len() {
            return Err(EchoError::ReadAfterClose);
        }
        Ok(taken)
    }

    /// Bytes to write to the peer, or `None` when nothing is pending.
    pub fn poll_transmit(&self) -> Option<&[u8]> {
        (self.start < self.end).then(|| &self.buf[self.start..self.end])
    }

    /// `n` bytes from [`poll_transmit`](Self::poll_transmit) were written.
    pub fn handle_written(&mut self, n: usize) -> Result<(), EchoError> {
        if n > self.pending() {
            return Err(EchoError::WriteOverflow {
                reported: n,
                pending: self.pending(),
            });
        }
        self.start += n;
        Ok(())
    }

    /// The peer shut down its sending side (read returned 0).
    pub fn handle_peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// Whether the connection is finished: the peer closed and everything was echoed.
    pub fn poll_close(&self) -> bool {
        self.peer_closed && self.pending() == 0
    }

    /// Bytes received and not yet written back.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Size of the buffer currently allocated: 0 before the first
    /// [`read_buf`](Self::read_buf), then growing with bulk traffic, never past the limit.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.len()
    }

    /// Total bytes received on this connection.
    pub fn received(&self) -> u64 {
        self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max: usize, initial: usize) -> EchoConfig {
        EchoConfig {
            max_pending: max,
            initial_buffer: initial,
        }
    }

    #[test]
    fn echoes_in_order_across_partial_writes() {
        let mut c = EchoConn::new(cfg(16, 4));
        let mut out = Vec::new();
        let input: Vec<u8> = (0..200u8).collect();
        let mut fed = 0;
        while out.len() < input.len() {
            if fed < input.len() {
                fed += c
                    .handle_data(&input[fed..(fed + 7).min(input.len())])
                    .unwrap();
            }
            if let Some(p) = c.poll_transmit() {
                let n = p.len().min(3);
                out.extend_from_slice(&p[..n]);
                c.handle_written(n).unwrap();
            }
            assert!(c.pending() <= 16);
        }
        assert_eq!(out, input);
    }

    #[test]
    fn stops_reading_when_full() {
        let mut c = EchoConn::new(cfg(8, 2));
        assert_eq!(c.handle_data(&[1; 20]).unwrap(), 8);
        assert!(!c.wants_read());
        assert!(c.read_buf().is_empty());
        assert_eq!(c.buffer_capacity(), 8);
        c.handle_written(3).unwrap();
        assert!(c.wants_read());
        assert_eq!(c.read_buf().len(), 3);
    }

    #[test]
    fn half_close_flushes_then_closes() {
        let mut c = EchoConn::new(EchoConfig::default());
        c.handle_data(b"bye").unwrap();
        c.handle_peer_closed();
        assert!(!c.wants_read());
        assert!(!c.poll_close());
        assert_eq!(c.poll_transmit(), Some(&b"bye"[..]));
        c.handle_written(3).unwrap();
        assert!(c.poll_close());
    }

    #[test]
    fn misuse_is_an_error_not_a_panic() {
        let mut c = EchoConn::new(cfg(8, 8));
        assert_eq!(
            c.handle_read(1),
            Err(EchoError::ReadOverflow {
                reported: 1,
                room: 0
            }),
            "no room before read_buf offers some"
        );
        assert_eq!(c.read_buf().len(), 8);
        assert_eq!(
            c.handle_read(9),
            Err(EchoError::ReadOverflow {
                reported: 9,
                room: 8
            })
        );
        assert_eq!(
            c.handle_written(1),
            Err(EchoError::WriteOverflow {
                reported: 1,
                pending: 0
            })
        );
        c.handle_peer_closed();
        assert_eq!(c.handle_read(1), Err(EchoError::ReadAfterClose));
    }

    #[test]
    fn buffer_grows_only_under_bulk_traffic() {
        let mut c = EchoConn::new(cfg(64, 4));
        assert_eq!(
            c.buffer_capacity(),
            0,
            "nothing allocated before the first read"
        );
        assert_eq!(c.read_buf().len(), 4);
        c.handle_read(3).unwrap();
        c.handle_written(3).unwrap();
        assert_eq!(c.read_buf().len(), 4);
        assert_eq!(
            c.buffer_capacity(),
            4,
            "a read that did not fill the buffer: no growth"
        );
        c.handle_read(4).unwrap();
        c.handle_written(4).unwrap();
        assert_eq!(
            c.read_buf().len(),
            8,
            "a read that filled the buffer doubles it"
        );
        c.handle_read(8).unwrap();
        assert_eq!(
            c.read_buf().len(),
            8,
            "pending bytes kept, room doubled again"
        );
        assert_eq!(c.buffer_capacity(), 16);
        for _ in 0..10 {
            let n = c.read_buf().len();
            c.handle_read(n).unwrap();
            c.handle_written(c.pending()).unwrap();
        }
        assert_eq!(c.buffer_capacity(), 64, "never past max_pending");
    }
}
