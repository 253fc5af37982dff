//! Several chat cores as the nodes of one cluster (`docs/cluster.md`) over a
//! simulated bus, from a seed: users on every node chatting (numbered lines) and
//! racing for nicks, while the bus delays actions and deliveries, drops actions
//! (the adapter then reports `Lost` and `Restored`, as a bus that fell behind), and
//! cuts nodes off for a while (partitions, some longer than the node timeout).
//!
//! The bus keeps each publisher's order towards each subscriber (as Redis does),
//! sometimes delivers a payload twice,
//! forgets a node's subscriptions and everything in flight to it when its link is
//! lost, answers claims atomically with expiry in virtual time, and drops a cut-off
//! node's actions.
//!
//! Checked, at every line a user receives:
//! * per-sender order and no duplicates (`m<sender>:<k>` with `k` increasing);
//! * no silent loss: a receiver that skips some of a sender's lines must have been
//!   told something may be missing since its previous line from that sender
//!   (`* some messages … were missed`, `* other servers are unreachable` / `… back`,
//!   or `* nick left (server lost)`); also for lines still missing at the end;
//! * nobody gets their own lines;
//!
//! and at the end, once every link is healed and the cluster has been quiet for a
//! while: presence converged (every user's `/who` lists every user of every node),
//! and nicks are unique across the cluster ignoring case.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use super::{Digest, Queue, Rng, SimReport};
use crate::chat::cluster::ClusterConfig;
use crate::chat::{ChatConfig, ChatServer, ConnId, Output};
use crate::cluster::{BusAction, BusEvent, ClaimTable};
use crate::Instant;

/// Something scheduled on the virtual clock.
#[derive(Debug)]
enum Ev {
    /// The bus executes node `from`'s action (dropped if its link generation moved on).
    Execute {
        from: usize,
        gen: u64,
        action: BusAction,
    },
    /// The bus delivers an event to node `to` (dropped if its generation moved on).
    Deliver {
        to: usize,
        gen: u64,
        event: BusEvent,
    },
    /// The bus tells node `to` its link is lost / back (never dropped).
    Control {
        to: usize,
        event: BusEvent,
    },
    /// Node `node`'s link is cut / healed.
    Cut(usize),
    Heal(usize),
    /// User `u` does something.
    Act(usize),
}

/// A node and its link to the bus.
struct Node {
    s: ChatServer,
    /// Bumped when the link is lost: what was in flight to or from it is void.
    gen: u64,
    down: bool,
    subscribed: bool,
    /// When its last action was executed (actions run in order).
    last_exec: u64,
    /// Per receiver: when the last delivery from this node to it is due (in order).
    last_deliver: BTreeMap<usize, u64>,
}

/// A user and what it received.
#[derive(Default)]
struct User {
    node: usize,
    id: Option<ConnId>,
    sent: u32,
    /// Per sender: the next line expected.
    next: BTreeMap<usize, u32>,
    /// Notices that may excuse a loss, so far.
    excuses: u64,
    /// Per sender: `excuses` when its last line arrived.
    excuses_at: BTreeMap<usize, u64>,
    last_who: String,
}

struct Sim {
    rng: Rng,
    q: Queue<Ev>,
    nodes: Vec<Node>,
    users: Vec<User>,
    /// (node, conn) → user.
    by_conn: BTreeMap<(usize, ConnId), usize>,
    /// key → (owner, expiry ms).
    claims: ClaimTable<u64>,
    now: u64,
    digest: Digest,
    report: SimReport,
    /// Users act until then.
    chat_until: u64,
}

const NAMES: [&str; 6] = ["ann", "Ann", "bob", "BOB", "cy", "dee"];
const TOPIC_CHECK: &str = "echochat";

