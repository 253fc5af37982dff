//! The public transport seam: [`Runtime`], and the async driver written once over
//! it ([`serve_echo`], [`serve_chat`]).
//!
//! A [`Runtime`] is a handful of `&self` operations (in the shape of quinn's
//! `Runtime`): read the clock, register sockets, accept, read, write, spawn, sleep,
//! yield. Each returns `impl Future + Send` (no boxing: the per-read and per-write
//! calls are statically dispatched). tokio ([`TokioRuntime`](crate::tokio::TokioRuntime))
//! and smol ([`SmolRuntime`](crate::smol::SmolRuntime)) implement it in a few lines
//! each; so can you, for any executor with a reactor (see the example below, and
//! `examples/custom_runtime/` for a complete one run by the conformance suite).
//!
//! The loops here only await: every decision is made by the driver layer's step
//! types and the sans-IO cores (see the crate's `transports/driver/`). The clock is
//! read through [`Runtime::now`] and nowhere else.
//!
//! # Writing a runtime
//!
//! ```
//! use std::future::Future;
//! use std::io::{self, IoSlice, Read, Write};
//! use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
//! use std::time::Instant;
//!
//! use echochat::runtime::{Runtime, Sock};
//! use smol::Async;
//!
//! /// smol's reactor, tasks on a thread of their own each (a toy executor).
//! #[derive(Clone)]
//! struct ThreadPerTask;
//!
//! /// Our stream type: the driver shares it between a reader and a writer.
//! struct Stream(Async<TcpStream>);
//!
//! impl Sock for Stream {
//!     fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
//!         self.0.get_ref().shutdown(how)
//!     }
//! }
//!
//! impl Runtime for ThreadPerTask {
//!     type Listener = Async<TcpListener>;
//!     type Stream = Stream;
//!     type Udp = Async<UdpSocket>;
//!
//!     fn now(&self) -> Instant {
//!         Instant::now()
//!     }
//!     fn listener(&self, tcp: TcpListener) -> io::Result<Self::Listener> {
//!         Async::new(tcp)
//!     }
//!     fn udp(&self, udp: UdpSocket) -> io::Result<Self::Udp> {
//!         Async::new(udp)
//!     }
//!     async fn accept(&self, l: &Self::Listener) -> io::Result<Self::Stream> {
//!         let (stream, _) = l.accept().await?;
//!         stream.get_ref().set_nodelay(true)?;
//!         Ok(Stream(stream))
//!     }
//!     async fn read(&self, s: &Self::Stream, buf: &mut [u8]) -> io::Result<usize> {
//!         s.0.read_with(|mut io| io.read(buf)).await
//!     }
//!     async fn write_vectored(&self, s: &Self::Stream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
//!         s.0.write_with(|mut io| io.write_vectored(bufs)).await
//!     }
//!     async fn recv_from(&self, u: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
//!         u.recv_from(buf).await
//!     }
//!     async fn send_to(&self, u: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
//!         u.send_to(buf, to).await
//!     }
//!     fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
//!         std::thread::spawn(move || smol::block_on(task));
//!     }
//!     async fn sleep_until(&self, deadline: Instant) {
//!         smol::Timer::at(deadline).await;
//!     }
//!     async fn yield_now(&self) {
//!         smol::future::yield_now().await;
//!     }
//! }
//!
//! // Serve echo on it until the signal is triggered.
//! use echochat::{echo::EchoServerConfig, net::{Listener, Shutdown}};
//! let listener = Listener::bind("127.0.0.1:0", false)?;
//! let addr = listener.local_addr()?;
//! let shutdown = Shutdown::new();
//! let server = {
//!     let shutdown = shutdown.clone();
//!     std::thread::spawn(move || {
//!         smol::block_on(echochat::runtime::serve_echo(
//!             ThreadPerTask, listener, EchoServerConfig::default(), shutdown,
//!         ))
//!     })
//! };
//! let mut client = TcpStream::connect(addr)?;
//! client.write_all(b"ping")?;
//! let mut echo = [0u8; 4];
//! client.read_exact(&mut echo)?;
//! assert_eq!(&echo, b"ping");
//! drop(client);
//! shutdown.trigger();
//! server.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant as StdInstant;

pub use crate::driver::{Clock, Sock};
pub use crate::transports::kind::{RuntimeKind, UnknownRuntime};

use crate::chat::ChatConfig;
use crate::driver::conn::{ReadStep, WriteStep, MAX_IOSLICES};
use crate::driver::echo::{EchoHub, EchoIo, EchoStep};
use crate::driver::hub::{Event, Hub, NewConn, BATCH, EVENT_QUEUE};
use crate::echo::{EchoConfig, EchoServerConfig};
use crate::net::{AcceptBackoff, Listener, ServeError, Shutdown, TlsConfig};

