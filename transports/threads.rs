//! The std-threads transport: blocking sockets, no async runtime.
//!
//! * Echo: the calling thread accepts; every client gets its own thread (the
//!   tutorial's multi-threaded server) running an [`EchoConn`](crate::echo::EchoConn) with blocking
//!   reads and writes. With `--udp` one more thread echoes datagrams.
//! * Chat: the calling thread owns the [`ChatServer`](crate::chat::ChatServer)
//!   (the shared chat hub); an acceptor thread and, per client, a reader
//!   and a writer thread feed it events through one bounded channel.
//!
//! A triggered [`Shutdown`] wakes the blocking `accept` by shutting the listening
//! socket down (Linux) or by connecting to it (elsewhere).
//!
//! ```no_run
//! use echochat::{echo::EchoServerConfig, net::{Listener, Shutdown}};
//! let listener = Listener::bind("127.0.0.1:0", false)?;
//! println!("listening on {}", listener.local_addr()?);
//! let shutdown = Shutdown::new();
//! echochat::threads::run_echo(listener, EchoServerConfig::default(), shutdown)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown as How, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::thread;
use std::time::Instant as StdInstant;

use event_listener::Listener as _;
use flume::{RecvTimeoutError, Sender};

use crate::chat::ChatConfig;
use crate::driver::conn::{ConnReader, ReadStep, WriteStep, MAX_IOSLICES};
use crate::driver::echo::{EchoHub, EchoIo, EchoStep};
use crate::driver::hub::{Event, Hub, NewConn, EVENT_QUEUE};
use crate::driver::Clock;
use crate::echo::{EchoConfig, EchoServerConfig};
use crate::net::{AcceptBackoff, HookGuard, Listener, ServeError, Shutdown, TlsConfig};
use crate::Instant;

/// The clock edge of this transport: the one place it reads the time.
fn wall_clock() -> StdInstant {
    StdInstant::now()
}

/// The core's time now.
fn now(clock: &Clock) -> Instant {
    clock.instant(wall_clock())
}

/// Serves the echo service on `listener` (and its [`second`](Listener::second),
/// TLS where [`tls`](Listener::tls) is set) until `shutdown` is triggered (or, with
/// `config.once`, until the first client is served). Blocks the calling thread.
pub fn run_echo(
    listener: Listener,
    config: EchoServerConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let clock = Clock::starting_at(wall_clock());
    let (udp, parts) = listener.into_parts();
    // Stops the UDP thread when this function returns, whatever the reason.
    let udp_stop = Shutdown::new();
    let udp_thread = match udp {
        Some(udp) => Some(spawn_udp_echo(udp, &udp_stop)?),
        None => None,
    };
    let hub = EchoHub::new(config);
    let _wake_waiters = {
        let hub = Arc::clone(&hub);
        shutdown.on_trigger(move || hub.wake())
    };
    // Every acceptor stops on `stop`: the shutdown signal, or the end of admission.
    let stop = Shutdown::new();
    let _forward = {
        let stop = stop.clone();
        shutdown.on_trigger(move || stop.trigger())
    };
    let mut parts = parts.into_iter();
    let (first, first_tls) = parts.next().expect("a listener has a TCP socket");
    let mut others = Vec::new();
    for (tcp, tls) in parts {
        let (hub, task_stop) = (Arc::clone(&hub), stop.clone());
        let spawned = thread::Builder::new()
            .name("echo-accept".into())
            .spawn(move || echo_accept(tcp, tls, &hub, clock, config.conn, &task_stop));
        match spawned {
            Ok(thread) => others.push(thread),
            Err(e) => {
                stop.trigger();
                others.into_iter().for_each(|t| drop(t.join()));
                return Err(e.into());
            }
        }
    }
    echo_accept(first, first_tls, &hub, clock, config.conn, &stop);
    for thread in others {
        let _ = thread.join();
    }
    loop {
        let change = hub.listen();
        let Some(deadline) = hub.step(now(&clock), shutdown.is_triggered()) else {
            break;
        };
        match deadline {
            Some(deadline) => {
                change.wait_deadline(clock.deadline(deadline));
            }
            None => change.wait(),
        }
    }
    udp_stop.trigger();
    if let Some(handle) = udp_thread {
        let _ = handle.join();
    }
    Ok(())
}