/// Plays one cluster session for `seed`; panics if an invariant breaks.
pub fn run(seed: u64) -> SimReport {
    let mut rng = Rng::new(seed);
    let n_nodes = rng.urange(2, 3);
    let nodes = (0..n_nodes)
        .map(|i| Node {
            s: ChatServer::with_cluster(
                ChatConfig::default(),
                ClusterConfig::new(format!("n{i}"), 1),
            ),
            gen: 0,
            down: false,
            subscribed: false,
            last_exec: 0,
            last_deliver: BTreeMap::new(),
        })
        .collect();
    let mut sim = Sim {
        rng,
        q: Queue::default(),
        nodes,
        users: Vec::new(),
        by_conn: BTreeMap::new(),
        claims: ClaimTable::default(),
        now: 0,
        digest: Digest::default(),
        report: SimReport {
            seed,
            ..SimReport::default()
        },
        chat_until: 30_000,
    };
    for i in 0..n_nodes {
        sim.drain(i);
    }
    // Users arrive in the first 100 ms, and start talking at 1 s.
    for node in 0..n_nodes {
        for _ in 0..sim.rng.urange(1, 3) {
            let at = sim.rng.range(0, 100);
            let u = sim.users.len();
            sim.users.push(User {
                node,
                ..User::default()
            });
            sim.q.at(at, Ev::Act(u));
        }
    }
    // Partitions (some longer than the node timeout) and short losses.
    let mut t = 2_000;
    while t < sim.chat_until {
        t += sim.rng.range(1_000, 8_000);
        let node = sim.rng.urange(0, n_nodes - 1);
        let len = if sim.rng.chance(30) {
            sim.rng.range(9_000, 14_000)
        } else {
            sim.rng.range(200, 5_000)
        };
        sim.q.at(t, Ev::Cut(node));
        sim.q.at(t + len, Ev::Heal(node));
        t += len;
    }
    sim.run_until(sim.chat_until + 40_000);
    sim.finish();
    sim.report.digest = sim.digest.value();
    sim.report.millis = sim.now;
    sim.report
}

impl Sim {
    fn run_until(&mut self, end: u64) {
        loop {
            let timer = self
                .nodes
                .iter()
                .filter_map(|n| n.s.poll_timeout())
                .map(|t| t.since_origin().as_millis() as u64)
                .min();
            let next = [timer, self.q.peek_time()].into_iter().flatten().min();
            let Some(next) = next.filter(|&t| t <= end) else {
                self.now = end;
                return;
            };
            self.now = self.now.max(next);
            if timer == Some(next) {
                for i in 0..self.nodes.len() {
                    let now = self.instant();
                    if self.nodes[i].s.poll_timeout().is_some_and(|t| t <= now) {
                        self.nodes[i].s.handle_timeout(now);
                        self.drain(i);
                        assert!(
                            self.nodes[i].s.poll_timeout().is_none_or(|t| t > now),
                            "poll_timeout after handle_timeout must be later"
                        );
                    }
                }
                continue;
            }
            let Some((_, ev)) = self.q.pop() else {
                continue;
            };
            self.report.events += 1;
            self.handle(ev);
        }
    }

    /// Random losses happen while users chat, not in the quiet time at the end.
    fn lossy(&self) -> bool {
        self.now < self.chat_until
    }

    fn instant(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.instant();
        match ev {
            Ev::Execute { from, gen, action } => {
                if self.nodes[from].gen == gen && !self.nodes[from].down {
                    self.execute(from, action);
                }
            }
            Ev::Deliver { to, gen, event } => {
                if self.nodes[to].gen == gen && !self.nodes[to].down {
                    self.nodes[to].s.handle_bus(now, event);
                    self.drain(to);
                }
            }
            Ev::Control { to, event } => {
                self.digest.num(900 + to as u64);
                self.nodes[to].s.handle_bus(now, event);
                self.drain(to);
            }
            Ev::Cut(i) => self.lose(i, true),
            Ev::Heal(i) => {
                if self.nodes[i].down {
                    self.nodes[i].down = false;
                    let at = self.now + self.rng.range(1, 50);
                    self.q.at(
                        at,
                        Ev::Control {
                            to: i,
                            event: BusEvent::Restored,
                        },
                    );
                }
            }
            Ev::Act(u) => self.act(u),
        }
    }

