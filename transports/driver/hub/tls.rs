//! The chat hub over TLS: one [`TlsServerLayer`] per TLS connection, between its
//! socket and the core. Plaintext connections never come here.
//!
//! * **Input**: a reader's ciphertext goes into the layer; the layer's plaintext
//!   goes to `ChatServer::handle_data`, all of it, before the reader gets its next
//!   permit (the core takes everything, so no ciphertext is ever left over and the
//!   reader's permit means exactly what it means in plaintext). The connection is
//!   opened *pending* (`handle_open_pending`): when the handshake completes the
//!   core is told (`handle_ready`) and only then welcomes and announces it. The
//!   client's `close_notify` is its EOF (`handle_peer_closed`); a TCP EOF without
//!   it is a truncation, handled as a reset (the unterminated last line is
//!   dropped); a TLS error writes the alert and is a reset.
//! * **Output**: the core's transmits (plaintext) wait in the connection's
//!   plaintext queue; each flush encrypts them, coalesced into records of up to
//!   16 KiB, into the ciphertext batch (`Conn::pending`) that the existing path
//!   writes directly or hands to the writer. The layer's bound on ciphertext not yet
//!   written is set far above what the core's `send_queue` lets through, so
//!   plaintext does not wait behind it in practice; when it does, the writer's next
//!   flush report marks the connection dirty and the next flush encrypts more.
//! * **Flush accounting**: writers and direct writes report *ciphertext* bytes;
//!   `Outstanding` stays in ciphertext, and [`TlsServerLayer::ciphertext_written`]
//!   turns each report into the plaintext now completely written, which is what
//!   `handle_flushed` gets (so the core's send queue is counted in plaintext).
//! * **Close**: a `Close` whose reason flushes encrypts what is queued, then our
//!   `close_notify`, then goes the plaintext way (writer drains, socket shut down).

use std::io::IoSlice;

use bytes::Bytes;

use super::{write_now, Conn, Hub, NewConn};
use crate::chat::{ChatError, CloseReason, ConnId};
use crate::driver::conn::{WriteBatch, MAX_IOSLICES};
use crate::driver::Sock;
use crate::net::TlsConfig;
use crate::tls::{TlsLimits, TlsServerLayer, MAX_UNWRITTEN};
use crate::Instant;

/// Most plaintext encrypted at once (a few records).
const ENCRYPT: usize = 64 * 1024;
/// Most plaintext handed to the core at once.
const PLAINTEXT: usize = 16 * 1024;

/// A TLS connection's state in the hub.
pub(super) struct ConnTls {
    layer: TlsServerLayer,
    /// Plaintext from the core, not yet taken by the layer.
    plain: WriteBatch,
    /// The handshake completed and the core was told.
    ready: bool,
    /// The core was told the input ended (close_notify, EOF or an error).
    input_done: bool,
}

impl ConnTls {
    /// Queues plaintext from the core; returns whether the queue was empty.
    pub(super) fn queue(&mut self, bytes: Bytes) -> bool {
        let was_empty = self.plain.is_empty();
        self.plain.push(bytes);
        was_empty
    }

    /// Plaintext queued.
    pub(super) fn queued(&self) -> usize {
        self.plain.len()
    }

    /// Encrypts queued plaintext as far as the layer takes it: several queued
    /// pieces (lines) are copied into one buffer, so they share records.
    fn encrypt(&mut self) {
        let mut buf = Vec::new();
        while !self.plain.is_empty() {
            let cap = self.layer.write_capacity().min(ENCRYPT);
            if cap == 0 {
                break;
            }
            let taken = {
                let mut slices = [IoSlice::new(&[]); MAX_IOSLICES];
                let k = self.plain.slices(&mut slices);
                if k == 1 || slices[0].len() >= cap {
                    self.layer.write_plaintext(&slices[0])
                } else {
                    buf.clear();
                    for slice in &slices[..k] {
                        let n = slice.len().min(cap - buf.len());
                        buf.extend_from_slice(&slice[..n]);
                        if buf.len() == cap {
                            break;
                        }
                    }
                    self.layer.write_plaintext(&buf)
                }
            };
            if taken == 0 {
                break;
            }
            self.plain.advance(taken);
        }
    }
}

/// Moves the layer's ciphertext into `conn`'s batch.
fn collect<S: Sock>(conn: &mut Conn<S>) {
    if let Some(tls) = &mut conn.tls {
        while let Some(bytes) = tls.layer.poll_ciphertext() {
            conn.pending.push(bytes);
        }
    }
}

/// Before a flush: encrypts what `conn` queued (a TLS connection's) into its batch.
pub(super) fn encrypt<S: Sock>(conn: &mut Conn<S>) {
    if let Some(tls) = &mut conn.tls {
        tls.encrypt();
        collect(conn);
    }
}

/// `n` bytes of `conn`'s batch were written: the plaintext bytes that completes
/// (a TLS connection's), or `n`.
pub(super) fn plaintext_flushed<S: Sock>(conn: &mut Conn<S>, n: usize) -> usize {
    match &mut conn.tls {
        Some(tls) if n > 0 => tls.layer.ciphertext_written(n),
        _ => n,
    }
}

/// The core closes `conn` for `reason`: when it flushes, what is queued is
/// encrypted and our `close_notify` follows it; otherwise a pending alert (a TLS
/// error) gets one non-blocking write before the socket is shut down.
pub(super) fn closing<S: Sock>(conn: &mut Conn<S>, reason: &CloseReason) {
    let Some(tls) = &mut conn.tls else {
        return;
    };
    if reason.flush() {
        tls.encrypt();
        if !tls.plain.is_empty() {
            log::debug!("tls: {} bytes not encrypted at close", tls.plain.len());
        }
        tls.layer.close();
        collect(conn);
    } else if tls.layer.error().is_some() {
        collect(conn);
        if conn.outstanding.is_zero() && !conn.writer_done {
            write_now(conn);
        }
    }
}

