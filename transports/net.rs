//! What every socket transport shares: binding, the shutdown signal, errors.
//! (Stub: to be completed by the transports work.)

use std::net::SocketAddr;

/// A transport failed to start or to keep serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Any other I/O failure of the server itself (never a single client's).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Bound TCP listener (and UDP socket with `--udp`), ready for any transport.
#[derive(Debug)]
pub struct Listener {
    /// The TCP listener.
    pub tcp: std::net::TcpListener,
    /// The UDP socket on the same port, if asked for.
    pub udp: Option<std::net::UdpSocket>,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free port) with a large listen backlog.
    pub fn bind(addr: &str, udp: bool) -> Result<Listener, ServeError> {
        todo!("{addr} {udp}")
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// A cloneable "stop now" signal for servers, usable from threads and async code.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Shutdown {}
    }
    /// Asks every server holding a clone to stop.
    pub fn trigger(&self) {
        todo!()
    }
    /// Whether `trigger` was called.
    pub fn is_triggered(&self) -> bool {
        todo!()
    }
}
