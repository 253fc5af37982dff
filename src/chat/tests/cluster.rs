//! The cluster rules (`docs/cluster.md`) with two or three cores wired through an
//! in-test bus ([`Net`]): no sockets, simulated time, every bus action executed in a
//! deterministic order the test controls (or a random one, in `cluster_prop`).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::*;
use crate::chat::cluster::ClusterConfig;
use crate::chat::text::cluster as notice;
use crate::cluster::{BusAction, BusEvent, ClaimTable};

/// One node: a core and what its clients received.
pub(super) struct Node {
    pub(super) s: ChatServer,
    pub(super) inbox: BTreeMap<ConnId, String>,
    pub(super) closed: BTreeMap<ConnId, CloseReason>,
    /// Its bus actions not executed yet, in order.
    pub(super) actions: VecDeque<BusAction>,
    /// Bus events not delivered to it yet, in order.
    pub(super) events: VecDeque<BusEvent>,
    pub(super) subscribed: BTreeSet<String>,
}

/// Several nodes and the bus between them: a Redis-like store of claims with
/// expiry, and pub/sub that keeps each publisher's order.
pub(super) struct Net {
    pub(super) nodes: Vec<Node>,
    pub(super) now: Instant,
    /// key → (owner, expiry).
    pub(super) claims: ClaimTable<Instant>,
    /// Nodes whose bus link is cut: their actions are dropped, nothing reaches them.
    pub(super) cut: BTreeSet<usize>,
}

impl Net {
    pub(super) fn new(n: usize) -> Self {
        Self::with(n, ChatConfig::default(), |c| c)
    }

    pub(super) fn with(
        n: usize,
        config: ChatConfig,
        tune: impl Fn(ClusterConfig) -> ClusterConfig,
    ) -> Self {
        let nodes = (0..n)
            .map(|i| Node {
                s: ChatServer::with_cluster(config, tune(ClusterConfig::new(format!("n{i}"), 1))),
                inbox: BTreeMap::new(),
                closed: BTreeMap::new(),
                actions: VecDeque::new(),
                events: VecDeque::new(),
                subscribed: BTreeSet::new(),
            })
            .collect();
        let mut net = Net {
            nodes,
            now: Instant::ZERO,
            claims: ClaimTable::default(),
            cut: BTreeSet::new(),
        };
        net.tick(0);
        net
    }

    /// Collects node `i`'s outputs (clients flush at once).
    pub(super) fn drain(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        while let Some(out) = n.s.poll_output() {
            match out {
                Output::Transmit { to, bytes } => {
                    assert!(!n.closed.contains_key(&to), "output after close");
                    let text = core::str::from_utf8(&bytes).expect("UTF-8");
                    assert!(text.ends_with('\n'));
                    n.inbox.entry(to).or_default().push_str(text);
                    n.s.handle_flushed(to, bytes.len()).unwrap();
                }
                Output::Close { id, reason } => {
                    assert!(n.closed.insert(id, reason).is_none(), "closed twice");
                    n.s.handle_closed(now, id).unwrap();
                }
                Output::Abort { .. } => {}
                Output::Bus(action) => n.actions.push_back(action),
            }
        }
    }

    /// Executes node `i`'s next bus action; `false` if it had none.
    pub(super) fn step_action(&mut self, i: usize) -> bool {
        self.drain(i);
        let Some(action) = self.nodes[i].actions.pop_front() else {
            return false;
        };
        if self.cut.contains(&i) {
            return true; // lost on the way
        }
        match action {
            BusAction::Publish { topic, payload } => {
                for (j, n) in self.nodes.iter_mut().enumerate() {
                    if n.subscribed.contains(&topic) && !self.cut.contains(&j) {
                        n.events.push_back(BusEvent::Message {
                            topic: topic.clone(),
                            payload: payload.clone(),
                        });
                    }
                }
            }
            BusAction::Subscribe { topic } => {
                self.nodes[i].subscribed.insert(topic);
            }
            BusAction::Unsubscribe { topic } => {
                self.nodes[i].subscribed.remove(&topic);
            }
            BusAction::Claim {
                token,
                key,
                owner,
                ttl,
            } => {
                let won = self.claims.claim(self.now, key, owner, self.now + ttl);
                self.nodes[i]
                    .events
                    .push_back(BusEvent::Claimed { token, won });
            }
            BusAction::Release { key, owner } => {
                self.claims.release(&key, &owner);
            }
        }
        true
    }

