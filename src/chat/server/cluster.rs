//! The cluster rules of [`ChatServer`] (`docs/cluster.md`): what a node publishes
//! when its users act, what it does with the other nodes' events, nick and guest
//! claims, heartbeats, node expiry, and the bus going away and coming back. The
//! state is [`Cluster`]; `server.rs` calls the `cluster_*` hooks below at the few
//! places where a single node's behaviour differs (each hook does nothing without a
//! cluster, so a single node behaves exactly as before).

use super::*;
use crate::chat::cluster::{
    wire, Admitting, Cluster, ClusterConfig, ClusterStats, Node, Purpose, MAX_EARLY_INPUT,
    MAX_NODES,
};
use crate::chat::text::cluster as notice;
use crate::cluster::{BusAction, BusEvent};

impl ChatServer {
    /// A server that is one node of a cluster (`docs/cluster.md`): it subscribes to
    /// the cluster topic (its first output is [`Output::Bus`]), publishes what its
    /// users do, and takes the other nodes' events through
    /// [`handle_bus`](Self::handle_bus). Its first heartbeat is due at once.
    pub fn with_cluster(config: ChatConfig, cluster: ClusterConfig) -> Self {
        let mut server = ChatServer::new(config);
        let topic = cluster.topic.clone();
        server.cluster = Some(alloc::boxed::Box::new(Cluster::new(cluster)));
        server.bus(BusAction::Subscribe { topic });
        server
    }

    /// What the bus reported (`docs/cluster.md`): another node's event, the answer
    /// to a claim, the bus lost or restored. Ignored without a cluster and after
    /// shutdown. Never fails: a payload that does not decode is counted
    /// ([`ClusterStats::bad_payloads`]) and ignored.
    pub fn handle_bus(&mut self, now: Instant, event: BusEvent) {
        self.advance(now);
        if self.cluster.is_none() || self.shut_down {
            return;
        }
        match event {
            BusEvent::Message { topic, payload } => self.bus_message(now, &topic, payload),
            BusEvent::Claimed { token, won } => self.claimed(now, token, won),
            BusEvent::Lost => self.bus_lost(now),
            BusEvent::Restored => self.bus_restored(now),
        }
        self.process_drops();
    }

    /// The cluster counters (`None`: not clustered, or shut down).
    pub fn cluster_stats(&self) -> Option<ClusterStats> {
        self.cluster.as_ref().map(|c| c.stats)
    }

    /// Whether the bus is up (`None`: not clustered).
    pub fn bus_up(&self) -> Option<bool> {
        self.cluster.as_ref().map(|c| c.up)
    }

    /// Whether `id` waits for its guest name's claim and can still take input (its
    /// early input is kept, within [`MAX_EARLY_INPUT`], and handled once it is
    /// admitted). A transport reads a connection while it is open, pending, or this.
    pub fn is_admitting(&self, id: ConnId) -> bool {
        self.cluster
            .as_ref()
            .and_then(|c| c.admitting.get(&id))
            .is_some_and(|a| a.early.len() < MAX_EARLY_INPUT && !a.eof)
    }

    /// Whether a cluster claim holds `id`'s input: its `/nick` is being checked, and
    /// the lines after it wait (in order) for the answer. A transport does not read a
    /// connection while this is true.
    pub fn is_input_held(&self, id: ConnId) -> bool {
        self.cluster_holds(id)
    }

    /// Users online in the whole cluster (this node's plus the others' as last heard).
    pub fn users_online(&self) -> usize {
        self.sink.conns.len() + self.cluster.as_ref().map_or(0, |c| c.remote_users)
    }

    // ----- hooks called from server.rs and commands.rs -----

