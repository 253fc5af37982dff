//! The chat owner, shared by every transport: one [`Hub`] owns the
//! [`ChatServer`] core (no lock around it) and is fed [`Event`]s through one
//! bounded channel by the acceptor, the per-connection readers and writers.
//!
//! A transport supplies only how to wait for the next event with a deadline
//! ([`Hub::deadline`], then [`Hub::handle`] or [`Hub::on_deadline`]) and how to
//! spawn a connection's reader and writer ([`NewConn`]).
//!
//! Writers report bytes written on a separate unbounded channel that the hub
//! drains before every event: behind a flood of `Data` events in the bounded
//! channel, late flush reports would make fast readers look slow to the core's
//! send-queue accounting (and get them dropped). That channel holds at most one
//! report per write syscall of data the hub itself queued. The hub executes the core's outputs:
//! a [`Output::Transmit`] goes into the connection's unbounded writer queue (the
//! core bounds it in bytes and drops slow readers), so the owner never waits on a
//! socket; a [`Output::Close`] drops that queue (the writer drains it, then shuts
//! the socket down) or, when the reason says not to flush, shuts the socket down
//! at once.
//!
//! Shutdown: [`Event::Shutdown`] calls `core.shutdown()` (everyone gets
//! `* server shutting down`), writers flush for at most [`SHUTDOWN_GRACE`], then
//! every socket left is shut down and [`Hub::finished`] turns true.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::net::Shutdown as How;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use bytes::{Buf, Bytes};

use crate::chat::{ChatConfig, ChatError, ChatServer, ConnId, Output};
use crate::net::{Sock, SHUTDOWN_GRACE};
use crate::Instant;

/// Capacity of the owner's event channel (readers block when it is full).
pub(crate) const EVENT_QUEUE: usize = 256;
/// Most bytes a reader reads (and reports) at once.
pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// A reader's first buffer: idle clients stay cheap; see [`grow_read_buf`].
pub(crate) const FIRST_READ_BUF: usize = 2 * 1024;

/// Doubles a reader's buffer (up to [`READ_CHUNK`]) after a read filled it.
pub(crate) fn grow_read_buf(buf: &mut Vec<u8>, filled: usize) {
    if filled == buf.len() && buf.len() < READ_CHUNK {
        buf.resize((buf.len() * 2).min(READ_CHUNK), 0);
    }
}
/// Most buffers in one vectored write.
pub(crate) const MAX_IOSLICES: usize = 64;

/// Something happened that the owner must hear about.
pub(crate) enum Event<S> {
    /// The acceptor accepted a socket (already `TCP_NODELAY`).
    Accepted(S),
    /// A reader read bytes.
    Data(ConnId, Bytes),
    /// A reader saw end of stream.
    Eof(ConnId),
    /// A reader failed.
    ReadError(ConnId),
    /// A writer ended (`true`: because a write failed) and shut its socket down.
    WriterDone(ConnId, bool),
    /// The server must stop (sent by the acceptor once it stopped accepting).
    Shutdown,
}

/// What a transport needs to start a new connection's reader and writer.
pub(crate) struct NewConn<S> {
    /// The connection.
    pub(crate) id: ConnId,
    /// Its socket (the hub keeps a clone to shut it down).
    pub(crate) sock: Arc<S>,
    /// The writer's queue: write everything, report, end when it disconnects.
    pub(crate) queue: flume::Receiver<Bytes>,
    /// Where the writer reports `(id, bytes written)` after every write.
    pub(crate) flushed: flume::Sender<(ConnId, usize)>,
}

struct Conn<S> {
    writes: flume::Sender<Bytes>,
    sock: Arc<S>,
    writer_done: bool,
}

/// The owner of the chat core.
pub(crate) struct Hub<S> {
    core: ChatServer,
    origin: StdInstant,
    open: HashMap<ConnId, Conn<S>>,
    /// Closed by the core; their writer has not ended yet.
    closing: HashMap<ConnId, Arc<S>>,
    grace: Option<StdInstant>,
    done: bool,
    flushed_tx: flume::Sender<(ConnId, usize)>,
    flushed_rx: flume::Receiver<(ConnId, usize)>,
}

