//! What every socket transport shares: binding ([`Listener`]), the stop signal
//! ([`Shutdown`]), errors ([`ServeError`]) and the accept back-off policy.
//!
//! ```no_run
//! use echochat::net::{Listener, Shutdown};
//! let listener = Listener::bind("127.0.0.1:0", false)?;
//! println!("listening on {}", listener.local_addr()?);
//! let shutdown = Shutdown::new();
//! // hand `listener` and a clone of `shutdown` to a transport's `run_echo`/`run_chat`,
//! // call `shutdown.trigger()` (e.g. on Ctrl-C) to stop it.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, IoSlice};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use event_listener::{Event, Listener as _};
use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog of every listener: the OS default of 128 overflows when
/// thousands of clients connect at once.
pub const LISTEN_BACKLOG: i32 = 1024;

/// A transport failed to start or to keep serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    /// The message carries the cause, so it is not also given as `source()` (error
    /// reporters that walk the chain would print it twice).
    #[error("cannot bind {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        reason: std::io::Error,
    },
    /// The runtime asked for is not compiled into this build.
    #[error("the {runtime} runtime is not compiled in (enable the `{runtime}` feature)")]
    RuntimeUnavailable {
        /// Its name.
        runtime: String,
    },
    /// Any other I/O failure of the server itself (never a single client's).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A TLS server configuration for a [`Listener`]: with the `tls` feature, rustls's
/// `Arc<ServerConfig>` (e.g. from [`crate::tls::server_config_from_pem`] or
/// [`crate::tls::self_signed`]); without it, a type that cannot be made.
#[cfg(feature = "tls")]
pub type TlsConfig = Arc<crate::tls::rustls::ServerConfig>;

/// A TLS server configuration for a [`Listener`]: without the `tls` feature, a type
/// that cannot be made (so no listener serves TLS).
#[cfg(not(feature = "tls"))]
#[derive(Debug, Clone)]
pub struct TlsConfig {
    _cannot_be_made: (),
}

/// Bound TCP listener (and UDP socket with `--udp`), ready for any transport.
///
/// A server may listen twice: [`with_second`](Self::with_second) adds another
/// listener served by the same server (e.g. TLS beside plaintext, each marked with
/// [`with_tls`](Self::with_tls) or not). Every transport accepts on all of them.
#[derive(Debug)]
pub struct Listener {
    /// The TCP listener.
    pub tcp: std::net::TcpListener,
    /// The UDP socket on the same port, if asked for.
    pub udp: Option<std::net::UdpSocket>,
    /// Serve TLS on `tcp` with this configuration (`None`: plaintext).
    pub tls: Option<TlsConfig>,
    /// Another listener served by the same server (its own `udp` is ignored).
    pub second: Option<Box<Listener>>,
    /// The chat server joins this cluster ([`with_cluster`](Self::with_cluster)).
    #[cfg(feature = "cluster")]
    cluster: Option<crate::bus::ClusterLink>,
}

impl Listener {
    /// Binds `addr` (`HOST:PORT`, IPv4 or IPv6; port 0 picks a free port) with
    /// `SO_REUSEADDR` and a listen backlog of [`LISTEN_BACKLOG`]. With `udp`, a UDP
    /// socket is bound to the same IP and to the port TCP got.
    ///
    /// The error names the address and the reason, e.g.
    /// `cannot bind 127.0.0.1:12345: Address already in use (os error 98)`.
    pub fn bind(addr: &str, udp: bool) -> Result<Listener, ServeError> {
        let fail = |reason| ServeError::Bind {
            addr: addr.to_string(),
            reason,
        };
        let mut last = None;
        for candidate in addr.to_socket_addrs().map_err(fail)? {
            match bind_one(candidate, udp) {
                Ok(listener) => return Ok(listener),
                Err(e) => last = Some(e),
            }
        }
        Err(fail(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            )
        })))
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// This listener, serving TLS with `config`.
    pub fn with_tls(mut self, config: TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// This listener and `second` (after any set before), served by the same server.
    pub fn with_second(mut self, second: Listener) -> Self {
        self.second = Some(Box::new(match self.second.take() {
            Some(first) => first.with_second(second),
            None => second,
        }));
        self
    }

    /// This listener, served by a chat server that is one node of the cluster `link`
    /// connects to (`docs/cluster.md`). Ignored by the echo service.
    #[cfg(feature = "cluster")]
    pub fn with_cluster(mut self, link: crate::bus::ClusterLink) -> Self {
        self.cluster = Some(link);
        self
    }

    /// The cluster link set with [`with_cluster`](Self::with_cluster), taken out.
    #[cfg(feature = "cluster")]
    pub(crate) fn take_cluster(&mut self) -> Option<crate::bus::ClusterLink> {
        self.cluster.take()
    }

    /// Caps the kernel send buffer (`SO_SNDBUF`, which accepted sockets inherit) of
    /// every TCP listener at `bytes` (Linux doubles it). Chat sets it so that a
    /// client's reading pace shows up in the core's flush reports within a fraction
    /// of a second, instead of hiding behind megabytes of autotuned buffer
    /// (docs/PROTOCOL.md, "Flow control"). Best effort: an error leaves the default.
    pub(crate) fn cap_send_buffers(&self, bytes: usize) {
        let mut next = Some(self);
        while let Some(l) = next {
            if let Err(e) = socket2::SockRef::from(&l.tcp).set_send_buffer_size(bytes) {
                log::warn!(
                    "cannot cap the send buffer of {:?}: {e}",
                    l.tcp.local_addr()
                );
            }
            next = l.second.as_deref();
        }
    }

    /// Every TCP listener with its TLS configuration, this one first.
    pub(crate) fn into_parts(self) -> (Option<std::net::UdpSocket>, Vec<TcpPart>) {
        let mut parts = vec![(self.tcp, self.tls)];
        let mut next = self.second;
        while let Some(l) = next {
            parts.push((l.tcp, l.tls));
            next = l.second;
        }
        (self.udp, parts)
    }
}