/// An async runtime the echo and chat servers can run on.
///
/// Implement it for your executor and reactor, then call [`serve_echo`] or
/// [`serve_chat`] with it. Every method takes `&self`; the driver clones the
/// runtime into the tasks it spawns. The futures must be `Send`: tasks may move
/// between threads.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Listening socket.
    type Listener: Send + Sync + 'static;
    /// Accepted connection; shared by its reader and writer through an `Arc`.
    type Stream: Sock;
    /// UDP socket.
    type Udp: Send + Sync + 'static;

    /// The current time: the only clock the servers read.
    fn now(&self) -> StdInstant;
    /// Registers a bound std listener with the runtime (it may need
    /// `set_nonblocking(true)`).
    fn listener(&self, tcp: std::net::TcpListener) -> io::Result<Self::Listener>;
    /// Registers a bound std UDP socket with the runtime.
    fn udp(&self, udp: std::net::UdpSocket) -> io::Result<Self::Udp>;
    /// Accepts one connection. Set `TCP_NODELAY` on it (chat lines are small).
    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Reads into `buf` (0: end of stream). Called by one task per stream at a time.
    fn read(
        &self,
        stream: &Self::Stream,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send;
    /// One vectored write; returns how much was written. Called by one task per
    /// stream at a time (concurrently with `read` from another).
    fn write_vectored(
        &self,
        stream: &Self::Stream,
        bufs: &[IoSlice<'_>],
    ) -> impl Future<Output = io::Result<usize>> + Send;
    /// Receives one datagram.
    fn recv_from(
        &self,
        udp: &Self::Udp,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
    /// Sends one datagram.
    fn send_to(
        &self,
        udp: &Self::Udp,
        buf: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send;
    /// Runs `task` in the background (detached).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);
    /// Resolves at `deadline` (a reading of [`now`](Self::now)'s clock).
    fn sleep_until(&self, deadline: StdInstant) -> impl Future<Output = ()> + Send;
    /// Lets other tasks run.
    fn yield_now(&self) -> impl Future<Output = ()> + Send;
}

/// Polls both futures; the first to finish wins (`a` first when both are ready).
/// A tiny dependency-free `select`.
async fn race<T>(a: impl Future<Output = T>, b: impl Future<Output = T>) -> T {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(move |cx| {
        if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
            return std::task::Poll::Ready(v);
        }
        b.as_mut().poll(cx)
    })
    .await
}

/// Resolves to `Some(fut's output)`, or `None` once `shutdown` is triggered.
async fn unless<T>(shutdown: &Shutdown, fut: impl Future<Output = T>) -> Option<T> {
    race(async { Some(fut.await) }, async {
        shutdown.wait().await;
        None
    })
    .await
}

/// Sleeps until the core's `deadline`, or forever without one.
async fn sleep_until<R: Runtime>(rt: &R, clock: &Clock, deadline: Option<crate::Instant>) {
    match deadline {
        Some(deadline) => rt.sleep_until(clock.deadline(deadline)).await,
        None => std::future::pending().await,
    }
}

/// Accepts with the shared back-off policy until `shutdown` is triggered.
struct Acceptor<'a, R: Runtime> {
    rt: &'a R,
    tcp: &'a R::Listener,
    shutdown: &'a Shutdown,
    backoff: AcceptBackoff,
}

impl<'a, R: Runtime> Acceptor<'a, R> {
    fn new(rt: &'a R, tcp: &'a R::Listener, shutdown: &'a Shutdown) -> Self {
        Acceptor {
            rt,
            tcp,
            shutdown,
            backoff: AcceptBackoff::default(),
        }
    }

    /// The next accepted stream, or `None` once `shutdown` is triggered.
    async fn next(&mut self) -> Option<R::Stream> {
        loop {
            match unless(self.shutdown, self.rt.accept(self.tcp)).await? {
                Ok(stream) => {
                    self.backoff.success();
                    return Some(stream);
                }
                Err(e) => {
                    let now = self.rt.now();
                    if let Some(delay) = self.backoff.failure(&e, now) {
                        let until = now + delay;
                        unless(self.shutdown, self.rt.sleep_until(until)).await?;
                    }
                }
            }
        }
    }
}

/// Serves the echo service (RFC 862) on `listener` (and its
/// [`second`](Listener::second), TLS where [`tls`](Listener::tls) is set) with
/// runtime `rt`, until `shutdown` is triggered (or, with `config.once`, the first
/// client is served). Then every client gets what is pending within the shutdown
/// grace, and it returns.
pub async fn serve_echo<R: Runtime>(
    rt: R,
    listener: Listener,
    config: EchoServerConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let clock = Clock::starting_at(rt.now());
    let (udp, parts) = listener.into_parts();
    let mut tcps = Vec::with_capacity(parts.len());
    for (tcp, tls) in parts {
        tcps.push((rt.listener(tcp)?, tls));
    }
    // Stops the UDP task when this function returns, whatever the reason.
    let udp_stop = Shutdown::new();
    let (udp_running, udp_done) = flume::bounded::<()>(1);
    if let Some(udp) = udp {
        let udp = rt.udp(udp)?;
        let (stop, task_rt) = (udp_stop.clone(), rt.clone());
        rt.spawn(async move {
            let _running = udp_running;
            udp_echo(&task_rt, &udp, &stop).await;
        });
    } else {
        drop(udp_running);
    }
    let hub = EchoHub::new(config);
    // Every acceptor stops on `stop`: the shutdown signal, or the end of admission.
    let stop = Shutdown::new();
    {
        let (stop, shutdown) = (stop.clone(), shutdown.clone());
        rt.spawn(async move {
            race(shutdown.wait(), stop.wait()).await;
            stop.trigger();
        });
    }
    let (acceptors_running, acceptors_done) = flume::bounded::<()>(1);
    let mut tcps = tcps.into_iter();
    let (first, first_tls) = tcps.next().expect("a listener has a TCP socket");
    for (tcp, tls) in tcps {
        let (task_rt, hub, stop) = (rt.clone(), Arc::clone(&hub), stop.clone());
        let running = acceptors_running.clone();
        rt.spawn(async move {
            let _running = running;
            echo_accept(&task_rt, &tcp, tls, &hub, clock, config.conn, &stop).await;
        });
    }
    drop(acceptors_running);
    echo_accept(&rt, &first, first_tls, &hub, clock, config.conn, &stop).await;
    drop(first);
    let _ = acceptors_done.recv_async().await;
    loop {
        let change = hub.listen();
        let Some(deadline) = hub.step(clock.instant(rt.now()), shutdown.is_triggered()) else {
            break;
        };
        race(
            race(change, shutdown.wait()),
            sleep_until(&rt, &clock, deadline),
        )
        .await;
    }
    udp_stop.trigger();
    let _ = udp_done.recv_async().await;
    Ok(())
}

/// Accepts echo clients on `tcp` (over TLS with `tls`) while the hub admits them
/// and `stop` is not triggered; triggers `stop` when it ends (so every other
/// acceptor ends too).
async fn echo_accept<R: Runtime>(
    rt: &R,
    tcp: &R::Listener,
    tls: Option<TlsConfig>,
    hub: &Arc<EchoHub<R::Stream>>,
    clock: Clock,
    config: EchoConfig,
    stop: &Shutdown,
) {
    let mut acceptor = Acceptor::new(rt, tcp, stop);
    while hub.is_accepting() {
        let Some(stream) = acceptor.next().await else {
            break;
        };
        let stream = Arc::new(stream);
        let now = clock.instant(rt.now());
        if let Some(admitted) = hub.admit(now, &stream) {
            let (task_rt, tls) = (rt.clone(), tls.clone());
            rt.spawn(async move {
                let io = EchoIo::accepted(config, tls, now);
                if let Err(e) = echo_conn(&task_rt, &stream, io, clock).await {
                    log::debug!("echo connection ended: {e}");
                }
                // Free the slot before the client can see the close.
                drop(admitted);
                let _ = stream.shutdown(std::net::Shutdown::Both);
            });
        }
    }
    stop.trigger();
}

/// One echo client: the [`EchoIo`] steps, awaited.
async fn echo_conn<R: Runtime>(
    rt: &R,
    stream: &R::Stream,
    io: io::Result<EchoIo>,
    clock: Clock,
) -> io::Result<()> {
    let mut io = io?;
    loop {
        match io.next() {
            EchoStep::Write => {
                let result = rt
                    .write_vectored(stream, &[IoSlice::new(io.pending())])
                    .await;
                io.on_written(result)?;
            }
            EchoStep::Read => {
                let result = match io.read_deadline() {
                    None => rt.read(stream, io.read_buf()).await,
                    Some(deadline) => {
                        let timeout = async {
                            rt.sleep_until(clock.deadline(deadline)).await;
                            Err(io::ErrorKind::TimedOut.into())
                        };
                        race(rt.read(stream, io.read_buf()), timeout).await
                    }
                };
                io.on_read(result)?;
            }
            EchoStep::Close => return Ok(()),
        }
    }
}

async fn udp_echo<R: Runtime>(rt: &R, udp: &R::Udp, stop: &Shutdown) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(received) = unless(stop, rt.recv_from(udp, &mut buf)).await {
        match received {
            Ok((n, from)) => {
                if let Err(e) = rt.send_to(udp, &buf[..n], from).await {
                    log::debug!("udp echo to {from} failed: {e}");
                }
            }
            Err(e) => log::debug!("udp receive failed: {e}"),
        }
    }
}

