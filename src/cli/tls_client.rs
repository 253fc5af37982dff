//! The clients' connection: plain TCP, or TLS over it (`--tls`, `--ca`,
//! `--insecure`), split into a reading half and a writing half that two threads
//! use at once, as the plaintext clients do with `TcpStream::try_clone`.
//!
//! With TLS both halves share one `rustls::ClientConnection` behind a mutex,
//! which is never held while blocking on the socket. Ciphertext goes to the socket
//! under a second lock (`wire`), taken before the connection's, so records reach
//! the socket in the order they were encrypted. The reader needs the socket only
//! for rare protocol replies (e.g. a key update); it sends them if the writer is
//! not busy, else the writer sends them with its next write.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

use echochat::tls::rustls::ClientConnection;

use super::args::ClientTlsArgs;
use super::client::connect;
use super::CliError;

/// Reads from the server.
pub enum ClientReader {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS.
    Tls(TlsReader),
}

/// Writes to the server.
pub enum ClientWriter {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS.
    Tls(TlsWriter),
}

/// Connects to `addr`, with TLS if `tls` asks for it (the handshake is done
/// here, so a certificate problem is a connect error), and splits the stream.
pub fn open(addr: &str, tls: &ClientTlsArgs) -> Result<(ClientReader, ClientWriter), CliError> {
    let stream = connect(addr)?;
    let failed = |source: io::Error| CliError::Connect {
        addr: addr.into(),
        source,
    };
    let writer = stream.try_clone().map_err(failed)?;
    if !tls.enabled() {
        return Ok((ClientReader::Plain(stream), ClientWriter::Plain(writer)));
    }
    if tls.insecure {
        let _ = writeln!(
            io::stderr(),
            "echochat: warning: --insecure: the server's certificate is not checked"
        );
    }
    let config = echochat::tls::client_config(tls.ca.as_deref(), tls.insecure)?;
    let name = echochat::tls::server_name(addr)
        .map_err(|e| failed(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let mut conn = ClientConnection::new(config, name)
        .map_err(|e| failed(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    let mut sock = stream;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(failed)?;
    }
    // Whatever the handshake left to send (e.g. the client's Finished).
    while conn.wants_write() {
        conn.write_tls(&mut sock).map_err(failed)?;
    }
    log::info!(
        "TLS: {:?}, {:?}",
        conn.protocol_version(),
        conn.negotiated_cipher_suite().map(|s| s.suite())
    );
    let shared = Arc::new(Shared {
        conn: Mutex::new(conn),
        wire: Mutex::new(writer),
    });
    Ok((
        ClientReader::Tls(TlsReader {
            sock,
            shared: shared.clone(),
            pending: Vec::new(),
            at: 0,
        }),
        ClientWriter::Tls(TlsWriter { shared }),
    ))
}

struct Shared {
    conn: Mutex<ClientConnection>,
    /// The socket's writing side; held while ciphertext is moved and written.
    wire: Mutex<TcpStream>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Writes out everything rustls has queued, holding `wire` (already locked).
    fn flush_locked(&self, wire: &mut TcpStream) -> io::Result<()> {
        loop {
            let mut out = Vec::new();
            {
                let mut conn = lock(&self.conn);
                while conn.wants_write() {
                    conn.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                return Ok(());
            }
            wire.write_all(&out)?;
        }
    }
}

/// The reading half of a TLS connection.
pub struct TlsReader {
    sock: TcpStream,
    shared: Arc<Shared>,
    /// Ciphertext read from the socket and not yet taken by rustls.
    pending: Vec<u8>,
    at: usize,
}

impl Read for TlsReader {
    /// Plaintext from the server; `Ok(0)` once it sent `close_notify`. A TCP close
    /// without `close_notify` is an `UnexpectedEof` error (possible truncation).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut reply = false;
            {
                let mut conn = lock(&self.shared.conn);
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.at < self.pending.len() {
                    let mut rest = &self.pending[self.at..];
                    let before = rest.len();
                    match conn.read_tls(&mut rest) {
                        Ok(_) => {}
                        // Plaintext buffer full: read it out first (next loop).
                        Err(e) if e.kind() == io::ErrorKind::Other => {}
                        Err(e) => return Err(e),
                    }
                    self.at += before - rest.len();
                    let processed = conn.process_new_packets();
                    reply = conn.wants_write();
                    if let Err(e) = processed {
                        drop(conn);
                        // Send the alert, best effort.
                        if let Ok(mut wire) = self.shared.wire.try_lock() {
                            let _ = self.shared.flush_locked(&mut wire);
                        }
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    if self.at == self.pending.len() {
                        self.pending.clear();
                        self.at = 0;
                    }
                } else {
                    drop(conn);
                    self.pending.resize(16 * 1024, 0);
                    let n = loop {
                        match self.sock.read(&mut self.pending) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            r => break r,
                        }
                    };
                    let n = n.inspect_err(|_| self.pending.clear())?;
                    self.pending.truncate(n);
                    self.at = 0;
                    if n == 0 {
                        // EOF: rustls decides whether it was clean.
                        let mut conn = lock(&self.shared.conn);
                        conn.read_tls(&mut &[][..])?;
                        conn.process_new_packets()
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        return match conn.reader().read(buf) {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "connection closed",
                            )),
                            r => r,
                        };
                    }
                }
            }
            if reply {
                if let Ok(mut wire) = self.shared.wire.try_lock() {
                    self.shared.flush_locked(&mut wire)?;
                }
            }
        }
    }
}

impl ClientReader {
    /// Shuts the socket down both ways, so a writer blocked on a server that
    /// waits for us to read gives up.
    pub fn abort(&self) {
        let sock = match self {
            ClientReader::Plain(s) => s,
            ClientReader::Tls(t) => &t.sock,
        };
        let _ = sock.shutdown(Shutdown::Both);
    }
}

impl Read for ClientReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientReader::Plain(s) => s.read(buf),
            ClientReader::Tls(t) => t.read(buf),
        }
    }
}

/// The writing half of a TLS connection.
pub struct TlsWriter {
    shared: Arc<Shared>,
}

impl Write for TlsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut wire = lock(&self.shared.wire);
        let n = lock(&self.shared.conn).writer().write(buf)?;
        self.shared.flush_locked(&mut wire)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut wire = lock(&self.shared.wire);
        self.shared.flush_locked(&mut wire)
    }
}

impl Write for ClientWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientWriter::Plain(s) => s.write(buf),
            ClientWriter::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientWriter::Plain(s) => s.flush(),
            ClientWriter::Tls(t) => t.flush(),
        }
    }
}

impl ClientWriter {
    /// We are done sending: TLS sends `close_notify` (a half-close on TLS 1.3),
    /// then the socket's write side is shut down. Best effort.
    pub fn finish(&mut self) {
        match self {
            ClientWriter::Plain(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            ClientWriter::Tls(t) => {
                let mut wire = lock(&t.shared.wire);
                lock(&t.shared.conn).send_close_notify();
                let _ = t.shared.flush_locked(&mut wire);
                let _ = wire.shutdown(Shutdown::Write);
            }
        }
    }
}
