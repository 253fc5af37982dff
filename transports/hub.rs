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
//! report per write syscall of data the hub itself queued.
//!
//! Outputs are batched: [`Hub::handle`] only collects each connection's
//! [`Output::Transmit`]s; the transport handles every event already waiting, then
//! calls [`Hub::flush`], so a flood costs one write per recipient per batch, not
//! one per line. A flush first tries a non-blocking write straight from the owner
//! ([`Sock::try_write_now`]) when that connection's writer has nothing in flight
//! (its `outstanding` byte count is zero, so byte order is kept), reports what it
//! wrote to the core at once, and puts only the rest into the connection's
//! unbounded writer queue (the core bounds it in bytes and drops slow readers):
//! the owner never waits on a socket. A [`Output::Close`] hands what is collected
//! to the writer and drops the queue (the writer drains it, then shuts the socket
//! down) or, when the reason says not to flush, shuts the socket down at once.
//!
//! Shutdown: [`Event::Shutdown`] calls `core.shutdown()` (everyone gets
//! `* server shutting down`), writers flush for at most [`SHUTDOWN_GRACE`], then
//! every socket left is shut down and [`Hub::finished`] turns true.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::net::Shutdown as How;
use std::sync::atomic::{AtomicUsize, Ordering};
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
/// Most events a transport handles before it calls [`Hub::flush`].
pub(crate) const BATCH: usize = EVENT_QUEUE;
/// Most bytes the hub collects for one connection before it flushes (less with a
/// small send queue: an eighth of it), so batching never makes a reader look slow.
const MAX_COLLECT: usize = 32 * 1024;

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
    /// Bytes handed to the writer and not written yet: the writer subtracts what
    /// it wrote (after the write) with [`Outstanding::written`].
    pub(crate) outstanding: Outstanding,
}

/// Bytes in a writer's hands (queued or being written); zero means the owner may
/// write to the socket itself without reordering anything.
#[derive(Clone, Default)]
pub(crate) struct Outstanding(Arc<AtomicUsize>);

impl Outstanding {
    /// The writer wrote `n` of the bytes it was handed.
    pub(crate) fn written(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::Release);
    }

    fn is_zero(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    fn handed(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

struct Conn<S> {
    writes: flume::Sender<Bytes>,
    sock: Arc<S>,
    writer_done: bool,
    /// Transmits collected since the last [`Hub::flush`].
    pending: WriteBatch,
    outstanding: Outstanding,
}

impl<S: Sock> Conn<S> {
    /// Hands everything collected to the writer.
    fn hand_to_writer(&mut self) {
        while let Some(bytes) = self.pending.pop() {
            self.outstanding.handed(bytes.len());
            // Fails only if the writer is gone; its WriterDone tells the core.
            let _ = self.writes.send(bytes);
        }
    }
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
    /// Connections with collected transmits (each once).
    dirty: Vec<ConnId>,
    /// Flush at the end of the current event: a connection collected this many bytes.
    flush_at: usize,
    must_flush: bool,
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
            dirty: Vec::new(),
            flush_at: (config.send_queue / 8).clamp(1, MAX_COLLECT),
            must_flush: false,
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
    /// Call [`flush`](Self::flush) after the last event already waiting (and at
    /// most [`BATCH`] events after the first one).
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
                let outstanding = Outstanding::default();
                spawn(NewConn {
                    id,
                    sock: Arc::clone(&sock),
                    queue,
                    flushed: self.flushed_tx.clone(),
                    outstanding: outstanding.clone(),
                });
                self.open.insert(
                    id,
                    Conn {
                        writes,
                        sock,
                        writer_done: false,
                        pending: WriteBatch::default(),
                        outstanding,
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
        if self.must_flush {
            // Collecting more would make a fast reader look slow to the core.
            self.flush();
        }
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
            self.flush();
        }
    }

    /// Writes (or hands to the writers) every transmit collected by
    /// [`handle`](Self::handle) since the last flush.
    pub(crate) fn flush(&mut self) {
        self.must_flush = false;
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            let Some(conn) = self.open.get_mut(&id) else {
                continue;
            };
            if conn.outstanding.is_zero() && !conn.writer_done {
                // The writer has nothing in flight: write from here, without waiting.
                while !conn.pending.is_empty() {
                    let written = {
                        let mut slices = [IoSlice::new(&[]); MAX_IOSLICES];
                        let k = conn.pending.slices(&mut slices);
                        conn.sock.try_write_now(&slices[..k])
                    };
                    // Errors (other than a full buffer) are left to the writer to meet.
                    let Ok(n @ 1..) = written else { break };
                    conn.pending.advance(n);
                    check(self.core.handle_flushed(id, n));
                }
            }
            conn.hand_to_writer();
        }
        self.dirty = dirty;
    }

    /// Drains the core's outputs.
    fn execute(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Transmit { to, bytes } => {
                    if let Some(conn) = self.open.get_mut(&to) {
                        if conn.pending.is_empty() {
                            self.dirty.push(to);
                        }
                        conn.pending.push(bytes);
                        self.must_flush |= conn.pending.len() >= self.flush_at;
                    }
                }
                Output::Close { id, reason } => {
                    let Some(mut conn) = self.open.remove(&id) else {
                        continue;
                    };
                    conn.hand_to_writer();
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
#[derive(Default)]
pub(crate) struct WriteBatch {
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    len: usize,
}

impl WriteBatch {
    pub(crate) fn new() -> Self {
        WriteBatch {
            queue: VecDeque::with_capacity(MAX_IOSLICES),
            len: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.queue.push_back(bytes);
        }
    }

    /// Takes the first buffer out.
    fn pop(&mut self) -> Option<Bytes> {
        let bytes = self.queue.pop_front()?;
        self.len -= bytes.len();
        Some(bytes)
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
        self.len = self.len.saturating_sub(n);
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

    #[test]
    fn batch_counts_its_bytes() {
        let mut b = WriteBatch::default();
        b.push(Bytes::from_static(b"abc"));
        b.push(Bytes::from_static(b"defg"));
        assert_eq!(b.len(), 7);
        b.advance(4);
        assert_eq!(b.len(), 3);
        assert_eq!(b.pop().as_deref(), Some(&b"efg"[..]));
        assert_eq!(b.len(), 0);
        assert!(b.pop().is_none());
    }

    #[test]
    fn outstanding_is_zero_once_everything_handed_is_written() {
        let o = Outstanding::default();
        assert!(o.is_zero());
        o.handed(10);
        o.written(4);
        assert!(!o.is_zero());
        o.written(6);
        assert!(o.is_zero());
    }
}
