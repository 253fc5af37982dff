//! TLS: an in-memory pair harness ([`TlsPair`]: a rustls client against a
//! [`TlsServerLayer`]) and the `tls` fuzz body, which feeds arbitrary, truncated
//! and corrupted records through the layer into a [`ChatServer`].

use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, SupportedProtocolVersion,
};

use crate::chat::{ChatConfig, ChatServer, Output};
use crate::tls::{self, TlsError, TlsServerLayer, MAX_UNWRITTEN};
use crate::Instant;

use super::check::ChatChecker;

/// A server configuration with a self-signed certificate (made once per process),
/// and client configurations trusting it: TLS 1.3 and 1.2, 1.3 only, 1.2 only.
pub struct TlsConfigs {
    /// The server's.
    pub server: Arc<ServerConfig>,
    /// A client offering TLS 1.3 and 1.2 (1.3 is negotiated).
    pub client: Arc<ClientConfig>,
    /// A client offering TLS 1.2 only.
    pub client12: Arc<ClientConfig>,
}

/// The shared [`TlsConfigs`].
pub fn tls_configs() -> &'static TlsConfigs {
    static CONFIGS: OnceLock<TlsConfigs> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let made = tls::self_signed().expect("self-signed certificate");
        let mut roots = RootCertStore::empty();
        roots.add(made.cert.clone()).expect("trust it");
        let client = |versions: &[&'static SupportedProtocolVersion]| {
            Arc::new(
                ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
            )
        };
        TlsConfigs {
            server: made.config,
            client: client(&[&rustls::version::TLS13, &rustls::version::TLS12]),
            client12: client(&[&rustls::version::TLS12]),
        }
    })
}

/// A rustls client talking to a [`TlsServerLayer`] through two in-memory pipes,
/// with the driver's bookkeeping: what each side received, the server's error.
pub struct TlsPair {
    /// The client.
    pub client: ClientConnection,
    /// The layer under test.
    pub server: TlsServerLayer,
    /// The time given to the layer.
    pub now: Instant,
    /// Ciphertext from the client the server has not taken yet.
    pub to_server: Vec<u8>,
    /// Ciphertext polled from the server the client has not read yet.
    pub to_client: Vec<u8>,
    /// Plaintext the server's core has received.
    pub server_got: Vec<u8>,
    /// Plaintext the client has received.
    pub client_got: Vec<u8>,
    /// Plaintext reported flushed by `ciphertext_written`.
    pub flushed: usize,
    /// The first error of the layer.
    pub server_error: Option<TlsError>,
    /// The first error of the client.
    pub client_error: Option<rustls::Error>,
    /// Whether the server's plaintext is read after every delivery (false: the
    /// core is not reading; backpressure builds up).
    pub server_reads: bool,
    /// The client sent `close_notify` before its handshake finished: it gives up
    /// (reads nothing more; rustls is not meant to go on from there).
    pub client_gave_up: bool,
}

impl TlsPair {
    /// A pair whose client offers TLS 1.3 and 1.2 (`tls12`: 1.2 only), at time 0.
    pub fn new(tls12: bool) -> Self {
        let c = tls_configs();
        let config = if tls12 { &c.client12 } else { &c.client };
        let name = tls::server_name("localhost").expect("name");
        let mut client = ClientConnection::new(config.clone(), name).expect("client");
        // The harness holds whatever the test writes; the layer is what is bounded.
        client.set_buffer_limit(None);
        TlsPair {
            client,
            server: TlsServerLayer::new(c.server.clone(), Instant::ZERO).expect("server"),
            now: Instant::ZERO,
            to_server: Vec::new(),
            to_client: Vec::new(),
            server_got: Vec::new(),
            client_got: Vec::new(),
            flushed: 0,
            server_error: None,
            client_error: None,
            server_reads: true,
            client_gave_up: false,
        }
    }

    /// Moves the client's pending ciphertext into `to_server`.
    pub fn client_output(&mut self) {
        while self.client.wants_write() {
            if self.client.write_tls(&mut self.to_server).is_err() {
                break;
            }
        }
    }

    /// The client's application writes `data` (all of it; rustls buffers).
    pub fn client_write(&mut self, data: &[u8]) {
        assert!(
            self.try_client_write(data),
            "client failed: {:?}",
            self.client_error
        );
    }

