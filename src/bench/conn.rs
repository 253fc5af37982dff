//! The load generator's connections: plain TCP, or TLS over it (`--tls`, `--ca`).
//!
//! An enum rather than a boxed trait object, so the plaintext path stays what it
//! was (a `TcpStream` and its owned halves, one `match` per poll). The TLS stream
//! is boxed (it is large) and split with `tokio::io::split`, whose halves share it
//! behind a lock held only while one of them polls.
//!
//! With TLS, a write may leave ciphertext in rustls when the socket is full:
//! callers `flush()` after a request they then wait on (a no-op on plain TCP).

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::BenchError;

/// `--tls` and `--ca` (of `bench echo` and `bench chat`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Connect with TLS. The load generator does NOT verify the server's
    /// certificate (like the clients' --insecure): it measures, it does not
    /// authenticate. Give --ca to check the certificate anyway.
    #[arg(long)]
    pub tls: bool,
    /// Connect with TLS and trust only the certificates in this PEM file (implies
    /// --tls); the name checked is the host part of --addr.
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
}

/// What every TLS connection of a run shares: the connector and the server name.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Tls {
    /// The TLS setup `args` ask for (None: plain TCP). `addr` is `--addr`, whose
    /// host part is the server name sent (SNI) and, with `--ca`, checked.
    pub fn from_args(args: &TlsArgs, addr: &str) -> Result<Option<Tls>, BenchError> {
        if !args.tls && args.ca.is_none() {
            return Ok(None);
        }
        let insecure = args.ca.is_none();
        let config = echochat::tls::client_config(args.ca.as_deref(), insecure)
            .map_err(|e| BenchError::BadArgument(format!("TLS: {e}")))?;
        let name = echochat::tls::server_name(addr)
            .map_err(|e| BenchError::BadArgument(format!("TLS server name of {addr}: {e}")))?;
        Ok(Some(Tls {
            connector: TlsConnector::from(config),
            name,
        }))
    }

    /// Runs the client handshake over `tcp`.
    async fn handshake(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), tcp).await
    }
}

/// Connects (with `TCP_NODELAY`) and, given `tls`, completes the TLS handshake,
/// all within the I/O timeout.
pub async fn connect(addr: std::net::SocketAddr, tls: Option<&Tls>) -> io::Result<Conn> {
    let tcp = super::connect(addr).await?;
    let Some(tls) = tls else {
        return Ok(Conn::Plain(tcp));
    };
    let stream = tokio::time::timeout(super::IO_TIMEOUT, tls.handshake(tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok(Conn::Tls(Box::new(stream)))
}

/// A connection to the server.
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The reading half of a [`Conn`].
pub enum ReadHalf {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// TLS over TCP.
    Tls(tokio::io::ReadHalf<Box<TlsStream<TcpStream>>>),
}

/// The writing half of a [`Conn`].
pub enum WriteHalf {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS over TCP.
    Tls(tokio::io::WriteHalf<Box<TlsStream<TcpStream>>>),
}

impl Conn {
    /// Splits into halves that two tasks can use at once.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Conn::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Conn::Tls(s) => {
                let (r, w) = tokio::io::split(s);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

/// `AsyncRead` for an enum whose variants all implement it (and are `Unpin`).
macro_rules! delegate_read {
    ($ty:ident) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_read(cx, buf),
                    $ty::Tls(s) => Pin::new(s).poll_read(cx, buf),
                }
            }
        }
    };
}

/// `AsyncWrite` for an enum whose variants all implement it (and are `Unpin`).
macro_rules! delegate_write {
    ($ty:ident) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_write(cx, buf),
                    $ty::Tls(s) => Pin::new(s).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                    $ty::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $ty::Plain(s) => s.is_write_vectored(),
                    $ty::Tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_flush(cx),
                    $ty::Tls(s) => Pin::new(s).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_shutdown(cx),
                    $ty::Tls(s) => Pin::new(s).poll_shutdown(cx),
                }
            }
        }
    };
}

delegate_read!(Conn);
delegate_write!(Conn);
delegate_read!(ReadHalf);
delegate_write!(WriteHalf);