    /// See [`is_input_held`](Self::is_input_held).
    pub(super) fn cluster_holds(&self, id: ConnId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.renaming.contains_key(&id))
    }

    /// `id`'s input is no longer held: like any paused connection that may go on,
    /// its buffered lines (and EOF) are handled (`ChatServer::resume`).
    fn unhold(&mut self) {
        self.sink.resume = true;
        self.resume();
    }

    /// Connections waiting for a guest claim (they count against `max_conns`).
    pub(super) fn cluster_admitting(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.admitting.len())
    }

    /// Admits `id` with a guest name unique in the cluster: claimed first while the
    /// bus is up (the connection waits, `true`), at once otherwise (`false`: the
    /// caller admits it as a single node would).
    pub(super) fn cluster_admit(&mut self, now: Instant, id: ConnId) -> bool {
        if self.cluster.is_none() {
            return false;
        }
        let nick = self.next_guest();
        let Some(c) = self.cluster.as_mut() else {
            return false;
        };
        if !c.up {
            self.admit_as(now, id, nick);
            return true;
        }
        let key = nick.to_ascii_lowercase();
        c.reserved.insert(key.clone());
        c.admitting.insert(
            id,
            Admitting {
                nick,
                early: Vec::new(),
                eof: false,
            },
        );
        self.send_claim(now, key, Purpose::Guest(id));
        true
    }

    /// The next `guestN` not used here nor (as far as this node knows) elsewhere.
    pub(super) fn next_guest(&mut self) -> String {
        loop {
            self.guests += 1;
            let nick = alloc::format!("guest{}", self.guests);
            if !self.nicks.contains_key(&nick)
                && !self.cluster.as_ref().is_some_and(|c| c.taken(&nick))
            {
                break nick;
            }
        }
    }

    /// Data from a connection waiting for its guest claim: kept (`true`). Once
    /// [`MAX_EARLY_INPUT`] bytes are kept the transport stops reading it
    /// ([`is_admitting`](Self::is_admitting)), so at most one more read arrives, and
    /// it is kept too: nothing is lost. Only a transport that reads anyway (a bug)
    /// has the excess dropped, at twice the bound.
    pub(super) fn cluster_early_data(&mut self, id: ConnId, data: &[u8]) -> bool {
        let Some(a) = self.cluster.as_mut().and_then(|c| c.admitting.get_mut(&id)) else {
            return false;
        };
        let room = (2 * MAX_EARLY_INPUT).saturating_sub(a.early.len());
        a.early.extend_from_slice(&data[..data.len().min(room)]);
        true
    }

    /// EOF from a connection waiting for its guest claim (`true`): handled once it
    /// is admitted if it sent something, else it goes silently.
    pub(super) fn cluster_early_eof(&mut self, id: ConnId) -> bool {
        let Some(c) = self.cluster.as_mut() else {
            return false;
        };
        let Some(a) = c.admitting.get_mut(&id) else {
            return false;
        };
        if a.early.is_empty() {
            c.admitting.remove(&id);
            self.close(id, CloseReason::PeerClosed);
        } else {
            a.eof = true;
        }
        true
    }

    /// A reset of a connection waiting for its guest claim (`true`): it goes silently
    /// (the claim's answer, when it comes, releases the name).
    pub(super) fn cluster_early_reset(&mut self, id: ConnId, reason: CloseReason) -> bool {
        if self
            .cluster
            .as_mut()
            .and_then(|c| c.admitting.remove(&id))
            .is_none()
        {
            return false;
        }
        self.close(id, reason);
        true
    }

    /// Publishes one event of this node (nothing without a cluster). While the bus is
    /// lost it is still numbered (and dropped by the bus), so the others see a gap.
    pub(super) fn cluster_publish(&mut self, body: wire::Body) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        c.seq += 1;
        let header = wire::Header {
            node: c.config.node.clone(),
            incarnation: c.config.incarnation,
            seq: c.seq,
        };
        let payload = wire::encode(&header, &body);
        let topic = c.config.topic.clone();
        self.bus(BusAction::Publish { topic, payload });
    }

    /// `/nick name` by `id` (valid, not taken here, not its current nick): `true` if
    /// the cluster took it over (a claim was sent, or the rename was refused).
    pub(super) fn cluster_rename(&mut self, id: ConnId, name: &str) -> bool {
        let now = self.now;
        let Some(c) = self.cluster.as_mut() else {
            return false;
        };
        let key = name.to_ascii_lowercase();
        let same_key = self
            .sink
            .conns
            .get(&id)
            .is_some_and(|conn| conn.nick.eq_ignore_ascii_case(name));
        if same_key {
            return false; // a change of case: the claim is ours already
        }
        if c.renaming.contains_key(&id) {
            self.sink
                .transmit(id, Bytes::from_static(notice::NICK_BUSY.as_bytes()));
        } else if c.taken(&key) {
            self.error(id, format_args!("nick {name} is taken"));
        } else if !c.up {
            self.error(id, format_args!("nick {name} {}", notice::NICK_UNCHECKED));
        } else {
            c.reserved.insert(key.clone());
            let token = self.send_claim(now, key, Purpose::Rename(id, String::from(name)));
            if let Some(c) = self.cluster.as_mut() {
                c.renaming.insert(id, token);
            }
        }
        true
    }

    /// `nick` is leaving local room `room` (for another room or the server); its
    /// members get `notice` (published before the room may be deleted).
    pub(super) fn cluster_exit(&mut self, nick: &str, room: RoomId, notice: &Bytes) {
        if self.cluster.is_none() {
            return;
        }
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        let body = wire::Body::Exit {
            nick: nick.into(),
            room: r.name.clone(),
            notice: notice.clone(),
        };
        self.cluster_publish(body);
    }

    /// `id` renamed from `old` to `new` (in `room`, whose members got `notice`).
    pub(super) fn cluster_renamed(&mut self, old: &str, new: &str, room: &str, notice: &Bytes) {
        if self.cluster.is_none() {
            return;
        }
        self.cluster_publish(wire::Body::Rename {
            old: old.into(),
            new: new.into(),
            room: room.into(),
            notice: notice.clone(),
        });
        if !old.eq_ignore_ascii_case(new) {
            self.cluster_release(old);
        }
    }

    /// This node no longer uses `nick`: its claim is released.
    pub(super) fn cluster_release(&mut self, nick: &str) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let action = BusAction::Release {
            key: nick.to_ascii_lowercase(),
            owner: c.config.node.clone(),
        };
        self.bus(action);
    }

    /// `/msg to text` where `to` is nobody here: sent to its node (`true`) if `to` is
    /// a remote user.
    pub(super) fn cluster_msg(&mut self, id: ConnId, to: &str, line: Bytes) -> bool {
        let Some(c) = self.cluster.as_ref() else {
            return false;
        };
        let key = to.to_ascii_lowercase();
        let Some(node) = c.nicks.get(&key) else {
            return false;
        };
        if !c.up {
            self.sink
                .transmit(id, Bytes::from_static(notice::MSG_UNREACHABLE.as_bytes()));
            return true;
        }
        let to = c
            .nodes
            .get(node)
            .and_then(|n| n.users.get(&key))
            .map_or(key.clone(), |u| u.nick.clone());
        self.cluster_publish(wire::Body::Pm { to, line });
        true
    }

    /// The name (with `#`) of the room `key` (lowercased, no `#`) on other nodes.
    pub(super) fn cluster_room_name(&self, key: &str) -> Option<String> {
        Some(self.cluster.as_ref()?.rooms.get(key)?.name.clone())
    }

    /// The nicks of `room`'s members on other nodes (`room`: lowercased, no `#`).
    pub(super) fn cluster_members(&self, room: &str) -> Vec<&str> {
        self.cluster
            .as_ref()
            .and_then(|c| c.rooms.get(room))
            .map(|r| r.members.values().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// How many members `room` (lowercased, no `#`) has on other nodes.
    pub(super) fn cluster_room_size(&self, room: &str) -> usize {
        self.cluster
            .as_ref()
            .and_then(|c| c.rooms.get(room))
            .map_or(0, |r| r.members.len())
    }

    /// Every room of the cluster (`#name`, members on every node), sorted by name
    /// ignoring case.
    pub(super) fn cluster_rooms(&self) -> Vec<(String, usize)> {
        let mut all: BTreeMap<String, (String, usize)> = self
            .room_index
            .iter()
            .filter_map(|(key, r)| {
                self.rooms
                    .get(r)
                    .map(|r| (key.clone(), (r.name.clone(), r.members.len())))
            })
            .collect();
        if let Some(c) = self.cluster.as_ref() {
            for (key, r) in &c.rooms {
                all.entry(key.clone())
                    .or_insert_with(|| (r.name.clone(), 0))
                    .1 += r.members.len();
            }
        }
        all.into_values().collect()
    }

    /// Time passed: heartbeat and claim renewals, silent nodes, unanswered claims.
    pub(super) fn cluster_timeout(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.next_heartbeat <= now {
            c.next_heartbeat = now + c.config.heartbeat;
            self.heartbeat(now);
        }
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.up {
            let timeout = c.config.node_timeout;
            let silent: Vec<String> = c
                .nodes
                .iter()
                .filter(|(_, n)| n.last_seen + timeout <= now)
                .map(|(name, _)| name.clone())
                .collect();
            c.stats.nodes_lost += silent.len() as u64;
            for node in silent {
                self.node_down(&node, notice::SERVER_LOST);
            }
        }
        while let Some(c) = self.cluster.as_mut() {
            let Some(entry) = c.claims.first_entry() else {
                break;
            };
            if entry.get().deadline > now {
                break;
            }
            let claim = entry.remove();
            self.claim_failed(now, claim.key, claim.purpose);
        }
        self.process_drops();
    }

    /// The server stops: connections waiting for a guest name are closed, every
    /// nick (and name being claimed) is released, then the other nodes are told
    /// (`Bye`: its users leave `(server shutting down)` there, their nicks already
    /// free), and the cluster state is dropped (no more heartbeats).
    pub(super) fn cluster_shutdown(&mut self) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let admitting: Vec<ConnId> = core::mem::take(&mut c.admitting).into_keys().collect();
        let mut keys: BTreeSet<String> = core::mem::take(&mut c.reserved);
        keys.extend(self.nicks.keys().cloned());
        for id in admitting {
            self.close(id, CloseReason::Shutdown);
        }
        for key in keys {
            self.cluster_release(&key);
        }
        self.cluster_publish(wire::Body::Bye);
        self.cluster = None;
    }

    // ----- internals -----

    fn bus(&mut self, action: BusAction) {
        self.sink.out.push_back(Output::Bus(action));
    }

    /// Sends a claim of `key` for this node; returns its token. Timed from the
    /// latest `now` seen (not `_now`, which may be late), so that deadlines grow
    /// with tokens (see `Cluster::claims`).
    fn send_claim(&mut self, _now: Instant, key: String, purpose: Purpose) -> u64 {
        let now = self.now;
        let Some(c) = self.cluster.as_mut() else {
            return 0;
        };
        let token = c.claim(now, key.clone(), purpose);
        let action = BusAction::Claim {
            token,
            key,
            owner: c.config.node.clone(),
            ttl: c.config.claim_ttl,
        };
        self.bus(action);
        token
    }

    /// Renews every nick held here (while the bus is up), then publishes a heartbeat
    /// with every local user.
    fn heartbeat(&mut self, now: Instant) {
        if self.cluster.as_ref().is_some_and(|c| c.up) {
            let keys: Vec<String> = self.nicks.keys().cloned().collect();
            for key in keys {
                self.send_claim(now, key, Purpose::Renew);
            }
        }
        let users = self
            .sink
            .conns
            .values()
            .filter_map(|conn| {
                let room = self.rooms.get(&conn.room)?;
                Some((conn.nick.clone(), room.name.clone()))
            })
            .collect();
        self.cluster_publish(wire::Body::Heartbeat { users });
    }

    /// `line` to every local member of the room called `room` (any case, `#` optional).
    fn deliver_room(&mut self, room: &str, line: &Bytes) {
        let key = room.strip_prefix('#').unwrap_or(room).to_ascii_lowercase();
        if let Some(&id) = self.room_index.get(&key) {
            self.broadcast(id, None, line);
        }
    }

    /// A presence notice about another node's user to the local members of the room
    /// called `room` (any case, `#` optional), unless that room is quiet
    /// ([`ChatServer::quiet`]; `gone`: the user just left it).
    fn deliver_presence(&mut self, room: &str, gone: bool, line: &Bytes) {
        let key = room.strip_prefix('#').unwrap_or(room).to_ascii_lowercase();
        if let Some(&id) = self.room_index.get(&key) {
            self.announce(id, None, false, gone, line);
        }
    }

    /// `line` to every local user.
    fn deliver_all(&mut self, line: &'static str) {
        let line = Bytes::from_static(line.as_bytes());
        let ids: Vec<ConnId> = self.sink.conns.keys().copied().collect();
        for id in ids {
            self.sink.transmit(id, line.clone());
        }
    }

    /// `node` is gone: its users leave their rooms here with `why`, one after the
    /// other (so a quiet room is judged as it is at each departure).
    fn node_down(&mut self, node: &str, why: &str) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        for key in c.node_users(node) {
            let Some(user) = self
                .cluster
                .as_mut()
                .and_then(|c| c.remove_user(node, &key))
            else {
                continue;
            };
            let line = line(format_args!("* {} left ({why})", user.nick));
            self.deliver_presence(&user.room, true, &line);
        }
        if let Some(c) = self.cluster.as_mut() {
            c.forget_node(node);
        }
    }

    fn bus_message(&mut self, now: Instant, topic: &str, payload: Bytes) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if topic != c.config.topic {
            return;
        }
        let Some((header, body)) = wire::decode(payload) else {
            c.stats.bad_payloads += 1;
            return;
        };
        if header.node == c.config.node {
            return; // our own event, back from the bus (or a namesake's: ignored)
        }
        match c.nodes.get(&header.node) {
            Some(n) if n.incarnation > header.incarnation => return, // a past run's event
            Some(n) if n.incarnation < header.incarnation => {
                // The node restarted: its previous run's users are gone.
                self.node_down(&header.node, notice::SERVER_LOST);
            }
            Some(_) => {}
            None if c.nodes.len() >= MAX_NODES => {
                c.stats.over_limit += 1;
                return;
            }
            None => {}
        }
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let new = !c.nodes.contains_key(&header.node);
        let node = c.nodes.entry(header.node.clone()).or_insert_with(|| Node {
            incarnation: header.incarnation,
            next_seq: header.seq,
            last_seen: now,
            resync: false,
            users: BTreeMap::new(),
        });
        if !node.resync && header.seq < node.next_seq {
            c.stats.duplicates += 1;
            return;
        }
        let gap = !node.resync && header.seq > node.next_seq;
        node.next_seq = header.seq.saturating_add(1);
        node.resync = false;
        node.last_seen = now;
        if gap {
            c.stats.gaps += 1;
        }
        let beat = (new && c.up).then(|| c.next_heartbeat = now + c.config.heartbeat);
        if gap {
            self.deliver_all(notice::MISSED);
        }
        if beat.is_some() {
            // A node (re)appeared: tell it who is here now rather than at the next beat.
            self.heartbeat(now);
        }
        self.apply(&header.node, body);
    }

    /// Applies another node's event.
    fn apply(&mut self, node: &str, body: wire::Body) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        match body {
            wire::Body::Heartbeat { users } => {
                let listed: BTreeSet<String> =
                    users.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
                let gone: Vec<String> = c
                    .nodes
                    .get(node)
                    .map(|n| {
                        n.users
                            .keys()
                            .filter(|k| !listed.contains(*k))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                for key in gone {
                    c.remove_user(node, &key);
                }
                // Users heard of first here (a node back after a partition, or an
                // arrival missed in a gap) are announced; the others just refreshed.
                let mut arrived = Vec::new();
                for (nick, room) in users {
                    let key = nick.to_ascii_lowercase();
                    let known = c
                        .nodes
                        .get(node)
                        .is_some_and(|n| n.users.contains_key(&key));
                    if c.add_user(node, &nick, &room) && !known {
                        arrived.push((nick, room));
                    }
                }
                for (nick, room) in arrived {
                    let notice = line(format_args!("* {nick} joined {room}"));
                    self.deliver_presence(&room, false, &notice);
                }
            }
            wire::Body::Enter { nick, room, notice } => {
                c.add_user(node, &nick, &room);
                self.deliver_presence(&room, false, &notice);
            }
            wire::Body::Exit { nick, room, notice } => {
                c.remove_user(node, &nick.to_ascii_lowercase());
                self.deliver_presence(&room, true, &notice);
            }
            wire::Body::Rename {
                old,
                new,
                room,
                notice,
            } => {
                c.remove_user(node, &old.to_ascii_lowercase());
                c.add_user(node, &new, &room);
                self.deliver_presence(&room, false, &notice);
            }
            wire::Body::Say { room, line } => self.deliver_room(&room, &line),
            wire::Body::Pm { to, line } => {
                if let Some(&id) = self.nicks.get(&to.to_ascii_lowercase()) {
                    self.sink.transmit(id, line);
                }
            }
            wire::Body::Bye => self.node_down(node, notice::SERVER_SHUTTING_DOWN),
        }
    }

    /// The answer to claim `token`.
    fn claimed(&mut self, now: Instant, token: u64, won: bool) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(claim) = c.claims.remove(&token) else {
            return; // timed out, or from before the bus was lost
        };
        let key = claim.key;
        match claim.purpose {
            Purpose::Guest(id) => {
                c.reserved.remove(&key);
                if !c.admitting.contains_key(&id) {
                    if won {
                        self.cluster_release(&key);
                    }
                } else if won {
                    self.finish_admit(now, id);
                } else {
                    // Taken elsewhere: the next guest number.
                    let nick = self.next_guest();
                    let Some(c) = self.cluster.as_mut() else {
                        return;
                    };
                    let key = nick.to_ascii_lowercase();
                    c.reserved.insert(key.clone());
                    if let Some(a) = c.admitting.get_mut(&id) {
                        a.nick = nick;
                    }
                    self.send_claim(now, key, Purpose::Guest(id));
                }
            }
            Purpose::Rename(id, name) => {
                c.reserved.remove(&key);
                if c.renaming.get(&id) == Some(&token) {
                    c.renaming.remove(&id);
                }
                let taken_here = self.nicks.get(&key).is_some_and(|&o| o != id);
                if !self.sink.conns.contains_key(&id) || taken_here {
                    if won && !taken_here {
                        self.cluster_release(&key);
                    }
                } else if won {
                    self.apply_rename(id, &name);
                } else {
                    self.error(id, format_args!("nick {name} is taken"));
                }
                self.unhold();
            }
            Purpose::Renew => {
                if !won {
                    self.lost_nick(now, &key);
                }
            }
        }
    }

    /// A claim timed out (or the bus was lost with it in flight).
    fn claim_failed(&mut self, now: Instant, key: String, purpose: Purpose) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        match purpose {
            Purpose::Guest(id) => {
                c.reserved.remove(&key);
                if c.admitting.contains_key(&id) {
                    self.finish_admit(now, id);
                }
            }
            Purpose::Rename(id, name) => {
                c.reserved.remove(&key);
                c.renaming.remove(&id);
                self.error(id, format_args!("nick {name} {}", notice::NICK_UNCHECKED));
                self.unhold();
            }
            Purpose::Renew => {}
        }
    }

    /// Another node holds `key` although a user here has it (the claim expired while
    /// the bus was away): the user here gets `! nick NAME is taken` and a new guest
    /// name (claimed first while the bus is up).
    fn lost_nick(&mut self, now: Instant, key: &str) {
        let Some(&id) = self.nicks.get(key) else {
            return;
        };
        if self
            .cluster
            .as_ref()
            .is_some_and(|c| c.renaming.contains_key(&id))
        {
            return; // a rename is under way: it moves the user off this nick
        }
        let old = self
            .sink
            .conns
            .get(&id)
            .map(|c| c.nick.clone())
            .unwrap_or_default();
        self.error(id, format_args!("nick {old} is taken"));
        let nick = self.next_guest();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.up {
            let key = nick.to_ascii_lowercase();
            c.reserved.insert(key.clone());
            let token = self.send_claim(now, key, Purpose::Rename(id, nick));
            if let Some(c) = self.cluster.as_mut() {
                c.renaming.insert(id, token);
            }
        } else {
            self.apply_rename(id, &nick);
        }
    }

    /// `id`'s guest claim is settled: it is admitted, then its early input handled.
    fn finish_admit(&mut self, now: Instant, id: ConnId) {
        let Some(a) = self.cluster.as_mut().and_then(|c| c.admitting.remove(&id)) else {
            return;
        };
        self.admit_as(now, id, a.nick);
        if !a.early.is_empty() {
            let _ = self.handle_data(now, id, &a.early);
        }
        if a.eof {
            let _ = self.handle_peer_closed(now, id);
        }
    }

    fn bus_lost(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if !c.up {
            return;
        }
        c.up = false;
        self.deliver_all(notice::UNREACHABLE);
        // Claims in flight stay unanswered: settle them now.
        while let Some(c) = self.cluster.as_mut() {
            let Some((_, claim)) = c.claims.pop_first() else {
                break;
            };
            self.claim_failed(now, claim.key, claim.purpose);
        }
    }

    fn bus_restored(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let was_down = !c.up;
        c.up = true;
        for n in c.nodes.values_mut() {
            n.resync = true;
            n.last_seen = now;
        }
        c.next_heartbeat = now + c.config.heartbeat;
        let topic = c.config.topic.clone();
        self.bus(BusAction::Subscribe { topic });
        self.heartbeat(now); // re-claims every nick, re-announces every user
        if was_down {
            self.deliver_all(notice::BACK);
        }
    }
}
