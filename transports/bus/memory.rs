//! `memory://NAME`: an in-process cluster bus, for tests and demos. Every
//! [`MemoryBus`] connected to the same NAME in one process shares one bus (a
//! process-global registry of named buses): pub/sub that keeps each publisher's
//! order, and claims with expiry, as Redis would hold them (`docs/cluster.md`).
//!
//! Each connection has its own worker thread and a bounded action queue
//! ([`QUEUE`]): [`Bus::submit`] never blocks; when the queue is full the action is
//! dropped and, once the worker has caught up, the connection reports
//! [`BusEvent::Lost`] then [`BusEvent::Restored`] (with no subscriptions left), the
//! same path as a lost Redis connection. A worker delivers events by calling the
//! receivers' [`Deliver`] callbacks, which may block briefly; the hub never waits
//! on a worker, so there is no cycle.
//!
//! [`cut`] and [`heal`] simulate an outage of one node's link (tests).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use super::{Bus, BusError, Deliver};
use crate::cluster::{BusAction, BusEvent, ClaimTable};

/// Actions a connection may have queued before further ones are dropped.
pub const QUEUE: usize = 4096;

/// One named bus.
#[derive(Default)]
struct Shared {
    members: Mutex<Vec<Arc<Member>>>,
    /// key → (owner, expiry).
    claims: Mutex<ClaimTable<Instant>>,
}

/// One connection to a named bus.
struct Member {
    id: u64,
    node: String,
    subs: Mutex<HashSet<String>>,
    deliver: Deliver,
    /// Its link is cut ([`cut`]): its actions are dropped, nothing reaches it.
    cut: AtomicBool,
    /// An action was dropped (queue full, or cut): Lost/Restored are due.
    dropped: AtomicBool,
    /// It reported Lost and not yet Restored.
    lost: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked leaves plain data behind: still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn registry() -> &'static Mutex<HashMap<String, Weak<Shared>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Shared>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The bus called `name`, created if nobody holds it.
fn named(name: &str) -> Arc<Shared> {
    let mut reg = lock(registry());
    reg.retain(|_, w| w.strong_count() > 0);
    if let Some(shared) = reg.get(name).and_then(Weak::upgrade) {
        return shared;
    }
    let shared = Arc::new(Shared::default());
    reg.insert(name.to_string(), Arc::downgrade(&shared));
    shared
}

/// A connection to `memory://NAME`.
pub struct MemoryBus {
    queue: flume::Sender<BusAction>,
    member: Arc<Member>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus")
            .field("node", &self.member.node)
            .finish()
    }
}

impl MemoryBus {
    /// Connects node `node` to the bus called `name` (never fails but for a thread
    /// that cannot be started).
    pub fn connect(name: &str, node: &str, deliver: Deliver) -> Result<MemoryBus, BusError> {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let shared = named(name);
        let member = Arc::new(Member {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            node: node.to_string(),
            subs: Mutex::default(),
            deliver,
            cut: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            lost: AtomicBool::new(false),
        });
        lock(&shared.members).push(Arc::clone(&member));
        let (queue, actions) = flume::bounded(QUEUE);
        let me = Arc::clone(&member);
        let worker_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("bus-memory".into())
            .spawn(move || work(&worker_shared, &me, &actions))
            .map_err(|e| {
                lock(&shared.members).retain(|m| m.id != member.id);
                BusError::Unreachable {
                    url: format!("memory://{name}"),
                    reason: e.to_string(),
                }
            })?;
        Ok(MemoryBus { queue, member })
    }
}

impl Bus for MemoryBus {
    fn submit(&self, action: BusAction) {
        if self.member.cut.load(Ordering::Relaxed) || self.queue.try_send(action).is_err() {
            self.member.dropped.store(true, Ordering::Relaxed);
            // Wake the worker so that it reports Lost even if nothing else comes.
            let _ = self.queue.try_send(BusAction::Unsubscribe {
                topic: String::new(),
            });
        }
    }
}

/// A connection's worker: executes its actions in order until the bus is dropped.
fn work(shared: &Shared, me: &Arc<Member>, actions: &flume::Receiver<BusAction>) {
    while let Ok(action) = actions.recv() {
        if !me.cut.load(Ordering::Relaxed) {
            execute(shared, me, action);
        }
        if me.dropped.load(Ordering::Relaxed) && !me.lost.swap(true, Ordering::Relaxed) {
            // Connections lose their subscriptions with their link.
            lock(&me.subs).clear();
            (me.deliver)(BusEvent::Lost);
        }
        let caught_up = actions.is_empty() && !me.cut.load(Ordering::Relaxed);
        if caught_up && me.lost.load(Ordering::Relaxed) {
            me.dropped.store(false, Ordering::Relaxed);
            me.lost.store(false, Ordering::Relaxed);
            (me.deliver)(BusEvent::Restored);
        }
    }
    let shared_members = &shared.members;
    lock(shared_members).retain(|m| m.id != me.id);
}

fn execute(shared: &Shared, me: &Arc<Member>, action: BusAction) {
    match action {
        BusAction::Publish { topic, payload } => {
            let members: Vec<Arc<Member>> = lock(&shared.members).clone();
            for m in members {
                if !m.cut.load(Ordering::Relaxed) && lock(&m.subs).contains(&topic) {
                    (m.deliver)(BusEvent::Message {
                        topic: topic.clone(),
                        payload: payload.clone(),
                    });
                }
            }
        }
        BusAction::Subscribe { topic } => {
            lock(&me.subs).insert(topic);
        }
        BusAction::Unsubscribe { topic } => {
            lock(&me.subs).remove(&topic);
        }
        BusAction::Claim {
            token,
            key,
            owner,
            ttl,
        } => {
            let now = Instant::now();
            let won = lock(&shared.claims).claim(now, key, owner, now + ttl);
            (me.deliver)(BusEvent::Claimed { token, won });
        }
        BusAction::Release { key, owner } => {
            lock(&shared.claims).release(&key, &owner);
        }
    }
}