    /// [`client_write`](Self::client_write), or `false` if the client failed
    /// (e.g. it received an alert) and sends nothing any more.
    pub fn try_client_write(&mut self, data: &[u8]) -> bool {
        let mut w = self.client.writer();
        let ok = std::io::Write::write_all(&mut w, data).is_ok();
        self.client_output();
        ok
    }

    /// Offers at most `max` bytes of `to_server` to the layer; returns how many it took.
    pub fn deliver_to_server(&mut self, max: usize) -> usize {
        if self.server_error.is_some() {
            return 0;
        }
        let n = max.min(self.to_server.len());
        let taken = match self.server.handle_ciphertext(&self.to_server[..n]) {
            Ok(taken) => taken,
            Err(e) => {
                self.server_error = Some(e);
                n
            }
        };
        assert!(taken <= n, "took {taken} of {n} bytes");
        self.to_server.drain(..taken);
        if self.server_reads {
            self.server_read(usize::MAX);
        }
        self.server_output();
        taken
    }

    /// The server's core reads up to `max` plaintext bytes.
    pub fn server_read(&mut self, max: usize) -> usize {
        self.server.read_plaintext(&mut self.server_got, max)
    }

    /// Moves the layer's ciphertext into `to_client`.
    pub fn server_output(&mut self) {
        while let Some(b) = self.server.poll_ciphertext() {
            assert!(!b.is_empty(), "empty ciphertext chunk");
            self.to_client.extend_from_slice(&b);
        }
    }

    /// The core writes `data` into the layer; returns how much it took.
    pub fn server_write(&mut self, data: &[u8]) -> usize {
        let n = self.server.write_plaintext(data);
        self.server_output();
        n
    }

    /// "Writes" at most `max` bytes of `to_client` to the socket (reporting them to
    /// the layer) and lets the client read them. Returns the plaintext the layer
    /// reported flushed.
    pub fn deliver_to_client(&mut self, max: usize) -> usize {
        let n = max.min(self.to_client.len());
        let plain = self.server.ciphertext_written(n);
        self.flushed += plain;
        let bytes: Vec<u8> = self.to_client.drain(..n).collect();
        let mut rest = &bytes[..];
        while !rest.is_empty() && self.client_error.is_none() && !self.client_gave_up {
            match self.client.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => {
                    // Plaintext buffer full: read it out and go on.
                    if self.client_read() == 0 {
                        break;
                    }
                    continue;
                }
            }
            if let Err(e) = self.client.process_new_packets() {
                self.client_error = Some(e);
            }
            self.client_read();
        }
        self.client_output();
        plain
    }

    /// The client sends `close_notify` (its half-close on TLS 1.3).
    pub fn client_close(&mut self) {
        self.client_gave_up |= self.client.is_handshaking();
        self.client.send_close_notify();
        self.client_output();
    }

    /// The client's application reads what it can; returns how many bytes.
    pub fn client_read(&mut self) -> usize {
        let mut buf = [0u8; 4096];
        let mut got = 0;
        loop {
            match std::io::Read::read(&mut self.client.reader(), &mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => {
                    self.client_got.extend_from_slice(&buf[..n]);
                    got += n;
                }
            }
        }
    }

    /// Delivers everything both ways until nothing moves.
    pub fn pump(&mut self) {
        loop {
            self.client_output();
            let a = self.deliver_to_server(usize::MAX);
            self.server_output();
            let b = self.to_client.len();
            self.deliver_to_client(usize::MAX);
            if a == 0 && b == 0 && !self.client.wants_write() {
                return;
            }
        }
    }

    /// Runs the handshake to its end; panics if it fails.
    pub fn handshake(&mut self) {
        self.pump();
        assert!(
            !self.server.is_handshaking() && !self.client.is_handshaking(),
            "handshake unfinished: server {:?}, client {:?}",
            self.server_error,
            self.client_error
        );
    }
}

/// A whole `tls` fuzz input.
#[derive(Debug, Clone, Arbitrary)]
pub struct TlsInput {
    /// Offer TLS 1.2 only.
    pub tls12: bool,
    /// Complete the handshake before the ops (so records are encrypted ones).
    pub handshake_first: bool,
    /// What happens, in order.
    pub ops: Vec<TlsOp>,
}

