//! The std-threads transport: blocking sockets, no async runtime.
//!
//! * Echo: the calling thread accepts; every client gets its own thread (the
//!   tutorial's multi-threaded server) running an [`EchoConn`] with blocking
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

use bytes::Bytes;
use flume::{RecvTimeoutError, Sender};

use crate::admission::Admission;
use crate::chat::{ChatConfig, ConnId};
use crate::echo::{EchoConfig, EchoConn, EchoServerConfig};
use crate::hub::{
    grow_read_buf, Event, Hub, NewConn, WriteBatch, BATCH, EVENT_QUEUE, FIRST_READ_BUF,
    MAX_IOSLICES,
};
use crate::live::Tracker;
use crate::net::{core_bug, AcceptBackoff, HookGuard, Listener, ServeError, Shutdown};

/// Serves the echo service on `listener` until `shutdown` is triggered (or, with
/// `config.once`, until the first client is served). Blocks the calling thread.
pub fn run_echo(
    listener: Listener,
    config: EchoServerConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let Listener { tcp, udp } = listener;
    let tcp = Arc::new(tcp);
    // Stops the UDP thread when this function returns, whatever the reason.
    let udp_stop = Shutdown::new();
    let udp_thread = match udp {
        Some(udp) => Some(spawn_udp_echo(udp, &udp_stop)?),
        None => None,
    };
    let _wake_accept = wake_accept_on(&shutdown, &tcp);
    let tracker = Tracker::new();
    let _wake_waiters = {
        let tracker = Arc::clone(&tracker);
        shutdown.on_trigger(move || tracker.wake())
    };
    let admission = Admission::new(config.max_conns);
    let mut backoff = AcceptBackoff::default();
    while !shutdown.is_triggered() {
        let stream = match tcp.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                if shutdown.is_triggered() {
                    break;
                }
                if let Some(delay) = backoff.failure(&e) {
                    shutdown.wait_timeout(delay);
                }
                continue;
            }
        };
        backoff.success();
        let Some(permit) = admission.try_admit() else {
            let _ = stream.shutdown(How::Both);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = Arc::new(stream);
        let tracked = tracker.insert(Arc::clone(&stream));
        let conn_config = config.conn;
        let spawned = thread::Builder::new()
            .name("echo-conn".into())
            .spawn(move || {
                if let Err(e) = echo_conn(&stream, conn_config) {
                    log::debug!("echo connection ended: {e}");
                }
                // Free the slot before the client can see the close.
                drop(permit);
                drop(tracked);
                let _ = stream.shutdown(How::Both);
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a connection thread: {e}");
        }
        if config.once {
            tracker.wait_blocking(None, || shutdown.is_triggered());
            break;
        }
    }
    tracker.drain_blocking();
    udp_stop.trigger();
    if let Some(handle) = udp_thread {
        let _ = handle.join();
    }
    Ok(())
}

/// One echo client, blocking: write back everything pending, then read more.
fn echo_conn(stream: &TcpStream, config: EchoConfig) -> io::Result<()> {
    let mut conn = EchoConn::new(config);
    loop {
        while let Some(pending) = conn.poll_transmit() {
            let n = match (&*stream).write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            conn.handle_written(n).map_err(core_bug)?;
        }
        if conn.poll_close() {
            return Ok(());
        }
        let n = match (&*stream).read(conn.read_buf()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            conn.handle_peer_closed();
        } else {
            conn.handle_read(n).map_err(core_bug)?;
        }
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
    listener: Listener,
    config: ChatConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let tcp = Arc::new(listener.tcp);
    let _wake_accept = wake_accept_on(&shutdown, &tcp);
    let (events, inbox) = flume::bounded(EVENT_QUEUE);
    let acceptor = {
        let events = events.clone();
        let shutdown = shutdown.clone();
        thread::Builder::new()
            .name("chat-accept".into())
            .spawn(move || accept_chat(&tcp, &events, &shutdown))?
    };
    let mut hub = Hub::new(config);
    let mut spawn = |conn: NewConn<TcpStream>| {
        let reader = {
            let (id, sock, events) = (conn.id, Arc::clone(&conn.sock), events.clone());
            thread::Builder::new()
                .name("chat-read".into())
                .spawn(move || chat_reader(id, &sock, &events))
        };
        let events = events.clone();
        let writer = thread::Builder::new()
            .name("chat-write".into())
            .spawn(move || chat_writer(conn, &events));
        if let Err(e) = reader.and(writer) {
            // The connection is shut down by whichever thread did start, or never served.
            log::warn!("cannot start a connection thread: {e}");
        }
    };
    while !hub.finished() {
        let event = match hub.deadline() {
            Some(deadline) => inbox.recv_deadline(deadline),
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(event) => {
                hub.handle(event, &mut spawn);
                // Everything already waiting, then one flush: one write per recipient.
                for event in inbox.try_iter().take(BATCH - 1) {
                    hub.handle(event, &mut spawn);
                }
                hub.flush();
            }
            Err(RecvTimeoutError::Timeout) => hub.on_deadline(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = acceptor.join();
    Ok(())
}

fn accept_chat(tcp: &TcpListener, events: &Sender<Event<TcpStream>>, shutdown: &Shutdown) {
    let mut backoff = AcceptBackoff::default();
    while !shutdown.is_triggered() {
        match tcp.accept() {
            Ok((stream, _)) => {
                backoff.success();
                let _ = stream.set_nodelay(true);
                if events.send(Event::Accepted(stream)).is_err() {
                    return;
                }
            }
            Err(e) => {
                if shutdown.is_triggered() {
                    break;
                }
                if let Some(delay) = backoff.failure(&e) {
                    shutdown.wait_timeout(delay);
                }
            }
        }
    }
    let _ = events.send(Event::Shutdown);
}

fn chat_reader(id: ConnId, sock: &TcpStream, events: &Sender<Event<TcpStream>>) {
    let mut buf = vec![0u8; FIRST_READ_BUF];
    loop {
        let event = match (&*sock).read(&mut buf) {
            Ok(0) => Event::Eof(id),
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buf[..n]);
                grow_read_buf(&mut buf, n);
                Event::Data(id, data)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => Event::ReadError(id),
        };
        let last = !matches!(event, Event::Data(..));
        if events.send(event).is_err() || last {
            return;
        }
    }
}

fn chat_writer(conn: NewConn<TcpStream>, events: &Sender<Event<TcpStream>>) {
    let NewConn {
        id,
        sock,
        queue,
        flushed,
        outstanding,
    } = conn;
    let mut batch = WriteBatch::new();
    let failed = loop {
        if batch.is_empty() {
            match queue.recv() {
                Ok(bytes) => batch.push(bytes),
                Err(_) => break false, // closed by the core: everything was written
            }
        }
        batch.fill(&queue);
        if batch.is_empty() {
            continue;
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOSLICES];
        let k = batch.slices(&mut slices);
        match (&*sock).write_vectored(&slices[..k]) {
            Ok(0) => break true,
            Ok(n) => {
                batch.advance(n);
                outstanding.written(n);
                if flushed.send((id, n)).is_err() {
                    break false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break true,
        }
    };
    let _ = sock.shutdown(How::Both);
    let _ = events.send(Event::WriterDone(id, failed));
}
