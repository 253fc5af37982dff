//! One chat connection's reader and writer as step types: the transport does the
//! blocking or awaited `read`/`write_vectored`/`recv`, these decide what it meant.
//!
//! * [`ConnReader`]: `buf()` to read into, then `on_read(result)` says which
//!   [`Event`] to send the hub, or to read again (`EINTR`). After sending data the
//!   reader waits for the hub's permit ([`ConnReader::permit`]) before it reads
//!   again: at most one read per connection is in flight, so one fast client cannot
//!   fill the hub's event queue, and a client the core wants paused is not read.
//! * [`ConnWriter`]: `next()` says whether to wait for bytes, write, or stop;
//!   `written(result)` takes the write's result. It reports what it wrote to the hub
//!   (`flushed` channel, [`Outstanding`]) and, when done, the transport sends
//!   [`ConnWriter::done_event`] *before* shutting the socket down, so the core
//!   hears that the socket closed before the client can see it (a client that
//!   reconnects at once is never refused for a slot the core still counts).

// The simulator (the `sim` feature without `net`) plays the readers itself.
#![cfg_attr(not(feature = "net"), allow(dead_code))]

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes};

use super::hub::Event;
use crate::chat::ConnId;

/// Most bytes a reader reads (and reports) at once.
pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// A reader's first buffer: idle clients stay cheap; doubled after a read fills it.
pub(crate) const FIRST_READ_BUF: usize = 2 * 1024;
/// Most buffers in one vectored write.
pub(crate) const MAX_IOSLICES: usize = 64;

/// What a reader does after a read.
pub(crate) enum ReadStep<S> {
    /// Send this event to the hub, then wait for a permit on
    /// [`ConnReader::permit`] (stop if it is disconnected), then read again.
    Send(Event<S>),
    /// Send this event to the hub, then stop (end of stream or error).
    Last(Event<S>),
    /// Read again (interrupted).
    Retry,
}

/// A chat connection's reader.
#[derive(Debug)]
pub(crate) struct ConnReader {
    id: ConnId,
    buf: Vec<u8>,
    permit: flume::Receiver<()>,
}

impl ConnReader {
    pub(crate) fn new(id: ConnId, permit: flume::Receiver<()>) -> Self {
        ConnReader {
            id,
            buf: vec![0; FIRST_READ_BUF],
            permit,
        }
    }

