//! The tokio transport: [`TokioRuntime`], a task per connection.
//!
//! [`run_echo`] and [`run_chat`] must be awaited inside a tokio runtime with I/O
//! and time enabled (`#[tokio::main]`, or a `Builder` with `enable_all()`); they
//! spawn their tasks with `tokio::spawn`. To spawn on another runtime (say, a
//! current-thread runtime you own), pass `TokioRuntime::with_handle(handle)` to
//! [`serve_echo`](crate::runtime::serve_echo) / [`serve_chat`](crate::runtime::serve_chat).
//! The loops are the shared async driver (`echochat::runtime`); this file only maps
//! sockets, spawning, timers and the clock onto tokio.
//!
//! ```no_run
//! use echochat::{echo::EchoServerConfig, net::{Listener, Shutdown}};
//! # async fn serve() -> Result<(), echochat::net::ServeError> {
//! let listener = Listener::bind("127.0.0.1:0", false)?;
//! println!("listening on {}", listener.local_addr()?);
//! let shutdown = Shutdown::new();
//! echochat::tokio::run_echo(listener, EchoServerConfig::default(), shutdown).await
//! # }
//! ```

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::time::Instant;

use tokio::runtime::Handle;

use crate::chat::ChatConfig;
use crate::echo::EchoServerConfig;
use crate::net::{Listener, ServeError, Shutdown};
use crate::runtime::{serve_chat, serve_echo, Runtime, Sock};

/// Serves the echo service on `listener` until `shutdown` is triggered (or, with
/// `config.once`, until the first client is served), on the current tokio runtime.
pub async fn run_echo(
    listener: Listener,
    config: EchoServerConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    serve_echo(TokioRuntime::default(), listener, config, shutdown).await
}

/// Serves the chat service on `listener` until `shutdown` is triggered, on the
/// current tokio runtime: the calling task owns the chat core.
pub async fn run_chat(
    listener: Listener,
    config: ChatConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    serve_chat(TokioRuntime::default(), listener, config, shutdown).await
}

/// tokio as a [`Runtime`]: spawns with `tokio::spawn`, or on the runtime of the
/// [`Handle`] it holds. Sockets register with the runtime the server is awaited in.
#[derive(Debug, Clone, Default)]
pub struct TokioRuntime {
    handle: Option<Handle>,
}

impl TokioRuntime {
    /// Spawns every task on `handle`'s runtime.
    pub fn with_handle(handle: Handle) -> Self {
        TokioRuntime {
            handle: Some(handle),
        }
    }
}

impl Sock for tokio::net::TcpStream {
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        socket2::SockRef::from(self).shutdown(how)
    }

    // Writing from the owner when the writer is idle costs some flood throughput
    // against parallel writer tasks, but bytes reach the kernel at once: without it,
    // lines waiting for a starved writer task counted against `--send-queue` and
    // fast readers were dropped under floods (measured: 30 of 50 bench clients).
    fn try_write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.try_write_vectored(bufs)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        tokio::net::TcpStream::peer_addr(self).ok()
    }
}

impl Runtime for TokioRuntime {
    type Listener = tokio::net::TcpListener;
    type Stream = tokio::net::TcpStream;
    type Udp = tokio::net::UdpSocket;

    fn now(&self) -> Instant {
        // tokio's clock: it follows `tokio::time::pause()` in tests.
        tokio::time::Instant::now().into_std()
    }

    fn listener(&self, tcp: std::net::TcpListener) -> io::Result<Self::Listener> {
        tcp.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(tcp)
    }

    fn udp(&self, udp: std::net::UdpSocket) -> io::Result<Self::Udp> {
        udp.set_nonblocking(true)?;
        tokio::net::UdpSocket::from_std(udp)
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<Self::Stream> {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn read(&self, stream: &Self::Stream, buf: &mut [u8]) -> io::Result<usize> {
        // `poll_read_ready` (the socket's reader-waker slot, as `AsyncRead` uses) is
        // cheaper than the `readable()` future (a waiter list entry per wait).
        std::future::poll_fn(|cx| loop {
            std::task::ready!(stream.poll_read_ready(cx))?;
            match stream.try_read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return std::task::Poll::Ready(result),
            }
        })
        .await
    }

    async fn write_vectored(
        &self,
        stream: &Self::Stream,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        // Try first (a socket is writable almost always); wait only on a full buffer.
        std::future::poll_fn(|cx| loop {
            // One buffer (the echo loop): plain write(2), cheaper than writev(2).
            let written = match bufs {
                [one] => stream.try_write(one),
                _ => stream.try_write_vectored(bufs),
            };
            match written {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::task::ready!(stream.poll_write_ready(cx))?;
                }
                result => return std::task::Poll::Ready(result),
            }
        })
        .await
    }

    async fn recv_from(&self, udp: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        udp.recv_from(buf).await
    }

    async fn send_to(&self, udp: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        udp.send_to(buf, to).await
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match &self.handle {
            Some(handle) => drop(handle.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    async fn sleep_until(&self, deadline: Instant) {
        tokio::time::sleep_until(deadline.into()).await;
    }

    async fn yield_now(&self) {
        tokio::task::yield_now().await;
    }
}
