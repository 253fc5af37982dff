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
//! Fair service: a reader reads again only after the hub handled its data and
//! sent it a permit, so at most one read per connection waits in the event queue
//! (a fast client cannot fill it, and every connection gets its turn in arrival
//! order); a connection whose input the core wants paused (`wants_read` false)
//! gets its permit only once that changes. Due timers run after every batch, and
//! the stop signal is looked at before every batch, so neither waits behind data.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::conn::{ConnReader, ConnWriter, Outstanding, WriteBatch, MAX_IOSLICES};
use super::Sock;
use crate::chat::{ChatConfig, ChatError, ChatServer, ConnId, Output};
use crate::Instant;

#[cfg(feature = "tls")]
mod tls;

/// Capacity of the owner's event channel (readers wait when it is full).
pub(crate) const EVENT_QUEUE: usize = 256;
/// The kernel send buffer of a chat socket (`SO_SNDBUF`; Linux doubles it): small
/// enough that a slow reader's progress reaches the core well within
/// `ChatConfig::stall_timeout` (an autotuned buffer grows to 4 MiB, and a socket
/// becomes writable again only when a third of it is free).
#[cfg(feature = "net")]
const SEND_BUFFER: usize = 128 * 1024;
/// Most events handled before a flush.
pub(crate) const BATCH: usize = EVENT_QUEUE;
/// Most bytes the hub collects for one connection before it flushes (less with a
/// small send queue: an eighth of it), so batching never makes a reader look slow.
const MAX_COLLECT: usize = 32 * 1024;

/// Something happened that the owner must hear about.
pub(crate) enum Event<S> {
    /// The acceptor accepted a socket (already `TCP_NODELAY`).
    Accepted(S),
    /// The acceptor of a TLS listener accepted a socket (see [`Event::accepted`]).
    #[cfg(feature = "tls")]
    AcceptedTls(S, crate::net::TlsConfig),
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
    /// A writer flushed while the hub waited for news of flushes (a connection is
    /// paused until its recipients drain): nothing else to handle.
    Wake,
    /// The cluster bus reported something (forwarded from the bus's threads).
    Bus(crate::cluster::BusEvent),
}

