//! The live connections of an echo server, so that shutdown can reach each one.
//!
//! The accept loop registers every admitted socket in a [`Tracker`]; the
//! connection's thread or task drops its [`Tracked`] guard when it ends. On
//! shutdown the server shuts down the read side of every live socket (each then
//! flushes what is pending and ends), waits up to [`SHUTDOWN_GRACE`] for them,
//! then shuts down what remains. Only accept, exit and shutdown take the lock:
//! nothing on the per-read/per-write path does.

use std::collections::HashMap;
use std::net::Shutdown as How;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use event_listener::Event;
#[cfg(feature = "threads")]
use event_listener::Listener as _;

use crate::net::{Sock, SHUTDOWN_GRACE};

/// Registry of live sockets.
pub(crate) struct Tracker<S> {
    state: Mutex<State<S>>,
    changed: Event,
}

struct State<S> {
    next: u64,
    conns: HashMap<u64, Arc<S>>,
}

/// Keeps a socket registered; dropping it unregisters it.
pub(crate) struct Tracked<S: Sock> {
    tracker: Arc<Tracker<S>>,
    id: u64,
}

impl<S: Sock> Drop for Tracked<S> {
    fn drop(&mut self) {
        let empty = {
            let mut state = self.tracker.lock();
            state.conns.remove(&self.id);
            state.conns.is_empty()
        };
        if empty {
            self.tracker.changed.notify(usize::MAX);
        }
    }
}

impl<S: Sock> Tracker<S> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Tracker {
            state: Mutex::new(State {
                next: 0,
                conns: HashMap::new(),
            }),
            changed: Event::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a live socket until the guard is dropped.
    pub(crate) fn insert(self: &Arc<Self>, sock: Arc<S>) -> Tracked<S> {
        let mut state = self.lock();
        let id = state.next;
        state.next += 1;
        state.conns.insert(id, sock);
        Tracked {
            tracker: Arc::clone(self),
            id,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().conns.is_empty()
    }

    #[cfg(feature = "threads")]
    /// Wakes every waiter so it re-checks its condition (e.g. a shutdown signal).
    pub(crate) fn wake(&self) {
        self.changed.notify(usize::MAX);
    }

    /// `shutdown(how)` on every live socket (errors ignored: the peer may be gone).
    pub(crate) fn shutdown_all(&self, how: How) {
        for sock in self.lock().conns.values() {
            let _ = sock.shutdown(how);
        }
    }

    #[cfg(feature = "threads")]
    /// Blocks until no socket is live (true), `stop()` holds or `deadline` passes.
    pub(crate) fn wait_blocking(&self, deadline: Option<Instant>, stop: impl Fn() -> bool) -> bool {
        loop {
            if self.is_empty() {
                return true;
            }
            let listener = self.changed.listen();
            if self.is_empty() {
                return true;
            }
            if stop() {
                return false;
            }
            match deadline {
                Some(deadline) => {
                    if listener.wait_deadline(deadline).is_none() {
                        return self.is_empty();
                    }
                }
                None => listener.wait(),
            }
        }
    }

    #[cfg(any(feature = "tokio", feature = "smol"))]
    /// Resolves when no socket is live.
    pub(crate) async fn wait_empty(&self) {
        loop {
            if self.is_empty() {
                return;
            }
            let listener = self.changed.listen();
            if self.is_empty() {
                return;
            }
            listener.await;
        }
    }

    #[cfg(feature = "threads")]
    /// The blocking shutdown sequence: read sides down, grace, then everything down.
    pub(crate) fn drain_blocking(&self) {
        self.shutdown_all(How::Read);
        if !self.wait_blocking(Some(Instant::now() + SHUTDOWN_GRACE), || false) {
            self.shutdown_all(How::Both);
            self.wait_blocking(Some(Instant::now() + SHUTDOWN_GRACE), || false);
        }
    }

    #[cfg(any(feature = "tokio", feature = "smol"))]
    /// The async shutdown sequence, with the runtime's `sleep_until`.
    pub(crate) async fn drain<F: std::future::Future<Output = ()>>(
        &self,
        sleep_until: impl Fn(Instant) -> F,
    ) {
        self.shutdown_all(How::Read);
        let grace = sleep_until(Instant::now() + SHUTDOWN_GRACE);
        if race(
            async {
                self.wait_empty().await;
                true
            },
            async {
                grace.await;
                false
            },
        )
        .await
        {
            return;
        }
        self.shutdown_all(How::Both);
        let grace = sleep_until(Instant::now() + SHUTDOWN_GRACE);
        race(self.wait_empty(), grace).await;
    }
}

#[cfg(any(feature = "tokio", feature = "smol"))]
/// Polls both futures; the first to finish wins (`a` first when both are ready).
/// A tiny dependency-free `select` for the async transports.
pub(crate) async fn race<T>(
    a: impl std::future::Future<Output = T>,
    b: impl std::future::Future<Output = T>,
) -> T {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(move |cx| {
        if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
            return std::task::Poll::Ready(v);
        }
        b.as_mut().poll(cx)
    })
    .await
}
