//! The echo server's driver step types.
//!
//! * [`EchoHub`]: executes the [`EchoServer`] lifecycle core over the live sockets
//!   (admission on accept, read-side shutdown then abort on shutdown). Echo
//!   connections run independently, so it is shared (`Arc`) and locked only on
//!   accept, on a connection's end and on shutdown steps: never per read or write.
//! * [`EchoIo`]: one echo connection: `next()` says read, write or close;
//!   `on_read`/`on_written` take the I/O result (`EINTR` is retried here, once for
//!   every transport). Over TLS ([`EchoIo::accepted`] with a configuration) the
//!   same steps carry ciphertext; see `echo/tls.rs`.

use std::collections::HashMap;
use std::io;
use std::net::Shutdown as How;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use event_listener::{Event, EventListener};

use super::Sock;
use crate::chat::ConnId;
use crate::echo::{EchoAction, EchoConfig, EchoConn, EchoServer, EchoServerConfig};
use crate::net::TlsConfig;
use crate::Instant;

#[cfg(feature = "tls")]
mod tls;

/// The echo lifecycle over live sockets.
pub(crate) struct EchoHub<S> {
    state: Mutex<State<S>>,
    changed: Event,
}

struct State<S> {
    core: EchoServer,
    socks: HashMap<ConnId, Arc<S>>,
}

impl<S: Sock> State<S> {
    fn execute(&mut self) {
        while let Some(action) = self.core.poll_action() {
            let (id, how) = match action {
                EchoAction::CloseRead(id) => (id, How::Read),
                EchoAction::Abort(id) => (id, How::Both),
            };
            if let Some(sock) = self.socks.get(&id) {
                let _ = sock.shutdown(how);
            }
        }
    }
}

/// An admitted connection; dropping it reports the connection ended.
pub(crate) struct Admitted<S: Sock> {
    hub: Arc<EchoHub<S>>,
    id: ConnId,
}

impl<S: Sock> Drop for Admitted<S> {
    fn drop(&mut self) {
        {
            let mut state = self.hub.lock();
            state.socks.remove(&self.id);
            state.core.handle_closed(self.id);
        }
        crate::metrics::global()
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.hub.changed.notify(usize::MAX);
    }
}

impl<S: Sock> EchoHub<S> {
    pub(crate) fn new(config: EchoServerConfig) -> Arc<Self> {
        Arc::new(EchoHub {
            state: Mutex::new(State {
                core: EchoServer::new(config),
                socks: HashMap::new(),
            }),
            changed: Event::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A socket was accepted at `now`: admitted (keep the guard while serving it),
    /// or `None` (the socket is shut down here).
    pub(crate) fn admit(self: &Arc<Self>, now: Instant, sock: &Arc<S>) -> Option<Admitted<S>> {
        count!(accepted, 1);
        let mut state = self.lock();
        let admitted = match sock.peer_addr() {
            Some(peer) => state.core.handle_accept_from(now, peer.ip()),
            None => state.core.handle_accept(now),
        };
        let Some(id) = admitted else {
            drop(state);
            count!(refused, 1);
            log::info!("echo connection from {:?} refused", sock.peer_addr());
            let _ = sock.shutdown(How::Both);
            return None;
        };
        state.socks.insert(id, Arc::clone(sock));
        drop(state);
        crate::metrics::global()
            .open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        log::info!("echo {id:?} from {:?} open", sock.peer_addr());
        Some(Admitted {
            hub: Arc::clone(self),
            id,
        })
    }

    /// Whether to keep accepting.
    pub(crate) fn is_accepting(&self) -> bool {
        self.lock().core.is_accepting()
    }

    /// Registers interest in the next change (a connection ended, or [`wake`](Self::wake)).
    /// Take it before [`step`](Self::step), then wait on it.
    pub(crate) fn listen(&self) -> EventListener {
        self.changed.listen()
    }

    /// Wakes every waiter (e.g. the shutdown signal was triggered).
    #[cfg(feature = "threads")]
    pub(crate) fn wake(&self) {
        self.changed.notify(usize::MAX);
    }

    /// One step of the end of serving, after the accept loop ended: shuts down if
    /// `stop` (idempotent), runs the grace timer at `now`. `None`: finished;
    /// `Some(deadline)`: wait for a change, the stop signal or `deadline`, then step again.
    pub(crate) fn step(&self, now: Instant, stop: bool) -> Option<Option<Instant>> {
        let mut state = self.lock();
        if stop {
            state.core.shutdown(now);
        }
        state.core.handle_timeout(now);
        state.execute();
        if state.core.is_finished() {
            None
        } else {
            Some(state.core.poll_timeout())
        }
    }
}

/// Bytes of an echo connection's first read, before the core allocates its buffer.
const FIRST_READ: usize = 512;

/// What an echo connection does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EchoStep {
    /// Write [`EchoIo::pending`], then report it with [`EchoIo::on_written`].
    Write,
    /// Read into [`EchoIo::read_buf`], then report it with [`EchoIo::on_read`].
    Read,
    /// Done: close the connection.
    Close,
}

/// One echo connection's I/O steps around an [`EchoConn`].
pub(crate) struct EchoIo {
    conn: EchoConn,
    /// Until a client sends, reads go into this small buffer: the core allocates its
    /// buffer only for bytes that arrived, so idle connections stay cheap.
    first: [u8; FIRST_READ],
    /// Over TLS: the layer between the socket and `conn`.
    #[cfg(feature = "tls")]
    tls: Option<Box<tls::EchoTls>>,
}

impl EchoIo {
    pub(crate) fn new(config: EchoConfig) -> Self {
        EchoIo {
            conn: EchoConn::new(config),
            first: [0; FIRST_READ],
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// A connection accepted at `now`, over TLS with `tls` (else plaintext).
    pub(crate) fn accepted(
        config: EchoConfig,
        tls: Option<TlsConfig>,
        now: Instant,
    ) -> io::Result<Self> {
        #[allow(unused_mut)]
        let mut io = EchoIo::new(config);
        #[cfg(feature = "tls")]
        if let Some(tls) = tls {
            io.tls = Some(Box::new(tls::EchoTls::new(tls, now)?));
        }
        #[cfg(not(feature = "tls"))]
        let _ = (tls, now);
        Ok(io)
    }

    /// When the next read must give up (a TLS handshake deadline), if ever: race the
    /// read against it and report a timeout to [`on_read`](Self::on_read) as
    /// `TimedOut` (or `WouldBlock`, from a socket read timeout).
    pub(crate) fn read_deadline(&self) -> Option<Instant> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.read_deadline();
        }
        None
    }

    /// The next step.
    pub(crate) fn next(&mut self) -> EchoStep {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return tls.next(&mut self.conn);
        }
        if self.conn.poll_transmit().is_some() {
            EchoStep::Write
        } else if self.conn.poll_close() {
            EchoStep::Close
        } else {
            EchoStep::Read
        }
    }

    /// What to write.
    pub(crate) fn pending(&self) -> &[u8] {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.pending();
        }
        self.conn.poll_transmit().unwrap_or_default()
    }

