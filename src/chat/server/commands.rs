//! What each line a client sends does: framing errors, UTF-8 and control-character
//! rules, then the commands of `docs/PROTOCOL.md` (`/nick`, `/join`, `/who`, `/rooms`, `/msg`,
//! `/me`, `/quit`, `/help`) and plain messages.

use super::*;

/// `/help`: one line per command, shared by every request (no allocation).
const HELP: &[u8] = "* /nick NAME — change your nick\n\
* /join ROOM — leave your room and enter #ROOM (created if needed)\n\
* /who — list the members of your room\n\
* /rooms — list the rooms and their sizes\n\
* /msg NICK text — send a private message\n\
* /me text — an action, shown as * nick text\n\
* /quit [reason] — leave the server\n\
* /help — this list (start a message with // to send a line starting with /)\n"
    .as_bytes();

impl ChatServer {
    pub(super) fn handle_line(&mut self, id: ConnId, item: Result<Bytes, LineTooLong>) {
        let raw = match item {
            Ok(raw) => raw,
            Err(e) => return self.error(id, format_args!("{e}")),
        };
        if raw.is_empty() {
            return;
        }
        let Ok(text) = core::str::from_utf8(&raw) else {
            return self.error(id, format_args!("invalid utf-8"));
        };
        let text = sanitize(text);
        self.handle_command(id, Command::parse(&text));
    }

    fn handle_command(&mut self, id: ConnId, cmd: Command<'_>) {
        let Some(conn) = self.sink.conns.get(&id) else {
            return;
        };
        let room = conn.room;
        match cmd {
            Command::Say(text) => {
                let msg = line(format_args!("<{}> {}", conn.nick, text));
                self.broadcast(room, Some(id), &msg);
                self.publish_say(room, msg);
            }
            Command::Me(text) => {
                let msg = line(format_args!("* {} {}", conn.nick, text));
                self.broadcast(room, Some(id), &msg);
                self.publish_say(room, msg);
            }
            Command::Nick(name) => self.rename(id, name),
            Command::Join(name) => self.join(id, name),
            Command::Who => self.who(id, room),
            Command::Rooms => self.list_rooms(id),
            Command::Msg { to, text } => match self.nicks.get(&to.to_ascii_lowercase()) {
                Some(&target) => {
                    let msg = line(format_args!("(pm) <{}> {}", conn.nick, text));
                    self.sink.transmit(target, msg);
                    if let Some(conn) = self.sink.conns.get_mut(&id) {
                        conn.last_msg = Some(target);
                    }
                }
                None => {
                    let msg = line(format_args!("(pm) <{}> {}", conn.nick, text));
                    if !self.cluster_msg(id, to, msg) {
                        self.error(id, format_args!("no such nick {to}"));
                    }
                }
            },
            Command::Quit(reason) => {
                self.sink.transmit(id, Bytes::from_static(b"* bye\n"));
                if self.sink.alive(id) {
                    self.remove(id, reason.unwrap_or("quit"), CloseReason::Quit);
                }
            }
            Command::Help => self.sink.transmit(id, Bytes::from_static(HELP)),
            Command::Usage(usage) => self.error(id, format_args!("usage: {usage}")),
            Command::Unknown(word) => self.error(id, format_args!("unknown command {word}")),
        }
    }

    fn rename(&mut self, id: ConnId, name: &str) {
        if !valid_name(name) {
            return self.error(id, format_args!("invalid nick"));
        }
        if name.eq_ignore_ascii_case(RESERVED_NICK) {
            return self.error(id, format_args!("nick {name} is reserved"));
        }
        let Some(conn) = self.sink.conns.get_mut(&id) else {
            return;
        };
        let key = name.to_ascii_lowercase();
        match self.nicks.get(&key) {
            Some(&owner) if owner != id => {
                return self.error(id, format_args!("nick {name} is taken"))
            }
            _ if conn.nick == name => {
                let msg = line(format_args!("* you are already {name}"));
                return self.sink.transmit(id, msg);
            }
            _ => {}
        }
        if self.cluster_rename(id, name) {
            return;
        }
        self.apply_rename(id, name);
    }

    /// `id` is now `name` (checked): its room is told (`id` alone if the room is quiet).
    pub(super) fn apply_rename(&mut self, id: ConnId, name: &str) {
        let Some(conn) = self.sink.conns.get_mut(&id) else {
            return;
        };
        let old = core::mem::replace(&mut conn.nick, String::from(name));
        let room = conn.room;
        self.nicks.remove(&old.to_ascii_lowercase());
        self.nicks.insert(name.to_ascii_lowercase(), id);
        let notice = line(format_args!("* {old} is now known as {name}"));
        self.announce(room, Some(id), true, false, &notice);
        if self.cluster.is_some() {
            let shown = self
                .rooms
                .get(&room)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            self.cluster_renamed(&old, name, &shown, &notice);
        }
    }

    /// Publishes `msg` for `room`'s members on other nodes.
    fn publish_say(&mut self, room: RoomId, msg: Bytes) {
        if self.cluster.is_none() {
            return;
        }
        if let Some(r) = self.rooms.get(&room) {
            let room = r.name.clone();
            self.cluster_publish(cluster_wire::Body::Say { room, line: msg });
        }
    }