impl<S> Event<S> {
    /// The event for a socket accepted on a listener with this TLS configuration
    /// (`None`: plaintext).
    #[cfg(feature = "net")]
    pub(crate) fn accepted(sock: S, tls: Option<crate::net::TlsConfig>) -> Self {
        match tls {
            #[cfg(feature = "tls")]
            Some(config) => Event::AcceptedTls(sock, config),
            #[cfg(not(feature = "tls"))]
            Some(_) => Event::Accepted(sock),
            None => Event::Accepted(sock),
        }
    }
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
    /// Lets the reader read again (capacity one).
    permit: flume::Sender<()>,
    sock: Arc<S>,
    writer_done: bool,
    /// Transmits collected since the last flush.
    pending: WriteBatch,
    outstanding: Outstanding,
    /// Over TLS: `pending` holds ciphertext, this the layer and the plaintext.
    #[cfg(feature = "tls")]
    tls: Option<Box<tls::ConnTls>>,
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
    /// Set while a reader is paused by the core: the next writer to report a flush
    /// clears it and sends [`Event::Wake`], so the hub hears of the drain at once.
    wake: Arc<AtomicBool>,
    /// Connections with collected transmits (each once).
    dirty: Vec<ConnId>,
    /// Flush at the end of the current event: a connection collected this many bytes.
    flush_at: usize,
    must_flush: bool,
    /// Connections whose reader waits for a permit (its data was handled).
    waiting: Vec<ConnId>,
    /// The time of the event or timer being handled.
    now: Instant,
    /// Open connections last added to the process-wide gauge.
    counted_open: usize,
    /// The cluster bus the core's [`Output::Bus`] actions go to.
    #[cfg(feature = "cluster")]
    bus: Option<Box<dyn crate::bus::Bus>>,
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
            wake: Arc::default(),
            core: ChatServer::new(config),
            open: HashMap::new(),
            closing: HashMap::new(),
            dirty: Vec::new(),
            flush_at: (config.send_queue / 8).clamp(1, MAX_COLLECT),
            must_flush: false,
            waiting: Vec::new(),
            now: Instant::ZERO,
            counted_open: 0,
            #[cfg(feature = "cluster")]
            bus: None,
            #[cfg(feature = "sim")]
            log: None,
        }
    }

    /// A hub for `config`, one node of a cluster if the listener has a
    /// [`ClusterLink`](crate::bus::ClusterLink). Returns the bus's events too: the
    /// transport forwards them into the event channel as [`Event::Bus`] (on a thread
    /// or task of its own, so the hub never waits for the bus).
    #[cfg(feature = "net")]
    pub(crate) fn for_listener(
        config: ChatConfig,
        listener: &mut crate::net::Listener,
    ) -> (Self, Option<flume::Receiver<crate::cluster::BusEvent>>) {
        listener.cap_send_buffers(SEND_BUFFER);
        #[cfg(feature = "cluster")]
        if let Some(link) = listener.take_cluster() {
            let mut hub = Hub::new(config);
            hub.core = ChatServer::with_cluster(config, link.config);
            hub.bus = Some(link.bus);
            crate::metrics::global().bus_up(true);
            return (hub, Some(link.events));
        }
        (Hub::new(config), None)
    }

    /// Hands `action` to the bus (never blocks: the bus queues it or drops it).
    fn submit(&mut self, action: crate::cluster::BusAction) {
        #[cfg(feature = "cluster")]
        if let Some(bus) = &self.bus {
            crate::metrics::global()
                .bus_out
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            bus.submit(action);
        }
        #[cfg(not(feature = "cluster"))]
        let _ = action;
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
    #[allow(dead_code)] // for the simulator's checks
    pub(crate) fn core(&self) -> &ChatServer {
        &self.core
    }

    /// Handles `first`, then up to [`BATCH`]` - 1` events from `more` (those already
    /// waiting: `more` must not block), then flushes, runs due timers and grants
    /// readers their permits. `stop`: the stop signal was triggered (the server shuts
    /// down first; idempotent). Returns how many events were handled (a transport
    /// yields to its other tasks when that is [`BATCH`]). `spawn` must start a new
    /// connection's reader and writer, and say whether it could (a connection that
    /// got no thread or task is refused with `! server full`).
    pub(crate) fn handle_batch(
        &mut self,
        now: Instant,
        stop: bool,
        first: Event<S>,
        more: impl Iterator<Item = Event<S>>,
        spawn: &mut impl FnMut(NewConn<S>) -> bool,
    ) -> usize {
        if stop {
            self.handle(now, Event::Shutdown, spawn);
        }
        self.handle(now, first, spawn);
        let mut handled = 1;
        for event in more.take(BATCH - 1) {
            self.handle(now, event, spawn);
            handled += 1;
        }
        self.flush();
        self.handle_timeout(now);
        handled
    }

    /// Applies the writers' flush reports.
    fn drain_flushed(&mut self) {
        while let Ok((id, n)) = self.flushed_rx.try_recv() {
            #[cfg(feature = "tls")]
            let Some(n) = self.tls_flushed(id, n) else {
                continue;
            };
            #[cfg(feature = "sim")]
            if let Some(log) = &mut self.log {
                log.push(Logged::Flushed(id, n));
            }
            count!(bytes_out, n);
            check(self.core.handle_flushed(id, n));
        }
    }

    fn handle(
        &mut self,
        now: Instant,
        event: Event<S>,
        spawn: &mut impl FnMut(NewConn<S>) -> bool,
    ) {
        self.now = now;
        self.drain_flushed();
        let result = match event {
            Event::Accepted(sock) => {
                count!(accepted, 1);
                let (id, started) = self.start_conn(sock, spawn);
                let from = self.open.get(&id).and_then(|c| c.sock.peer_addr());
                let issued = if !started {
                    self.core.handle_open_refused(now)
                } else if let Some(addr) = from {
                    self.core.handle_open_from(now, addr.ip())
                } else {
                    self.core.handle_open(now)
                };
                debug_assert_eq!(issued, id);
                log::info!(
                    "chat {id:?} from {} {}",
                    peer(from),
                    if started {
                        "open"
                    } else {
                        "refused: no thread"
                    }
                );
                Ok(())
            }
            #[cfg(feature = "tls")]
            Event::AcceptedTls(sock, config) => {
                count!(accepted, 1);
                self.accept_tls(now, sock, config, spawn)
            }
            #[cfg(feature = "tls")]
            Event::Data(id, bytes) if self.is_tls(id) => self.tls_data(now, id, &bytes),
            #[cfg(feature = "tls")]
            Event::Eof(id) if self.is_tls(id) => self.tls_eof(now, id),
            Event::Data(id, bytes) => {
                self.waiting.push(id);
                count!(bytes_in, bytes.len());
                count!(lines_in, memchr::memchr_iter(b'\n', &bytes).count());
                self.core.handle_data(now, id, &bytes)
            }
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
            Event::Bus(event) => {
                #[cfg(feature = "net")]
                crate::metrics::global().bus_event(&event);
                match event {
                    crate::cluster::BusEvent::Lost => log::warn!("cluster bus lost"),
                    crate::cluster::BusEvent::Restored => log::warn!("cluster bus restored"),
                    _ => {}
                }
                self.core.handle_bus(now, event);
                Ok(())
            }
            Event::Wake => Ok(()),
        };
        check(result);
        self.execute();
        if self.must_flush {
            // Collecting more would make a fast reader look slow to the core.
            self.flush();
        }
    }

    /// Starts a new connection's reader and writer (a connection that cannot get
    /// them is refused by the caller, and nobody is told it arrived); returns the
    /// id the core will issue next and whether they started.
    fn start_conn(
        &mut self,
        sock: S,
        spawn: &mut impl FnMut(NewConn<S>) -> bool,
    ) -> (ConnId, bool) {
        let id = self.core.next_id();
        let sock = Arc::new(sock);
        let (writes, queue) = flume::unbounded();
        let (permit, permits) = flume::bounded(1);
        let outstanding = Outstanding::default();
        let started = spawn(NewConn {
            sock: Arc::clone(&sock),
            reader: ConnReader::new(id, permits),
            writer: ConnWriter::new(
                id,
                queue,
                self.flushed_tx.clone(),
                outstanding.clone(),
                Arc::clone(&self.wake),
            ),
        });
        self.open.insert(
            id,
            Conn {
                writes,
                permit,
                sock,
                writer_done: !started,
                pending: WriteBatch::default(),
                outstanding,
                #[cfg(feature = "tls")]
                tls: None,
            },
        );
        (id, started)
    }

    /// Runs the core's timers (idle timeouts, close and shutdown graces) at `now`,
    /// then grants permits to the readers the core wants to hear from again.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        loop {
            // Flush reports may unpause senders, whose buffered input then runs.
            self.drain_flushed();
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            self.execute();
            self.flush();
            if self.grant_permits() {
                break;
            }
        }
    }

    /// Brings the process-wide open-connections gauge up to date.
    fn count_open(&mut self) {
        let open = self.core.connections();
        #[cfg(feature = "net")]
        crate::metrics::global().open.fetch_add(
            open as i64 - self.counted_open as i64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.counted_open = open;
    }

    /// Lets every waiting reader whose connection the core wants to read read again.
    /// Returns `false` if a reader stays paused and a flush report arrived since the
    /// reports were last drained (drain again: it may unpause it).
    fn grant_permits(&mut self) -> bool {
        self.count_open();
        let (open, core) = (&self.open, &self.core);
        self.waiting.retain(|id| {
            let Some(conn) = open.get(id) else {
                return false; // closed: its permit sender is gone, the reader stops
            };
            if !core.wants_read(*id) && !core.is_pending(*id) {
                return true; // not yet: asked again after the next event or timer
            }
            if core.is_input_held(*id) {
                return true; // a cluster claim holds its input: not yet
            }
            // Full only if a permit is already waiting (the id was listed twice).
            let _ = conn.permit.try_send(());
            false
        });
        let paused = self.waiting.iter().any(|id| self.core.is_open(*id));
        self.wake.store(paused, Ordering::Release);
        // A report sent before the flag was set woke nobody: look again.
        !paused || self.flushed_rx.is_empty()
    }

    /// Writes (or hands to the writers) every transmit collected since the last
    /// flush, and what the core outputs meanwhile (a direct write reported flushed
    /// may unpause a sender, whose buffered input then runs).
    fn flush(&mut self) {
        loop {
            self.flush_once();
            if self.execute() == 0 {
                break;
            }
        }
    }

    fn flush_once(&mut self) {
        self.must_flush = false;
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            let Some(conn) = self.open.get_mut(&id) else {
                continue;
            };
            #[cfg(feature = "tls")]
            tls::encrypt(conn);
            if conn.outstanding.is_zero() && !conn.writer_done {
                // The writer has nothing in flight: write from here, without waiting.
                let n = write_now(conn);
                #[cfg(feature = "tls")]
                let n = tls::plaintext_flushed(conn, n);
                if n > 0 {
                    #[cfg(feature = "sim")]
                    if let Some(log) = &mut self.log {
                        log.push(Logged::Flushed(id, n));
                    }
                    count!(bytes_out, n);
                    check(self.core.handle_flushed(id, n));
                }
            }
            conn.hand_to_writer();
        }
        self.dirty = dirty;
    }

    /// Executes the core's outputs; returns how many.
    fn execute(&mut self) -> usize {
        let mut executed = 0;
        while let Some(output) = self.core.poll_output() {
            executed += 1;
            #[cfg(feature = "sim")]
            if let Some(log) = &mut self.log {
                log.push(Logged::Output(output.clone()));
            }
            match output {
                Output::Transmit { to, bytes } => {
                    count!(deliveries, 1);
                    if let Some(conn) = self.open.get_mut(&to) {
                        #[cfg(feature = "tls")]
                        if let Some(tls) = &mut conn.tls {
                            if tls.queue(bytes) && conn.pending.is_empty() {
                                self.dirty.push(to);
                            }
                            self.must_flush |= tls.queued() >= self.flush_at;
                            continue;
                        }
                        if conn.pending.is_empty() {
                            self.dirty.push(to);
                        }
                        conn.pending.push(bytes);
                        self.must_flush |= conn.pending.len() >= self.flush_at;
                    }
                }
                Output::Close { id, reason } => {
                    #[cfg(feature = "net")]
                    crate::metrics::global().closed(&reason);
                    let Some(mut conn) = self.open.remove(&id) else {
                        continue;
                    };
                    log::info!(
                        "chat {id:?} from {} closed: {reason:?}",
                        peer(conn.sock.peer_addr())
                    );
                    #[cfg(feature = "tls")]
                    tls::closing(&mut conn, &reason);
                    if conn.writer_done {
                        // No writer (it failed, or never started): what fits in the
                        // socket now is all this connection gets.
                        if reason.flush() {
                            write_now(&mut conn);
                        }
                        let _ = conn.sock.shutdown(How::Both);
                        check(self.core.handle_closed(self.now, id));
                        continue;
                    }
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
                Output::Bus(action) => self.submit(action),
            }
        }
        executed
    }
}