    /// Delivers node `i`'s next bus event; `false` if it had none.
    pub(super) fn step_event(&mut self, i: usize) -> bool {
        let Some(event) = self.nodes[i].events.pop_front() else {
            return false;
        };
        let now = self.now;
        self.nodes[i].s.handle_bus(now, event);
        self.drain(i);
        true
    }

    /// Runs the bus until nothing is left to do, in a fixed order.
    pub(super) fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut busy = false;
            for i in 0..self.nodes.len() {
                busy |= self.step_action(i);
            }
            for i in 0..self.nodes.len() {
                busy |= self.step_event(i);
            }
            if !busy {
                return;
            }
        }
        panic!("the bus never settles");
    }

    /// Time is `ms`: every node's timers run, then the bus settles.
    pub(super) fn tick(&mut self, ms: u64) {
        self.now = Instant::from_millis(ms);
        for i in 0..self.nodes.len() {
            let now = self.now;
            if self.nodes[i].s.poll_timeout().is_some_and(|t| t <= now) {
                self.nodes[i].s.handle_timeout(now);
            }
            self.drain(i);
            if let Some(t) = self.nodes[i].s.poll_timeout() {
                assert!(t > now, "poll_timeout not after handle_timeout");
            }
        }
        self.pump();
    }

    /// Advances time from now to `ms` in steps of `step_ms`.
    pub(super) fn run_to(&mut self, ms: u64, step_ms: u64) {
        let mut t = self.now.since_origin().as_millis() as u64;
        while t < ms {
            t = (t + step_ms).min(ms);
            self.tick(t);
        }
    }

    pub(super) fn open(&mut self, i: usize) -> ConnId {
        let id = self.nodes[i].s.handle_open(self.now);
        self.drain(i);
        self.pump();
        id
    }

    pub(super) fn send(&mut self, i: usize, id: ConnId, text: &str) {
        self.send_only(i, id, text);
        self.pump();
    }

    /// Sends without running the bus.
    pub(super) fn send_only(&mut self, i: usize, id: ConnId, text: &str) {
        self.nodes[i]
            .s
            .handle_data(self.now, id, text.as_bytes())
            .unwrap();
        self.drain(i);
    }

    pub(super) fn take(&mut self, i: usize, id: ConnId) -> String {
        self.nodes[i].inbox.remove(&id).unwrap_or_default()
    }

    pub(super) fn lines(&mut self, i: usize, id: ConnId) -> Vec<String> {
        self.take(i, id).lines().map(ToString::to_string).collect()
    }

    pub(super) fn nick(&self, i: usize, id: ConnId) -> String {
        self.nodes[i].s.nick(id).unwrap_or("").to_string()
    }

    /// Forgets everything received so far.
    pub(super) fn clear(&mut self) {
        for n in &mut self.nodes {
            n.inbox.clear();
        }
    }

    /// The bus tells node `i` it lost its link.
    pub(super) fn lose(&mut self, i: usize) {
        self.cut.insert(i);
        self.nodes[i].events.clear();
        self.nodes[i].subscribed.clear();
        self.nodes[i].events.push_back(BusEvent::Lost);
        self.pump();
    }

    /// The bus tells node `i` its link is back.
    pub(super) fn restore(&mut self, i: usize) {
        self.cut.remove(&i);
        self.nodes[i].events.push_back(BusEvent::Restored);
        self.pump();
    }
}

/// Opens one user on each listed node, settles, and forgets the welcome traffic.
fn users(net: &mut Net, on: &[usize]) -> Vec<ConnId> {
    let ids = on.iter().map(|&i| net.open(i)).collect();
    net.clear();
    ids
}