/// Accepts echo clients on `tcp` (over TLS with `tls`), one thread each, while the
/// hub admits them and `stop` is not triggered; triggers `stop` when it ends (so
/// every other acceptor ends too). The listener is closed when it returns.
fn echo_accept(
    tcp: TcpListener,
    tls: Option<TlsConfig>,
    hub: &Arc<EchoHub<TcpStream>>,
    clock: Clock,
    conn_config: EchoConfig,
    stop: &Shutdown,
) {
    let tcp = Arc::new(tcp);
    let wake_accept = wake_accept_on(stop, &tcp);
    let mut acceptor = Acceptor::new(&tcp, stop);
    while hub.is_accepting() {
        let Some(stream) = acceptor.next() else {
            break;
        };
        let stream = Arc::new(stream);
        let accepted = now(&clock);
        let Some(admitted) = hub.admit(accepted, &stream) else {
            continue;
        };
        let tls = tls.clone();
        let spawned = thread::Builder::new()
            .name("echo-conn".into())
            .spawn(move || {
                let io = EchoIo::accepted(conn_config, tls, accepted);
                if let Err(e) = echo_conn(&stream, io, &clock) {
                    log::debug!("echo connection ended: {e}");
                }
                // Free the slot before the client can see the close.
                drop(admitted);
                let _ = stream.shutdown(How::Both);
            });
        if let Err(e) = spawned {
            // The closure (and with it the socket and its slot) was dropped.
            spawn_failed(&e);
        }
    }
    stop.trigger();
    drop(wake_accept);
}

/// One echo client, blocking: the [`EchoIo`] steps. A read deadline (a TLS
/// handshake's) becomes the socket's read timeout while it lasts.
fn echo_conn(stream: &TcpStream, io: io::Result<EchoIo>, clock: &Clock) -> io::Result<()> {
    let mut io = io?;
    let mut timed = false;
    loop {
        match io.next() {
            EchoStep::Write => {
                let result = (&*stream).write(io.pending());
                io.on_written(result)?;
            }
            EchoStep::Read => {
                let deadline = io.read_deadline();
                if deadline.is_some() || timed {
                    let timeout = deadline.map(|d| {
                        let left = clock.deadline(d).saturating_duration_since(wall_clock());
                        left.max(std::time::Duration::from_millis(1))
                    });
                    stream.set_read_timeout(timeout)?;
                    timed = timeout.is_some();
                }
                let result = (&*stream).read(io.read_buf());
                io.on_read(result)?;
            }
            EchoStep::Close => return Ok(()),
        }
    }
}

/// Logs that a connection's thread could not be started: the first time, then
/// once every 1000 times (a connect storm must not flood the log).
fn spawn_failed(error: &io::Error) {
    static FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if n.is_multiple_of(1000) {
        log::warn!(
            "cannot start a connection thread ({error}): connection refused ({} so far)",
            n + 1
        );
    }
}

/// Blocking accepts with the shared back-off policy until `shutdown` is triggered.
struct Acceptor<'a> {
    tcp: &'a TcpListener,
    shutdown: &'a Shutdown,
    backoff: AcceptBackoff,
}

impl<'a> Acceptor<'a> {
    fn new(tcp: &'a TcpListener, shutdown: &'a Shutdown) -> Self {
        Acceptor {
            tcp,
            shutdown,
            backoff: AcceptBackoff::default(),
        }
    }

    /// The next accepted stream (`TCP_NODELAY` set), or `None` once `shutdown` is
    /// triggered (its hook wakes a blocked `accept`).
    fn next(&mut self) -> Option<TcpStream> {
        while !self.shutdown.is_triggered() {
            match self.tcp.accept() {
                Ok((stream, _)) => {
                    self.backoff.success();
                    let _ = stream.set_nodelay(true);
                    return Some(stream);
                }
                Err(e) => {
                    if self.shutdown.is_triggered() {
                        break;
                    }
                    if let Some(delay) = self.backoff.failure(&e, wall_clock()) {
                        self.shutdown.wait_timeout(delay);
                    }
                }
            }
        }
        None
    }
}

fn spawn_udp_echo(udp: UdpSocket, stop: &Shutdown) -> io::Result<thread::JoinHandle<()>> {
    let udp = Arc::new(udp);
    let guard = {
        let udp = Arc::clone(&udp);
        stop.on_trigger(move || wake_udp(&udp))
    };
    let stop = stop.clone();
    thread::Builder::new()
        .name("echo-udp".into())
        .spawn(move || {
            let _guard = guard;
            let mut buf = vec![0u8; 64 * 1024];
            while !stop.is_triggered() {
                match udp.recv_from(&mut buf) {
                    Ok((n, from)) if !stop.is_triggered() => {
                        if let Err(e) = udp.send_to(&buf[..n], from) {
                            log::debug!("udp echo to {from} failed: {e}");
                        }
                    }
                    Ok(_) => break,
                    Err(e) => log::debug!("udp receive failed: {e}"),
                }
            }
        })
}

/// Wakes a thread blocked in `recv_from`: shutdown(2) does on Linux, a datagram to
/// ourselves does everywhere.
fn wake_udp(udp: &UdpSocket) {
    let _ = socket2::SockRef::from(udp).shutdown(How::Read);
    if let Ok(addr) = udp.local_addr() {
        let _ = udp.send_to(&[], loopback_if_unspecified(addr));
    }
}

