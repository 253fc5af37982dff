//! [`TlsServerLayer`]: one server-side TLS connection as a sans-IO state machine.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::{ServerConfig, ServerConnection};

use super::flush::FlushMap;
use crate::Instant;

/// How long a client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most ciphertext bytes accepted from a client before its handshake completes.
pub const MAX_HANDSHAKE_BYTES: usize = 16 * 1024;

/// Most ciphertext bytes produced and not yet reported written before
/// [`TlsServerLayer::write_plaintext`] accepts nothing more.
pub const MAX_UNWRITTEN: usize = 64 * 1024;

/// Plaintext is encrypted in pieces of at most this size: one TLS record each.
const RECORD: usize = 16 * 1024;
/// Most a TLS record adds to its plaintext (header, content type, AEAD tag; 1.2
/// explicit nonce included).
const RECORD_OVERHEAD: usize = 5 + 1 + 16 + 8;

/// When a handshake that started at `started` must be finished.
pub fn handshake_deadline(started: Instant) -> Instant {
    started + HANDSHAKE_TIMEOUT
}

/// The bounds of one [`TlsServerLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsLimits {
    /// Most ciphertext bytes accepted before the handshake completes
    /// (default [`MAX_HANDSHAKE_BYTES`]).
    pub max_handshake_bytes: usize,
    /// How long the handshake may take (default [`HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
    /// Most ciphertext produced and not yet written, plus plaintext held until the
    /// handshake completes (default [`MAX_UNWRITTEN`]).
    pub max_unwritten: usize,
}

impl Default for TlsLimits {
    fn default() -> Self {
        TlsLimits {
            max_handshake_bytes: MAX_HANDSHAKE_BYTES,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_unwritten: MAX_UNWRITTEN,
        }
    }
}

/// Why a TLS connection must be closed. Once a layer returned one, it returns
/// the same error from every later [`handle_ciphertext`](TlsServerLayer::handle_ciphertext).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The peer broke the protocol (garbage, plaintext on a TLS port, a bad
    /// record, an alert of its own…). rustls queued an alert if TLS allows one.
    #[error("TLS error: {0}")]
    Protocol(#[from] rustls::Error),
    /// The peer sent more than the handshake bound before finishing it.
    #[error("TLS handshake larger than {0} bytes")]
    HandshakeTooLarge(usize),
    /// The handshake was not finished in time.
    #[error("TLS handshake not finished within {0:?}")]
    HandshakeTimeout(Duration),
    /// rustls refused the bytes for a reason of its own (e.g. an oversized message).
    #[error("TLS error: {0}")]
    Refused(String),
}

/// A server-side TLS connection with no I/O and no clock: ciphertext from the
/// socket goes in, plaintext for the core comes out; plaintext from the core goes
/// in, ciphertext for the socket comes out.
///
/// What the driver does:
///
/// * bytes read from the socket → [`handle_ciphertext`](Self::handle_ciphertext);
///   it returns how many it took. Fewer than given means the plaintext buffer is
///   full (backpressure): keep the rest, stop reading the socket, drain
///   [`read_plaintext`](Self::read_plaintext) into the core, then offer the rest
///   again. `Err` means: send what [`poll_ciphertext`](Self::poll_ciphertext)
///   still returns (the alert, best effort), then close the socket.
/// * after every call, [`read_plaintext`](Self::read_plaintext) while
///   [`has_plaintext`](Self::has_plaintext), and write out every
///   [`poll_ciphertext`](Self::poll_ciphertext) chunk, in order.
/// * the core's output → [`write_plaintext`](Self::write_plaintext), which takes
///   at most [`write_capacity`](Self::write_capacity) bytes; keep the rest until
///   writes are reported.
/// * every ciphertext byte written to the socket →
///   [`ciphertext_written`](Self::ciphertext_written), which returns the plaintext
///   bytes that are now flushed (for `handle_flushed` of the core).
/// * [`poll_timeout`](Self::poll_timeout) / [`handle_timeout`](Self::handle_timeout):
///   the handshake deadline.
/// * [`peer_closed`](Self::peer_closed): the client sent `close_notify` (its
///   half-close on TLS 1.3); a TCP EOF without it is a truncation
///   ([`handle_eof`](Self::handle_eof) says which).
/// * [`close`](Self::close) queues our `close_notify` after everything written so
///   far: write it out, then close the socket.
pub struct TlsServerLayer {
    conn: ServerConnection,
    limits: TlsLimits,
    started: Instant,
    /// Ciphertext produced and not yet handed out by `poll_ciphertext`.
    out: Vec<u8>,
    flush: FlushMap,
    /// Plaintext accepted before the handshake completed.
    early: Vec<u8>,
    handshake_bytes: usize,
    plaintext_ready: usize,
    peer_closed: bool,
    closed: bool,
    error: Option<TlsError>,
}