/// One step of a `tls` fuzz input.
#[derive(Debug, Clone, Arbitrary)]
pub enum TlsOp {
    /// The client sends these bytes (`~` replaced, see `fuzzing::token`).
    Send(Vec<u8>),
    /// At most `n * 7` bytes of the client's ciphertext reach the server.
    Deliver(u16),
    /// Raw bytes are appended to the client's ciphertext.
    Inject(Vec<u8>),
    /// One bit of the pending client ciphertext flips.
    Flip(u16, u8),
    /// The last `n` pending client ciphertext bytes are lost.
    Truncate(u16),
    /// At most `n * 7` bytes of the server's ciphertext are written to the client.
    Flush(u16),
    /// The core reads at most `n` plaintext bytes (the others wait: backpressure).
    Read(u16),
    /// The client sends `close_notify`.
    ClientClose,
    /// Time passes by `n * 100 ms`.
    Advance(u8),
    /// The chat server shuts down.
    Shutdown,
}

/// Fuzz entry point: decodes a [`TlsInput`] and runs it with [`run_tls`].
pub fn tls(data: &[u8]) {
    let mut u = Unstructured::new(data);
    if let Ok(input) = TlsInput::arbitrary(&mut u) {
        run_tls(&input);
    }
}

/// Runs `input`: a [`TlsPair`] whose server side feeds one connection of a real
/// [`ChatServer`], checked by [`ChatChecker`] after every step, plus:
///
/// * the layer never panics, never takes more than offered, and stays within its
///   bounds (plaintext buffered, ciphertext unwritten, handshake bytes);
/// * an error comes with its alert already available, and sticks;
/// * plaintext reported flushed never exceeds what was written into the layer,
///   and the chat core is told exactly that;
/// * without corruption the core receives exactly what the client sent (a
///   prefix of it, in order), and the client receives a prefix of what the core
///   transmitted.
pub fn run_tls(input: &TlsInput) {
    let config = ChatConfig::default()
        .with_max_line(256)
        .with_send_queue(8 * 1024);
    let mut chat = ChatServer::new(config);
    let mut check = ChatChecker::new(config.send_queue);
    let mut pair = TlsPair::new(input.tls12);
    pair.server_reads = false;
    if input.handshake_first {
        pair.server_reads = true;
        pair.handshake();
        pair.server_reads = false;
    }
    let id = chat.handle_open(pair.now);
    check.opened(id);
    // What the core transmitted and the layer has not taken yet.
    let mut unsent: Vec<Bytes> = Vec::new();
    let mut written_plain = 0usize;
    let mut fed = 0usize; // plaintext bytes given to the core
    let mut sent: Vec<u8> = Vec::new(); // what the client's application sent
    let mut corrupted = false;
    let mut transmitted: Vec<u8> = Vec::new();
    let mut dead = false; // the layer failed: the socket is gone
    let mut peer_closed = false; // reported to the core

    for op in &input.ops {
        match op {
            TlsOp::Send(data) => {
                let data: Vec<u8> = data
                    .iter()
                    .map(|&b| if b == b'~' { b'_' } else { b })
                    .collect();
                if pair.try_client_write(&data) {
                    sent.extend_from_slice(&data);
                }
            }
            TlsOp::Deliver(n) => {
                let before = pair.to_server.len();
                let offered = (usize::from(*n) * 7).min(before);
                let taken = pair.deliver_to_server(offered);
                assert!(taken <= offered);
            }
            TlsOp::Inject(bytes) => {
                pair.to_server.extend_from_slice(bytes);
                corrupted = true;
            }
            TlsOp::Flip(at, bit) => {
                if !pair.to_server.is_empty() {
                    let i = usize::from(*at) % pair.to_server.len();
                    pair.to_server[i] ^= 1 << (bit % 8);
                    corrupted = true;
                }
            }
            TlsOp::Truncate(n) => {
                let n = usize::from(*n).min(pair.to_server.len());
                if n > 0 {
                    let len = pair.to_server.len();
                    pair.to_server.truncate(len - n);
                    corrupted = true;
                }
            }
            TlsOp::Flush(n) => {
                let plain = pair.deliver_to_client(usize::from(*n) * 7);
                if plain > 0 && check.is_open(id) {
                    // The layer never reports more than the core transmitted.
                    assert!(check.flushed(id, plain), "flushed on a closed conn");
                    chat.handle_flushed(id, plain)
                        .expect("flushed within queued");
                }
            }
            TlsOp::Read(n) => {
                pair.server_read(usize::from(*n));
            }
            TlsOp::ClientClose => pair.client_close(),
            TlsOp::Advance(n) => {
                pair.now = pair.now + core::time::Duration::from_millis(u64::from(*n) * 100);
                chat.handle_timeout(pair.now);
                if !dead {
                    if let Err(e) = pair.server.handle_timeout(pair.now) {
                        assert!(matches!(e, TlsError::HandshakeTimeout(_)), "{e}");
                        pair.server_error.get_or_insert(e);
                    }
                    pair.server_output();
                }
            }
            TlsOp::Shutdown => {
                chat.shutdown(pair.now);
            }
        }

        // The driver: plaintext to the core, the core's output to the layer.
        if pair.server_got.len() > fed && check.is_open(id) {
            chat.handle_data(pair.now, id, &pair.server_got[fed..])
                .expect("data for an open connection");
        }
        fed = pair.server_got.len();
        if pair.server.peer_closed() && !peer_closed && pair.server.plaintext_pending() == 0 {
            peer_closed = true;
            if check.is_open(id) {
                chat.handle_peer_closed(pair.now, id).expect("open");
            }
        }
        while let Some(out) = chat.poll_output() {
            check.output(&out);
            match out {
                Output::Transmit { bytes, .. } => {
                    transmitted.extend_from_slice(&bytes);
                    unsent.push(bytes);
                }
                Output::Close { .. } => {
                    // Write what is queued (as far as the layer takes it), then close_notify.
                    write_unsent(&mut pair, &mut unsent, &mut written_plain);
                    pair.server.close();
                    pair.server_output();
                }
                Output::Abort { .. } | Output::Bus(_) => {}
            }
        }
        check.check_server(&chat);
        if !dead {
            write_unsent(&mut pair, &mut unsent, &mut written_plain);
        }
        if pair.server_error.is_some() && !dead {
            dead = true;
            // The error's alert must already be out; nothing more comes.
            assert!(
                pair.server.poll_ciphertext().is_none(),
                "output after the error"
            );
            assert_eq!(pair.server.write_capacity(), 0);
            assert!(
                pair.server.handle_ciphertext(b"x").is_err(),
                "error not sticky"
            );
            if check.is_open(id) {
                chat.handle_reset(pair.now, id).expect("reset");
                check.drain(&mut chat);
            }
        }

        // Bounds.
        assert!(
            pair.flushed <= written_plain,
            "flushed more plaintext than written"
        );
        assert!(
            pair.server.unwritten() <= MAX_UNWRITTEN + 16 * 1024,
            "unwritten ciphertext {}",
            pair.server.unwritten()
        );
        assert!(
            pair.server.plaintext_pending() <= 64 * 1024,
            "buffered plaintext {}",
            pair.server.plaintext_pending()
        );
        if !corrupted {
            // Without corruption the only errors are a late handshake and a client
            // that closed before finishing it.
            assert!(
                matches!(
                    pair.server_error,
                    None | Some(TlsError::HandshakeTimeout(_))
                        | Some(TlsError::Protocol(rustls::Error::AlertReceived(
                            rustls::AlertDescription::CloseNotify
                        )))
                ),
                "error without corruption: {:?}",
                pair.server_error
            );
            assert!(
                sent.starts_with(&pair.server_got),
                "server got other bytes than sent"
            );
        }
        assert!(
            transmitted.starts_with(&pair.client_got),
            "client got other bytes than the core transmitted"
        );
    }
}

/// Writes the core's queued transmissions into the layer as far as it takes them.
fn write_unsent(pair: &mut TlsPair, unsent: &mut Vec<Bytes>, written: &mut usize) {
    while let Some(first) = unsent.first_mut() {
        let n = pair.server_write(first);
        *written += n;
        if n < first.len() {
            let _ = first.split_to(n);
            break;
        }
        unsent.remove(0);
    }
}