fn loopback_if_unspecified(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// On shutdown, wakes a thread blocked in `accept` on `tcp`.
fn wake_accept_on(shutdown: &Shutdown, tcp: &Arc<TcpListener>) -> HookGuard {
    let tcp = Arc::clone(tcp);
    shutdown.on_trigger(move || {
        // Linux: a blocking accept on a listener that is shut down returns EINVAL.
        let _ = socket2::SockRef::from(&*tcp).shutdown(How::Read);
        #[cfg(not(target_os = "linux"))]
        if let Ok(addr) = tcp.local_addr() {
            let _ = TcpStream::connect(loopback_if_unspecified(addr));
        }
    })
}

/// Serves the chat service on `listener` until `shutdown` is triggered. Blocks the
/// calling thread, which owns the chat core.
pub fn run_chat(
    mut listener: Listener,
    config: ChatConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let clock = Clock::starting_at(wall_clock());
    let (mut hub, bus_events) = Hub::for_listener(config, &mut listener);
    let (_udp, parts) = listener.into_parts();
    let (events, inbox) = flume::bounded(EVENT_QUEUE);
    if let Some(bus_events) = bus_events {
        // The cluster bus's events join the others (see `Hub::for_listener`).
        let events = events.clone();
        thread::Builder::new()
            .name("chat-bus".into())
            .spawn(move || {
                while let Ok(event) = bus_events.recv() {
                    if events.send(Event::Bus(event)).is_err() {
                        return;
                    }
                }
            })?;
    }
    let mut acceptors = Vec::new();
    let mut wake_accepts = Vec::new();
    for (tcp, tls) in parts {
        let tcp = Arc::new(tcp);
        wake_accepts.push(wake_accept_on(&shutdown, &tcp));
        let events = events.clone();
        let shutdown = shutdown.clone();
        acceptors.push(
            thread::Builder::new()
                .name("chat-accept".into())
                .spawn(move || {
                    let mut acceptor = Acceptor::new(&tcp, &shutdown);
                    while let Some(stream) = acceptor.next() {
                        if events.send(Event::accepted(stream, tls.clone())).is_err() {
                            return;
                        }
                    }
                    let _ = events.send(Event::Shutdown);
                })?,
        );
    }
    let mut spawn = |conn: NewConn<TcpStream>| {
        let NewConn {
            sock,
            reader,
            writer,
        } = conn;
        let read_sock = Arc::clone(&sock);
        let read_events = events.clone();
        let reader = thread::Builder::new()
            .name("chat-read".into())
            .spawn(move || chat_reader(reader, &read_sock, &read_events));
        let events = events.clone();
        let writer = thread::Builder::new()
            .name("chat-write".into())
            .spawn(move || chat_writer(writer, &sock, &events));
        match reader.and(writer) {
            Ok(_) => true,
            Err(e) => {
                // Refused by the hub (`! server full`); a reader that did start ends
                // when the hub shuts the socket down.
                spawn_failed(&e);
                false
            }
        }
    };
    while !hub.finished() {
        let event = match hub.poll_timeout() {
            Some(deadline) => inbox.recv_deadline(clock.deadline(deadline)),
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(first) => {
                let stop = shutdown.is_triggered();
                hub.handle_batch(now(&clock), stop, first, inbox.try_iter(), &mut spawn);
            }
            Err(RecvTimeoutError::Timeout) => hub.handle_timeout(now(&clock)),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    for acceptor in acceptors {
        let _ = acceptor.join();
    }
    drop(wake_accepts);
    Ok(())
}

fn chat_reader(mut reader: ConnReader, sock: &TcpStream, events: &Sender<Event<TcpStream>>) {
    loop {
        let result = (&*sock).read(reader.buf());
        let (event, last) = match reader.on_read(result) {
            ReadStep::Send(event) => (event, false),
            ReadStep::Last(event) => (event, true),
            ReadStep::Retry => continue,
        };
        if events.send(event).is_err() || last {
            return;
        }
        if reader.permit().recv().is_err() {
            return; // closed by the core
        }
    }
}

fn chat_writer(
    mut writer: crate::driver::conn::ConnWriter,
    sock: &TcpStream,
    events: &Sender<Event<TcpStream>>,
) {
    loop {
        match writer.next() {
            WriteStep::NeedBytes => match writer.queue().recv() {
                Ok(bytes) => writer.push(bytes),
                Err(_) => writer.queue_closed(),
            },
            WriteStep::Write => {
                let mut slices = [IoSlice::new(&[]); MAX_IOSLICES];
                let k = writer.slices(&mut slices);
                let result = (&*sock).write_vectored(&slices[..k]);
                if let Some(wake) = writer.written(result) {
                    let _ = events.send(wake);
                }
            }
            WriteStep::Done => break,
        }
    }
    // Tell the core first: the client must not see the close before the core does.
    let _ = events.send(writer.done_event());
    let _ = sock.shutdown(How::Both);
}