    /// Where to read.
    pub(crate) fn read_buf(&mut self) -> &mut [u8] {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return tls.read_buf();
        }
        if self.conn.buffer_capacity() == 0 {
            // An empty connection takes up to `max_pending` bytes: all of these.
            let n = FIRST_READ.min(self.conn.max_pending());
            &mut self.first[..n]
        } else {
            self.conn.read_buf()
        }
    }

    /// The read into [`read_buf`](Self::read_buf) returned `result`.
    pub(crate) fn on_read(&mut self, result: io::Result<usize>) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return tls.on_read(result);
        }
        let n = match result {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            other => other?,
        };
        count!(bytes_in, n);
        if n == 0 {
            self.conn.handle_peer_closed();
        } else if self.conn.buffer_capacity() == 0 {
            self.conn.handle_data(&self.first[..n]).map_err(core_bug)?;
        } else {
            self.conn.handle_read(n).map_err(core_bug)?;
        }
        Ok(())
    }

    /// The write of [`pending`](Self::pending) returned `result`.
    pub(crate) fn on_written(&mut self, result: io::Result<usize>) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return tls.on_written(result);
        }
        match result {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                count!(bytes_out, n);
                self.conn.handle_written(n).map_err(core_bug)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Maps a core protocol error (a driver bug, never a peer's doing) to I/O.
fn core_bug(error: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_io_reads_writes_and_closes() {
        let mut io = EchoIo::new(EchoConfig::default());
        assert_eq!(io.next(), EchoStep::Read);
        io.read_buf()[..3].copy_from_slice(b"abc");
        io.on_read(Ok(3)).unwrap();
        assert_eq!(io.next(), EchoStep::Write);
        assert_eq!(io.pending(), b"abc");
        io.on_written(Err(io::ErrorKind::Interrupted.into()))
            .unwrap();
        io.on_written(Ok(2)).unwrap();
        assert_eq!(io.pending(), b"c");
        io.on_written(Ok(1)).unwrap();
        io.on_read(Err(io::ErrorKind::Interrupted.into())).unwrap();
        assert_eq!(io.next(), EchoStep::Read);
        io.on_read(Ok(0)).unwrap();
        assert_eq!(io.next(), EchoStep::Close);
        assert!(io.on_written(Ok(0)).is_err(), "a zero write is an error");
    }

    struct Fake(Mutex<Vec<How>>);
    impl Sock for Fake {
        fn shutdown(&self, how: How) -> io::Result<()> {
            self.0.lock().unwrap().push(how);
            Ok(())
        }
    }

    #[test]
    fn hub_executes_the_lifecycle_on_sockets() {
        let hub = EchoHub::new(EchoServerConfig {
            max_conns: Some(1),
            ..EchoServerConfig::default()
        });
        let a = Arc::new(Fake(Mutex::new(Vec::new())));
        let b = Arc::new(Fake(Mutex::new(Vec::new())));
        let guard = hub.admit(Instant::ZERO, &a).expect("admitted");
        assert!(hub.admit(Instant::ZERO, &b).is_none());
        assert_eq!(*b.0.lock().unwrap(), [How::Both], "refused: closed at once");
        let t0 = Instant::from_millis(10);
        let deadline = hub.step(t0, true).expect("not finished");
        assert_eq!(*a.0.lock().unwrap(), [How::Read]);
        assert_eq!(deadline, Some(t0 + std::time::Duration::from_secs(2)));
        assert_eq!(hub.step(deadline.unwrap(), true), None, "aborted: done");
        assert_eq!(*a.0.lock().unwrap(), [How::Read, How::Both]);
        drop(guard);
        assert!(!hub.is_accepting());
    }
}
