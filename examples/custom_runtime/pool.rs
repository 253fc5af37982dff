//! A runtime of our own, plugged in through echochat's public seam only: tasks on a
//! `futures::executor::ThreadPool`, sockets and timers on async-io's reactor.
//!
//! This is what a user with an executor echochat does not ship would write. It is
//! also run by echochat's conformance suite (`tests/common/`) like the built-in
//! runtimes, so the seam is proven by the same tests.

use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Instant;

use async_io::{Async, Timer};
use echochat::runtime::{Runtime, Sock};
use futures_executor::ThreadPool;

/// A `ThreadPool` for tasks, async-io for I/O and timers.
#[derive(Clone)]
pub struct PoolRuntime {
    pool: ThreadPool,
}

impl PoolRuntime {
    /// A pool of `threads` worker threads.
    pub fn new(threads: usize) -> io::Result<Self> {
        let pool = ThreadPool::builder()
            .pool_size(threads)
            .name_prefix("pool-worker-")
            .create()?;
        Ok(PoolRuntime { pool })
    }
}

/// A connection: async-io's registered socket (a newtype, so that we may implement
/// echochat's `Sock` for it).
pub struct PoolStream(Async<TcpStream>);

impl Sock for PoolStream {
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.0.get_ref().shutdown(how)
    }

    fn try_write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // async-io made the socket non-blocking: this never waits.
        self.0.get_ref().write_vectored(bufs)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.0.get_ref().peer_addr().ok()
    }
}

impl Runtime for PoolRuntime {
    type Listener = Async<TcpListener>;
    type Stream = PoolStream;
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
        stream.get_ref().set_nodelay(true)?;
        Ok(PoolStream(stream))
    }

    async fn read(&self, stream: &Self::Stream, buf: &mut [u8]) -> io::Result<usize> {
        stream.0.read_with(|mut io| io.read(buf)).await
    }

    async fn write_vectored(
        &self,
        stream: &Self::Stream,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        stream.0.write_with(|mut io| io.write_vectored(bufs)).await
    }

    async fn recv_from(&self, udp: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        udp.recv_from(buf).await
    }

    async fn send_to(&self, udp: &Self::Udp, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        udp.send_to(buf, to).await
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.pool.spawn_ok(task);
    }

    async fn sleep_until(&self, deadline: Instant) {
        Timer::at(deadline).await;
    }

    async fn yield_now(&self) {
        // One trip through the pool's queue.
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                std::task::Poll::Ready(())
            } else {
                yielded = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await;
    }
}