    /// The connection's id.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub(crate) fn id(&self) -> ConnId {
        self.id
    }

    /// Where the hub's permit to read again arrives, after [`ReadStep::Send`];
    /// disconnected once the core closed the connection.
    pub(crate) fn permit(&self) -> &flume::Receiver<()> {
        &self.permit
    }

    /// Where the next read goes.
    pub(crate) fn buf(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The read into [`buf`](Self::buf) returned `result`.
    pub(crate) fn on_read<S>(&mut self, result: io::Result<usize>) -> ReadStep<S> {
        match result {
            Ok(0) => ReadStep::Last(Event::Eof(self.id)),
            Ok(n) => {
                let data = Bytes::copy_from_slice(&self.buf[..n]);
                if n == self.buf.len() && self.buf.len() < READ_CHUNK {
                    self.buf.resize((self.buf.len() * 2).min(READ_CHUNK), 0);
                }
                ReadStep::Send(Event::Data(self.id, data))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadStep::Retry,
            Err(_) => ReadStep::Last(Event::ReadError(self.id)),
        }
    }
}

/// Bytes in a writer's hands (queued or being written); zero means the owner may
/// write to the socket itself without reordering anything.
#[derive(Clone, Default, Debug)]
pub(crate) struct Outstanding(Arc<AtomicUsize>);

impl Outstanding {
    /// The writer wrote `n` of the bytes it was handed.
    fn written(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::Release);
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    pub(crate) fn handed(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a writer does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WriteStep {
    /// Nothing to write: wait on [`ConnWriter::queue`], then [`ConnWriter::push`]
    /// (or [`ConnWriter::queue_closed`] when it is disconnected).
    NeedBytes,
    /// Write [`ConnWriter::slices`] with one vectored write, then report it with
    /// [`ConnWriter::written`].
    Write,
    /// Stop: send [`ConnWriter::done_event`] to the hub, then shut the socket down.
    Done,
}

/// A chat connection's writer: the hub's queue in, vectored writes out.
#[derive(Debug)]
pub(crate) struct ConnWriter {
    id: ConnId,
    queue: flume::Receiver<Bytes>,
    flushed: flume::Sender<(ConnId, usize)>,
    outstanding: Outstanding,
    /// The hub's flag: set while it waits for news of flushes (see `written`).
    wake: Arc<AtomicBool>,
    batch: WriteBatch,
    /// `Some(failed)` once done.
    done: Option<bool>,
}

impl ConnWriter {
    pub(crate) fn new(
        id: ConnId,
        queue: flume::Receiver<Bytes>,
        flushed: flume::Sender<(ConnId, usize)>,
        outstanding: Outstanding,
        wake: Arc<AtomicBool>,
    ) -> Self {
        ConnWriter {
            id,
            queue,
            flushed,
            outstanding,
            wake,
            batch: WriteBatch::new(),
            done: None,
        }
    }

    /// What to do next. Takes what is already queued without waiting.
    pub(crate) fn next(&mut self) -> WriteStep {
        if self.done.is_some() {
            return WriteStep::Done;
        }
        while self.batch.queue.len() < MAX_IOSLICES {
            match self.queue.try_recv() {
                Ok(bytes) => self.batch.push(bytes),
                Err(flume::TryRecvError::Empty) => break,
                Err(flume::TryRecvError::Disconnected) => {
                    if self.batch.is_empty() {
                        // Closed by the core and everything was written.
                        self.done = Some(false);
                        return WriteStep::Done;
                    }
                    break;
                }
            }
        }
        if self.batch.is_empty() {
            WriteStep::NeedBytes
        } else {
            WriteStep::Write
        }
    }

    /// The queue to wait on after [`WriteStep::NeedBytes`].
    pub(crate) fn queue(&self) -> &flume::Receiver<Bytes> {
        &self.queue
    }

    /// Bytes received from [`queue`](Self::queue) after a wait.
    pub(crate) fn push(&mut self, bytes: Bytes) {
        self.batch.push(bytes);
    }

    /// The wait on [`queue`](Self::queue) found it disconnected.
    pub(crate) fn queue_closed(&mut self) {
        if self.batch.is_empty() {
            self.done = Some(false);
        }
    }

    /// The buffers to write, in `out`; returns how many.
    pub(crate) fn slices<'a>(&'a self, out: &mut [IoSlice<'a>; MAX_IOSLICES]) -> usize {
        self.batch.slices(out)
    }

    /// The write of [`slices`](Self::slices) returned `result`. Returns an event
    /// to send the hub when it waits for news of flushes (a sender is paused until
    /// its recipients drain: this flush may let it go on).
    pub(crate) fn written<S>(&mut self, result: io::Result<usize>) -> Option<Event<S>> {
        match result {
            Ok(0) => self.done = Some(true),
            Ok(n) => {
                self.batch.advance(n);
                self.outstanding.written(n);
                if self.flushed.send((self.id, n)).is_err() {
                    self.done = Some(false); // the hub is gone
                } else if self.wake.load(Ordering::Relaxed)
                    && self.wake.swap(false, Ordering::AcqRel)
                {
                    return Some(Event::Wake);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.done = Some(true),
        }
        None
    }

    /// The event that tells the hub this writer ended.
    pub(crate) fn done_event<S>(&self) -> Event<S> {
        Event::WriterDone(self.id, self.done.unwrap_or(true))
    }
}

/// A writer's pending `Bytes`, written with one vectored write at a time.
#[derive(Default, Debug)]
pub(crate) struct WriteBatch {
    queue: std::collections::VecDeque<Bytes>,
    /// Bytes in `queue`.
    len: usize,
}

impl WriteBatch {
    pub(crate) fn new() -> Self {
        WriteBatch {
            queue: std::collections::VecDeque::with_capacity(MAX_IOSLICES),
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
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        let bytes = self.queue.pop_front()?;
        self.len -= bytes.len();
        Some(bytes)
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
        assert_eq!(b.len(), 0);
        assert!(b.pop().is_none());
    }

    #[test]
    fn reader_grows_its_buffer_and_retries_interrupts() {
        let (_permits, permit) = flume::bounded(1);
        let mut r = ConnReader::new(ConnId(7), permit);
        let n = r.buf().len();
        assert!(matches!(
            r.on_read::<()>(Ok(n)),
            ReadStep::Send(Event::Data(ConnId(7), _))
        ));
        assert_eq!(r.buf().len(), 2 * n);
        assert!(matches!(
            r.on_read::<()>(Err(io::ErrorKind::Interrupted.into())),
            ReadStep::Retry
        ));
        assert!(matches!(
            r.on_read::<()>(Ok(0)),
            ReadStep::Last(Event::Eof(_))
        ));
        assert!(matches!(
            r.on_read::<()>(Err(io::ErrorKind::ConnectionReset.into())),
            ReadStep::Last(Event::ReadError(_))
        ));
    }

    #[test]
    fn writer_writes_reports_and_ends_when_the_queue_closes() {
        let (tx, rx) = flume::unbounded();
        let (ftx, frx) = flume::unbounded();
        let out = Outstanding::default();
        let mut w = ConnWriter::new(ConnId(1), rx, ftx, out.clone(), Arc::default());
        assert_eq!(w.next(), WriteStep::NeedBytes);
        out.handed(5);
        tx.send(Bytes::from_static(b"hello")).unwrap();
        assert_eq!(w.next(), WriteStep::Write);
        w.written::<()>(Err(io::ErrorKind::Interrupted.into()));
        assert_eq!(w.next(), WriteStep::Write, "EINTR is retried");
        w.written::<()>(Ok(2));
        assert_eq!(frx.try_recv(), Ok((ConnId(1), 2)));
        assert!(!out.is_zero());
        drop(tx);
        assert_eq!(w.next(), WriteStep::Write, "the rest is written first");
        w.written::<()>(Ok(3));
        assert!(out.is_zero());
        assert_eq!(w.next(), WriteStep::Done);
        assert!(matches!(
            w.done_event::<()>(),
            Event::WriterDone(ConnId(1), false)
        ));
    }

    #[test]
    fn a_failed_write_ends_the_writer_as_failed() {
        let (tx, rx) = flume::unbounded();
        let (ftx, _frx) = flume::unbounded();
        let mut w = ConnWriter::new(ConnId(2), rx, ftx, Outstanding::default(), Arc::default());
        tx.send(Bytes::from_static(b"x")).unwrap();
        assert_eq!(w.next(), WriteStep::Write);
        w.written::<()>(Err(io::ErrorKind::BrokenPipe.into()));
        assert_eq!(w.next(), WriteStep::Done);
        assert!(matches!(w.done_event::<()>(), Event::WriterDone(_, true)));
    }

    #[test]
    fn a_flush_wakes_the_hub_once_while_it_waits_for_one() {
        let (tx, rx) = flume::unbounded();
        let (ftx, _frx) = flume::unbounded();
        let wake = Arc::new(AtomicBool::new(false));
        let mut w = ConnWriter::new(ConnId(3), rx, ftx, Outstanding::default(), wake.clone());
        tx.send(Bytes::from_static(b"abcdef")).unwrap();
        assert_eq!(w.next(), WriteStep::Write);
        assert!(
            w.written::<()>(Ok(1)).is_none(),
            "the hub waits for nothing"
        );
        wake.store(true, Ordering::Release);
        assert!(matches!(w.written::<()>(Ok(1)), Some(Event::Wake)));
        assert!(!wake.load(Ordering::Acquire), "one wake per wait");
        assert!(w.written::<()>(Ok(1)).is_none());
    }
}