    fn join(&mut self, id: ConnId, name: &str) {
        let name = name.strip_prefix('#').unwrap_or(name);
        if !valid_name(name) {
            return self.error(id, format_args!("invalid room"));
        }
        let Some(conn) = self.sink.conns.get(&id) else {
            return;
        };
        let old = conn.room;
        if self.room_index.get(&name.to_ascii_lowercase()) == Some(&old) {
            let shown = self.rooms.get(&old).map_or("", |r| r.name.as_str());
            return self
                .sink
                .transmit(id, line(format_args!("! already in {shown}")));
        }
        let shown = self.rooms.get(&old).map_or("", |r| r.name.as_str());
        let notice = line(format_args!("* {} left {}", conn.nick, shown));
        let hot = conn.hot.is_some();
        let nick = conn.nick.clone();
        self.cluster_exit(&nick, old, &notice);
        self.exit_room(id, old, hot, &notice);
        let new = self.room_for(name);
        if let Some(conn) = self.sink.conns.get_mut(&id) {
            conn.room = new;
        }
        if hot {
            *self.sink.room_hot.entry(new).or_default() += 1;
        }
        self.enter_room(id, new, true);
    }

    fn who(&mut self, id: ConnId, room: RoomId) {
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        let mut nicks: Vec<&str> = r
            .members
            .iter()
            .filter_map(|m| self.sink.conns.get(m))
            .map(|c| c.nick.as_str())
            .collect();
        nicks.extend(self.cluster_members(&r.name[1..].to_ascii_lowercase()));
        nicks.sort_by_cached_key(|n| n.to_ascii_lowercase());
        let header = alloc::format!("* in {}: ", r.name);
        let reply = self.list_reply(&header, nicks.len(), nicks.iter());
        self.sink.transmit(id, reply);
    }

    fn list_rooms(&mut self, id: ConnId) {
        if self.cluster.is_some() {
            let all = self.cluster_rooms();
            let entries = all.iter().map(|(name, n)| alloc::format!("{name} ({n})"));
            let reply = self.list_reply("* rooms: ", all.len(), entries);
            return self.sink.transmit(id, reply);
        }
        let total = self.room_index.len();
        let entries = self.rooms().map(|(name, n)| alloc::format!("{name} ({n})"));
        let reply = self.list_reply("* rooms: ", total, entries);
        self.sink.transmit(id, reply);
    }

    /// A bounded `/who` or `/rooms` reply: `total` entries, joined by `, ` after
    /// `header`, on lines of at most [`reply_width`] bytes (each starting with
    /// `header`), the whole at most [`reply_budget`] bytes: an entry is placed only if
    /// afterwards the reply still has room for its end (1 byte after the last
    /// entry, else a full line for the marker). At the first entry that does not
    /// fit, `… and K more` ends the reply: after `, ` on the current line if it fits
    /// there, else on a line of its own after the header. A small list is one line,
    /// exactly as before the bound existed.
    fn list_reply<E: AsRef<str>>(
        &self,
        header: &str,
        total: usize,
        entries: impl Iterator<Item = E>,
    ) -> Bytes {
        let width = reply_width(&self.config);
        let budget = reply_budget(&self.config);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(header.as_bytes());
        let mut line_start = 0;
        let mut shown = 0;
        for entry in entries {
            let entry = entry.as_ref().as_bytes();
            let line_len = buf.len() - line_start;
            let inline = shown == 0 || line_len + 2 + entry.len() <= width;
            let grow = match (shown, inline) {
                (0, _) => entry.len(),
                (_, true) => 2 + entry.len(),
                (_, false) => 1 + header.len() + entry.len(),
            };
            let reserve = if shown + 1 == total { 1 } else { width + 2 };
            if buf.len() + grow + reserve > budget {
                break;
            }
            if shown > 0 && inline {
                buf.extend_from_slice(b", ");
            } else if shown > 0 {
                buf.extend_from_slice(b"\n");
                line_start = buf.len();
                buf.extend_from_slice(header.as_bytes());
            }
            buf.extend_from_slice(entry);
            shown += 1;
        }
        if shown < total {
            let mut marker = BytesMut::new();
            let _ = write!(marker, "\u{2026} and {} more", total - shown);
            if shown == 0 {
                // Right after the header.
            } else if buf.len() - line_start + 2 + marker.len() <= width {
                buf.extend_from_slice(b", ");
            } else {
                buf.extend_from_slice(b"\n");
                buf.extend_from_slice(header.as_bytes());
            }
            buf.extend_from_slice(&marker);
        }
        buf.extend_from_slice(b"\n");
        buf.freeze()
    }
}

/// The nick nobody may take (any case): server notices must not be impersonated.
pub const RESERVED_NICK: &str = "server";

/// Narrowest line a `/who` or `/rooms` reply may use, whatever `max_line` says.
pub const MIN_REPLY_WIDTH: usize = 80;

/// Most a `/who` or `/rooms` reply may cost (bytes plus [`LINE_OVERHEAD`]), if a
/// quarter of `send_queue` is more.
pub const MAX_REPLY_COST: usize = 16 * 1024;

/// Longest line of a `/who` or `/rooms` reply, without its `\n`:
/// `max(max_line, MIN_REPLY_WIDTH)`.
pub fn reply_width(config: &ChatConfig) -> usize {
    config.max_line.max(MIN_REPLY_WIDTH)
}

/// Most bytes of a `/who` or `/rooms` reply: `min(send_queue / 4, MAX_REPLY_COST)`
/// minus [`LINE_OVERHEAD`] (the reply is one transmit). Replies are always at least
/// one line (`* rooms: … and K more`), even when this is smaller.
pub fn reply_budget(config: &ChatConfig) -> usize {
    (config.send_queue / 4)
        .min(MAX_REPLY_COST)
        .saturating_sub(LINE_OVERHEAD)
}
