//! [`Model`]: an obviously-right reference chat server, for differential testing.
//!
//! Written from `docs/PROTOCOL.md` plus the choices documented on [`ChatServer`](crate::chat::ChatServer)
//! and in `src/chat/command.rs`, in the plainest style: a map of clients, rooms found
//! by scanning clients, its own telnet handling (`docs/PROTOCOL.md`, "Telnet"; written
//! apart from [`crate::telnet`], byte by byte), framing, parsing and sanitizing. It records what each
//! connection was sent and how it was closed, to compare with the real core's outputs
//! (see [`ChatChecker::received`](super::ChatChecker::received)).
//!
//! Flow control, the plain way: input is kept as raw bytes and processed byte by
//! byte; before every byte that makes something happen (a line ends, a line gets too
//! long, a telnet interrupt or reply) the client's pause is checked by scanning its
//! room, and a paused client keeps the rest of its bytes. After every event, every
//! client with bytes left (or an EOF) that is not paused goes on, in id order, until
//! none can.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::IpAddr;
use core::time::Duration;

use crate::chat::{ChatConfig, CloseReason, ConnId};
use crate::Instant;

/// `/help` text, as documented.
const HELP: &str = "* /nick NAME — change your nick\n\
* /join ROOM — leave your room and enter #ROOM (created if needed)\n\
* /who — list the members of your room\n\
* /rooms — list the rooms and their sizes\n\
* /msg NICK text — send a private message\n\
* /me text — an action, shown as * nick text\n\
* /quit [reason] — leave the server\n\
* /help — this list (start a message with // to send a line starting with /)\n";

/// What every queued transmit costs besides its bytes (documented on the core).
const OVERHEAD: usize = 64;

/// Where a client's telnet command parsing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tn {
    Text,
    /// After `IAC`.
    Iac,
    /// After `IAC` and a verb (`WILL`, `WONT`, `DO`, `DONT`).
    Verb(u8),
    /// In a subnegotiation, this many bytes after `IAC SB`.
    Sub(usize),
    /// In a subnegotiation, this many bytes after `IAC SB`, the last an `IAC`.
    SubIac(usize),
}

/// What one byte of input does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Act {
    Nothing,
    Byte(u8),
    Interrupt,
    Reply([u8; 3]),
}

/// Something a byte of input makes happen (checked against the pause first).
enum Step {
    Line,
    TooLong,
    Interrupt,
    Reply([u8; 3]),
}

#[derive(Debug)]
struct Client {
    nick: String,
    /// Lowercased room name without `#`.
    room: String,
    telnet: Telnet,
    partial: Vec<u8>,
    discarding: bool,
    /// Raw bytes received and not processed yet (the client was paused).
    pending: Vec<u8>,
    /// EOF received, not processed yet.
    eof: bool,
    queued: usize,
    /// Bytes left of each transmit not fully flushed.
    items: VecDeque<usize>,
    /// When its cost last went above half of `send_queue` (while it stays there).
    hot_since: Option<Instant>,
    last_msg: Option<ConnId>,
    /// Flood bucket: credit (time's worth of lines) as of `credit_at`.
    credit: Duration,
    credit_at: Instant,
    deadline: Option<Instant>,
    doomed: bool,
}

impl Client {
    fn cost(&self) -> usize {
        self.queued + OVERHEAD * self.items.len()
    }
}

/// Reference model of the chat server. Methods mirror [`ChatServer`](crate::chat::ChatServer)'s.
#[derive(Debug)]
pub struct Model {
    config: ChatConfig,
    clients: BTreeMap<ConnId, Client>,
    /// Lowercased name → display name (`#` + creator's spelling), while non-empty.
    rooms: BTreeMap<String, String>,
    next_id: u64,
    guests: u64,
    doomed: VecDeque<ConnId>,
    shut_down: bool,
    /// The latest time passed in.
    now: Instant,
    /// Closed, socket not reported closed: when the grace runs out.
    closing: BTreeMap<ConnId, Instant>,
    /// The address each connection came from, if known (never forgotten).
    addrs: BTreeMap<ConnId, IpAddr>,
    /// Connections whose grace ran out (the core's `Abort`).
    pub aborted: BTreeSet<ConnId>,
    /// Everything sent to each connection ever issued.
    pub sent: BTreeMap<ConnId, Vec<u8>>,
    /// How each closed connection was closed.
    pub closes: BTreeMap<ConnId, CloseReason>,
}

