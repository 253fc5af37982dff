//! The owner of the chat core, shared by every transport: one [`Hub`] owns the
//! [`ChatServer`] (no lock around it) and is fed [`Event`]s by the acceptor and the
//! per-connection readers and writers. It reads no clock: every call takes `now`.
//!
//! A transport waits for the next event or for [`Hub::poll_timeout`], then calls
//! [`Hub::handle_batch`] (the event plus everything already waiting, then one flush)
//! or [`Hub::handle_timeout`], until [`Hub::finished`]. It starts each accepted
//! connection's reader and writer from the [`NewConn`] the hub hands it.
//!
//! Writers report bytes written on a separate unbounded channel that the hub
//! drains before every event: behind a flood of `Data` events in the bounded
//! event channel, late flush reports would make fast readers look slow to the
//! core's send-queue accounting (and get them dropped). That channel holds at most
//! one report per write syscall of data the hub itself queued.
//!
//! Outputs are batched: each connection's [`Output::Transmit`]s are collected while
//! a batch of events is handled, then flushed: a flood costs one write per
//! recipient per batch, not one per line. A flush first tries a non-blocking write
//! straight from the owner ([`Sock::try_write_now`]) when that connection's writer
//! has nothing in flight (so byte order is kept), reports what it wrote to the core
//! at once, and hands only the rest to the connection's writer queue (the core
//! bounds it in bytes and drops slow readers): the owner never waits on a socket.
//!
//! Lifecycle decisions are the core's: refusals (full, shutting down), the close
//! grace and the shutdown grace come out of it as outputs. The hub executes them:
//! [`Output::Close`] hands what is collected to the writer and drops the queue (the
//! writer drains it, reports [`Event::WriterDone`], then shuts the socket down) or,
//! when the reason says not to flush, shuts the socket down at once;
//! [`Output::Abort`] shuts down a socket whose grace ran out.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::Shutdown as How;
use std::sync::Arc;

use bytes::Bytes;

use super::conn::{ConnReader, ConnWriter, Outstanding, WriteBatch, MAX_IOSLICES};
use super::Sock;
use crate::chat::{ChatConfig, ChatError, ChatServer, ConnId, Output};
use crate::Instant;

/// Capacity of the owner's event channel (readers wait when it is full).
pub(crate) const EVENT_QUEUE: usize = 256;
/// Most events handled before a flush.
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
    /// A writer ended (`true`: because a write failed); it shuts its socket down next.
    WriterDone(ConnId, bool),
    /// The server must stop (sent by the acceptor once it stopped accepting).
    Shutdown,
}

/// What a transport needs to start a new connection's reader and writer.
pub(crate) struct NewConn<S> {
    /// Its socket (the hub keeps a clone to shut it down).
    pub(crate) sock: Arc<S>,
    /// The reader's step type.
    pub(crate) reader: ConnReader,
    /// The writer's step type.
    pub(crate) writer: ConnWriter,
}

struct Conn<S> {
    writes: flume::Sender<Bytes>,
    sock: Arc<S>,
    writer_done: bool,
    /// Transmits collected since the last flush.
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

/// One entry of the simulator's log of what a [`Hub`] told or got from the core, in
/// order: every output it executed and every flush it reported.
#[cfg(feature = "sim")]
#[derive(Debug, Clone)]
pub(crate) enum Logged {
    /// An output of the core, about to be executed.
    Output(Output),
    /// `handle_flushed(id, n)` was called (a writer's report or a direct write).
    Flushed(ConnId, usize),
}

/// The owner of the chat core.
pub(crate) struct Hub<S> {
    core: ChatServer,
    open: HashMap<ConnId, Conn<S>>,
    /// Closed by the core; their writer has not ended yet.
    closing: HashMap<ConnId, Arc<S>>,
    flushed_tx: flume::Sender<(ConnId, usize)>,
    flushed_rx: flume::Receiver<(ConnId, usize)>,
    /// Connections with collected transmits (each once).
    dirty: Vec<ConnId>,
    /// Flush at the end of the current event: a connection collected this many bytes.
    flush_at: usize,
    must_flush: bool,
    /// The simulator's log (`None`: not recording).
    #[cfg(feature = "sim")]
    log: Option<Vec<Logged>>,
}

impl<S: Sock> Hub<S> {
    pub(crate) fn new(config: ChatConfig) -> Self {
        let (flushed_tx, flushed_rx) = flume::unbounded();
        Hub {
            flushed_tx,
            flushed_rx,
            core: ChatServer::new(config),
            open: HashMap::new(),
            closing: HashMap::new(),
            dirty: Vec::new(),
            flush_at: (config.send_queue / 8).clamp(1, MAX_COLLECT),
            must_flush: false,
            #[cfg(feature = "sim")]
            log: None,
        }
    }