#[test]
fn a_single_node_core_never_talks_to_a_bus() {
    // `None` cluster: the harness H panics on any Output::Bus; a quick tour.
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "/nick alice\nhi\n/who\n/rooms\n/msg nobody x\n");
    assert_eq!(h.lines(b), ["* guest1 is now known as alice", "<alice> hi"]);
    h.s.shutdown(Instant::ZERO);
    h.drain();
    assert!(h.s.cluster_stats().is_none());
}

#[test]
fn a_clustered_core_subscribes_and_heartbeats() {
    let mut s = ChatServer::with_cluster(ChatConfig::default(), ClusterConfig::new("n0", 1));
    assert!(matches!(
        s.poll_output(),
        Some(Output::Bus(BusAction::Subscribe { .. }))
    ));
    assert_eq!(
        s.poll_timeout(),
        Some(Instant::ZERO),
        "first heartbeat at once"
    );
    s.handle_timeout(Instant::ZERO);
    assert!(matches!(
        s.poll_output(),
        Some(Output::Bus(BusAction::Publish { .. }))
    ));
    assert_eq!(s.poll_timeout(), Some(Instant::from_millis(2000)));
}

#[test]
fn guest_names_are_unique_across_nodes() {
    let mut net = Net::new(2);
    // Both nodes start at guest1: the second claim loses and skips to guest2.
    let a = net.nodes[0].s.handle_open(net.now);
    let b = net.nodes[1].s.handle_open(net.now);
    assert!(!net.nodes[1].s.is_open(b), "waits for its claim");
    assert!(net.nodes[1].s.is_admitting(b));
    net.drain(0);
    net.drain(1);
    net.pump();
    assert_eq!(net.nick(0, a), "guest1");
    assert_eq!(net.nick(1, b), "guest2");
    assert!(net
        .take(1, b)
        .starts_with("* welcome guest2, 2 users online\n"));
    // The next one on node 1 is guest3 (N increases per connection on each node).
    let c = net.open(1);
    assert_eq!(net.nick(1, c), "guest3");
    assert!(net
        .take(1, c)
        .starts_with("* welcome guest3, 3 users online\n"));
}

#[test]
fn early_input_waits_for_the_guest_claim() {
    let mut net = Net::new(2);
    let [a] = users(&mut net, &[0])[..] else {
        unreachable!()
    };
    let b = net.nodes[1].s.handle_open(net.now);
    net.send_only(1, b, "/nick bob\nhello\n");
    assert_eq!(net.take(1, b), "", "nothing before the welcome");
    net.pump();
    assert_eq!(
        net.lines(1, b),
        [
            "* welcome guest2, 2 users online",
            "* guest2 is now known as bob"
        ]
    );
    assert_eq!(
        net.lines(0, a),
        [
            "* guest2 joined #lobby",
            "* guest2 is now known as bob",
            "<bob> hello"
        ]
    );
}

#[test]
fn lines_after_a_nick_wait_for_its_answer() {
    let mut net = Net::new(2);
    let [a, b] = users(&mut net, &[0, 1])[..] else {
        unreachable!()
    };
    net.send_only(1, b, "/nick bob\nhello\n/nick bob2\nagain\n");
    assert!(net.nodes[1].s.is_input_held(b));
    net.nodes[1].s.handle_peer_closed(net.now, b).unwrap();
    net.drain(1);
    assert!(net.take(0, a).is_empty());
    net.pump();
    assert_eq!(
        net.lines(0, a),
        [
            "* guest2 is now known as bob",
            "<bob> hello",
            "* bob is now known as bob2",
            "<bob2> again",
            "* bob2 left (connection closed)"
        ]
    );
    assert!(net.claims.is_empty() || !net.claims.contains_key("bob2"));
}

