//! What a chat core keeps to be one node of a cluster (`docs/cluster.md`): its
//! [`ClusterConfig`], the other nodes it hears (their sequence numbers, last
//! heartbeat, and users: the replicated presence), and its own claims in flight.
//! Pure bookkeeping, no I/O; the rules that use it are in `server/cluster.rs`, the
//! payload encoding in `cluster/wire.rs`.
//!
//! Every table is bounded: at most [`MAX_NODES`] other nodes, each with at most
//! 100 000 users (a heartbeat's bound); at most one guest or rename claim per connection, and
//! renewals that time out after [`ClusterConfig::claim_timeout`].

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::server::ConnId;
use crate::Instant;

pub(crate) mod wire;

/// Most other nodes tracked at once (events from more are counted and ignored).
pub const MAX_NODES: usize = 256;
/// Most bytes a connection may send while its guest name is being claimed; the
/// rest waits in the socket (the transport stops reading it, see
/// [`ChatServer::is_admitting`](super::ChatServer::is_admitting)).
pub const MAX_EARLY_INPUT: usize = 16 * 1024;

/// A chat core's place in a cluster. `ChatServer::with_cluster` takes it; a core
/// without one is a single node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// This node's name (`--node-name`), unique in the cluster; owner of its claims.
    pub node: String,
    /// Distinguishes two runs of the same node name (e.g. pid and start time): a
    /// node that restarts is a new stream of events, its old users are gone.
    pub incarnation: u64,
    /// The bus topic every node publishes on and subscribes to.
    pub topic: String,
    /// How often the node publishes a heartbeat (with its users) and renews its
    /// claims. Default 2 s.
    pub heartbeat: Duration,
    /// A node not heard for this long is down: its users leave `(server lost)`.
    /// Default 8 s (with a 2 s heartbeat: noticed within 10 s).
    pub node_timeout: Duration,
    /// How long a claim lasts unless renewed; below `node_timeout`, so a dead node's
    /// nicks are free before it is declared down. Default 6 s.
    pub claim_ttl: Duration,
    /// A claim not answered within this is given up (a guest is admitted with its
    /// name anyway, a `/nick` fails). Default 4 s.
    pub claim_timeout: Duration,
}

impl ClusterConfig {
    /// The defaults for node `node`, run `incarnation`.
    pub fn new(node: impl Into<String>, incarnation: u64) -> Self {
        ClusterConfig {
            node: node.into(),
            incarnation,
            topic: String::from("echochat"),
            heartbeat: Duration::from_secs(2),
            node_timeout: Duration::from_secs(8),
            claim_ttl: Duration::from_secs(6),
            claim_timeout: Duration::from_secs(4),
        }
    }

    /// This configuration with another topic.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// This configuration with other timings (heartbeat, node timeout, claim ttl).
    pub fn with_timings(
        mut self,
        heartbeat: Duration,
        node_timeout: Duration,
        claim_ttl: Duration,
    ) -> Self {
        self.heartbeat = heartbeat;
        self.node_timeout = node_timeout;
        self.claim_ttl = claim_ttl;
        self
    }
}

/// Counters of what the cluster layer saw (for tests, metrics and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Payloads that did not decode (ignored).
    pub bad_payloads: u64,
    /// Events received twice (dropped).
    pub duplicates: u64,
    /// Gaps in another node's sequence (each reported to the local users).
    pub gaps: u64,
    /// Nodes declared down for silence.
    pub nodes_lost: u64,
    /// Events from nodes beyond [`MAX_NODES`], or users beyond the per-node bound.
    pub over_limit: u64,
}

/// A user on another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteUser {
    pub(crate) nick: String,
    /// Lowercased, without `#`.
    pub(crate) room: String,
}

/// Another node, as heard through the bus.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) incarnation: u64,
    /// The sequence number expected next.
    pub(crate) next_seq: u64,
    pub(crate) last_seen: Instant,
    /// The next event starts the sequence afresh (after the bus came back).
    pub(crate) resync: bool,
    /// Lowercased nick → user.
    pub(crate) users: BTreeMap<String, RemoteUser>,
}

/// Why a claim was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A new connection's guest name; it waits (see `Cluster::admitting`).
    Guest(ConnId),
    /// `/nick`: the connection gets the name if won.
    Rename(ConnId, String),
    /// Renewing a nick already held (its lowercase key).
    Renew,
}

/// A claim in flight.
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) key: String,
    pub(crate) purpose: Purpose,
    pub(crate) deadline: Instant,
}

/// A connection waiting for its guest name's claim.
#[derive(Debug)]
pub(crate) struct Admitting {
    pub(crate) nick: String,
    /// What it sent meanwhile (at most [`MAX_EARLY_INPUT`] bytes).
    pub(crate) early: Vec<u8>,
    /// It also sent EOF.
    pub(crate) eof: bool,
}

/// A room's users on other nodes.
#[derive(Debug, Default)]
pub(crate) struct RemoteRoom {
    /// The room's name as first heard, with `#`.
    pub(crate) name: String,
    /// (lowercased nick, node) → nick.
    pub(crate) members: BTreeMap<(String, String), String>,
}

