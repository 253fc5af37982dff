//! Cluster bus adapters: the object-safe [`Bus`] a chat hub hands its
//! [`BusAction`]s to, chosen at run time from a URL by `connect`. A bus never
//! blocks its caller: [`Bus::submit`] queues into a bounded queue, the adapter's own
//! thread(s) do the I/O, and every [`BusEvent`] comes back through the [`Deliver`]
//! callback (the hub's event channel). Adapters: `redis://HOST:PORT` (`redis`) and
//! `memory://NAME` (`memory`, in-process, for tests).

use crate::chat::cluster::ClusterConfig;
use crate::cluster::{BusAction, BusEvent};

pub mod redis;

/// Where a bus reports its events (called from the bus's own threads, in order).
/// The one made by [`ClusterLink::connect`] may block briefly while the chat hub
/// catches up (its channel is bounded); it never waits for the bus itself.
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

pub mod memory;

/// How many bus events may wait for the hub before the bus's thread waits.
const EVENTS: usize = 1024;

/// Connects node `node` to the cluster bus at `url`, reporting through `deliver`:
/// `memory://NAME` ([`memory`], in-process) or `redis://HOST:PORT`.
pub fn connect(url: &str, node: &str, deliver: Deliver) -> Result<Box<dyn Bus>, BusError> {
    if let Some(name) = url.strip_prefix("memory://") {
        return Ok(Box::new(memory::MemoryBus::connect(name, node, deliver)?));
    }
    if url.starts_with("redis://") {
        let _ = node; // Redis claims carry the owner; the connection needs no name.
        return Ok(Box::new(redis::connect(url, deliver)?));
    }
    let _ = deliver;
    Err(BusError::Scheme(url.to_string()))
}

/// A chat server's link to the cluster: the bus, the events it reports, and this
/// node's [`ClusterConfig`]. Hand it to a server with
/// [`Listener::with_cluster`](crate::net::Listener::with_cluster); every runtime
/// forwards the events to the core and the core's actions to the bus.
///
/// ```
/// use echochat::bus::ClusterLink;
/// use echochat::chat::cluster::ClusterConfig;
/// use echochat::net::Listener;
///
/// // Two nodes of one process on an in-process bus (`redis://HOST:PORT` across hosts).
/// for node in ["a", "b"] {
///     let link = ClusterLink::connect("memory://doc-example", ClusterConfig::new(node, 1))?;
///     let listener = Listener::bind("127.0.0.1:0", false)?.with_cluster(link);
///     // echochat::runtime::RuntimeKind::Tokio.serve_chat(listener, config, shutdown)
///     # drop(listener);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ClusterLink {
    pub(crate) config: ClusterConfig,
    pub(crate) bus: Box<dyn Bus>,
    pub(crate) events: flume::Receiver<BusEvent>,
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClusterLink {
    /// Connects to the bus at `url` as node `config.node`; fails (one line, see
    /// [`BusError`]) if the bus cannot be reached now.
    pub fn connect(url: &str, config: ClusterConfig) -> Result<ClusterLink, BusError> {
        let (tx, events) = flume::bounded(EVENTS);
        let deliver: Deliver = Box::new(move |event| {
            // Waits while the hub is behind (on the bus's thread, never the hub's);
            // fails only once the server is gone.
            let _ = tx.send(event);
        });
        let bus = connect(url, &config.node, deliver)?;
        Ok(ClusterLink {
            config,
            bus,
            events,
        })
    }

    /// This node's cluster configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }
}