/// One TCP listener and its TLS configuration (`None`: plaintext).
pub(crate) type TcpPart = (std::net::TcpListener, Option<TlsConfig>);

fn bind_one(addr: SocketAddr, udp: bool) -> io::Result<Listener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // On Windows SO_REUSEADDR lets another process steal the port: leave it off there.
    #[cfg(not(windows))]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    let tcp: TcpListener = socket.into();
    let udp = if udp {
        let mut udp_addr = addr;
        udp_addr.set_port(tcp.local_addr()?.port());
        Some(UdpSocket::bind(udp_addr)?)
    } else {
        None
    };
    Ok(Listener {
        tcp,
        udp,
        tls: None,
        second: None,
        #[cfg(feature = "cluster")]
        cluster: None,
    })
}

type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Inner {
    triggered: AtomicBool,
    event: Event,
    hooks: Mutex<Hooks>,
}

/// Hooks run by `trigger` (used by the threads transport to wake blocking calls).
#[derive(Default)]
#[cfg_attr(not(feature = "threads"), allow(dead_code))]
struct Hooks {
    next: u64,
    list: Vec<(u64, Hook)>,
}

/// A cloneable "stop now" signal for servers, usable from threads and async code.
///
/// Every server holding a clone stops accepting, tells its clients, flushes for at
/// most its shutdown grace (`ChatConfig::close_grace`, `EchoServerConfig::shutdown_grace`;
/// 2 s by default), and returns.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Asks every server holding a clone to stop. Idempotent; never blocks for long.
    pub fn trigger(&self) {
        if self.inner.triggered.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.event.notify(usize::MAX);
        let hooks = std::mem::take(&mut self.lock_hooks().list);
        for (_, hook) in hooks {
            hook();
        }
    }

    /// Whether `trigger` was called.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::Acquire)
    }

    /// Resolves once `trigger` is called (at once if it already was). Works on any
    /// async runtime.
    pub async fn wait(&self) {
        loop {
            if self.is_triggered() {
                return;
            }
            let listener = self.inner.event.listen();
            if self.is_triggered() {
                return;
            }
            listener.await;
        }
    }

    /// Blocks until `trigger` is called or `timeout` passes; returns whether it was
    /// triggered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if self.is_triggered() {
            return true;
        }
        let listener = self.inner.event.listen();
        if !self.is_triggered() {
            // Only `trigger` notifies this event: no spurious wake-ups to loop over.
            listener.wait_timeout(timeout);
        }
        self.is_triggered()
    }

    /// Runs `hook` when the signal is triggered (at once if it already was), unless
    /// the returned guard was dropped before. Used to wake blocking calls.
    #[cfg(feature = "threads")]
    pub(crate) fn on_trigger(&self, hook: impl FnOnce() + Send + 'static) -> HookGuard {
        let mut hooks = self.lock_hooks();
        if self.is_triggered() {
            drop(hooks);
            hook();
            return HookGuard { inner: None, id: 0 };
        }
        let id = hooks.next;
        hooks.next += 1;
        hooks.list.push((id, Box::new(hook)));
        HookGuard {
            inner: Some(Arc::clone(&self.inner)),
            id,
        }
    }

    fn lock_hooks(&self) -> std::sync::MutexGuard<'_, Hooks> {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Unregisters a [`Shutdown::on_trigger`] hook when dropped.
