//! [`EchoTls`]: the TLS half of an [`EchoIo`](super::EchoIo): ciphertext from the
//! socket → [`TlsServerLayer`] → plaintext into the [`EchoConn`] (within its room),
//! and the `EchoConn`'s output → the layer → ciphertext to the socket.
//!
//! * **Backpressure**: the layer takes ciphertext only while it can hold the
//!   plaintext; plaintext moves into the `EchoConn` only as far as it has room;
//!   ciphertext the layer did not take is kept, and nothing more is read until it
//!   was taken. The `EchoConn`'s output is encrypted as far as the layer's
//!   [`write_capacity`](TlsServerLayer::write_capacity) allows (ciphertext produced
//!   and not yet written is bounded): a client that does not read stops being read.
//! * **Closing**: the client's `close_notify` (its half-close on TLS 1.3), or a
//!   TCP EOF, ends its input; everything pending is echoed, then our
//!   `close_notify` is written, then the connection closes. A TLS error: the alert
//!   (if any) is written, then it closes.
//! * **Handshake deadline**: [`read_deadline`](EchoTls::read_deadline) while
//!   handshaking; a read that timed out (`WouldBlock`/`TimedOut`) then fails the
//!   handshake (`close_notify`, then close).

use std::io;

use bytes::{Buf, Bytes};

use super::{core_bug, EchoStep};
use crate::echo::EchoConn;
use crate::net::TlsConfig;
use crate::tls::TlsServerLayer;
use crate::Instant;

/// Most ciphertext bytes read at once.
const READ: usize = 16 * 1024;

/// One echo connection's TLS state.
pub(crate) struct EchoTls {
    layer: TlsServerLayer,
    /// Ciphertext to write (what `poll_ciphertext` returned, not yet written).
    out: Bytes,
    /// Ciphertext read and not yet taken by the layer.
    leftover: Vec<u8>,
    /// The read buffer.
    buf: Vec<u8>,
    /// The socket reported end of stream.
    eof: bool,
    /// Our `close_notify` (or an alert) is queued: close once `out` is written.
    done: bool,
}

impl EchoTls {
    pub(crate) fn new(config: TlsConfig, now: Instant) -> io::Result<Self> {
        Ok(EchoTls {
            layer: TlsServerLayer::new(config, now).map_err(io::Error::other)?,
            out: Bytes::new(),
            leftover: Vec::new(),
            buf: vec![0; READ],
            eof: false,
            done: false,
        })
    }

    /// The next step; moves bytes between the layer and `conn` as far as they go.
    pub(crate) fn next(&mut self, conn: &mut EchoConn) -> EchoStep {
        loop {
            if !self.out.is_empty() {
                return EchoStep::Write;
            }
            if let Some(bytes) = self.layer.poll_ciphertext() {
                self.out = bytes;
                continue;
            }
            if self.done {
                return EchoStep::Close;
            }
            if self.layer.error().is_some() {
                // The alert (if TLS allowed one) was polled above.
                self.done = true;
                continue;
            }
            let mut progress = false;
            // Received plaintext into the EchoConn, as far as it has room.
            while self.layer.has_plaintext() && conn.wants_read() {
                // Straight into the EchoConn's buffer.
                let n = self.layer.read_plaintext_into(conn.read_buf());
                if n == 0 {
                    break;
                }
                // Cannot fail: `n` is at most what `read_buf` offered.
                let _ = conn.handle_read(n);
                progress = true;
            }
            // Ciphertext the layer could not take before.
            if !self.leftover.is_empty() && !self.layer.has_plaintext() {
                match self.layer.handle_ciphertext(&self.leftover) {
                    Ok(n) => {
                        self.leftover.drain(..n);
                        progress |= n > 0;
                    }
                    Err(e) => {
                        log::info!("tls echo connection failed, closed: {e}");
                        continue;
                    }
                }
            }
            // Echoes into the layer, as far as it takes them.
            if let Some(data) = conn.poll_transmit() {
                let n = self.layer.write_plaintext(data);
                if n > 0 {
                    // Cannot fail: `n` is at most what is pending.
                    let _ = conn.handle_written(n);
                    progress = true;
                }
            }
            let input_over = (self.layer.peer_closed() || self.eof)
                && !self.layer.has_plaintext()
                && self.leftover.is_empty();
            if input_over && conn.wants_read() {
                conn.handle_peer_closed();
                progress = true;
            }
            if conn.poll_close() {
                // Everything was echoed: our close_notify follows it.
                self.layer.close();
                self.done = true;
                continue;
            }
            if progress {
                continue;
            }
            return if self.leftover.is_empty() && !self.eof {
                EchoStep::Read
            } else {
                // Cannot happen (input waits only while output does); do not spin.
                log::debug!("tls echo connection stuck: closing");
                EchoStep::Close
            };
        }
    }

    /// What to write.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.out
    }

    /// Where to read.
    pub(crate) fn read_buf(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// When the read must give up (the handshake deadline), if ever.
    pub(crate) fn read_deadline(&self) -> Option<Instant> {
        self.layer.poll_timeout()
    }

    /// The read into [`read_buf`](Self::read_buf) returned `result`.
    pub(crate) fn on_read(&mut self, result: io::Result<usize>) -> io::Result<()> {
        let n = match result {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // The read deadline passed: only set while handshaking.
                match self.layer.poll_timeout() {
                    Some(deadline) => {
                        if let Err(e) = self.layer.handle_timeout(deadline) {
                            log::info!("tls echo connection failed, closed: {e}");
                        }
                        return Ok(());
                    }
                    None => return Err(e),
                }
            }
            other => other?,
        };
        if n == 0 {
            self.eof = true;
            if !self.layer.handle_eof() {
                log::debug!("tls echo connection: EOF without close_notify");
            }
            return Ok(());
        }
        match self.layer.handle_ciphertext(&self.buf[..n]) {
            Ok(taken) => self.leftover.extend_from_slice(&self.buf[taken..n]),
            Err(e) => log::debug!("tls echo connection failed: {e}"),
        }
        Ok(())
    }

    /// The write of [`pending`](Self::pending) returned `result`.
    pub(crate) fn on_written(&mut self, result: io::Result<usize>) -> io::Result<()> {
        match result {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) if n <= self.out.len() => {
                self.out.advance(n);
                // The plaintext was released from the EchoConn when encrypted.
                self.layer.ciphertext_written(n);
                Ok(())
            }
            Ok(n) => Err(core_bug(io::Error::other(format!(
                "{n} bytes reported written, {} were pending",
                self.out.len()
            )))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }
}