#[test]
fn messages_cross_nodes_in_order() {
    let mut net = Net::new(3);
    let [a, b, c] = users(&mut net, &[0, 1, 2])[..] else {
        unreachable!()
    };
    let (na, nb) = (net.nick(0, a), net.nick(1, b));
    for k in 0..20 {
        net.send_only(0, a, &format!("a{k}\n"));
        net.send_only(1, b, &format!("b{k}\n"));
    }
    net.pump();
    for (i, id) in [(1, b), (2, c)] {
        let got: Vec<String> = net
            .lines(i, id)
            .into_iter()
            .filter(|l| l.starts_with(&format!("<{na}>")))
            .collect();
        let want: Vec<String> = (0..20).map(|k| format!("<{na}> a{k}")).collect();
        assert_eq!(got, want, "node {i}");
    }
    let got_c: Vec<String> = net
        .lines(0, a)
        .into_iter()
        .filter(|l| l.starts_with(&format!("<{nb}>")))
        .collect();
    assert_eq!(got_c.len(), 20);
    assert!(net.take(2, c).is_empty());
    // /me too, and nobody gets their own line back.
    net.send(2, c, "/me waves\n");
    assert!(net.take(0, a).ends_with("waves\n"));
    assert!(net.take(2, c).is_empty());
}

#[test]
fn who_rooms_and_msg_see_every_node() {
    let mut net = Net::new(2);
    let [a, b, c] = users(&mut net, &[0, 1, 1])[..] else {
        unreachable!()
    };
    net.send(0, a, "/nick alice\n");
    net.send(1, b, "/nick Bob\n");
    net.send(1, c, "/join rust\n");
    net.clear();
    net.send(0, a, "/who\n");
    assert_eq!(net.take(0, a), "* in #lobby: alice, Bob\n");
    net.send(0, a, "/rooms\n");
    assert_eq!(net.take(0, a), "* rooms: #lobby (2), #rust (1)\n");
    net.send(1, c, "/rooms\n");
    assert_eq!(net.take(1, c), "* rooms: #lobby (2), #rust (1)\n");
    net.send(0, a, "/msg bob psst\n");
    assert_eq!(net.take(1, b), "(pm) <alice> psst\n");
    assert!(net.take(1, c).is_empty() && net.take(0, a).is_empty());
    net.send(1, b, "/msg ALICE back\n");
    assert_eq!(net.take(0, a), "(pm) <Bob> back\n");
    net.send(0, a, "/msg nobody x\n");
    assert_eq!(net.take(0, a), "! no such nick nobody\n");
    // Joining a room that lives only on the other node: its spelling is kept.
    net.send(0, a, "/join RUST\n");
    assert_eq!(net.lines(0, a), ["* alice joined #rust"]);
    assert_eq!(net.lines(1, c), ["* alice joined #rust"]);
    assert_eq!(net.lines(1, b), ["* alice left #lobby"]);
    net.send(0, a, "/who\n");
    assert_eq!(net.take(0, a), "* in #rust: alice, guest3\n");
    let d = net.open(0);
    // Node 0's own counter is at 2, and guest2 is free again (renamed to Bob).
    assert!(net
        .take(0, d)
        .starts_with("* welcome guest2, 4 users online"));
}

#[test]
fn nick_race_has_exactly_one_winner() {
    let mut net = Net::new(2);
    let [a, b] = users(&mut net, &[0, 1])[..] else {
        unreachable!()
    };
    net.send_only(0, a, "/nick Zed\n");
    net.send_only(1, b, "/nick zed\n");
    net.pump();
    let (la, lb) = (net.lines(0, a), net.lines(1, b));
    let won_a = la.iter().any(|l| l.ends_with("is now known as Zed"));
    let won_b = lb.iter().any(|l| l.ends_with("is now known as zed"));
    assert!(won_a ^ won_b, "{la:?} {lb:?}");
    let loser = if won_a { &lb } else { &la };
    assert!(
        loser
            .iter()
            .any(|l| l.starts_with("! nick ") && l.ends_with(" is taken")),
        "{loser:?}"
    );
    // Taken is answered at once for a nick known to be on another node.
    let (i, id, name) = if won_a { (1, b, "ZED") } else { (0, a, "ZED") };
    net.send(i, id, &format!("/nick {name}\n"));
    assert_eq!(net.take(i, id), "! nick ZED is taken\n");
    // Two users of one node racing: the second is told at once.
    let c = net.open(0);
    let d = net.open(0);
    net.clear();
    net.send_only(0, c, "/nick same\n");
    net.send_only(0, d, "/nick SAME\n");
    assert_eq!(net.take(0, d), "! nick SAME is taken\n");
    net.pump();
    assert_eq!(net.nick(0, c), "same");
}

