//! The smol transport: a task per connection on smol's global executor.
//!
//! [`run_echo`] and [`run_chat`] can be awaited from any executor (e.g.
//! `smol::block_on`); they spawn their tasks with `smol::spawn`, which runs them on
//! smol's global executor threads (`SMOL_THREADS`, default 1). The loops
//! themselves are shared with the tokio transport (see the crate's `aio` module);
//! this file only maps sockets, spawning and timers onto smol / async-io.
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
use std::time::Instant;

use smol::Async;

use crate::aio::{self, Runtime};
use crate::chat::ChatConfig;
use crate::echo::EchoServerConfig;
use crate::net::{Listener, ServeError, Shutdown, Sock};

/// Serves the echo service on `listener` until `shutdown` is triggered (or, with
/// `config.once`, until the first client is served).
pub async fn run_echo(
    listener: Listener,
    config: EchoServerConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    start_global_executor().await;
    aio::run_echo::<Smol>(listener, config, shutdown).await
}

/// Serves the chat service on `listener` until `shutdown` is triggered: the calling
/// task owns the chat core.
pub async fn run_chat(
    listener: Listener,
    config: ChatConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    start_global_executor().await;
    aio::run_chat::<Smol>(listener, config, shutdown).await
}

/// Starts smol's global executor before serving: its first task (async-process's
/// SIGCHLD reaper) opens a pipe, and panics in smol's thread if that first happens
/// when clients have used up every file descriptor. Runs once; later calls are free.
async fn start_global_executor() {
    smol::spawn(async {}).await;
}

/// smol as an [`aio::Runtime`].
struct Smol;

impl Sock for Async<TcpStream> {
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.get_ref().shutdown(how)
    }

    fn try_write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // The socket is non-blocking (async-io set it so).
        self.get_ref().write_vectored(bufs)
    }
}

impl Runtime for Smol {
    type Listener = Async<TcpListener>;
    type Stream = Async<TcpStream>;
    type Udp = Async<UdpSocket>;

    fn listener(tcp: TcpListener) -> io::Result<Self::Listener> {
        Async::new(tcp)
    }

    fn udp(udp: UdpSocket) -> io::Result<Self::Udp> {
        Async::new(udp)
    }

    async fn accept(listener: &Self::Listener) -> io::Result<Self::Stream> {
        let (stream, _) = listener.accept().await?;
        let _ = stream.get_ref().set_nodelay(true);
        Ok(stream)
    }

    async fn read(stream: &Self::Stream, buf: &mut [u8]) -> io::Result<usize> {
        stream.read_with(|mut io| io.read(buf)).await
    }

    async fn write_vectored(stream: &Self::Stream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        stream.write_with(|mut io| io.write_vectored(bufs)).await
    }

    async fn recv_from(udp: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        udp.recv_from(buf).await
    }

    async fn send_to(udp: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        udp.send_to(buf, to).await
    }

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(task).detach();
    }

    async fn yield_now() {
        smol::future::yield_now().await;
    }

    async fn sleep_until(deadline: Instant) {
        smol::Timer::at(deadline).await;
    }
}