impl core::fmt::Debug for TlsServerLayer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsServerLayer")
            .field("handshaking", &self.conn.is_handshaking())
            .field("version", &self.conn.protocol_version())
            .field("out", &self.out.len())
            .field("unwritten", &self.flush.unwritten())
            .field("early", &self.early.len())
            .field("plaintext_ready", &self.plaintext_ready)
            .field("peer_closed", &self.peer_closed)
            .field("closed", &self.closed)
            .field("error", &self.error)
            .finish()
    }
}

impl TlsServerLayer {
    /// A connection accepted at `now`, with the default [`TlsLimits`].
    pub fn new(config: Arc<ServerConfig>, now: Instant) -> Result<Self, TlsError> {
        Self::with_limits(config, now, TlsLimits::default())
    }

    /// A connection accepted at `now`, with these bounds.
    pub fn with_limits(
        config: Arc<ServerConfig>,
        now: Instant,
        limits: TlsLimits,
    ) -> Result<Self, TlsError> {
        Ok(TlsServerLayer {
            conn: ServerConnection::new(config)?,
            limits,
            started: now,
            out: Vec::new(),
            flush: FlushMap::new(),
            early: Vec::new(),
            handshake_bytes: 0,
            plaintext_ready: 0,
            peer_closed: false,
            closed: false,
            error: None,
        })
    }