#[test]
fn renames_release_the_old_nick_and_case_changes_need_no_claim() {
    let mut net = Net::new(2);
    let [a, b] = users(&mut net, &[0, 1])[..] else {
        unreachable!()
    };
    net.send(0, a, "/nick alice\n");
    net.send(0, a, "/nick ALICE\n");
    assert_eq!(net.nick(0, a), "ALICE");
    net.send(0, a, "/nick carol\n");
    net.clear();
    net.send(1, b, "/nick alice\n");
    assert_eq!(net.nick(1, b), "alice", "released by node 0");
    net.clear();
    assert!(net.claims.contains_key("alice") && net.claims.contains_key("carol"));
    assert!(!net.claims.contains_key("guest1"), "the old guest name too");
    // Quitting releases.
    net.send(0, a, "/quit\n");
    assert!(!net.claims.contains_key("carol"));
    assert_eq!(net.take(1, b), "* carol left (quit)\n");
    net.send(1, b, "/who\n");
    assert_eq!(net.take(1, b), "* in #lobby: alice\n");
}

#[test]
fn a_silent_node_is_declared_down_and_its_nicks_are_free() {
    let mut net = Net::new(2);
    let [a, b] = users(&mut net, &[0, 1])[..] else {
        unreachable!()
    };
    net.send(1, b, "/nick bob\n");
    net.run_to(3000, 500);
    net.clear();
    // Node 1 dies: nothing from it any more (its own view does not matter).
    net.cut.insert(1);
    let died = 3000;
    let mut told = None;
    let mut t = died;
    while t < died + 12_000 {
        t += 250;
        net.tick(t);
        if net.take(0, a).contains("* bob left (server lost)") {
            told = Some(t);
            break;
        }
    }
    let told = told.expect("node down noticed");
    assert!(told - died <= 10_000, "noticed after {} ms", told - died);
    // Its claims expired by then: the nick is free.
    assert!(net.claims.get("bob").is_none_or(|(_, exp)| *exp <= net.now));
    net.send(0, a, "/nick bob\n");
    assert_eq!(net.nick(0, a), "bob");
    assert_eq!(net.take(0, a), "* guest1 is now known as bob\n");
    net.send(0, a, "/who\n");
    assert_eq!(net.take(0, a), "* in #lobby: bob\n");
    assert_eq!(net.nodes[0].s.cluster_stats().unwrap().nodes_lost, 1);
}

#[test]
fn heartbeats_keep_nodes_and_claims_alive() {
    let mut net = Net::new(2);
    let [a, _b] = users(&mut net, &[0, 1])[..] else {
        unreachable!()
    };
    net.run_to(60_000, 500);
    assert!(!net.take(0, a).contains("left"), "nobody lost");
    assert!(net
        .claims
        .get("guest2")
        .is_some_and(|(_, exp)| *exp > net.now));
    net.send(0, a, "/who\n");
    assert_eq!(net.take(0, a), "* in #lobby: guest1, guest2\n");
}

#[test]
fn graceful_shutdown_is_announced_and_releases_nicks() {
    let mut net = Net::new(2);
    let [a, b] = users(&mut net, &[0, 1])[..] else {
        unreachable!()
    };
    net.send(1, b, "/nick bob\n");
    net.clear();
    let now = net.now;
    net.nodes[1].s.shutdown(now);
    net.drain(1);
    net.pump();
    assert_eq!(net.take(1, b), "* server shutting down\n");
    assert_eq!(net.take(0, a), "* bob left (server shutting down)\n");
    assert!(!net.claims.contains_key("bob"));
    // Released before the others were told: the nick is free for them at once.
    net.send(0, a, "/nick bob\n");
    assert_eq!(net.nick(0, a), "bob");
    net.clear();
    assert!(net.nodes[1].s.poll_timeout().is_none_or(|t| t > now));
    net.run_to(20_000, 1000);
    assert!(net.nodes[1].s.is_finished());
    assert!(net.take(0, a).is_empty(), "no second notice");
}

