//! The smol transport: [`SmolRuntime`], a task per connection.
//!
//! [`run_echo`] and [`run_chat`] can be awaited from any executor (e.g.
//! `smol::block_on`); they spawn their tasks with `smol::spawn`, which runs them on
//! smol's global executor threads (`SMOL_THREADS`, default 1). To spawn on an
//! executor you own and run yourself, pass `SmolRuntime::with_executor(ex)` to
//! [`serve_echo`](crate::runtime::serve_echo) / [`serve_chat`](crate::runtime::serve_chat).
//! The loops are the shared async driver (`echochat::runtime`); this file only maps
//! sockets, spawning, timers and the clock onto smol / async-io.
//!
//! ```no_run
//! use echochat::{echo::EchoServerConfig, net::{Listener, Shutdown}};
//! let listener = Listener::bind("127.0.0.1:0", false)?;
//! println!("listening on {}", listener.local_addr()?);
//! let shutdown = Shutdown::new();
//! smol::block_on(echochat::smol::run_echo(listener, EchoServerConfig::default(), shutdown))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use smol::{Async, Executor};

use crate::chat::ChatConfig;
use crate::echo::EchoServerConfig;
use crate::net::{Listener, ServeError, Shutdown};
use crate::runtime::{serve_chat, serve_echo, Runtime, Sock};

/// Serves the echo service on `listener` until `shutdown` is triggered (or, with
/// `config.once`, until the first client is served), on smol's global executor.
pub async fn run_echo(
    listener: Listener,
    config: EchoServerConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    start_global_executor().await;
    serve_echo(SmolRuntime::default(), listener, config, shutdown).await
}

/// Serves the chat service on `listener` until `shutdown` is triggered, on smol's
/// global executor: the calling task owns the chat core.
pub async fn run_chat(
    listener: Listener,
    config: ChatConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    start_global_executor().await;
    serve_chat(SmolRuntime::default(), listener, config, shutdown).await
}

/// Starts smol's global executor before serving: its first task (async-process's
/// SIGCHLD reaper) opens a pipe, and panics in smol's thread if that first happens
/// when clients have used up every file descriptor. Runs once; later calls are free.
pub(crate) async fn start_global_executor() {
    smol::spawn(async {}).await;
}

/// smol as a [`Runtime`]: spawns with `smol::spawn` (the global executor), or on
/// the [`Executor`] it holds (which you must run, e.g. `ex.run(…)` on your threads).
#[derive(Debug, Clone, Default)]
pub struct SmolRuntime {
    executor: Option<Arc<Executor<'static>>>,
}

impl SmolRuntime {
    /// Spawns every task on `executor`.
    pub fn with_executor(executor: Arc<Executor<'static>>) -> Self {
        SmolRuntime {
            executor: Some(executor),
        }
    }
}

impl Sock for Async<TcpStream> {
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.get_ref().shutdown(how)
    }

    fn try_write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // The socket is non-blocking (async-io set it so).
        self.get_ref().write_vectored(bufs)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.get_ref().peer_addr().ok()
    }
}

impl Runtime for SmolRuntime {
    type Listener = Async<TcpListener>;
    type Stream = Async<TcpStream>;
    type Udp = Async<UdpSocket>;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn listener(&self, tcp: TcpListener) -> io::Result<Self::Listener> {
        Async::new(tcp)
    }

    fn udp(&self, udp: UdpSocket) -> io::Result<Self::Udp> {
        Async::new(udp)
    }

    async fn accept(&self, listener: &Self::Listener) -> io::Result<Self::Stream> {
        let (stream, _) = listener.accept().await?;
        let _ = stream.get_ref().set_nodelay(true);
        Ok(stream)
    }

    async fn read(&self, stream: &Self::Stream, buf: &mut [u8]) -> io::Result<usize> {
        stream.read_with(|mut io| io.read(buf)).await
    }

    async fn write_vectored(
        &self,
        stream: &Self::Stream,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        stream.write_with(|mut io| io.write_vectored(bufs)).await
    }

    async fn recv_from(&self, udp: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        udp.recv_from(buf).await
    }

    async fn send_to(&self, udp: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        udp.send_to(buf, to).await
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match &self.executor {
            Some(executor) => executor.spawn(task).detach(),
            None => smol::spawn(task).detach(),
        }
    }

    async fn sleep_until(&self, deadline: Instant) {
        smol::Timer::at(deadline).await;
    }

    async fn yield_now(&self) {
        smol::future::yield_now().await;
    }
}