#[cfg(feature = "threads")]
pub(crate) struct HookGuard {
    inner: Option<Arc<Inner>>,
    id: u64,
}

#[cfg(feature = "threads")]
impl Drop for HookGuard {
    fn drop(&mut self) {
        if let Some(inner) = &self.inner {
            let mut hooks = inner.hooks.lock().unwrap_or_else(PoisonError::into_inner);
            hooks.list.retain(|(id, _)| *id != self.id);
        }
    }
}

impl crate::driver::Sock for std::net::TcpStream {
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        std::net::TcpStream::shutdown(self, how)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        std::net::TcpStream::peer_addr(self).ok()
    }

    /// `sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL)` on the blocking socket (Linux only:
    /// `O_NONBLOCK` would be shared with the blocked reader; elsewhere: `WouldBlock`).
    fn try_write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            /// `MSG_DONTWAIT | MSG_NOSIGNAL` on Linux (every architecture).
            const FLAGS: i32 = 0x40 | 0x4000;
            socket2::SockRef::from(self).send_vectored_with_flags(bufs, FLAGS)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = bufs;
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

/// The accept-loop policy shared by every transport: transient errors
/// (`ECONNABORTED`, `EINTR`, a reset before accept) are retried at once; anything
/// else (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, …) is logged at most once a
/// second and backed off 10 ms, doubling up to 1 s, until an accept succeeds.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    delay: Option<Duration>,
    last_log: Option<std::time::Instant>,
    suppressed: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// An accept succeeded: the next failure starts from the shortest delay again.
    pub(crate) fn success(&mut self) {
        self.delay = None;
    }

    /// An accept failed at `now` (the transport's clock reading): how long to wait
    /// before the next one (`None`: at once).
    pub(crate) fn failure(
        &mut self,
        error: &io::Error,
        now: std::time::Instant,
    ) -> Option<Duration> {
        use io::ErrorKind::*;
        if matches!(
            error.kind(),
            ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
        ) {
            return None;
        }
        let delay = self.delay.map_or(Self::FIRST, |d| (d * 2).min(Self::MAX));
        self.delay = Some(delay);
        let quiet = match self.last_log {
            Some(t) => now.duration_since(t) < Duration::from_secs(1),
            None => false,
        };
        if !quiet {
            log::warn!(
                "accept failed: {error}; backing off {delay:?} ({} similar errors not logged)",
                self.suppressed
            );
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs an IPv6 loopback"]
    fn binds_ipv6_loopback() {
        let l = Listener::bind("[::1]:0", true)
            .unwrap_or_else(|e| panic!("this test needs an IPv6 loopback (::1): {e}"));
        let addr = l.local_addr().unwrap();
        assert!(addr.is_ipv6());
        assert_eq!(l.udp.as_ref().unwrap().local_addr().unwrap(), addr);
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, peer) = l.tcp.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        drop(accepted);
    }

    #[test]
    fn bind_error_names_the_address() {
        let first = Listener::bind("127.0.0.1:0", false).unwrap();
        let addr = first.local_addr().unwrap().to_string();
        let err = Listener::bind(&addr, false).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot bind {addr}: ")), "{err}");
    }

    #[test]
    fn udp_gets_the_tcp_port() {
        let l = Listener::bind("127.0.0.1:0", true).unwrap();
        let udp = l.udp.as_ref().unwrap().local_addr().unwrap();
        assert_eq!(udp, l.local_addr().unwrap());
    }

    #[test]
    #[cfg(feature = "threads")]
    fn shutdown_wakes_waiters_and_runs_hooks() {
        let s = Shutdown::new();
        assert!(!s.wait_timeout(Duration::from_millis(1)));
        let (tx, rx) = std::sync::mpsc::channel();
        let _guard = s.on_trigger(move || tx.send(()).unwrap());
        let dropped = s.on_trigger(|| panic!("unregistered hook ran"));
        drop(dropped);
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || s.wait_timeout(Duration::from_secs(30)))
        };
        s.trigger();
        s.trigger();
        assert!(waiter.join().unwrap());
        rx.recv().unwrap();
        assert!(s.is_triggered());
    }

    #[test]
    fn backoff_doubles_to_one_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let t = std::time::Instant::now();
        let emfile = io::Error::other("too many open files");
        assert_eq!(
            b.failure(&io::Error::from(io::ErrorKind::ConnectionAborted), t),
            None
        );
        let delays: Vec<_> = (0..9)
            .map(|_| b.failure(&emfile, t).unwrap().as_millis())
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.success();
        assert_eq!(b.failure(&emfile, t), Some(Duration::from_millis(10)));
    }
}