    /// Takes ciphertext read from the socket; returns how many bytes were taken.
    ///
    /// Takes everything unless the received-plaintext buffer is full (read it
    /// with [`read_plaintext`](Self::read_plaintext), then offer the rest again),
    /// or the client already sent `close_notify`, or we [`close`](Self::close)d
    /// (then the bytes are discarded and counted as taken). On `Err` the connection is dead: write out what
    /// [`poll_ciphertext`](Self::poll_ciphertext) returns (an alert, when TLS
    /// allows one), then close the socket.
    pub fn handle_ciphertext(&mut self, data: &[u8]) -> Result<usize, TlsError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.closed {
            // Our close_notify is out: nothing the client says matters any more
            // (and rustls must not answer it with an alert).
            return Ok(data.len());
        }
        let mut rest = data;
        while !rest.is_empty() {
            if self.peer_closed {
                rest = &[];
                break;
            }
            let handshaking = self.conn.is_handshaking();
            let before = rest.len();
            match self.conn.read_tls(&mut rest) {
                Ok(0) => {
                    // Only after close_notify (rustls reads nothing more); the
                    // state is picked up below.
                    self.peer_closed = true;
                }
                Ok(_) => {}
                // "received plaintext buffer full": backpressure.
                Err(e) if e.kind() == io::ErrorKind::Other => break,
                Err(e) => return Err(self.fail(TlsError::Refused(e.to_string()))),
            }
            if handshaking {
                self.handshake_bytes += before - rest.len();
            }
            self.process()?;
            if self.conn.is_handshaking() && self.handshake_bytes > self.limits.max_handshake_bytes
            {
                let limit = self.limits.max_handshake_bytes;
                return Err(self.fail(TlsError::HandshakeTooLarge(limit)));
            }
        }
        Ok(data.len() - rest.len())
    }

    /// The socket reported EOF. Returns whether the close was clean (the client
    /// sent `close_notify` first); `false` is a truncated connection.
    pub fn handle_eof(&mut self) -> bool {
        self.peer_closed
    }

    /// Moves up to `max` plaintext bytes received from the client to the end of
    /// `out`; returns how many.
    pub fn read_plaintext(&mut self, out: &mut Vec<u8>, max: usize) -> usize {
        let start = out.len();
        let want = max.min(self.plaintext_ready);
        out.resize(start + want, 0);
        let mut got = 0;
        while got < want {
            match self.conn.reader().read(&mut out[start + got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => break,
            }
        }
        out.truncate(start + got);
        self.plaintext_ready -= got;
        got
    }

    /// Moves plaintext received from the client into `out` (as much as fits);
    /// returns how many bytes. For a caller that owns its buffer (no copy through
    /// a `Vec`).
    pub fn read_plaintext_into(&mut self, out: &mut [u8]) -> usize {
        let want = out.len().min(self.plaintext_ready);
        let mut got = 0;
        while got < want {
            match self.conn.reader().read(&mut out[got..want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => break,
            }
        }
        self.plaintext_ready -= got;
        got
    }

    /// Whether [`read_plaintext`](Self::read_plaintext) has something to return.
    pub fn has_plaintext(&self) -> bool {
        self.plaintext_ready > 0
    }

    /// Plaintext bytes received and not yet read.
    pub fn plaintext_pending(&self) -> usize {
        self.plaintext_ready
    }

    /// How many plaintext bytes [`write_plaintext`](Self::write_plaintext) takes now:
    /// 0 once closed or failed, else what is left of [`TlsLimits::max_unwritten`].
    pub fn write_capacity(&self) -> usize {
        if self.closed || self.error.is_some() {
            return 0;
        }
        self.limits
            .max_unwritten
            .saturating_sub(self.flush.unwritten() + self.early.len())
    }

    /// Encrypts plaintext for the client (held until the handshake completes);
    /// returns how many bytes were taken: at most
    /// [`write_capacity`](Self::write_capacity). The ciphertext comes out of
    /// [`poll_ciphertext`](Self::poll_ciphertext).
    pub fn write_plaintext(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.write_capacity());
        if n == 0 {
            return 0;
        }
        if self.conn.is_handshaking() {
            self.early.extend_from_slice(&data[..n]);
        } else {
            // Room for all the records at once: no regrowing (and copying) `out`.
            self.out.reserve(n + n.div_ceil(RECORD) * RECORD_OVERHEAD);
            self.encrypt(&data[..n]);
        }
        n
    }

    /// Queues our `close_notify` after everything taken so far (plaintext still
    /// held for an unfinished handshake is dropped). Idempotent. Write out what
    /// [`poll_ciphertext`](Self::poll_ciphertext) returns, then close the socket.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.early.clear();
        self.conn.send_close_notify();
        self.drain(0);
    }

    /// Ciphertext to write to the socket, in order; `None` when there is none.
    pub fn poll_ciphertext(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(Bytes::from(std::mem::take(&mut self.out)))
        }
    }

    /// `n` ciphertext bytes (from [`poll_ciphertext`](Self::poll_ciphertext), in
    /// order) reached the socket; returns how many plaintext bytes that completes
    /// (see [`FlushMap`]). Handshake and alert bytes carry none.
    pub fn ciphertext_written(&mut self, n: usize) -> usize {
        self.flush.written(n)
    }

    /// Ciphertext produced and not yet reported written (polled or not).
    pub fn unwritten(&self) -> usize {
        self.flush.unwritten()
    }

    /// Plaintext taken by [`write_plaintext`](Self::write_plaintext) and not yet
    /// reported flushed by [`ciphertext_written`](Self::ciphertext_written).
    pub fn unflushed_plaintext(&self) -> usize {
        self.flush.unflushed_plaintext() + self.early.len()
    }

    /// The handshake deadline while handshaking, else `None`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.conn.is_handshaking() && self.error.is_none())
            .then(|| self.started + self.limits.handshake_timeout)
    }

    /// Time passed: past the handshake deadline an unfinished handshake fails
    /// (`close_notify` queued, then `Err`: write it out and close the socket).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), TlsError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {
                self.conn.send_close_notify();
                self.drain(0);
                Err(self.fail(TlsError::HandshakeTimeout(self.limits.handshake_timeout)))
            }
            _ => Ok(()),
        }
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether the client sent `close_notify`: on TLS 1.3 its half-close (keep
    /// writing, then [`close`](Self::close)); on TLS 1.2 the end of the connection.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// The negotiated version, once known.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// Whether TLS 1.3 was negotiated (where `close_notify` is a half-close).
    pub fn is_tls13(&self) -> bool {
        self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
    }

    /// The name the client asked for (SNI), if any.
    pub fn server_name(&self) -> Option<&str> {
        self.conn.server_name()
    }

    /// Why the connection failed, if it did.
    pub fn error(&self) -> Option<&TlsError> {
        self.error.as_ref()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Runs rustls over what was read, collects its output, and flushes plaintext
    /// held for the handshake once it completes.
    fn process(&mut self) -> Result<(), TlsError> {
        match self.conn.process_new_packets() {
            Ok(state) => {
                self.plaintext_ready = state.plaintext_bytes_to_read();
                self.peer_closed |= state.peer_has_closed();
                self.drain(0);
                if !self.conn.is_handshaking() && !self.early.is_empty() {
                    let early = std::mem::take(&mut self.early);
                    self.encrypt(&early);
                }
                Ok(())
            }
            Err(e) => {
                // The alert rustls queued (if any) goes out before the close.
                self.drain(0);
                Err(self.fail(TlsError::Protocol(e)))
            }
        }
    }

    /// Encrypts `data`, one record per [`RECORD`] bytes, recording each.
    fn encrypt(&mut self, data: &[u8]) {
        for piece in data.chunks(RECORD) {
            let mut taken = 0;
            while taken < piece.len() {
                // Cannot fail: rustls's own buffer is drained after every call.
                match self.conn.writer().write(&piece[taken..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => taken += n,
                }
            }
            self.drain(taken);
        }
    }

    /// Moves everything rustls wants to send into `out`, recorded as one chunk
    /// carrying `plaintext` bytes.
    fn drain(&mut self, plaintext: usize) {
        let before = self.out.len();
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.flush.push(self.out.len() - before, plaintext);
    }

    fn fail(&mut self, e: TlsError) -> TlsError {
        self.error = Some(e.clone());
        e
    }
}