    /// Starts logging every output executed and every flush reported to the core
    /// (for the simulator's checks; see [`take_log`](Self::take_log)).
    #[cfg(feature = "sim")]
    pub(crate) fn record(&mut self) {
        self.log.get_or_insert_with(Vec::new);
    }

    /// What was logged since the last call, in order.
    #[cfg(feature = "sim")]
    pub(crate) fn take_log(&mut self) -> Vec<Logged> {
        self.log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due, if ever.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Whether the server is done: shut down, and every socket closed or aborted.
    pub(crate) fn finished(&self) -> bool {
        self.core.is_finished()
    }

    /// The core (read-only), for checks.
    #[cfg_attr(not(any(test, feature = "sim")), allow(dead_code))]
    pub(crate) fn core(&self) -> &ChatServer {
        &self.core
    }

    /// Handles `first`, then up to [`BATCH`]` - 1` events from `more` (those already
    /// waiting: `more` must not block), then flushes. Returns how many were handled
    /// (a transport yields to its other tasks when that is [`BATCH`]). `spawn` must
    /// start a new connection's reader and writer.
    pub(crate) fn handle_batch(
        &mut self,
        now: Instant,
        first: Event<S>,
        more: impl Iterator<Item = Event<S>>,
        spawn: &mut impl FnMut(NewConn<S>),
    ) -> usize {
        self.handle(now, first, spawn);
        let mut handled = 1;
        for event in more.take(BATCH - 1) {
            self.handle(now, event, spawn);
            handled += 1;
        }
        self.flush();
        handled
    }

    /// Applies the writers' flush reports.
    fn drain_flushed(&mut self) {
        while let Ok((id, n)) = self.flushed_rx.try_recv() {
            #[cfg(feature = "sim")]
            if let Some(log) = &mut self.log {
                log.push(Logged::Flushed(id, n));
            }
            check(self.core.handle_flushed(id, n));
        }
    }

    fn handle(&mut self, now: Instant, event: Event<S>, spawn: &mut impl FnMut(NewConn<S>)) {
        self.drain_flushed();
        let result = match event {
            Event::Accepted(sock) => {
                let id = self.core.handle_open(now);
                let sock = Arc::new(sock);
                let (writes, queue) = flume::unbounded();
                let outstanding = Outstanding::default();
                spawn(NewConn {
                    sock: Arc::clone(&sock),
                    reader: ConnReader::new(id),
                    writer: ConnWriter::new(
                        id,
                        queue,
                        self.flushed_tx.clone(),
                        outstanding.clone(),
                    ),
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
            Event::WriterDone(id, _failed) => {
                self.closing.remove(&id);
                if let Some(conn) = self.open.get_mut(&id) {
                    conn.writer_done = true;
                }
                // For a connection still open this is a reset.
                self.core.handle_closed(now, id)
            }
            Event::Shutdown => {
                self.core.shutdown(now);
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

    /// Runs the core's timers (idle timeouts, close and shutdown graces) at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.drain_flushed();
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
            self.execute();
            self.flush();
        }
    }

    /// Writes (or hands to the writers) every transmit collected since the last flush.
    fn flush(&mut self) {
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
                    #[cfg(feature = "sim")]
                    if let Some(log) = &mut self.log {
                        log.push(Logged::Flushed(id, n));
                    }
                    check(self.core.handle_flushed(id, n));
                }
            }
            conn.hand_to_writer();
        }
        self.dirty = dirty;
    }

    /// Executes the core's outputs.
    fn execute(&mut self) {
        while let Some(output) = self.core.poll_output() {
            #[cfg(feature = "sim")]
            if let Some(log) = &mut self.log {
                log.push(Logged::Output(output.clone()));
            }
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
                Output::Abort { id } => {
                    if let Some(sock) = self.closing.remove(&id) {
                        let _ = sock.shutdown(How::Both);
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
