//! The cluster bus vocabulary: what a chat core asks of the bus that links several
//! chat-server nodes ([`BusAction`]) and what comes back ([`BusEvent`]). Pure data:
//! the core decides every cluster rule and encodes every payload itself; a bus
//! adapter (Redis, or in memory for tests) only moves opaque bytes between nodes and
//! answers atomic claims. See `docs/cluster.md` for the protocol.

use alloc::collections::BTreeMap;
use alloc::string::String;
use bytes::Bytes;
use core::time::Duration;

/// What the core asks the bus to do. A bus executes actions in the order submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAction {
    /// Deliver `payload` to every node subscribed to `topic` (this node included, if
    /// subscribed). Payloads from one node on one topic arrive in the order published.
    Publish {
        /// The topic (a room, a node, or a cluster-wide topic; named by the core).
        topic: String,
        /// The encoded event, opaque to the bus.
        payload: Bytes,
    },
    /// Start receiving `topic`'s payloads as [`BusEvent::Message`].
    Subscribe {
        /// The topic.
        topic: String,
    },
    /// Stop receiving `topic`'s payloads.
    Unsubscribe {
        /// The topic.
        topic: String,
    },
    /// Atomically claim `key` for `owner` for `ttl`: succeeds if the key is free or
    /// already held by `owner` (then its expiry is renewed), fails if another owner
    /// holds it. Answered by one [`BusEvent::Claimed`] with the same `token`.
    Claim {
        /// Matches the answer to the request.
        token: u64,
        /// The key (e.g. a nick, case-folded by the core).
        key: String,
        /// Who claims it (the node's name).
        owner: String,
        /// The claim expires this long after it was made or last renewed.
        ttl: Duration,
    },
    /// Give `key` up if `owner` holds it (no answer).
    Release {
        /// The key.
        key: String,
        /// Its owner.
        owner: String,
    },
}

/// What the bus reports to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A payload published on a subscribed topic (by any node, this one included).
    Message {
        /// The topic it was published on.
        topic: String,
        /// The payload, as published.
        payload: Bytes,
    },
    /// The answer to [`BusAction::Claim`] `token`: `true` if this owner now holds it.
    Claimed {
        /// The claim's token.
        token: u64,
        /// Whether the claim succeeded.
        won: bool,
    },
    /// The bus lost its connection (or fell behind and dropped actions): actions
    /// submitted from now on until [`BusEvent::Restored`] are dropped, and messages
    /// from other nodes may have been missed. Unanswered claims stay unanswered.
    Lost,
    /// The bus is connected again, with no subscriptions: the core re-subscribes,
    /// re-claims and re-announces what it holds.
    Restored,
}

/// The claim rule of [`BusAction::Claim`] and [`BusAction::Release`] over a clock of
/// the caller's (`T`: an instant, virtual milliseconds…), for buses that hold claims
/// themselves (the in-memory bus, the simulator's, the core's tests; Redis runs the
/// same rule in a script).
#[derive(Debug, Clone)]
pub struct ClaimTable<T> {
    /// Key → (owner, when the claim expires).
    claims: BTreeMap<String, (String, T)>,
}

impl<T> Default for ClaimTable<T> {
    fn default() -> Self {
        ClaimTable {
            claims: BTreeMap::new(),
        }
    }
}

impl<T: Copy + Ord> ClaimTable<T> {
    /// `owner` claims `key` at `now` until `expires`: won if the key is free, its
    /// claim expired, or `owner` holds it already (then renewed).
    pub fn claim(&mut self, now: T, key: String, owner: String, expires: T) -> bool {
        match self.claims.get(&key) {
            Some((o, expiry)) if *expiry > now && *o != owner => false,
            _ => {
                self.claims.insert(key, (owner, expires));
                true
            }
        }
    }

    /// `owner` gives `key` up (nothing happens if someone else holds it).
    pub fn release(&mut self, key: &str, owner: &str) {
        if self.claims.get(key).is_some_and(|(o, _)| o == owner) {
            self.claims.remove(key);
        }
    }

    /// `key`'s claim (owner, expiry), expired or not.
    pub fn get(&self, key: &str) -> Option<&(String, T)> {
        self.claims.get(key)
    }

    /// Whether `key` has a claim, expired or not.
    pub fn contains_key(&self, key: &str) -> bool {
        self.claims.contains_key(key)
    }

    /// Whether no key has a claim.
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_exclusive_until_it_expires_or_is_released() {
        let mut t = ClaimTable::default();
        assert!(t.claim(0, "bob".into(), "a".into(), 10));
        assert!(!t.claim(5, "bob".into(), "b".into(), 15), "held by a");
        assert!(
            t.claim(5, "bob".into(), "a".into(), 20),
            "renewed by its owner"
        );
        assert!(!t.claim(19, "bob".into(), "b".into(), 30));
        assert!(t.claim(20, "bob".into(), "b".into(), 30), "expired: free");
        t.release("bob", "a");
        assert_eq!(
            t.get("bob").map(|(o, _)| o.as_str()),
            Some("b"),
            "not a's to give"
        );
        t.release("bob", "b");
        assert!(t.is_empty() && !t.contains_key("bob"));
    }
}