/// Cuts node `node`'s link to bus `name` (tests): its actions are dropped and
/// nothing reaches it; it reports [`BusEvent::Lost`] at its next action (every node
/// submits a heartbeat every few seconds).
pub fn cut(name: &str, node: &str) {
    for m in lock(&named(name).members).iter().filter(|m| m.node == node) {
        m.cut.store(true, Ordering::Relaxed);
        m.dropped.store(true, Ordering::Relaxed);
    }
}

/// Heals what [`cut`] did: the node reports [`BusEvent::Restored`] after its next
/// action.
pub fn heal(name: &str, node: &str) {
    for m in lock(&named(name).members).iter().filter(|m| m.node == node) {
        m.cut.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn recorder() -> (Deliver, flume::Receiver<BusEvent>) {
        let (tx, rx) = flume::unbounded();
        (
            Box::new(move |e| {
                let _ = tx.send(e);
            }),
            rx,
        )
    }

    fn next(rx: &flume::Receiver<BusEvent>) -> BusEvent {
        rx.recv_timeout(Duration::from_secs(5)).expect("an event")
    }

    #[test]
    fn publish_reaches_subscribers_in_order_and_claims_are_exclusive() {
        let name = "unit-memory-1";
        let (d1, r1) = recorder();
        let (d2, r2) = recorder();
        let a = MemoryBus::connect(name, "a", d1).unwrap();
        let b = MemoryBus::connect(name, "b", d2).unwrap();
        let topic = String::from("t");
        a.submit(BusAction::Subscribe {
            topic: topic.clone(),
        });
        b.submit(BusAction::Subscribe {
            topic: topic.clone(),
        });
        // Wait until both are subscribed: a claim round trip on each.
        for (bus, rx) in [(&a, &r1), (&b, &r2)] {
            bus.submit(BusAction::Claim {
                token: 1,
                key: format!("sync-{}", bus.member.node),
                owner: bus.member.node.clone(),
                ttl: Duration::from_secs(5),
            });
            assert_eq!(
                next(rx),
                BusEvent::Claimed {
                    token: 1,
                    won: true
                }
            );
        }
        for k in 0..100u8 {
            a.submit(BusAction::Publish {
                topic: topic.clone(),
                payload: Bytes::from(vec![k]),
            });
        }
        for rx in [&r1, &r2] {
            for k in 0..100u8 {
                assert_eq!(
                    next(rx),
                    BusEvent::Message {
                        topic: topic.clone(),
                        payload: Bytes::from(vec![k])
                    }
                );
            }
        }
        let claim = |owner: &str, token| BusAction::Claim {
            token,
            key: "nick".into(),
            owner: owner.into(),
            ttl: Duration::from_secs(5),
        };
        a.submit(claim("a", 2));
        assert_eq!(
            next(&r1),
            BusEvent::Claimed {
                token: 2,
                won: true
            }
        );
        b.submit(claim("b", 3));
        assert_eq!(
            next(&r2),
            BusEvent::Claimed {
                token: 3,
                won: false
            }
        );
        a.submit(BusAction::Release {
            key: "nick".into(),
            owner: "a".into(),
        });
        // a's queue is executed in order, so the release is done before a's next
        // round trip answers.
        a.submit(claim("a2", 4));
        assert_eq!(
            next(&r1),
            BusEvent::Claimed {
                token: 4,
                won: true
            }
        );
    }

    #[test]
    fn a_bus_that_falls_behind_reports_lost_then_restored() {
        let name = "unit-memory-3";
        // A receiver that does not take events until told: the worker waits in
        // `deliver`, the queue fills, and further actions are dropped.
        let (gate_tx, gate) = flume::bounded::<()>(0);
        let (tx, rx) = flume::unbounded();
        let deliver: Deliver = Box::new(move |e| {
            if matches!(e, BusEvent::Claimed { token: 0, .. }) {
                let _ = gate.recv();
            }
            let _ = tx.send(e);
        });
        let a = MemoryBus::connect(name, "a", deliver).unwrap();
        let claim = |token| BusAction::Claim {
            token,
            key: "k".into(),
            owner: "a".into(),
            ttl: Duration::from_secs(5),
        };
        a.submit(claim(0)); // blocks the worker in `deliver`
        for token in 1..=(QUEUE as u64 + 10) {
            a.submit(claim(token));
        }
        gate_tx.send(()).unwrap();
        let mut answered = 0;
        loop {
            match next(&rx) {
                BusEvent::Claimed { .. } => answered += 1,
                BusEvent::Lost => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(answered <= QUEUE + 1, "some actions were dropped");
        // Caught up: Restored, and the bus works again.
        loop {
            match next(&rx) {
                BusEvent::Claimed { .. } => {}
                BusEvent::Restored => break,
                other => panic!("{other:?}"),
            }
        }
        a.submit(claim(99_999));
        assert_eq!(
            next(&rx),
            BusEvent::Claimed {
                token: 99_999,
                won: true
            }
        );
    }

    #[test]
    fn a_cut_link_reports_lost_then_restored() {
        let name = "unit-memory-2";
        let (d1, r1) = recorder();
        let a = MemoryBus::connect(name, "a", d1).unwrap();
        cut(name, "a");
        a.submit(BusAction::Subscribe { topic: "t".into() });
        assert_eq!(next(&r1), BusEvent::Lost);
        heal(name, "a");
        a.submit(BusAction::Subscribe { topic: "t".into() });
        assert_eq!(next(&r1), BusEvent::Restored);
    }
}