#[test]
fn bus_lost_and_restored() {
    let mut net = Net::new(2);
    let [a, a2, b] = users(&mut net, &[0, 0, 1])[..] else {
        unreachable!()
    };
    net.lose(0);
    assert_eq!(net.take(0, a), notice::UNREACHABLE);
    assert_eq!(net.take(0, a2), notice::UNREACHABLE);
    assert!(net.take(1, b).is_empty());
    // Local chat goes on; nick changes cannot be checked; no second notice.
    net.send(0, a, "still here\n");
    assert_eq!(net.take(0, a2), "<guest1> still here\n");
    net.send(0, a, "/nick alice\n");
    assert_eq!(
        net.take(0, a),
        "! nick alice cannot be checked now (other servers are unreachable)\n"
    );
    net.send(0, a, "/msg guest3 hi\n");
    assert_eq!(net.take(0, a), notice::MSG_UNREACHABLE);
    net.lose(0);
    assert!(net.take(0, a).is_empty(), "told once");
    // New users are admitted at once while the bus is down.
    let c = net.open(0);
    assert!(net.nodes[0].s.is_open(c));
    net.clear();
    net.run_to(3000, 1000);
    net.restore(0);
    assert_eq!(net.take(0, a), notice::BACK);
    // Node 1 missed node 0's events (a gap): its users are told, presence converges.
    assert_eq!(
        net.take(1, b),
        format!("{}* {} joined #lobby\n", notice::MISSED, net.nick(0, c))
    );
    net.send(1, b, "/who\n");
    let who = net.take(1, b);
    assert!(
        who.contains("guest1") && who.contains(&net.nick(0, c)),
        "{who}"
    );
    net.send(0, a, "/nick alice\n");
    assert_eq!(net.nick(0, a), "alice");
    assert_eq!(net.take(1, b), "* guest1 is now known as alice\n");
    net.clear();
    // A long outage: node 1 declares node 0 down; node 0, the cut-off one, declares
    // nobody down. After it heals, node 0's users come back.
    net.lose(0);
    net.run_to(20_000, 1000);
    assert!(!net.take(0, a).contains("left"));
    let left = net.lines(1, b);
    assert!(
        left.contains(&"* alice left (server lost)".to_string()),
        "{left:?}"
    );
    net.restore(0);
    assert_eq!(net.take(0, a), notice::BACK);
    let back = net.lines(1, b);
    assert!(
        back.contains(&"* alice joined #lobby".to_string()),
        "{back:?}"
    );
    assert!(
        !back.iter().any(|l| l.contains("missed")),
        "a fresh start, not a gap"
    );
}

#[test]
fn a_nick_lost_while_the_bus_was_away_is_given_up() {
    let mut net = Net::with(2, ChatConfig::default(), |c| c);
    let [a, b] = users(&mut net, &[0, 1])[..] else {
        unreachable!()
    };
    net.send(0, a, "/nick alice\n");
    net.lose(0);
    // Node 1 learns nothing for a long time, declares node 0 down, claims alice.
    net.run_to(20_000, 1000);
    assert!(net.take(1, b).contains("* alice left (server lost)"));
    net.send(1, b, "/nick alice\n");
    assert_eq!(net.nick(1, b), "alice");
    net.clear();
    net.restore(0);
    let lines = net.lines(0, a);
    assert!(
        lines.contains(&"! nick alice is taken".to_string()),
        "{lines:?}"
    );
    assert_ne!(net.nick(0, a).to_ascii_lowercase(), "alice");
    assert!(net.nick(0, a).starts_with("guest"));
}

