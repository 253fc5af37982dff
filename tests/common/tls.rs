//! TLS for the conformance harness: servers get a self-signed certificate
//! ([`listen`], or `--tls-self-signed` for the binary, whose printed fingerprint is
//! pinned), and [`TlsClient`] is a small blocking rustls client over a
//! `TcpStream` with the harness's timeouts.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use echochat::net::Listener;
use echochat::tls::rustls::pki_types::{CertificateDer, ServerName};
use echochat::tls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use echochat::tls::{fingerprint, self_signed, AcceptAnyServerCert};

use super::{Server, TlsMode, TIMEOUT};

/// A server's TLS listener and how to trust it.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Where TLS is served.
    pub addr: SocketAddr,
    /// The certificate (library mode: trusted as a root).
    cert: Option<CertificateDer<'static>>,
    /// Its SHA-256 fingerprint (binary mode: checked after the handshake).
    pub fingerprint: String,
}

impl ServerTls {
    /// A binary's listener, trusted by pinning its printed fingerprint.
    pub fn pinned(addr: SocketAddr, fingerprint: String) -> Self {
        ServerTls {
            addr,
            cert: None,
            fingerprint,
        }
    }
}

/// Marks `listener` (or a second one beside it) TLS with a new self-signed certificate.
pub fn listen(listener: Listener, mode: Option<TlsMode>) -> (Listener, Option<ServerTls>) {
    let Some(mode) = mode else {
        return (listener, None);
    };
    let made = self_signed().expect("self-signed certificate");
    let (listener, addr) = match mode {
        TlsMode::Only => {
            let addr = listener.local_addr().unwrap();
            (listener.with_tls(made.config), addr)
        }
        TlsMode::Beside => {
            let second = Listener::bind("127.0.0.1:0", false)
                .expect("bind 127.0.0.1:0")
                .with_tls(made.config);
            let addr = second.local_addr().unwrap();
            (listener.with_second(second), addr)
        }
    };
    let tls = ServerTls {
        addr,
        cert: Some(made.cert),
        fingerprint: made.fingerprint,
    };
    (listener, Some(tls))
}

/// Which TLS versions a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 1.3 and 1.2 (1.3 is negotiated).
    Default,
    /// 1.2 only.
    Tls12,
}

fn client_config(tls: &ServerTls, version: Version) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        Version::Default => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Version::Tls12 => &[&rustls::version::TLS12],
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap();
    let config = match &tls.cert {
        Some(cert) => {
            let mut roots = RootCertStore::empty();
            roots.add(cert.clone()).unwrap();
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        // Pinned: checked against the fingerprint after the handshake.
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new()))
            .with_no_client_auth(),
    };
    Arc::new(config)
}

/// A blocking TLS client with the harness's timeouts.
pub struct TlsClient {
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsClient {
    /// Connects to `server`'s TLS listener and completes the handshake.
    pub fn connect(server: &Server) -> Self {
        Self::try_connect(server, Version::Default).expect("TLS handshake")
    }

    /// Connects with these versions; `Err` if the handshake fails.
    pub fn try_connect(server: &Server, version: Version) -> io::Result<Self> {
        let tls = server.tls.as_ref().expect("a TLS server");
        let sock = TcpStream::connect(tls.addr)?;
        sock.set_read_timeout(Some(TIMEOUT))?;
        sock.set_write_timeout(Some(TIMEOUT))?;
        sock.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").unwrap();
        let conn =
            ClientConnection::new(client_config(tls, version), name).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        let der = &stream.conn.peer_certificates().expect("a certificate")[0];
        assert_eq!(
            fingerprint(der),
            tls.fingerprint,
            "the server's certificate"
        );
        Ok(TlsClient {
            stream: BufReader::new(stream),
        })
    }

    /// The negotiated version.
    pub fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.get_ref().conn.protocol_version()
    }

    /// Writes all of `data` (and flushes it to the socket).
    pub fn write_all(&mut self, data: &[u8]) {
        let s = self.stream.get_mut();
        s.write_all(data).expect("TLS write");
        s.flush().expect("TLS flush");
    }

    /// Reads some plaintext (0: the server's close_notify).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        self.stream.read_exact(&mut out).expect("TLS read");
        out
    }

    /// Sends our `close_notify` (TLS 1.3: a half-close; we can still read).
    pub fn close_notify(&mut self) {
        let s = self.stream.get_mut();
        s.conn.send_close_notify();
        while s.conn.wants_write() {
            s.conn.write_tls(&mut s.sock).expect("write close_notify");
        }
    }

    /// Reads until the connection ends: what arrived, and whether it ended with
    /// the server's `close_notify` (`false`: TCP close without it, or an error).
    pub fn read_to_close(&mut self) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return (out, true),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!(
                        "TLS connection not closed within {TIMEOUT:?} ({} bytes)",
                        out.len()
                    )
                }
                Err(_) => return (out, false),
            }
        }
    }

    /// The next line without its `\n` (`None`: closed). Panics on timeout.
    pub fn read_line(&mut self) -> Option<String> {
        super::read_line_from(&mut self.stream)
    }

    /// Sends `line` plus `\n`.
    pub fn send_line(&mut self, line: &str) {
        self.write_all(format!("{line}\n").as_bytes());
    }

    /// Reads lines until one matches `pred`; panics on close or timeout.
    pub fn expect_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let mut skipped = Vec::new();
        loop {
            match self.read_line() {
                Some(line) if pred(&line) => return line,
                Some(line) => skipped.push(line),
                None => panic!("connection closed before the expected line; got {skipped:?}"),
            }
        }
    }

    /// The nick from the chat welcome line.
    pub fn welcome(&mut self) -> String {
        let line = self.expect_line(|l| l.starts_with("* welcome "));
        line["* welcome ".len()..]
            .split(',')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// The underlying socket (e.g. to read its buffer size).
    pub fn sock(&self) -> &TcpStream {
        &self.stream.get_ref().sock
    }
}

/// A raw TCP connection to `server`'s TLS listener (for hostile input).
pub fn connect_raw(server: &Server) -> TcpStream {
    let tls = server.tls.as_ref().expect("a TLS server");
    let sock = TcpStream::connect(tls.addr).expect("connect");
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    sock.set_write_timeout(Some(TIMEOUT)).unwrap();
    sock
}