    /// Node `i`'s link is lost: everything in flight to and from it is void, its
    /// subscription forgotten; it is told. `cut`: it stays down until healed;
    /// otherwise (an overflow) it comes back shortly.
    fn lose(&mut self, i: usize, cut: bool) {
        let n = &mut self.nodes[i];
        if n.down {
            return;
        }
        n.gen += 1;
        n.subscribed = false;
        n.down = true;
        self.digest.num(800 + i as u64);
        let at = self.now + self.rng.range(1, 50);
        self.q.at(
            at,
            Ev::Control {
                to: i,
                event: BusEvent::Lost,
            },
        );
        if !cut {
            let back = at + self.rng.range(50, 500);
            self.q.at(back, Ev::Heal(i));
        }
    }

    /// The bus executes `action` of node `from`.
    fn execute(&mut self, from: usize, action: BusAction) {
        match action {
            BusAction::Publish { topic, payload } => {
                assert_eq!(topic, TOPIC_CHECK);
                for to in 0..self.nodes.len() {
                    let n = &self.nodes[to];
                    if !n.subscribed || n.down {
                        continue;
                    }
                    let gen = n.gen;
                    if to != from && self.lossy() && self.rng.chance(1) {
                        // The subscriber's link overflows: it loses this and reconnects.
                        self.lose(to, false);
                        continue;
                    }
                    let delay = self.rng.range(0, 30);
                    let last = self.nodes[from].last_deliver.get(&to).copied().unwrap_or(0);
                    let at = (self.now + delay).max(last);
                    self.nodes[from].last_deliver.insert(to, at);
                    let event = BusEvent::Message {
                        topic: topic.clone(),
                        payload: payload.clone(),
                    };
                    if self.rng.chance(1) {
                        // Delivered twice (an adapter replaying after a hiccup).
                        let again = event.clone();
                        self.q.at(
                            at,
                            Ev::Deliver {
                                to,
                                gen,
                                event: again,
                            },
                        );
                    }
                    self.q.at(at, Ev::Deliver { to, gen, event });
                }
            }
            BusAction::Subscribe { topic } => {
                assert_eq!(topic, TOPIC_CHECK);
                self.nodes[from].subscribed = true;
            }
            BusAction::Unsubscribe { .. } => self.nodes[from].subscribed = false,
            BusAction::Claim {
                token,
                key,
                owner,
                ttl,
            } => {
                let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                let won = self
                    .claims
                    .claim(self.now, key, owner, self.now.saturating_add(ttl));
                let gen = self.nodes[from].gen;
                let at = self.now + self.rng.range(0, 20);
                self.q.at(
                    at,
                    Ev::Deliver {
                        to: from,
                        gen,
                        event: BusEvent::Claimed { token, won },
                    },
                );
            }
            BusAction::Release { key, owner } => {
                self.claims.release(&key, &owner);
            }
        }
    }

    /// User `u` arrives, or says something, or asks for a nick.
    fn act(&mut self, u: usize) {
        let node = self.users[u].node;
        let now = self.instant();
        let Some(id) = self.users[u].id else {
            let id = self.nodes[node].s.handle_open(now);
            self.users[u].id = Some(id);
            self.by_conn.insert((node, id), u);
            self.report.connections += 1;
            self.drain(node);
            let next = 1_000 + self.rng.range(0, 300);
            self.q.at(next, Ev::Act(u));
            return;
        };
        if self.now >= self.chat_until {
            return;
        }
        assert!(self.nodes[node].s.is_open(id), "user {u} admitted by 1 s");
        let line = if self.rng.chance(8) {
            format!("/nick {}\n", NAMES[self.rng.urange(0, NAMES.len() - 1)])
        } else {
            let k = self.users[u].sent;
            self.users[u].sent += 1;
            format!("m{u}:{k}\n")
        };
        self.nodes[node]
            .s
            .handle_data(now, id, line.as_bytes())
            .expect("open connection");
        self.drain(node);
        let next = self.now + self.rng.range(20, 600);
        self.q.at(next, Ev::Act(u));
    }

