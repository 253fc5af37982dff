//! What the tokio and smol transports share, written once over [`Runtime`]: the
//! echo accept loop and per-connection loop, UDP echo, and the chat acceptor,
//! readers, writers and owner loop (around the shared chat hub).
//!
//! [`Runtime`] is a handful of socket, spawn and timer operations returning
//! `impl Future + Send` (native RPITIT: no boxing, no `async-trait` on the
//! per-read/per-write path). Each runtime module implements it in a few lines.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{Shutdown as How, SocketAddr};
use std::sync::Arc;
use std::time::Instant as StdInstant;

use bytes::Bytes;
use flume::Sender;

use crate::admission::Admission;
use crate::chat::{ChatConfig, ConnId};
use crate::echo::{EchoConfig, EchoConn, EchoServerConfig};
use crate::hub::{
    grow_read_buf, Event, Hub, NewConn, WriteBatch, BATCH, EVENT_QUEUE, FIRST_READ_BUF,
    MAX_IOSLICES,
};
use crate::live::{race, Tracker};
use crate::net::{core_bug, AcceptBackoff, Listener, ServeError, Shutdown, Sock};

/// The operations of an async runtime the shared drivers need.
pub(crate) trait Runtime: 'static {
    /// Listening socket.
    type Listener: Send + Sync + 'static;
    /// Accepted connection; shared by its reader and writer through an `Arc`.
    type Stream: Sock;
    /// UDP socket.
    type Udp: Send + Sync + 'static;
    /// Registers a bound std listener with the runtime.
    fn listener(tcp: std::net::TcpListener) -> io::Result<Self::Listener>;
    /// Registers a bound std UDP socket with the runtime.
    fn udp(udp: std::net::UdpSocket) -> io::Result<Self::Udp>;
    /// Accepts one connection and sets `TCP_NODELAY` on it.
    fn accept(listener: &Self::Listener) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Reads into `buf` (0: end of stream).
    fn read(
        stream: &Self::Stream,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send;
    /// One vectored write; returns how much was written.
    fn write_vectored(
        stream: &Self::Stream,
        bufs: &[IoSlice<'_>],
    ) -> impl Future<Output = io::Result<usize>> + Send;
    /// Receives one datagram.
    fn recv_from(
        udp: &Self::Udp,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
    /// Sends one datagram.
    fn send_to(
        udp: &Self::Udp,
        buf: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send;
    /// Runs `task` in the background (detached).
    fn spawn(task: impl Future<Output = ()> + Send + 'static);
    /// Resolves at `deadline`.
    fn sleep_until(deadline: StdInstant) -> impl Future<Output = ()> + Send;
    /// Lets other tasks run.
    fn yield_now() -> impl Future<Output = ()> + Send;
}

/// Resolves to `Some(fut's output)`, or `None` once `shutdown` is triggered.
async fn unless<T>(shutdown: &Shutdown, fut: impl Future<Output = T>) -> Option<T> {
    race(async { Some(fut.await) }, async {
        shutdown.wait().await;
        None
    })
    .await
}

/// The echo server (see the runtime modules' `run_echo`).
pub(crate) async fn run_echo<R: Runtime>(
    listener: Listener,
    config: EchoServerConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let tcp = R::listener(listener.tcp)?;
    // Stops the UDP task when this function returns, whatever the reason.
    let udp_stop = Shutdown::new();
    let (udp_running, udp_done) = flume::bounded::<()>(1);
    if let Some(udp) = listener.udp {
        let udp = R::udp(udp)?;
        let stop = udp_stop.clone();
        R::spawn(async move {
            let _running = udp_running;
            udp_echo::<R>(&udp, &stop).await;
        });
    } else {
        drop(udp_running);
    }
    let tracker = Tracker::new();
    let admission = Admission::new(config.max_conns);
    let mut backoff = AcceptBackoff::default();
    while let Some(accepted) = unless(&shutdown, R::accept(&tcp)).await {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                if let Some(delay) = backoff.failure(&e) {
                    unless(&shutdown, R::sleep_until(StdInstant::now() + delay)).await;
                }
                continue;
            }
        };
        backoff.success();
        let Some(permit) = admission.try_admit() else {
            let _ = stream.shutdown(How::Both);
            continue;
        };
        let stream = Arc::new(stream);
        let tracked = tracker.insert(Arc::clone(&stream));
        let conn_config = config.conn;
        R::spawn(async move {
            if let Err(e) = echo_conn::<R>(&stream, conn_config).await {
                log::debug!("echo connection ended: {e}");
            }
            // Free the slot before the client can see the close.
            drop(permit);
            drop(tracked);
            let _ = stream.shutdown(How::Both);
        });
        if config.once {
            unless(&shutdown, tracker.wait_empty()).await;
            break;
        }
    }
    drop(tcp);
    tracker.drain(R::sleep_until).await;
    udp_stop.trigger();
    let _ = udp_done.recv_async().await;
    Ok(())
}

/// Bytes of an echo connection's first read, before the core allocates its buffer.
const FIRST_READ: usize = 512;

/// One echo client: write back everything pending, then read more.
async fn echo_conn<R: Runtime>(stream: &R::Stream, config: EchoConfig) -> io::Result<()> {
    let mut conn = EchoConn::new(config);
    loop {
        while let Some(pending) = conn.poll_transmit() {
            let n = R::write_vectored(stream, &[IoSlice::new(pending)]).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            conn.handle_written(n).map_err(core_bug)?;
        }
        if conn.poll_close() {
            return Ok(());
        }
        if conn.buffer_capacity() == 0 {
            // Until a client sends, wait with a small buffer in the task itself: the
            // core allocates its buffer only for bytes that arrived, so thousands of
            // idle connections stay cheap (readiness alone can be spurious).
            let mut first = [0u8; FIRST_READ];
            let first = &mut first[..FIRST_READ.min(config.max_pending)];
            match R::read(stream, first).await? {
                0 => conn.handle_peer_closed(),
                // An empty connection takes up to `max_pending` bytes: all of these.
                n => {
                    let taken = conn.handle_data(&first[..n]).map_err(core_bug)?;
                    debug_assert_eq!(taken, n);
                }
            }
            continue;
        }
        let n = R::read(stream, conn.read_buf()).await?;
        if n == 0 {
            conn.handle_peer_closed();
        } else {
            conn.handle_read(n).map_err(core_bug)?;
        }
    }
}

async fn udp_echo<R: Runtime>(udp: &R::Udp, stop: &Shutdown) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(received) = unless(stop, R::recv_from(udp, &mut buf)).await {
        match received {
            Ok((n, from)) => {
                if let Err(e) = R::send_to(udp, &buf[..n], from).await {
                    log::debug!("udp echo to {from} failed: {e}");
                }
            }
            Err(e) => log::debug!("udp receive failed: {e}"),
        }
    }
}

/// The chat server (see the runtime modules' `run_chat`): this task owns the core.
pub(crate) async fn run_chat<R: Runtime>(
    listener: Listener,
    config: ChatConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let tcp = R::listener(listener.tcp)?;
    let (events, inbox) = flume::bounded(EVENT_QUEUE);
    let (acceptor_running, acceptor_done) = flume::bounded::<()>(1);
    {
        let events = events.clone();
        R::spawn(async move {
            let _running = acceptor_running;
            accept_chat::<R>(&tcp, &events, &shutdown).await;
        });
    }
    let mut hub = Hub::new(config);
    let mut spawn = |conn: NewConn<R::Stream>| {
        R::spawn(chat_reader::<R>(
            conn.id,
            Arc::clone(&conn.sock),
            events.clone(),
        ));
        R::spawn(chat_writer::<R>(conn, events.clone()));
    };
    while !hub.finished() {
        let event = match hub.deadline() {
            Some(deadline) => {
                race(async { Some(inbox.recv_async().await) }, async {
                    R::sleep_until(deadline).await;
                    None
                })
                .await
            }
            None => Some(inbox.recv_async().await),
        };
        match event {
            Some(Ok(event)) => {
                hub.handle(event, &mut spawn);
                // Everything already waiting, then one flush: one write per recipient.
                let mut handled = 1;
                for event in inbox.try_iter().take(BATCH - 1) {
                    hub.handle(event, &mut spawn);
                    handled += 1;
                }
                hub.flush();
                if handled == BATCH {
                    // More may be queued, and `recv_async` does not yield while events
                    // are: let the readers and writers run even on one thread.
                    R::yield_now().await;
                }
            }
            Some(Err(_)) => break, // cannot happen: `spawn` holds a sender
            None => hub.on_deadline(),
        }
    }
    let _ = acceptor_done.recv_async().await;
    Ok(())
}

async fn accept_chat<R: Runtime>(
    tcp: &R::Listener,
    events: &Sender<Event<R::Stream>>,
    shutdown: &Shutdown,
) {
    let mut backoff = AcceptBackoff::default();
    while let Some(accepted) = unless(shutdown, R::accept(tcp)).await {
        match accepted {
            Ok(stream) => {
                backoff.success();
                if events.send_async(Event::Accepted(stream)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if let Some(delay) = backoff.failure(&e) {
                    unless(shutdown, R::sleep_until(StdInstant::now() + delay)).await;
                }
            }
        }
    }
    let _ = events.send_async(Event::Shutdown).await;
}

async fn chat_reader<R: Runtime>(
    id: ConnId,
    sock: Arc<R::Stream>,
    events: Sender<Event<R::Stream>>,
) {
    let mut buf = vec![0u8; FIRST_READ_BUF];
    loop {
        let event = match R::read(&sock, &mut buf).await {
            Ok(0) => Event::Eof(id),
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                grow_read_buf(&mut buf, n);
                Event::Data(id, data)
            }
            Err(_) => Event::ReadError(id),
        };
        let last = !matches!(event, Event::Data(..));
        if events.send_async(event).await.is_err() || last {
            return;
        }
    }
}

async fn chat_writer<R: Runtime>(conn: NewConn<R::Stream>, events: Sender<Event<R::Stream>>) {
    let NewConn {
        id,
        sock,
        queue,
        flushed,
        outstanding,
    } = conn;
    let mut batch = WriteBatch::new();
    let failed = loop {
        if batch.is_empty() {
            match queue.recv_async().await {
                Ok(bytes) => batch.push(bytes),
                Err(_) => break false, // closed by the core: everything was written
            }
        }
        batch.fill(&queue);
        if batch.is_empty() {
            continue;
        }
        let written = {
            let mut slices = [IoSlice::new(&[]); MAX_IOSLICES];
            let k = batch.slices(&mut slices);
            R::write_vectored(&sock, &slices[..k]).await
        };
        match written {
            Ok(0) | Err(_) => break true,
            Ok(n) => {
                batch.advance(n);
                outstanding.written(n);
                if flushed.send((id, n)).is_err() {
                    break false;
                }
            }
        }
    };
    let _ = sock.shutdown(How::Both);
    let _ = events.send_async(Event::WriterDone(id, failed)).await;
}