impl<S: Sock> Hub<S> {
    /// Whether `id` is an open TLS connection.
    pub(super) fn is_tls(&self, id: ConnId) -> bool {
        self.open.get(&id).is_some_and(|c| c.tls.is_some())
    }

    /// A socket accepted on a TLS listener: opened pending until its handshake
    /// completes. One that got no reader or writer is closed silently.
    pub(super) fn accept_tls(
        &mut self,
        now: Instant,
        sock: S,
        config: TlsConfig,
        spawn: &mut impl FnMut(NewConn<S>) -> bool,
    ) -> Result<(), ChatError> {
        let (id, started) = self.start_conn(sock, spawn);
        let core = self.core.config();
        let limits = TlsLimits {
            // Never binds before the core's send queue does (even one record per
            // 3-byte transmit stays below it).
            max_unwritten: core.send_queue.saturating_mul(16).max(MAX_UNWRITTEN),
            handshake_timeout: core.ready_timeout,
            ..TlsLimits::default()
        };
        let layer = match TlsServerLayer::with_limits(config, now, limits) {
            Ok(layer) => Some(layer),
            Err(e) => {
                log::warn!("tls: cannot start a connection: {e}");
                None
            }
        };
        let ok = started && layer.is_some();
        if let (Some(conn), Some(layer)) = (self.open.get_mut(&id), layer) {
            conn.tls = Some(Box::new(ConnTls {
                layer,
                plain: WriteBatch::default(),
                ready: false,
                input_done: false,
            }));
        }
        let issued = match self.open.get(&id).and_then(|c| c.sock.peer_addr()) {
            Some(peer) => self.core.handle_open_pending_from(now, peer.ip()),
            None => self.core.handle_open_pending(now),
        };
        debug_assert_eq!(issued, id);
        if ok {
            Ok(())
        } else {
            self.core.handle_reset(now, id)
        }
    }

    /// Ciphertext from a TLS connection's reader.
    pub(super) fn tls_data(
        &mut self,
        now: Instant,
        id: ConnId,
        mut data: &[u8],
    ) -> Result<(), ChatError> {
        self.waiting.push(id);
        count!(bytes_in, data.len());
        let Some(conn) = self.open.get_mut(&id) else {
            return Ok(());
        };
        let Some(tls) = &mut conn.tls else {
            return Ok(());
        };
        let mut plain = Vec::new();
        let mut result = Ok(());
        let mut failed = false;
        loop {
            let taken = match tls.layer.handle_ciphertext(data) {
                Ok(n) => n,
                Err(e) => {
                    log::info!(
                        "chat {id:?} from {}: tls failed, closed: {e}",
                        super::peer(conn.sock.peer_addr())
                    );
                    failed = true;
                    break;
                }
            };
            data = &data[taken..];
            if !tls.ready && !tls.layer.is_handshaking() {
                tls.ready = true;
                result = result.and(self.core.handle_ready(now, id));
            }
            let mut moved = false;
            while tls.layer.has_plaintext() {
                plain.clear();
                if tls.layer.read_plaintext(&mut plain, PLAINTEXT) == 0 {
                    break;
                }
                moved = true;
                if tls.ready {
                    result = result.and(self.core.handle_data(now, id, &plain));
                }
            }
            if data.is_empty() || (taken == 0 && !moved) {
                break;
            }
        }
        let was_idle = conn.pending.is_empty() && tls.plain.is_empty();
        let peer_closed = tls.layer.peer_closed();
        let tell = (failed || peer_closed) && !std::mem::replace(&mut tls.input_done, true);
        collect(conn);
        if was_idle && !conn.pending.is_empty() {
            self.dirty.push(id);
        }
        if tell {
            result = result.and(if failed {
                self.core.handle_reset(now, id)
            } else {
                self.core.handle_peer_closed(now, id)
            });
        }
        result
    }

    /// End of stream from a TLS connection's reader: after `close_notify` its
    /// EOF, else a truncation (handled as a reset).
    pub(super) fn tls_eof(&mut self, now: Instant, id: ConnId) -> Result<(), ChatError> {
        let Some(tls) = self.open.get_mut(&id).and_then(|c| c.tls.as_mut()) else {
            return Ok(());
        };
        if std::mem::replace(&mut tls.input_done, true) {
            return Ok(());
        }
        if tls.layer.handle_eof() {
            self.core.handle_peer_closed(now, id)
        } else {
            log::debug!("tls: {id:?}: EOF without close_notify");
            self.core.handle_reset(now, id)
        }
    }

    /// A writer's report of `n` ciphertext bytes written: the plaintext bytes it
    /// completes (`None`: none). Marks the connection dirty if plaintext waits.
    pub(super) fn tls_flushed(&mut self, id: ConnId, n: usize) -> Option<usize> {
        let Some(conn) = self.open.get_mut(&id) else {
            return Some(n); // closed: the core ignores it
        };
        let Some(tls) = &mut conn.tls else {
            return Some(n);
        };
        if !tls.plain.is_empty() && conn.pending.is_empty() {
            self.dirty.push(id);
        }
        let flushed = tls.layer.ciphertext_written(n);
        (flushed > 0).then_some(flushed)
    }
}
