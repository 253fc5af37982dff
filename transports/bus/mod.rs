//! Cluster bus adapters: the object-safe [`Bus`] a chat hub hands its
//! [`BusAction`]s to, chosen at run time from a URL by `connect`. A bus never
//! blocks its caller: [`Bus::submit`] queues into a bounded queue, the adapter's own
//! thread(s) do the I/O, and every [`BusEvent`] comes back through the [`Deliver`]
//! callback (the hub's event channel). Adapters: `redis://HOST:PORT` (`redis`) and
//! `memory://NAME` (`memory`, in-process, for tests).

use crate::cluster::{BusAction, BusEvent};

pub mod redis;

/// Where a bus reports its events (called from the bus's own threads).
pub type Deliver = Box<dyn Fn(BusEvent) + Send + Sync>;

/// A connection to the cluster bus.
pub trait Bus: Send + Sync {
    /// Queue `action` without blocking. When the bounded queue is full the bus drops
    /// it, reports [`BusEvent::Lost`], and later [`BusEvent::Restored`] once it has
    /// caught up (the core then resynchronises, as after a lost connection).
    fn submit(&self, action: BusAction);
}

/// Why a bus could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The URL's scheme is not one of `redis://`, `memory://`.
    #[error("unsupported cluster URL {0:?} (expected redis://HOST:PORT)")]
    Scheme(String),
    /// The bus could not be reached at start.
    #[error("cannot reach the cluster bus at {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
}