/// Everything a clustered core keeps.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) config: ClusterConfig,
    /// This node's last sequence number.
    pub(crate) seq: u64,
    /// The bus is up (no `Lost` without a `Restored` after it).
    pub(crate) up: bool,
    pub(crate) next_heartbeat: Instant,
    pub(crate) nodes: BTreeMap<String, Node>,
    /// Lowercased room → its remote members.
    pub(crate) rooms: BTreeMap<String, RemoteRoom>,
    /// Lowercased nick → node holding it.
    pub(crate) nicks: BTreeMap<String, String>,
    /// Remote users in all (sum of the nodes' user counts).
    pub(crate) remote_users: usize,
    /// Claims in flight by token; tokens increase and so do deadlines, so the first
    /// entry is always the next to time out.
    pub(crate) claims: BTreeMap<u64, Claim>,
    pub(crate) next_token: u64,
    /// Lowercased nicks with a guest or rename claim in flight (not for others here).
    pub(crate) reserved: BTreeSet<String>,
    /// Connections with a rename claim in flight → its token.
    pub(crate) renaming: BTreeMap<ConnId, u64>,
    /// Connections waiting for their guest claim.
    pub(crate) admitting: BTreeMap<ConnId, Admitting>,
    pub(crate) stats: ClusterStats,
}

impl Cluster {
    pub(crate) fn new(config: ClusterConfig) -> Self {
        Cluster {
            config,
            seq: 0,
            up: true,
            next_heartbeat: Instant::ZERO,
            nodes: BTreeMap::new(),
            rooms: BTreeMap::new(),
            nicks: BTreeMap::new(),
            remote_users: 0,
            claims: BTreeMap::new(),
            next_token: 1,
            reserved: BTreeSet::new(),
            renaming: BTreeMap::new(),
            admitting: BTreeMap::new(),
            stats: ClusterStats::default(),
        }
    }

    /// Whether `key` (a lowercased nick) is used elsewhere: by a remote user or a
    /// claim in flight here.
    pub(crate) fn taken(&self, key: &str) -> bool {
        self.nicks.contains_key(key) || self.reserved.contains(key)
    }

    /// Adds (or moves) `node`'s user `nick` to `room` (display name with `#`).
    /// `false` if over the per-node bound.
    pub(crate) fn add_user(&mut self, node: &str, nick: &str, room: &str) -> bool {
        let key = nick.to_ascii_lowercase();
        let room_key = room.strip_prefix('#').unwrap_or(room).to_ascii_lowercase();
        let Some(n) = self.nodes.get_mut(node) else {
            return false;
        };
        if let Some(old) = n.users.get(&key) {
            if old.room == room_key && old.nick == nick {
                return true;
            }
            self.remove_user(node, &key);
        } else if self
            .nodes
            .get(node)
            .is_some_and(|n| n.users.len() >= wire::MAX_USERS)
        {
            self.stats.over_limit += 1;
            return false;
        }
        let Some(n) = self.nodes.get_mut(node) else {
            return false;
        };
        n.users.insert(
            key.clone(),
            RemoteUser {
                nick: nick.into(),
                room: room_key.clone(),
            },
        );
        self.remote_users += 1;
        self.nicks.insert(key.clone(), node.into());
        let r = self.rooms.entry(room_key).or_insert_with(|| RemoteRoom {
            name: room.into(),
            members: BTreeMap::new(),
        });
        r.members.insert((key, node.into()), nick.into());
        true
    }

    /// Removes `node`'s user `key` (lowercased nick); returns it.
    pub(crate) fn remove_user(&mut self, node: &str, key: &str) -> Option<RemoteUser> {
        let user = self.nodes.get_mut(node)?.users.remove(key)?;
        self.remote_users -= 1;
        if self.nicks.get(key).is_some_and(|n| n == node) {
            self.nicks.remove(key);
        }
        if let Some(r) = self.rooms.get_mut(&user.room) {
            r.members.remove(&(String::from(key), String::from(node)));
            if r.members.is_empty() {
                self.rooms.remove(&user.room);
            }
        }
        Some(user)
    }

    /// The users of `node` (lowercased nicks), in order.
    pub(crate) fn node_users(&self, node: &str) -> Vec<String> {
        self.nodes
            .get(node)
            .map(|n| n.users.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets `node` and whatever users it still has.
    pub(crate) fn forget_node(&mut self, node: &str) {
        for key in self.node_users(node) {
            self.remove_user(node, &key);
        }
        self.nodes.remove(node);
    }

    /// A new claim's token, recorded with its deadline.
    pub(crate) fn claim(&mut self, now: Instant, key: String, purpose: Purpose) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        let deadline = now + self.config.claim_timeout;
        self.claims.insert(
            token,
            Claim {
                key,
                purpose,
                deadline,
            },
        );
        token
    }

    /// The next time something is due: a heartbeat, a silent node, a claim timeout.
    pub(crate) fn poll_timeout(&self) -> Instant {
        let mut next = self.next_heartbeat;
        if self.up {
            for n in self.nodes.values() {
                next = next.min(n.last_seen + self.config.node_timeout);
            }
        }
        if let Some(c) = self.claims.values().next() {
            next = next.min(c.deadline);
        }
        next
    }
}