fn forbidden(c: char) -> bool {
    let control = (c <= '\u{1f}' && c != '\t') || ('\u{7f}'..='\u{9f}').contains(&c);
    let look_alike = ('\u{200b}'..='\u{200f}').contains(&c)
        || ('\u{2028}'..='\u{202e}').contains(&c)
        || c == '\u{2060}'
        || ('\u{2066}'..='\u{2069}').contains(&c)
        || c == '\u{feff}';
    control || look_alike
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 24
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `(word, rest after the first run of spaces)`.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(' ') {
        Some((w, rest)) => (w, rest.trim_start_matches(' ')),
        None => (s, ""),
    }
}

impl Model {
    /// A model server with this configuration.
    pub fn new(config: ChatConfig) -> Self {
        Model {
            config,
            clients: BTreeMap::new(),
            rooms: BTreeMap::new(),
            next_id: 0,
            guests: 0,
            doomed: VecDeque::new(),
            shut_down: false,
            now: Instant::ZERO,
            closing: BTreeMap::new(),
            addrs: BTreeMap::new(),
            aborted: BTreeSet::new(),
            sent: BTreeMap::new(),
            closes: BTreeMap::new(),
        }
    }

    /// Bytes queued for `id` (`None`: not open).
    pub fn queued(&self, id: ConnId) -> Option<usize> {
        self.clients.get(&id).map(|c| c.queued)
    }

    /// What `id`'s queue counts against `send_queue` (`None`: not open).
    pub fn queued_cost(&self, id: ConnId) -> Option<usize> {
        self.clients.get(&id).map(Client::cost)
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.clients.len()
    }

    /// See [`ChatServer::wants_read`](crate::chat::ChatServer::wants_read).
    pub fn wants_read(&self, id: ConnId) -> bool {
        self.clients.get(&id).is_some_and(|c| !c.eof) && !self.paused(id)
    }

    fn timeout(&self) -> Option<Duration> {
        self.config.idle_timeout.filter(|d| !d.is_zero())
    }

    /// Flood control: (time per line, lines per burst), if on.
    fn flood(&self) -> Option<(Duration, u32)> {
        match self.config.flood_rate {
            Some(rate) if rate > 0 => Some((
                Duration::from_secs(1) / rate,
                self.config.flood_burst.max(1),
            )),
            _ => None,
        }
    }

    /// `id`'s flood credit now.
    fn credit(&self, c: &Client) -> Duration {
        match self.flood() {
            None => Duration::ZERO,
            Some((per_line, burst)) => {
                let earned = self.now - c.credit_at;
                (c.credit + earned).min(per_line * burst)
            }
        }
    }

    fn hot(&self, id: ConnId) -> bool {
        self.clients
            .get(&id)
            .is_some_and(|c| c.cost() > self.config.send_queue / 2)
    }

    /// Whether `id` may not be read now: someone in its room (itself included) or
    /// its last `/msg` target is hot, or its flood bucket is empty.
    fn paused(&self, id: ConnId) -> bool {
        let Some(c) = self.clients.get(&id) else {
            return true;
        };
        let room_hot = self.members(&c.room).into_iter().any(|m| self.hot(m));
        let target_hot = c.last_msg.is_some_and(|t| self.hot(t));
        let bucket_empty = self
            .flood()
            .is_some_and(|(per_line, _)| self.credit(c) < per_line);
        room_hot || target_hot || bucket_empty
    }

    fn take_token(&mut self, id: ConnId) {
        let Some((per_line, _)) = self.flood() else {
            return;
        };
        let now = self.now;
        let credit = self.clients.get(&id).map(|c| self.credit(c));
        if let (Some(credit), Some(c)) = (credit, self.clients.get_mut(&id)) {
            c.credit = credit - per_line;
            c.credit_at = now;
        }
    }

    fn raw(&mut self, id: ConnId, bytes: &[u8]) {
        self.sent.entry(id).or_default().extend_from_slice(bytes);
    }

    fn send(&mut self, id: ConnId, text: String) {
        self.send_bytes(id, text.as_bytes());
    }

