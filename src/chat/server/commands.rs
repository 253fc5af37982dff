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
            Command::Msg { to, text } => {
                let msg = line(format_args!("(pm) <{}> {}", conn.nick, text));
                match self.nicks.get(&to.to_ascii_lowercase()).copied() {
                    Some(target) => self.sink.transmit(target, msg),
                    None => {
                        if !self.cluster_msg(id, to, msg) {
                            self.error(id, format_args!("no such nick {to}"));
                        }
                    }
                }
            }
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

    /// `id` is now `name` (checked): its room is told.
    pub(super) fn apply_rename(&mut self, id: ConnId, name: &str) {
        let Some(conn) = self.sink.conns.get_mut(&id) else {
            return;
        };
        let old = core::mem::replace(&mut conn.nick, String::from(name));
        let room = conn.room;
        self.nicks.remove(&old.to_ascii_lowercase());
        self.nicks.insert(name.to_ascii_lowercase(), id);
        let notice = line(format_args!("* {old} is now known as {name}"));
        self.broadcast(room, None, &notice);
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
        let nick = conn.nick.clone();
        self.exit_room(id, &nick, old, &notice);
        let new = self.room_for(name);
        if let Some(conn) = self.sink.conns.get_mut(&id) {
            conn.room = new;
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
        let mut buf = BytesMut::new();
        let _ = write!(buf, "* in {}: ", r.name);
        for (i, nick) in nicks.iter().enumerate() {
            if i > 0 {
                buf.extend_from_slice(b", ");
            }
            buf.extend_from_slice(nick.as_bytes());
        }
        buf.extend_from_slice(b"\n");
        self.sink.transmit(id, buf.freeze());
    }

    fn list_rooms(&mut self, id: ConnId) {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"* rooms: ");
        if self.cluster.is_some() {
            for (i, (name, n)) in self.cluster_rooms().iter().enumerate() {
                if i > 0 {
                    buf.extend_from_slice(b", ");
                }
                let _ = write!(buf, "{name} ({n})");
            }
        } else {
            for (i, (name, n)) in self.rooms().enumerate() {
                if i > 0 {
                    buf.extend_from_slice(b", ");
                }
                let _ = write!(buf, "{name} ({n})");
            }
        }
        buf.extend_from_slice(b"\n");
        self.sink.transmit(id, buf.freeze());
    }
}