/// Serves the chat service on `listener` (and its [`second`](Listener::second),
/// TLS where [`tls`](Listener::tls) is set) with runtime `rt` until `shutdown` is
/// triggered; then everyone gets `* server shutting down`, what is queued is
/// flushed within the close grace, and it returns. The calling task owns the core.
pub async fn serve_chat<R: Runtime>(
    rt: R,
    mut listener: Listener,
    config: ChatConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let clock = Clock::starting_at(rt.now());
    let (mut hub, bus_events) = Hub::for_listener(config, &mut listener);
    let (_udp, parts) = listener.into_parts();
    let mut tcps = Vec::with_capacity(parts.len());
    for (tcp, tls) in parts {
        tcps.push((rt.listener(tcp)?, tls));
    }
    let (events, inbox) = flume::bounded(EVENT_QUEUE);
    let (acceptor_running, acceptor_done) = flume::bounded::<()>(1);
    for (tcp, tls) in tcps {
        let (events, task_rt, shutdown) = (events.clone(), rt.clone(), shutdown.clone());
        let running = acceptor_running.clone();
        rt.spawn(async move {
            let _running = running;
            let mut acceptor = Acceptor::new(&task_rt, &tcp, &shutdown);
            while let Some(stream) = acceptor.next().await {
                if events
                    .send_async(Event::accepted(stream, tls.clone()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = events.send_async(Event::Shutdown).await;
        });
    }
    drop(acceptor_running);
    if let Some(bus_events) = bus_events {
        // The cluster bus's events join the others (see `Hub::for_listener`).
        let events = events.clone();
        rt.spawn(async move {
            while let Ok(event) = bus_events.recv_async().await {
                if events.send_async(Event::Bus(event)).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut spawn = |conn: NewConn<R::Stream>| {
        let NewConn {
            sock,
            reader,
            writer,
        } = conn;
        rt.spawn(chat_reader(
            rt.clone(),
            reader,
            Arc::clone(&sock),
            events.clone(),
        ));
        rt.spawn(chat_writer(rt.clone(), writer, sock, events.clone()));
        true // a task can always be spawned
    };
    while !hub.finished() {
        let event = race(async { Some(inbox.recv_async().await) }, async {
            sleep_until(&rt, &clock, hub.poll_timeout()).await;
            None
        })
        .await;
        match event {
            Some(Ok(first)) => {
                let now = clock.instant(rt.now());
                let stop = shutdown.is_triggered();
                if hub.handle_batch(now, stop, first, inbox.try_iter(), &mut spawn) == BATCH {
                    // More may be queued, and `recv_async` does not yield while events
                    // are: let the readers and writers run even on one thread.
                    rt.yield_now().await;
                }
            }
            Some(Err(_)) => break, // cannot happen: `spawn` holds a sender
            None => hub.handle_timeout(clock.instant(rt.now())),
        }
    }
    let _ = acceptor_done.recv_async().await;
    Ok(())
}

async fn chat_reader<R: Runtime>(
    rt: R,
    mut reader: crate::driver::conn::ConnReader,
    sock: Arc<R::Stream>,
    events: flume::Sender<Event<R::Stream>>,
) {
    loop {
        let result = rt.read(&sock, reader.buf()).await;
        let (event, last) = match reader.on_read(result) {
            ReadStep::Send(event) => (event, false),
            ReadStep::Last(event) => (event, true),
            ReadStep::Retry => continue,
        };
        if events.send_async(event).await.is_err() || last {
            return;
        }
        if reader.permit().recv_async().await.is_err() {
            return; // closed by the core
        }
    }
}

async fn chat_writer<R: Runtime>(
    rt: R,
    mut writer: crate::driver::conn::ConnWriter,
    sock: Arc<R::Stream>,
    events: flume::Sender<Event<R::Stream>>,
) {
    loop {
        match writer.next() {
            WriteStep::NeedBytes => match writer.queue().recv_async().await {
                Ok(bytes) => writer.push(bytes),
                Err(_) => writer.queue_closed(),
            },
            WriteStep::Write => {
                let result = {
                    let mut slices = [IoSlice::new(&[]); MAX_IOSLICES];
                    let k = writer.slices(&mut slices);
                    rt.write_vectored(&sock, &slices[..k]).await
                };
                if let Some(wake) = writer.written(result) {
                    let _ = events.send_async(wake).await;
                }
            }
            WriteStep::Done => break,
        }
    }
    // Tell the core first: the client must not see the close before the core does.
    let _ = events.send_async(writer.done_event()).await;
    let _ = sock.shutdown(std::net::Shutdown::Both);
}