impl<S: Sock> Hub<S> {
    pub(crate) fn new(config: ChatConfig) -> Self {
        let (flushed_tx, flushed_rx) = flume::unbounded();
        Hub {
            flushed_tx,
            flushed_rx,
            core: ChatServer::new(config),
            origin: StdInstant::now(),
            open: HashMap::new(),
            closing: HashMap::new(),
            grace: None,
            done: false,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_duration(self.origin.elapsed())
    }

    /// When [`on_deadline`](Self::on_deadline) is due, if ever.
    pub(crate) fn deadline(&self) -> Option<StdInstant> {
        let core = self
            .core
            .poll_timeout()
            .map(|t| self.origin + t.since_origin());
        match (core, self.grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the server is done: shut down and every connection closed.
    pub(crate) fn finished(&self) -> bool {
        self.done || (self.grace.is_some() && self.open.is_empty() && self.closing.is_empty())
    }

    /// Applies the writers' flush reports.
    fn drain_flushed(&mut self) {
        while let Ok((id, n)) = self.flushed_rx.try_recv() {
            check(self.core.handle_flushed(id, n));
        }
    }

    /// Handles one event. `spawn` must start the new connection's reader and writer.
    pub(crate) fn handle(&mut self, event: Event<S>, spawn: &mut impl FnMut(NewConn<S>)) {
        self.drain_flushed();
        let now = self.now();
        let result = match event {
            Event::Accepted(sock) => {
                let sock = Arc::new(sock);
                if self.grace.is_some() {
                    let _ = sock.shutdown(How::Both);
                    return;
                }
                let id = self.core.handle_open(now);
                let (writes, queue) = flume::unbounded();
                spawn(NewConn {
                    id,
                    sock: Arc::clone(&sock),
                    queue,
                    flushed: self.flushed_tx.clone(),
                });
                self.open.insert(
                    id,
                    Conn {
                        writes,
                        sock,
                        writer_done: false,
                    },
                );
                Ok(())
            }
            Event::Data(id, bytes) => self.core.handle_data(now, id, &bytes),
            Event::Eof(id) => self.core.handle_peer_closed(now, id),
            Event::ReadError(id) => self.core.handle_reset(now, id),
            Event::WriterDone(id, failed) => {
                self.closing.remove(&id);
                match self.open.get_mut(&id) {
                    Some(conn) => {
                        conn.writer_done = true;
                        if failed {
                            self.core.handle_reset(now, id)
                        } else {
                            Ok(())
                        }
                    }
                    None => Ok(()),
                }
            }
            Event::Shutdown => {
                if self.grace.is_none() {
                    self.grace = Some(StdInstant::now() + SHUTDOWN_GRACE);
                    self.core.shutdown();
                }
                Ok(())
            }
        };
        check(result);
        self.execute();
    }

    /// The deadline passed: run the core's timers, or end the shutdown grace period.
    pub(crate) fn on_deadline(&mut self) {
        if self.grace.is_some_and(|g| StdInstant::now() >= g) {
            for conn in self.open.values() {
                let _ = conn.sock.shutdown(How::Both);
            }
            for sock in self.closing.values() {
                let _ = sock.shutdown(How::Both);
            }
            self.done = true;
            return;
        }
        self.drain_flushed();
        let now = self.now();
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
            self.execute();
        }
    }

    /// Drains the core's outputs.
    fn execute(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Transmit { to, bytes } => {
                    if let Some(conn) = self.open.get(&to) {
                        // Fails only if the writer is gone; its WriterDone tells the core.
                        let _ = conn.writes.send(bytes);
                    }
                }
                Output::Close { id, reason } => {
                    let Some(conn) = self.open.remove(&id) else {
                        continue;
                    };
                    if !reason.flush() {
                        let _ = conn.sock.shutdown(How::Both);
                    }
                    // Dropping the queue's sender makes the writer drain it and end.
                    drop(conn.writes);
                    if !conn.writer_done {
                        self.closing.insert(id, conn.sock);
                    }
                }
            }
        }
    }
}

fn check(result: Result<(), ChatError>) {
    match result {
        // Late news about a connection the core already closed: expected, ignored.
        Ok(()) | Err(ChatError::UnknownConn(_)) => {}
        Err(e) => log::error!("chat transport bug: {e}"),
    }
}

/// A writer's pending `Bytes`, written with one vectored write at a time.
pub(crate) struct WriteBatch {
    queue: VecDeque<Bytes>,
}

impl WriteBatch {
    pub(crate) fn new() -> Self {
        WriteBatch {
            queue: VecDeque::with_capacity(MAX_IOSLICES),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(crate) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queue.push_back(bytes);
        }
    }

    /// Takes what is already queued without waiting, up to [`MAX_IOSLICES`] buffers.
    pub(crate) fn fill(&mut self, queue: &flume::Receiver<Bytes>) {
        while self.queue.len() < MAX_IOSLICES {
            match queue.try_recv() {
                Ok(bytes) => self.push(bytes),
                Err(_) => break,
            }
        }
    }

    /// The buffers to write, in `out`; returns how many.
    pub(crate) fn slices<'a>(&'a self, out: &mut [IoSlice<'a>; MAX_IOSLICES]) -> usize {
        let mut k = 0;
        for (slot, bytes) in out.iter_mut().zip(&self.queue) {
            *slot = IoSlice::new(bytes);
            k += 1;
        }
        k
    }

    /// `n` bytes were written.
    pub(crate) fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_handles_partial_writes() {
        let mut b = WriteBatch::new();
        b.push(Bytes::from_static(b"abc"));
        b.push(Bytes::new());
        b.push(Bytes::from_static(b"defg"));
        assert_eq!(b.slices(&mut [IoSlice::new(&[]); MAX_IOSLICES]), 2);
        b.advance(4);
        {
            let mut out = [IoSlice::new(&[]); MAX_IOSLICES];
            assert_eq!(b.slices(&mut out), 1);
            assert_eq!(&*out[0], b"efg");
        }
        b.advance(3);
        assert!(b.is_empty());
    }
}