    fn send_bytes(&mut self, id: ConnId, bytes: &[u8]) {
        let limit = self.config.send_queue;
        let now = self.now;
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.doomed {
            return;
        }
        if c.cost() + bytes.len() + OVERHEAD <= limit {
            c.queued += bytes.len();
            c.items.push_back(bytes.len());
            if c.hot_since.is_none() && c.cost() > limit / 2 {
                c.hot_since = Some(now);
            }
            self.raw(id, bytes);
        } else {
            c.doomed = true;
            self.doomed.push_back(id);
        }
    }

    fn members(&self, room: &str) -> Vec<ConnId> {
        self.clients
            .iter()
            .filter(|(_, c)| c.room == room)
            .map(|(id, _)| *id)
            .collect()
    }

    fn broadcast(&mut self, room: &str, except: Option<ConnId>, text: &str) {
        for m in self.members(room) {
            if Some(m) != except {
                self.send(m, text.to_string());
            }
        }
    }

    /// Quiet rooms (`quiet_joins_above`): whether `room` gets no presence notice
    /// about someone who is in it now (`gone` false) or just left it (`gone`).
    fn quiet(&self, room: &str, gone: bool) -> bool {
        match self.config.quiet_joins_above {
            Some(n) if n > 0 => self.members(room).len() + usize::from(gone) > n,
            _ => false,
        }
    }

    fn close(&mut self, id: ConnId, reason: CloseReason) {
        self.closes.insert(id, reason);
        self.closing.insert(id, self.now + self.config.close_grace);
    }

    fn remove(&mut self, id: ConnId, why: &str, reason: CloseReason) {
        let Some(c) = self.clients.remove(&id) else {
            return;
        };
        self.close(id, reason);
        if self.members(&c.room).is_empty() {
            self.rooms.remove(&c.room);
        } else if !self.quiet(&c.room, true) {
            self.broadcast(&c.room, None, &format!("* {} left ({why})\n", c.nick));
        }
    }

    fn drops(&mut self) {
        while let Some(id) = self.doomed.pop_front() {
            self.remove(id, "send queue exceeded", CloseReason::SendQueueExceeded);
        }
    }