    /// Executes node `i`'s outputs: lines to users (checked), actions to the bus.
    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].s.poll_output() {
            match out {
                Output::Transmit { to, bytes } => {
                    self.digest.num(10 + to.0);
                    self.digest.bytes(&bytes);
                    self.nodes[i]
                        .s
                        .handle_flushed(to, bytes.len())
                        .expect("flushed what was sent");
                    let u = *self.by_conn.get(&(i, to)).expect("a known user");
                    let text = core::str::from_utf8(&bytes).expect("UTF-8");
                    for line in text.lines() {
                        self.receive(u, line);
                    }
                }
                Output::Close { id, reason } => panic!("{id:?} closed ({reason:?})"),
                Output::Abort { id } => panic!("{id:?} aborted"),
                Output::Bus(action) => {
                    let n = &mut self.nodes[i];
                    if n.down {
                        continue; // dropped by the bus (the node has been told)
                    }
                    if self.lossy() && self.rng.chance(1) {
                        // The bus's queue overflows: the action is dropped.
                        self.lose(i, false);
                        continue;
                    }
                    let n = &mut self.nodes[i];
                    let at = (self.now + self.rng.range(0, 20)).max(n.last_exec);
                    n.last_exec = at;
                    let gen = n.gen;
                    self.q.at(
                        at,
                        Ev::Execute {
                            from: i,
                            gen,
                            action,
                        },
                    );
                }
            }
        }
    }

    /// Checks one line user `u` received.
    fn receive(&mut self, u: usize, line: &str) {
        let user = &mut self.users[u];
        if line == "* some messages from other servers were missed"
            || line == "* other servers are unreachable"
            || line == "* other servers are back (messages may have been missed)"
            || line.ends_with(" left (server lost)")
        {
            user.excuses += 1;
            return;
        }
        if line.starts_with("* in #lobby: ") {
            user.last_who = line.to_string();
            return;
        }
        let Some((_, body)) = line.split_once("> m") else {
            return;
        };
        let Some((from, k)) = body.split_once(':') else {
            return;
        };
        let (Ok(from), Ok(k)) = (from.parse::<usize>(), k.parse::<u32>()) else {
            return;
        };
        assert_ne!(from, u, "user {u} got its own line back");
        self.report.delivered += 1;
        let want = user.next.get(&from).copied().unwrap_or(0);
        assert!(
            k >= want,
            "user {u}: line {k} of user {from} after line {} (order / duplicate)",
            want.saturating_sub(1)
        );
        if k > want {
            let at = user.excuses_at.get(&from).copied().unwrap_or(0);
            assert!(
                user.excuses > at,
                "user {u}: lines {want}..{k} of user {from} lost silently"
            );
        } else {
            self.report.verified += 1;
        }
        user.next.insert(from, k + 1);
        let excuses = user.excuses;
        user.excuses_at.insert(from, excuses);
    }

    /// End of the run: nothing lost silently at the tail, presence converged, nicks
    /// unique.
    fn finish(&mut self) {
        for n in &self.nodes {
            assert!(!n.down, "every link healed");
        }
        for r in 0..self.users.len() {
            for s in 0..self.users.len() {
                if r == s {
                    continue;
                }
                let got = self.users[r].next.get(&s).copied().unwrap_or(0);
                if got < self.users[s].sent {
                    let at = self.users[r].excuses_at.get(&s).copied().unwrap_or(0);
                    assert!(
                        self.users[r].excuses > at,
                        "user {r}: the last {} lines of user {s} lost silently",
                        self.users[s].sent - got
                    );
                }
            }
        }
        let mut nicks = BTreeSet::new();
        let mut all = Vec::new();
        for u in &self.users {
            let id = u.id.expect("arrived");
            let nick = self.nodes[u.node].s.nick(id).expect("open").to_string();
            assert!(
                nicks.insert(nick.to_ascii_lowercase()),
                "nick {nick} twice in the cluster"
            );
            all.push(nick);
        }
        all.sort_by_key(|n| n.to_ascii_lowercase());
        let want = format!("* in #lobby: {}", all.join(", "));
        for u in 0..self.users.len() {
            let (node, id) = (self.users[u].node, self.users[u].id.expect("arrived"));
            let now = self.instant();
            self.nodes[node]
                .s
                .handle_data(now, id, b"/who\n")
                .expect("open");
            self.drain(node);
            assert_eq!(
                self.users[u].last_who, want,
                "user {u}'s /who: presence converged"
            );
        }
        let _ = Duration::ZERO;
    }
}