#[test]
fn gaps_are_reported_and_duplicates_dropped() {
    let mut net = Net::new(2);
    let [a, b] = users(&mut net, &[0, 1])[..] else {
        unreachable!()
    };
    // Duplicate one of node 0's publications towards node 1.
    net.send_only(0, a, "one\n");
    net.drain(0);
    let dup = net.nodes[0].actions.iter().find_map(|act| match act {
        BusAction::Publish { topic, payload } => Some(BusEvent::Message {
            topic: topic.clone(),
            payload: payload.clone(),
        }),
        _ => None,
    });
    net.pump();
    net.nodes[1].events.push_back(dup.unwrap());
    net.pump();
    assert_eq!(net.take(1, b), "<guest1> one\n");
    assert_eq!(net.nodes[1].s.cluster_stats().unwrap().duplicates, 1);
    // Lose one publication of node 0 on the way.
    net.send_only(0, a, "two\n");
    net.drain(0);
    net.nodes[0].actions.clear();
    net.send(0, a, "three\n");
    assert_eq!(
        net.take(1, b),
        format!("{}<guest1> three\n", notice::MISSED)
    );
    assert_eq!(net.nodes[1].s.cluster_stats().unwrap().gaps, 1);
}

#[test]
fn hostile_payloads_are_counted_and_ignored() {
    let mut net = Net::new(2);
    let [_a, b] = users(&mut net, &[0, 1])[..] else {
        unreachable!()
    };
    for payload in [&b""[..], b"EC", b"garbage\n", &[0xff; 64]] {
        net.nodes[1].events.push_back(BusEvent::Message {
            topic: "echochat".into(),
            payload: Bytes::copy_from_slice(payload),
        });
    }
    net.nodes[1].events.push_back(BusEvent::Claimed {
        token: 999_999,
        won: true,
    });
    net.pump();
    assert_eq!(net.nodes[1].s.cluster_stats().unwrap().bad_payloads, 4);
    assert!(net.take(1, b).is_empty());
}

#[test]
fn a_restarted_node_replaces_its_previous_run() {
    let mut net = Net::new(2);
    let [a, b] = users(&mut net, &[0, 1])[..] else {
        unreachable!()
    };
    net.send(1, b, "/nick bob\n");
    net.clear();
    // Node 1 restarts with a new incarnation (its claims are still held by "n1").
    net.nodes[1].s = ChatServer::with_cluster(ChatConfig::default(), ClusterConfig::new("n1", 2));
    net.nodes[1].inbox.clear();
    net.nodes[1].closed.clear();
    net.nodes[1].subscribed.clear();
    net.tick(100);
    assert_eq!(net.take(0, a), "* bob left (server lost)\n");
    let c = net.open(1);
    assert!(net
        .take(1, c)
        .starts_with("* welcome guest2, 2 users online"));
}

#[test]
fn early_input_is_bounded_and_unanswered_claims_time_out() {
    let mut net = Net::new(2);
    let [a] = users(&mut net, &[0])[..] else {
        unreachable!()
    };
    let id = net.nodes[0].s.handle_open(net.now);
    net.drain(0);
    net.nodes[0]
        .actions
        .retain(|a| !matches!(a, BusAction::Claim { .. })); // never answered
    let chunk = "x".repeat(1000) + "\n";
    let mut sent = 0;
    while net.nodes[0].s.is_admitting(id) {
        net.nodes[0]
            .s
            .handle_data(net.now, id, chunk.as_bytes())
            .unwrap();
        sent += 1;
    }
    assert_eq!(sent, 17, "full past 16 KiB: the transport stops reading");
    // A transport that reads on anyway: the excess beyond twice the bound is dropped.
    for _ in 0..40 {
        net.nodes[0]
            .s
            .handle_data(net.now, id, chunk.as_bytes())
            .unwrap();
    }
    assert_eq!(net.nodes[0].s.connections(), 1);
    net.run_to(5000, 500);
    assert!(
        net.nodes[0].s.is_open(id),
        "admitted when the claim timed out"
    );
    assert!(net
        .take(0, id)
        .starts_with("* welcome guest2, 2 users online"));
    let lines = net.lines(0, a);
    assert_eq!(lines[0], "* guest2 joined #lobby");
    assert_eq!(
        lines.len(),
        1 + 32,
        "what was kept: 32 KiB of lines, no more"
    );
    let _ = Duration::ZERO;
}
