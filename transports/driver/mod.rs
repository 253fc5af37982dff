//! The driver layer, sans-IO too: step types between the core and a runtime.
//!
//! Each type here takes time and I/O results in and says what to do next; none of
//! them blocks, awaits, sleeps or reads a clock. A transport (threads, or the async
//! driver in [`runtime`](crate::runtime) that every async runtime shares) keeps only
//! the blocking or awaiting call around them:
//!
//! * [`hub::Hub`]: the owner of the chat core. `handle_batch(now, events)`,
//!   `handle_timeout(now)`, `poll_timeout()`, `finished()`.
//! * [`conn::ConnReader`] / [`conn::ConnWriter`]: one chat connection's reader and
//!   writer. `on_read(result) -> ReadStep`; `next() -> WriteStep`, `written(result)`.
//! * [`echo::EchoHub`]: the echo server's lifecycle (admission, `--once`, the
//!   shutdown drain) executed over live sockets; [`echo::EchoIo`] one echo
//!   connection's next read or write.
//! * [`Clock`]: the one edge where a transport's `std::time::Instant` becomes the
//!   core's [`Instant`] and back.
//!
//! The deterministic simulator (`src/sim/`) drives [`hub::Hub`] and the connection
//! writers over in-memory sockets, so their accounting is covered by seeds.

/// Adds `n` to a process-wide counter of [`crate::metrics`] (nothing without `net`).
macro_rules! count {
    ($field:ident, $n:expr) => {
        #[cfg(feature = "net")]
        crate::metrics::global()
            .$field
            .fetch_add($n as u64, std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(feature = "net"))]
        let _ = $n;
    };
}

pub(crate) mod conn;
#[cfg(feature = "net")]
pub(crate) mod echo;
pub(crate) mod hub;

use std::io::{self, IoSlice};
use std::time::{Duration, Instant as StdInstant};

use crate::Instant;

/// A socket the driver layer can shut down from any thread or task (to stop a
/// reader, wake a blocked writer, or close a connection the core dropped), and
/// write to without blocking.
///
/// Implemented for `std::net::TcpStream`, tokio's and smol's streams; implement it
/// for the stream type of your own [`Runtime`](crate::runtime::Runtime).
pub trait Sock: Send + Sync + 'static {
    /// `shutdown(2)` on the socket.
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()>;

    /// One vectored write that never blocks (`WouldBlock` when the socket buffer is
    /// full), callable from any thread while a reader waits on the socket. The chat
    /// hub uses it to write directly when a connection's writer is idle. The default
    /// always says `WouldBlock`: everything then goes through the writer.
    fn try_write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let _ = bufs;
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// The peer's address, for logs (default: unknown).
    fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }
}

/// Converts a transport's clock readings into the core's [`Instant`] (time since
/// the server started) and the core's deadlines back into clock readings.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "net"), allow(dead_code))]
pub struct Clock {
    origin: StdInstant,
}

#[cfg_attr(not(feature = "net"), allow(dead_code))]
impl Clock {
    /// A clock whose origin is `origin` (read it once, when the server starts).
    pub fn starting_at(origin: StdInstant) -> Self {
        Clock { origin }
    }

    /// The core's instant for the clock reading `now`.
    pub fn instant(&self, now: StdInstant) -> Instant {
        Instant::from_duration(now.saturating_duration_since(self.origin))
    }

    /// The clock reading for the core's `deadline`.
    pub fn deadline(&self, deadline: Instant) -> StdInstant {
        self.origin
            .checked_add(deadline.since_origin())
            .unwrap_or_else(|| self.origin + Duration::from_secs(86_400 * 365))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_round_trips() {
        let origin = StdInstant::now();
        let clock = Clock::starting_at(origin);
        let later = origin + Duration::from_millis(1500);
        assert_eq!(clock.instant(later), Instant::from_millis(1500));
        assert_eq!(clock.deadline(Instant::from_millis(1500)), later);
        // Readings before the origin are the origin.
        assert_eq!(
            clock.instant(origin - Duration::from_secs(1)),
            Instant::ZERO
        );
    }
}