    /// Every client with input left that is not paused goes on, in id order,
    /// until a round makes no progress.
    fn resume_all(&mut self) {
        loop {
            let mut progressed = false;
            let ids: Vec<ConnId> = self.clients.keys().copied().collect();
            for id in ids {
                let waiting = self
                    .clients
                    .get(&id)
                    .is_some_and(|c| !c.pending.is_empty() || c.eof);
                if waiting && !self.paused(id) {
                    self.pump(id);
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// How many connections from `ip` are open or closing.
    fn conns_from(&self, ip: IpAddr) -> usize {
        self.addrs
            .iter()
            .filter(|(id, a)| {
                **a == ip && (self.clients.contains_key(id) || self.closing.contains_key(id))
            })
            .count()
    }

    /// See [`ChatServer::handle_open`](crate::chat::ChatServer::handle_open).
    pub fn open(&mut self, now: Instant) -> ConnId {
        self.open_addr(now, None)
    }

    /// See [`ChatServer::handle_open_from`](crate::chat::ChatServer::handle_open_from).
    pub fn open_from(&mut self, now: Instant, ip: IpAddr) -> ConnId {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        self.open_addr(now, Some(ip))
    }

    fn open_addr(&mut self, now: Instant, ip: Option<IpAddr>) -> ConnId {
        self.now = self.now.max(now);
        let id = ConnId(self.next_id);
        self.next_id += 1;
        self.sent.insert(id, Vec::new());
        let too_many = match (ip, self.config.max_conns_per_ip) {
            (Some(ip), Some(max)) if max > 0 => {
                let exempt = self.config.loopback_exempt && ip.is_loopback();
                !exempt && self.conns_from(ip) >= max
            }
            _ => false,
        };
        if let Some(ip) = ip {
            self.addrs.insert(id, ip);
        }
        if self.shut_down {
            self.raw(id, b"* server shutting down\n");
            self.close(id, CloseReason::Shutdown);
            return id;
        }
        if too_many {
            self.raw(id, b"! too many connections from your address\n");
            self.close(id, CloseReason::TooManyFromAddress);
            return id;
        }
        if self
            .config
            .max_conns
            .is_some_and(|m| self.clients.len() + self.closing.len() >= m)
        {
            self.raw(id, b"! server full\n");
            self.close(id, CloseReason::ServerFull);
            return id;
        }
        let nick = loop {
            self.guests += 1;
            let nick = format!("guest{}", self.guests);
            if !self
                .clients
                .values()
                .any(|c| c.nick.eq_ignore_ascii_case(&nick))
            {
                break nick;
            }
        };
        let online = self.clients.len() + 1;
        self.rooms
            .entry("lobby".into())
            .or_insert_with(|| "#lobby".into());
        let deadline = self.timeout().map(|t| now + t);
        let credit = match self.flood() {
            Some((per_line, burst)) => per_line * burst,
            None => Duration::ZERO,
        };
        let client = Client {
            nick: nick.clone(),
            room: "lobby".into(),
            telnet: Telnet::default(),
            partial: Vec::new(),
            discarding: false,
            pending: Vec::new(),
            eof: false,
            queued: 0,
            items: VecDeque::new(),
            hot_since: None,
            last_msg: None,
            credit,
            credit_at: self.now,
            deadline,
            doomed: false,
        };
        self.clients.insert(id, client);
        self.send(id, format!("* welcome {nick}, {online} users online\n"));
        if !self.quiet("lobby", false) {
            self.broadcast("lobby", Some(id), &format!("* {nick} joined #lobby\n"));
        }
        self.drops();
        self.resume_all();
        id
    }

    /// See [`ChatServer::handle_data`](crate::chat::ChatServer::handle_data); `false`: unknown id.
    pub fn data(&mut self, now: Instant, id: ConnId, data: &[u8]) -> bool {
        self.now = self.now.max(now);
        if id.0 >= self.next_id {
            return false;
        }
        let timeout = self.timeout();
        let Some(c) = self.clients.get_mut(&id) else {
            return true;
        };
        if c.eof {
            return true;
        }
        if !data.is_empty() {
            if let Some(t) = timeout {
                c.deadline = Some(now + t);
            }
        }
        c.pending.extend_from_slice(data);
        self.pump(id);
        self.resume_all();
        true
    }

    /// Processes `id`'s pending bytes one by one while it is not paused, then its
    /// EOF (last unterminated line, departure).
    fn pump(&mut self, id: ConnId) {
        let max = self.config.max_line;
        loop {
            let Some(c) = self.clients.get_mut(&id) else {
                return;
            };
            let Some(&b) = c.pending.first() else {
                break;
            };
            let mut telnet = c.telnet.clone();
            let act = telnet.step(b);
            let step = match act {
                Act::Nothing => None,
                Act::Byte(b'\n') if c.discarding => None,
                Act::Byte(b'\n') => Some(Step::Line),
                Act::Byte(_) if c.discarding => None,
                Act::Byte(_) if c.partial.len() + 1 > max.saturating_add(1) => Some(Step::TooLong),
                Act::Byte(_) => None,
                Act::Interrupt => Some(Step::Interrupt),
                Act::Reply(r) => Some(Step::Reply(r)),
            };
            if step.is_some() && self.paused(id) {
                return;
            }
            let c = self.clients.get_mut(&id).expect("checked");
            c.pending.remove(0);
            c.telnet = telnet;
            match step {
                None => match act {
                    // The end of a line being discarded.
                    Act::Byte(b'\n') => c.discarding = false,
                    Act::Byte(t) if !c.discarding => c.partial.push(t),
                    _ => {}
                },
                Some(Step::Line) => {
                    let line = core::mem::take(&mut c.partial);
                    self.take_token(id);
                    self.line(id, &line);
                    self.drops();
                }
                Some(Step::TooLong) => {
                    c.partial.clear();
                    c.discarding = true;
                    self.take_token(id);
                    self.send(id, format!("! line too long (max {max} bytes)\n"));
                    self.drops();
                }
                Some(Step::Interrupt) => {
                    c.partial.clear();
                    c.discarding = false;
                }
                Some(Step::Reply(r)) => {
                    self.send_bytes(id, &r);
                    self.drops();
                }
            }
        }
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if !c.eof || self.paused(id) {
            return;
        }
        let c = self.clients.get_mut(&id).expect("checked");
        let rest = core::mem::take(&mut c.partial);
        if !core::mem::take(&mut c.discarding) && !rest.is_empty() {
            self.take_token(id);
            self.line(id, &rest);
            self.drops();
        }
        self.remove(id, "connection closed", CloseReason::PeerClosed);
        self.drops();
    }

    /// See [`ChatServer::handle_flushed`](crate::chat::ChatServer::handle_flushed).
    pub fn flushed(&mut self, id: ConnId, n: usize) {
        let half = self.config.send_queue / 2;
        if let Some(c) = self.clients.get_mut(&id) {
            c.queued -= n;
            let mut left = n;
            while let Some(first) = c.items.front_mut() {
                if left < *first {
                    *first -= left;
                    break;
                }
                left -= *first;
                c.items.pop_front();
            }
            if c.cost() <= half {
                c.hot_since = None;
            }
        }
        self.resume_all();
    }

    /// See [`ChatServer::handle_peer_closed`](crate::chat::ChatServer::handle_peer_closed).
    pub fn peer_closed(&mut self, now: Instant, id: ConnId) {
        self.now = self.now.max(now);
        if let Some(c) = self.clients.get_mut(&id) {
            if !c.eof {
                c.eof = true;
                self.pump(id);
            }
        }
        self.resume_all();
    }

    /// See [`ChatServer::handle_reset`](crate::chat::ChatServer::handle_reset).
    pub fn reset(&mut self, now: Instant, id: ConnId) {
        self.now = self.now.max(now);
        self.remove(id, "connection reset", CloseReason::Reset);
        self.drops();
        self.resume_all();
    }

    /// See [`ChatServer::handle_timeout`](crate::chat::ChatServer::handle_timeout).
    pub fn timeout_at(&mut self, now: Instant) {
        self.now = self.now.max(now);
        loop {
            let next = self
                .clients
                .iter()
                .filter_map(|(id, c)| c.deadline.map(|d| (d, *id)))
                .min();
            match next {
                Some((d, id)) if d <= now => {
                    if let (true, Some(t)) = (self.paused(id), self.timeout()) {
                        // Not read because of flow control: not idle.
                        if let Some(c) = self.clients.get_mut(&id) {
                            c.deadline = Some(now + t);
                        }
                        continue;
                    }
                    self.remove(id, "idle timeout", CloseReason::IdleTimeout);
                    self.drops();
                }
                _ => break,
            }
        }
        let stall = self.config.stall_timeout;
        loop {
            let next = self
                .clients
                .iter()
                .filter_map(|(id, c)| c.hot_since.map(|t| (t + stall, *id)))
                .min();
            match next {
                Some((d, id)) if d <= now => {
                    self.remove(id, "send queue exceeded", CloseReason::SendQueueExceeded);
                    self.drops();
                }
                _ => break,
            }
        }
        let expired: Vec<ConnId> = self
            .closing
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.closing.remove(&id);
            self.aborted.insert(id);
        }
        self.resume_all();
    }

    /// See [`ChatServer::handle_closed`](crate::chat::ChatServer::handle_closed).
    pub fn closed(&mut self, now: Instant, id: ConnId) {
        self.reset(now, id);
        self.closing.remove(&id);
    }

    /// See [`ChatServer::shutdown`](crate::chat::ChatServer::shutdown).
    pub fn shutdown(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        let ids: Vec<ConnId> = self.clients.keys().copied().collect();
        for id in ids {
            self.send(id, "* server shutting down\n".into());
            self.close(id, CloseReason::Shutdown);
        }
        self.clients.clear();
        self.rooms.clear();
        self.doomed.clear();
    }

    fn error(&mut self, id: ConnId, text: &str) {
        self.send(id, format!("! {text}\n"));
    }

    fn line(&mut self, id: ConnId, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > self.config.max_line {
            let max = self.config.max_line;
            return self.error(id, &format!("line too long (max {max} bytes)"));
        }
        if raw.is_empty() {
            return;
        }
        let Ok(text) = core::str::from_utf8(raw) else {
            return self.error(id, "invalid utf-8");
        };
        let text: String = text
            .chars()
            .map(|c| if forbidden(c) { '\u{FFFD}' } else { c })
            .collect();
        self.command(id, &text);
    }

    /// A `/who` or `/rooms` reply, bounded as documented on the core: lines of at
    /// most `max(max_line, 80)` bytes each starting with `header`, at most
    /// `min(send_queue / 4, 16384) - 64` bytes in all, `… and K more` at the end if
    /// not all entries fit.
    fn list_reply(&self, header: &str, entries: &[String]) -> String {
        let width = self.config.max_line.max(80);
        let budget = (self.config.send_queue / 4)
            .min(16384)
            .saturating_sub(OVERHEAD);
        let size = |lines: &Vec<String>| lines.iter().map(|l| l.len() + 1).sum::<usize>() - 1;
        let mut lines = vec![header.to_string()];
        let mut shown = 0;
        for (i, entry) in entries.iter().enumerate() {
            let mut next = lines.clone();
            let last = next.last_mut().expect("one line");
            if i == 0 {
                last.push_str(entry);
            } else if last.len() + 2 + entry.len() <= width {
                last.push_str(", ");
                last.push_str(entry);
            } else {
                next.push(format!("{header}{entry}"));
            }
            let room_left = if i + 1 == entries.len() { 1 } else { width + 2 };
            if size(&next) + room_left > budget {
                break;
            }
            lines = next;
            shown += 1;
        }
        if shown < entries.len() {
            let marker = format!("… and {} more", entries.len() - shown);
            let last = lines.last_mut().expect("one line");
            if shown == 0 {
                last.push_str(&marker);
            } else if last.len() + 2 + marker.len() <= width {
                last.push_str(", ");
                last.push_str(&marker);
            } else {
                lines.push(format!("{header}{marker}"));
            }
        }
        lines.join("\n") + "\n"
    }

    fn command(&mut self, id: ConnId, line: &str) {
        let Some(me) = self.clients.get(&id) else {
            return;
        };
        let (nick, room) = (me.nick.clone(), me.room.clone());
        let Some(body) = line.strip_prefix('/') else {
            return self.broadcast(&room, Some(id), &format!("<{nick}> {line}\n"));
        };
        if body.starts_with('/') {
            return self.broadcast(&room, Some(id), &format!("<{nick}> {body}\n"));
        }
        let (word, args) = split_word(body);
        let name = args.trim_end_matches(' ');
        match word.to_ascii_lowercase().as_str() {
            "nick" if name.is_empty() => self.error(id, "usage: /nick NAME"),
            "nick" => self.rename(id, &nick, &room, name),
            "join" if name.is_empty() => self.error(id, "usage: /join ROOM"),
            "join" => self.join(id, &nick, &room, name),
            "who" => {
                let mut nicks: Vec<String> = self
                    .members(&room)
                    .iter()
                    .map(|m| self.clients[m].nick.clone())
                    .collect();
                nicks.sort_by_key(|n| n.to_ascii_lowercase());
                let shown = self.rooms[&room].clone();
                let reply = self.list_reply(&format!("* in {shown}: "), &nicks);
                self.send(id, reply);
            }
            "rooms" => {
                let list: Vec<String> = self
                    .rooms
                    .iter()
                    .map(|(k, shown)| format!("{shown} ({})", self.members(k).len()))
                    .collect();
                let reply = self.list_reply("* rooms: ", &list);
                self.send(id, reply);
            }
            "msg" => {
                let (to, text) = split_word(args);
                if to.is_empty() || text.is_empty() {
                    return self.error(id, "usage: /msg NICK text");
                }
                match self
                    .clients
                    .iter()
                    .find(|(_, c)| c.nick.eq_ignore_ascii_case(to))
                {
                    Some((&target, _)) => {
                        self.send(target, format!("(pm) <{nick}> {text}\n"));
                        if let Some(c) = self.clients.get_mut(&id) {
                            c.last_msg = Some(target);
                        }
                    }
                    None => self.error(id, &format!("no such nick {to}")),
                }
            }
            "me" if args.is_empty() => self.error(id, "usage: /me text"),
            "me" => self.broadcast(&room, Some(id), &format!("* {nick} {args}\n")),
            "quit" => {
                self.send(id, "* bye\n".into());
                if self.clients.get(&id).is_some_and(|c| !c.doomed) {
                    let why = if name.is_empty() { "quit" } else { name };
                    self.remove(id, why, CloseReason::Quit);
                }
            }
            "help" => self.send(id, HELP.into()),
            _ => self.error(id, &format!("unknown command /{word}")),
        }
    }

    fn rename(&mut self, id: ConnId, old: &str, room: &str, name: &str) {
        if !valid_name(name) {
            return self.error(id, "invalid nick");
        }
        if name.eq_ignore_ascii_case("server") {
            return self.error(id, &format!("nick {name} is reserved"));
        }
        if self
            .clients
            .iter()
            .any(|(o, c)| *o != id && c.nick.eq_ignore_ascii_case(name))
        {
            return self.error(id, &format!("nick {name} is taken"));
        }
        if old == name {
            return self.send(id, format!("* you are already {name}\n"));
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.nick = name.into();
        }
        let notice = format!("* {old} is now known as {name}\n");
        if self.quiet(room, false) {
            self.send(id, notice);
        } else {
            self.broadcast(room, None, &notice);
        }
    }

    fn join(&mut self, id: ConnId, nick: &str, old: &str, name: &str) {
        let name = name.strip_prefix('#').unwrap_or(name);
        if !valid_name(name) {
            return self.error(id, "invalid room");
        }
        let key = name.to_ascii_lowercase();
        if key == old {
            let shown = self.rooms[old].clone();
            return self.error(id, &format!("already in {shown}"));
        }
        let old_shown = self.rooms[old].clone();
        if let Some(c) = self.clients.get_mut(&id) {
            c.room = key.clone();
        }
        if self.members(old).is_empty() {
            self.rooms.remove(old);
        } else if !self.quiet(old, true) {
            self.broadcast(old, None, &format!("* {nick} left {old_shown}\n"));
        }
        let shown = self
            .rooms
            .entry(key.clone())
            .or_insert_with(|| format!("#{name}"))
            .clone();
        let notice = format!("* {nick} joined {shown}\n");
        if self.quiet(&key, false) {
            self.send(id, notice);
        } else {
            self.broadcast(&key, None, &notice);
        }
    }
}

/// A client's telnet parser, byte by byte (also the reference for the `telnet`
/// fuzz body).
#[derive(Debug, Clone)]
pub(super) struct Telnet {
    tn: Tn,
    /// `(verb, option)` pairs already refused.
    refused: BTreeSet<(u8, u8)>,
}

impl Default for Telnet {
    fn default() -> Self {
        Telnet {
            tn: Tn::Text,
            refused: BTreeSet::new(),
        }
    }
}

impl Telnet {
    /// One input byte: `IAC IAC` is a 0xFF text byte, `IAC IP` an interrupt,
    /// `DO x` is answered `WONT x` and `WILL x` `DONT x` once each (`DO 6`,
    /// TIMING-MARK, is answered `WILL 6` every time), `WONT`/`DONT` and every other
    /// `IAC x` vanish, `IAC SB … IAC SE` vanishes but ends by itself 4096 bytes
    /// after `IAC SB`.
    pub(super) fn step(&mut self, b: u8) -> Act {
        const IAC: u8 = 0xFF;
        const LIMIT: usize = 4096;
        let (next, act) = match self.tn {
            Tn::Text if b == IAC => (Tn::Iac, Act::Nothing),
            Tn::Text => (Tn::Text, Act::Byte(b)),
            Tn::Iac => match b {
                IAC => (Tn::Text, Act::Byte(IAC)),
                0xF4 => (Tn::Text, Act::Interrupt),
                0xFA => (Tn::Sub(0), Act::Nothing),
                0xFB..=0xFE => (Tn::Verb(b), Act::Nothing),
                _ => (Tn::Text, Act::Nothing),
            },
            Tn::Verb(0xFD) if b == 6 => (Tn::Text, Act::Reply([IAC, 0xFB, 6])),
            Tn::Verb(verb @ (0xFD | 0xFB)) if self.refused.insert((verb, b)) => {
                let answer = if verb == 0xFD { 0xFC } else { 0xFE };
                (Tn::Text, Act::Reply([IAC, answer, b]))
            }
            Tn::Verb(_) => (Tn::Text, Act::Nothing),
            Tn::SubIac(_) if b == 0xF0 => (Tn::Text, Act::Nothing),
            Tn::Sub(n) | Tn::SubIac(n) if n + 1 >= LIMIT => (Tn::Text, Act::Nothing),
            Tn::Sub(n) if b == IAC => (Tn::SubIac(n + 1), Act::Nothing),
            Tn::Sub(n) | Tn::SubIac(n) => (Tn::Sub(n + 1), Act::Nothing),
        };
        self.tn = next;
        act
    }
}