/// A peer address for logs.
fn peer(addr: Option<std::net::SocketAddr>) -> String {
    addr.map_or_else(|| "?".into(), |a| a.to_string())
}

/// Writes what `conn` collected straight to its socket, as much as fits without
/// waiting; returns how much. Errors (other than a full buffer) are left to the
/// writer to meet.
fn write_now<S: Sock>(conn: &mut Conn<S>) -> usize {
    let mut total = 0;
    while !conn.pending.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); MAX_IOSLICES];
            let k = conn.pending.slices(&mut slices);
            conn.sock.try_write_now(&slices[..k])
        };
        let Ok(n @ 1..) = written else { break };
        conn.pending.advance(n);
        total += n;
    }
    total
}

fn check(result: Result<(), ChatError>) {
    match result {
        // Late news about a connection the core already closed: expected, ignored.
        Ok(()) | Err(ChatError::UnknownConn(_)) => {}
        Err(e) => log::error!("chat transport bug: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A socket that takes every write and records shutdowns.
    #[derive(Default)]
    struct Fake {
        written: Mutex<Vec<u8>>,
        shut: Mutex<Vec<How>>,
    }

    impl Sock for Fake {
        fn shutdown(&self, how: How) -> std::io::Result<()> {
            self.shut.lock().unwrap().push(how);
            Ok(())
        }

        fn try_write_now(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            let mut w = self.written.lock().unwrap();
            let before = w.len();
            bufs.iter().for_each(|b| w.extend_from_slice(b));
            Ok(w.len() - before)
        }
    }

    /// Accepts a fake socket (through an `Arc` so the test can look at it).
    fn accept(hub: &mut Hub<Arc<Fake>>, now: Instant, start: bool) -> Arc<Fake> {
        let sock = Arc::new(Fake::default());
        let mut spawn = |_conn: NewConn<Arc<Fake>>| start;
        hub.handle_batch(
            now,
            false,
            Event::Accepted(Arc::clone(&sock)),
            std::iter::empty(),
            &mut spawn,
        );
        sock
    }

    impl Sock for Arc<Fake> {
        fn shutdown(&self, how: How) -> std::io::Result<()> {
            Fake::shutdown(self, how)
        }

        fn try_write_now(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            Fake::try_write_now(self, bufs)
        }
    }

    fn text(sock: &Fake) -> String {
        String::from_utf8(sock.written.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_connection_that_gets_no_thread_is_refused_and_nobody_is_told() {
        let mut hub: Hub<Arc<Fake>> = Hub::new(ChatConfig::default());
        let a = accept(&mut hub, Instant::ZERO, true);
        assert!(text(&a).starts_with("* welcome guest1, 1 users online\n"));
        let b = accept(&mut hub, Instant::ZERO, false);
        assert_eq!(text(&b), "! server full\n");
        assert_eq!(*b.shut.lock().unwrap(), [How::Both]);
        assert_eq!(hub.core().connections(), 1);
        assert_eq!(hub.core().closing(), 0, "its socket is closed already");
        // `a` heard nothing of it; the next one is guest2.
        assert_eq!(text(&a), "* welcome guest1, 1 users online\n");
        let c = accept(&mut hub, Instant::ZERO, true);
        assert!(text(&c).starts_with("* welcome guest2, 2 users online\n"));
    }

    #[test]
    fn the_stop_signal_shuts_down_before_the_batch_and_timers_run_after_it() {
        let config =
            ChatConfig::default().with_idle_timeout(Some(std::time::Duration::from_secs(1)));
        let mut hub: Hub<Arc<Fake>> = Hub::new(config);
        let a = accept(&mut hub, Instant::ZERO, true);
        let late = Instant::from_millis(1500);
        // A batch of data at 1.5 s: the idle timer (due at 1 s) runs after it.
        let mut spawn = |_conn: NewConn<Arc<Fake>>| true;
        hub.handle_batch(
            late,
            false,
            Event::Data(ConnId(0), Bytes::from_static(b"")),
            std::iter::empty(),
            &mut spawn,
        );
        assert!(!hub.core().is_open(ConnId(0)), "the idle timer waited");
        drop(a);
        let b = accept(&mut hub, late, true);
        hub.handle_batch(
            late,
            true,
            Event::Data(ConnId(1), Bytes::from_static(b"hi\n")),
            std::iter::empty(),
            &mut spawn,
        );
        // Shut down before `hi` was handled: nobody heard it, `b` is closed.
        assert_eq!(text(&b), "* welcome guest2, 1 users online\n");
        assert_eq!(hub.core().connections(), 0);
        assert!(!hub.finished(), "b's writer has not reported yet");
    }
}
