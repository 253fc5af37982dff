//! Unit tests of the chat core, driven through a tiny in-memory harness: no sockets,
//! simulated time, every output checked.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::*;
use crate::Instant;

/// Drives a [`ChatServer`] and records what each connection was sent.
struct H {
    s: ChatServer,
    now: Instant,
    /// Text received per connection, not yet taken by the test.
    inbox: BTreeMap<ConnId, String>,
    /// Raw transmits in order (all of them, for allocation checks).
    log: Vec<(ConnId, Bytes)>,
    closed: BTreeMap<ConnId, CloseReason>,
    /// Report every transmit flushed at once (a fast reader).
    auto_flush: bool,
}

impl H {
    fn new(config: ChatConfig) -> Self {
        H {
            s: ChatServer::new(config),
            now: Instant::ZERO,
            inbox: BTreeMap::new(),
            log: Vec::new(),
            closed: BTreeMap::new(),
            auto_flush: true,
        }
    }

    fn default() -> Self {
        H::new(ChatConfig::default())
    }

    fn drain(&mut self) {
        while let Some(out) = self.s.poll_output() {
            match out {
                Output::Transmit { to, bytes } => {
                    assert!(
                        !self.closed.contains_key(&to),
                        "output to {to:?} after its Close"
                    );
                    let text = core::str::from_utf8(&bytes).expect("server output is UTF-8");
                    assert!(text.ends_with('\n'), "whole lines only: {text:?}");
                    self.inbox.entry(to).or_default().push_str(text);
                    self.log.push((to, bytes.clone()));
                    if self.auto_flush {
                        self.s.handle_flushed(to, bytes.len()).unwrap();
                    }
                }
                Output::Close { id, reason } => {
                    assert!(
                        self.closed.insert(id, reason).is_none(),
                        "{id:?} closed twice"
                    );
                    assert!(!self.s.is_open(id));
                }
            }
        }
        // Invariants after every drain.
        for id in self.s.conn_ids().collect::<Vec<_>>() {
            assert!(self.s.queued(id).unwrap() <= self.s.config().send_queue);
            assert!(!self.closed.contains_key(&id));
        }
        let total: usize = self.s.rooms().map(|(_, n)| n).sum();
        assert_eq!(
            total,
            self.s.connections(),
            "every connection is in exactly one room"
        );
    }

    fn open(&mut self) -> ConnId {
        let id = self.s.handle_open(self.now);
        self.drain();
        id
    }

    /// Opens `n` connections and forgets their welcome traffic.
    fn open_n(&mut self, n: usize) -> Vec<ConnId> {
        let ids = (0..n).map(|_| self.open()).collect();
        self.inbox.clear();
        ids
    }

    fn send(&mut self, id: ConnId, data: &str) {
        self.send_bytes(id, data.as_bytes());
    }

    fn send_bytes(&mut self, id: ConnId, data: &[u8]) {
        self.s.handle_data(self.now, id, data).unwrap();
        self.drain();
    }

    fn eof(&mut self, id: ConnId) {
        self.s.handle_peer_closed(self.now, id).unwrap();
        self.drain();
    }

    /// Takes everything `id` received so far.
    fn take(&mut self, id: ConnId) -> String {
        self.inbox.remove(&id).unwrap_or_default()
    }

    fn lines(&mut self, id: ConnId) -> Vec<String> {
        self.take(id).lines().map(ToString::to_string).collect()
    }

    fn quiet(&mut self, ids: &[ConnId]) {
        for &id in ids {
            assert_eq!(self.take(id), "", "{id:?} got unexpected output");
        }
    }
}

fn cfg(f: impl FnOnce(&mut ChatConfig)) -> ChatConfig {
    let mut c = ChatConfig::default();
    f(&mut c);
    c
}

// ----- connecting -----

#[test]
fn welcome_and_join_notices() {
    let mut h = H::default();
    let a = h.open();
    assert_eq!(h.take(a), "* welcome guest1, 1 users online\n");
    let b = h.open();
    assert_eq!(h.take(b), "* welcome guest2, 2 users online\n");
    assert_eq!(h.take(a), "* guest2 joined #lobby\n");
    let c = h.open();
    assert_eq!(h.take(c), "* welcome guest3, 3 users online\n");
    assert_eq!(h.lines(a), ["* guest3 joined #lobby"]);
    assert_eq!(h.lines(b), ["* guest3 joined #lobby"]);
    assert_eq!(h.s.nick(c), Some("guest3"));
    assert_eq!(h.s.room_of(c), Some("#lobby"));
    assert_eq!(h.s.rooms().collect::<Vec<_>>(), [("#lobby", 3)]);
}

#[test]
fn welcome_counts_users_in_every_room() {
    let mut h = H::default();
    let [a, _] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "/join rust\n");
    h.inbox.clear();
    let c = h.open();
    assert_eq!(h.take(c), "* welcome guest3, 3 users online\n");
    assert_eq!(h.take(a), "", "#rust is not told about #lobby arrivals");
}

#[test]
fn guest_numbers_increase_and_skip_taken_names() {
    let mut h = H::default();
    let a = h.open();
    h.send(a, "/nick GUEST2\n");
    let b = h.open();
    assert_eq!(h.s.nick(b), Some("guest3"), "guest2 is taken ignoring case");
    h.s.handle_reset(h.now, b).unwrap();
    h.drain();
    let c = h.open();
    assert_eq!(h.s.nick(c), Some("guest4"), "numbers are not reused");
    assert_eq!((a.0, b.0, c.0), (0, 1, 2), "ids are monotonic");
}

#[test]
fn server_full_refuses_without_using_a_guest_number() {
    let mut h = H::new(cfg(|c| c.max_conns = Some(2)));
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    let x = h.open();
    assert_eq!(h.take(x), "! server full\n");
    assert_eq!(h.closed[&x], CloseReason::ServerFull);
    h.quiet(&[a, b]);
    assert_eq!(h.s.connections(), 2);
    // Late events for the refused id are ignored.
    h.s.handle_data(h.now, x, b"hi\n").unwrap();
    h.s.handle_flushed(x, 0).unwrap();
    h.drain();
    h.eof(b);
    let c = h.open();
    assert_eq!(h.take(c), "* welcome guest3, 2 users online\n");
    assert!(c > x);
}

// ----- messages -----

#[test]
fn say_reaches_every_other_member_only() {
    let mut h = H::default();
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    h.send(a, "hello there\n");
    h.quiet(&[a]);
    assert_eq!(h.take(b), "<guest1> hello there\n");
    assert_eq!(h.take(c), "<guest1> hello there\n");
}

#[test]
fn double_slash_sends_a_slash_message() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "//nick is a command\n//\n");
    assert_eq!(h.lines(b), ["<guest1> /nick is a command", "<guest1> /"]);
    assert_eq!(h.s.nick(a), Some("guest1"));
}

#[test]
fn broadcast_shares_one_allocation() {
    let mut h = H::default();
    let ids = h.open_n(5);
    h.log.clear();
    h.send(ids[0], "one buffer for all\n");
    assert_eq!(h.log.len(), 4);
    let ptr = h.log[0].1.as_ptr();
    assert!(
        h.log.iter().all(|(_, b)| b.as_ptr() == ptr),
        "every recipient shares the same bytes"
    );
    let to: Vec<ConnId> = h.log.iter().map(|(to, _)| *to).collect();
    assert_eq!(to, ids[1..]);
}

#[test]
fn messages_from_one_sender_arrive_in_order() {
    let mut h = H::default();
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    let mut input = String::new();
    for i in 0..200 {
        input.push_str(&format!("msg {i}\n"));
    }
    // Odd chunk sizes, lines split anywhere.
    for chunk in input.as_bytes().chunks(7) {
        h.send_bytes(a, chunk);
    }
    let want: Vec<String> = (0..200).map(|i| format!("<guest1> msg {i}")).collect();
    assert_eq!(h.lines(b), want);
    assert_eq!(h.lines(c), want);
}

#[test]
fn one_byte_chunks_equal_one_chunk() {
    let script: &[u8] =
        b"hi\r\n/nick Zed\n\n/me waves\n/join rust\n/who\n/rooms\n/msg guest2 psst\n/bogus\n\
                  \xff\n/quit bye all\nignored\n";
    let run = |chunked: bool| {
        let mut h = H::new(cfg(|c| c.max_line = 16));
        let ids = h.open_n(3);
        h.send(ids[2], "/join rust\n");
        h.inbox.clear();
        let data = [script, b"a line that is far too long\nok\n"].concat();
        if chunked {
            for b in data.chunks(1) {
                if h.s.is_open(ids[0]) {
                    h.send_bytes(ids[0], b);
                }
            }
        } else {
            h.send_bytes(ids[0], &data);
        }
        (h.inbox, h.closed)
    };
    let (whole, closed) = run(false);
    assert_eq!((whole.clone(), closed.clone()), run(true));
    assert!(whole[&ConnId(1)].contains("<guest1> hi\n"));
    assert_eq!(closed[&ConnId(0)], CloseReason::Quit);
}

#[test]
fn msg_goes_to_one_nick_only() {
    let mut h = H::default();
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    h.send(c, "/join elsewhere\n");
    h.inbox.clear();
    h.send(a, "/msg GUEST3 secret  stuff\n");
    assert_eq!(
        h.take(c),
        "(pm) <guest1> secret  stuff\n",
        "nick looked up ignoring case, any room"
    );
    h.quiet(&[a, b]);
    h.send(a, "/msg guest1 note to self\n");
    assert_eq!(h.take(a), "(pm) <guest1> note to self\n");
    h.send(a, "/msg nobody hi\n");
    assert_eq!(h.take(a), "! no such nick nobody\n");
    h.send(a, "/msg guest2\n/msg\n");
    assert_eq!(
        h.lines(a),
        ["! usage: /msg NICK text", "! usage: /msg NICK text"]
    );
    h.quiet(&[b, c]);
}

#[test]
fn me_is_an_action_for_the_others() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "/me waves  hello\n");
    assert_eq!(h.take(b), "* guest1 waves  hello\n");
    h.quiet(&[a]);
    h.send(a, "/me\n/ME   \n");
    assert_eq!(h.lines(a), ["! usage: /me text", "! usage: /me text"]);
    h.quiet(&[b]);
}

// ----- nick -----

#[test]
fn nick_rename_tells_the_room_and_the_renamer() {
    let mut h = H::default();
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    h.send(c, "/join other\n");
    h.inbox.clear();
    h.send(a, "/NICK Alice_1-x  \n");
    assert_eq!(h.take(a), "* guest1 is now known as Alice_1-x\n");
    assert_eq!(h.take(b), "* guest1 is now known as Alice_1-x\n");
    h.quiet(&[c]);
    assert_eq!(h.s.nick(a), Some("Alice_1-x"));
    h.send(a, "hi\n");
    assert_eq!(h.take(b), "<Alice_1-x> hi\n");
    // The old nick is free again.
    h.send(b, "/nick guest1\n");
    assert_eq!(h.take(b), "* guest2 is now known as guest1\n");
    assert_eq!(h.take(a), "* guest2 is now known as guest1\n");
    h.send(c, "/msg alice_1-X yo\n");
    assert_eq!(h.take(a), "(pm) <guest3> yo\n");
}

#[test]
fn nick_errors() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    for bad in ["a b", "#x", "é", "x.y", &"n".repeat(25)] {
        h.send(a, &format!("/nick {bad}\n"));
        assert_eq!(h.take(a), "! invalid nick\n", "{bad:?}");
    }
    h.send(a, "/nick \x1b[31m\n");
    assert_eq!(h.take(a), "! invalid nick\n");
    h.send(a, "/nick GUEST2\n");
    assert_eq!(h.take(a), "! nick GUEST2 is taken\n");
    h.send(a, "/nick\n");
    assert_eq!(h.take(a), "! usage: /nick NAME\n");
    h.quiet(&[b]);
    assert_eq!(h.s.nick(a), Some("guest1"));
    h.send(a, &format!("/nick {}\n", "n".repeat(24)));
    assert_eq!(h.s.nick(a).map(str::len), Some(24));
}

#[test]
fn nick_case_change_of_own_nick_is_allowed() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "/nick Guest1\n");
    assert_eq!(h.take(b), "* guest1 is now known as Guest1\n");
    assert_eq!(h.take(a), "* guest1 is now known as Guest1\n");
    h.send(a, "/nick Guest1\n");
    assert_eq!(h.take(a), "* you are already Guest1\n");
    h.quiet(&[b]);
    h.send(b, "/nick guest1\n");
    assert_eq!(h.take(b), "! nick guest1 is taken\n");
}

// ----- rooms -----

#[test]
fn join_moves_between_rooms_with_notices() {
    let mut h = H::default();
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    h.send(a, "/join Rust\n");
    assert_eq!(
        h.take(a),
        "* guest1 joined #Rust\n",
        "the joiner's confirmation"
    );
    assert_eq!(h.take(b), "* guest1 left #lobby\n");
    assert_eq!(h.take(c), "* guest1 left #lobby\n");
    h.send(b, "/join #RUST\n");
    assert_eq!(
        h.lines(a),
        ["* guest2 joined #Rust"],
        "the creator's spelling is kept"
    );
    assert_eq!(h.lines(b), ["* guest2 joined #Rust"]);
    assert_eq!(h.lines(c), ["* guest2 left #lobby"]);
    assert_eq!(h.s.room_of(b), Some("#Rust"));
    h.send(b, "in rust\n");
    assert_eq!(h.take(a), "<guest2> in rust\n");
    h.quiet(&[b, c]);
    assert_eq!(
        h.s.rooms().collect::<Vec<_>>(),
        [("#lobby", 1), ("#Rust", 2)]
    );
}

#[test]
fn join_errors() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    for bad in ["#", "##x", "a b", "ro.om", &"r".repeat(25)] {
        h.send(a, &format!("/join {bad}\n"));
        assert_eq!(h.take(a), "! invalid room\n", "{bad:?}");
    }
    h.send(a, "/join LOBBY\n");
    assert_eq!(h.take(a), "! already in #lobby\n");
    h.send(a, "/join\n");
    assert_eq!(h.take(a), "! usage: /join ROOM\n");
    h.quiet(&[b]);
    assert_eq!(h.s.room_of(a), Some("#lobby"));
}

#[test]
fn rooms_are_deleted_when_empty_lobby_too() {
    let mut h = H::default();
    let a = h.open();
    h.send(a, "/join x\n");
    assert_eq!(h.s.rooms().collect::<Vec<_>>(), [("#x", 1)]);
    h.send(a, "/join X\n");
    assert_eq!(h.take(a).lines().last(), Some("! already in #x"));
    h.send(a, "/join Lobby\n");
    assert_eq!(
        h.s.rooms().collect::<Vec<_>>(),
        [("#Lobby", 1)],
        "re-created with the new spelling"
    );
    let b = h.open();
    assert_eq!(h.s.room_of(b), Some("#Lobby"));
    h.eof(a);
    h.eof(b);
    assert_eq!(h.s.rooms().count(), 0);
    let c = h.open();
    assert_eq!(h.s.room_of(c), Some("#lobby"));
}

#[test]
fn who_lists_room_members_sorted_ignoring_case() {
    let mut h = H::default();
    let [a, b, c, d] = h.open_n(4)[..] else {
        unreachable!()
    };
    h.send(a, "/nick zed\n");
    h.send(b, "/nick Bob\n");
    h.send(c, "/nick alice\n");
    h.send(d, "/join elsewhere\n");
    h.inbox.clear();
    h.send(b, "/who\n");
    assert_eq!(h.take(b), "* in #lobby: alice, Bob, zed\n");
    h.send(d, "/WHO please\n");
    assert_eq!(h.take(d), "* in #elsewhere: guest4\n");
    h.quiet(&[a, c]);
}

#[test]
fn rooms_lists_every_room_sorted_with_sizes() {
    let mut h = H::default();
    let [a, b, c, d] = h.open_n(4)[..] else {
        unreachable!()
    };
    h.send(a, "/join rust\n");
    h.send(b, "/join Zoo\n");
    h.send(c, "/join apple\n");
    h.send(d, "/join Rust\n");
    let e = h.open();
    h.inbox.clear();
    h.send(e, "/rooms\n");
    assert_eq!(
        h.take(e),
        "* rooms: #apple (1), #lobby (1), #rust (2), #Zoo (1)\n"
    );
}

// ----- quit, help, unknown -----

#[test]
fn quit_says_bye_closes_and_tells_the_room() {
    let mut h = H::default();
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    h.send(a, "/quit\nnever seen\n/nick late\n");
    assert_eq!(h.take(a), "* bye\n");
    assert_eq!(h.closed[&a], CloseReason::Quit);
    assert_eq!(
        h.take(b),
        "* guest1 left (quit)\n",
        "lines after /quit are ignored"
    );
    assert_eq!(h.take(c), "* guest1 left (quit)\n");
    h.send(b, "/QUIT  gone \x1b[2J fishing  \n");
    assert_eq!(h.take(c), "* guest2 left (gone \u{fffd}[2J fishing)\n");
    assert_eq!(h.s.connections(), 1);
    assert!(
        CloseReason::Quit.flush(),
        "the bye is flushed before closing"
    );
}

#[test]
fn help_is_one_transmit_of_notice_lines() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.log.clear();
    h.send(a, "/help\n");
    assert_eq!(h.log.len(), 1, "one Transmit");
    let lines = h.lines(a);
    assert_eq!(lines.len(), 8);
    for (l, cmd) in lines.iter().zip([
        "/nick", "/join", "/who", "/rooms", "/msg", "/me", "/quit", "/help",
    ]) {
        assert!(l.starts_with(&format!("* {cmd} ")), "{l}");
    }
    h.quiet(&[b]);
}

#[test]
fn unknown_command() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "/other stuff\n/\n/Nickname x\n");
    assert_eq!(
        h.lines(a),
        [
            "! unknown command /other",
            "! unknown command /",
            "! unknown command /Nickname"
        ]
    );
    h.send(a, "/\x1b[1m\n");
    assert_eq!(h.take(a), "! unknown command /\u{fffd}[1m\n");
    h.quiet(&[b]);
}

// ----- bad input -----

#[test]
fn too_long_lines_are_refused_and_the_connection_stays() {
    let mut h = H::new(cfg(|c| c.max_line = 10));
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "0123456789\n01234567890\nok\n");
    assert_eq!(h.take(a), "! line too long (max 10 bytes)\n");
    assert_eq!(h.lines(b), ["<guest1> 0123456789", "<guest1> ok"]);
    // Over many pushes, reported once, discarded up to its newline.
    for _ in 0..100 {
        h.send(a, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        assert!(
            h.s.framer_buffered(a).unwrap() <= 10 + 1 + 30,
            "bounded by max_line + chunk"
        );
    }
    h.send(a, "tail\r\nafter\r\n");
    assert_eq!(h.take(a), "! line too long (max 10 bytes)\n");
    assert_eq!(h.take(b), "<guest1> after\n");
    // Exactly max_line with \r\n is fine.
    h.send(a, "0123456789\r\n");
    assert_eq!(h.take(b), "<guest1> 0123456789\n");
    assert!(h.s.is_open(a));
}

#[test]
fn invalid_utf8_is_discarded() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send_bytes(
        a,
        b"bad \xff\xfe bytes\n\xc3\n/nick \xe9t\xe9\nfine \xc3\xa9\n",
    );
    assert_eq!(
        h.lines(a),
        ["! invalid utf-8", "! invalid utf-8", "! invalid utf-8"]
    );
    assert_eq!(h.take(b), "<guest1> fine é\n");
    // A multi-byte character split across reads is fine.
    h.send_bytes(a, b"caf\xc3");
    h.send_bytes(a, b"\xa9\n");
    assert_eq!(h.take(b), "<guest1> café\n");
    h.quiet(&[a]);
}

#[test]
fn control_characters_are_replaced_before_anyone_sees_them() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(
        a,
        "\x1b]0;pwned\x07 red\x1b[31m tab\there del\x7f c1\u{9b}2J\r\n",
    );
    assert_eq!(
        h.take(b),
        "<guest1> \u{fffd}]0;pwned\u{fffd} red\u{fffd}[31m tab\there del\u{fffd} c1\u{fffd}2J\n"
    );
    h.send(a, "/me \x1b[5mblinks\n/msg guest2 \x00x\n");
    assert_eq!(
        h.lines(b),
        ["* guest1 \u{fffd}[5mblinks", "(pm) <guest1> \u{fffd}x"]
    );
    h.send(a, "/msg \x1bguest2 x\n");
    assert_eq!(h.take(a), "! no such nick \u{fffd}guest2\n");
    // A lone \r inside a line is a control character too.
    h.send(a, "a\rb\n");
    assert_eq!(h.take(b), "<guest1> a\u{fffd}b\n");
}

#[test]
fn crlf_and_empty_lines() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "\n\r\n\n");
    h.send(a, "one\r\ntwo\n\r\nthree\r\n");
    assert_eq!(
        h.lines(b),
        ["<guest1> one", "<guest1> two", "<guest1> three"]
    );
    h.send(a, "  \n");
    assert_eq!(h.take(b), "<guest1>   \n", "a line of spaces is not empty");
    h.quiet(&[a]);
}

// ----- departures -----

#[test]
fn eof_processes_the_last_line_then_leaves() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "first\nlast words");
    assert_eq!(h.take(b), "<guest1> first\n");
    h.eof(a);
    assert_eq!(
        h.lines(b),
        ["<guest1> last words", "* guest1 left (connection closed)"]
    );
    assert_eq!(h.closed[&a], CloseReason::PeerClosed);
    assert_eq!(h.s.nick(a), None);
    // A final unterminated /quit wins over EOF.
    let c = h.open();
    h.inbox.clear();
    h.send(c, "/quit done");
    h.eof(c);
    assert_eq!(h.take(c), "* bye\n");
    assert_eq!(h.take(b), "* guest3 left (done)\n");
    assert_eq!(h.closed[&c], CloseReason::Quit);
}

#[test]
fn reset_leaves_at_once() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "unfinished");
    h.s.handle_reset(h.now, a).unwrap();
    h.drain();
    assert_eq!(h.take(b), "* guest1 left (connection reset)\n");
    assert_eq!(h.closed[&a], CloseReason::Reset);
    assert!(!CloseReason::Reset.flush());
}

#[test]
fn events_for_closed_ids_are_ignored_and_unknown_ids_are_errors() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.eof(a);
    h.inbox.clear();
    let now = h.now;
    assert_eq!(h.s.handle_data(now, a, b"hello\n"), Ok(()));
    assert_eq!(h.s.handle_flushed(a, 100), Ok(()));
    assert_eq!(h.s.handle_peer_closed(now, a), Ok(()));
    assert_eq!(h.s.handle_reset(now, a), Ok(()));
    assert_eq!(h.s.queued(a), None);
    h.drain();
    h.quiet(&[a, b]);
    let never = ConnId(99);
    assert_eq!(
        h.s.handle_data(now, never, b"x"),
        Err(ChatError::UnknownConn(never))
    );
    assert_eq!(
        h.s.handle_flushed(never, 0),
        Err(ChatError::UnknownConn(never))
    );
    assert_eq!(
        h.s.handle_peer_closed(now, never),
        Err(ChatError::UnknownConn(never))
    );
    assert_eq!(
        h.s.handle_reset(now, never),
        Err(ChatError::UnknownConn(never))
    );
    assert!(h.s.poll_output().is_none());
}

// ----- send queue -----

#[test]
fn flushed_accounting() {
    let mut h = H::default();
    h.auto_flush = false;
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    let welcome_a = "* welcome guest1, 1 users online\n* guest2 joined #lobby\n".len();
    assert_eq!(h.s.queued(a), Some(welcome_a));
    h.send(b, "hey\n");
    assert_eq!(h.s.queued(a), Some(welcome_a + "<guest2> hey\n".len()));
    h.s.handle_flushed(a, 10).unwrap();
    assert_eq!(h.s.queued(a), Some(welcome_a + 13 - 10));
    let q = h.s.queued(a).unwrap();
    assert_eq!(
        h.s.handle_flushed(a, q + 1),
        Err(ChatError::FlushOverflow {
            id: a,
            reported: q + 1,
            queued: q
        })
    );
    assert_eq!(h.s.queued(a), Some(q), "a bad report changes nothing");
    h.s.handle_flushed(a, q).unwrap();
    assert_eq!(h.s.queued(a), Some(0));
}

#[test]
fn slow_reader_is_dropped_and_gets_nothing_more() {
    let mut h = H::new(cfg(|c| c.send_queue = 200));
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    h.auto_flush = false;
    // b and c read, a does not.
    let mut got_a = 0;
    for i in 0.. {
        h.send(b, &format!("message number {i:03}\n"));
        for id in [b, c] {
            let q = h.s.queued(id).unwrap();
            h.s.handle_flushed(id, q).unwrap();
        }
        if !h.s.is_open(a) {
            break;
        }
        got_a = h.s.queued(a).unwrap();
        assert!(i < 20);
    }
    assert!(got_a <= 200 && got_a + "<guest2> message number 000\n".len() > 200);
    assert_eq!(h.closed[&a], CloseReason::SendQueueExceeded);
    assert!(!CloseReason::SendQueueExceeded.flush());
    let c_lines = h.lines(c);
    assert_eq!(
        c_lines.last().unwrap(),
        "* guest1 left (send queue exceeded)"
    );
    assert_eq!(h.lines(b), ["* guest1 left (send queue exceeded)"]);
    let before = h.take(a);
    h.send(b, "more\n");
    h.send(c, "/msg guest1 hi\n");
    assert_eq!(h.take(a), "", "nothing after the Close");
    assert!(!before.contains("left"));
    assert_eq!(h.take(c), "<guest2> more\n! no such nick guest1\n");
}

#[test]
fn own_error_replies_count_against_the_sender() {
    let mut h = H::new(cfg(|c| c.send_queue = 100));
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.auto_flush = false;
    // A client spamming bad commands without reading is dropped; later lines ignored.
    h.send(a, &"/bogus\n".repeat(50));
    assert_eq!(h.closed[&a], CloseReason::SendQueueExceeded);
    assert!(h.take(a).lines().count() < 10);
    assert_eq!(h.take(b), "* guest1 left (send queue exceeded)\n");
}

#[test]
fn drops_cascade_one_by_one_and_terminate() {
    // Reader j has room for the trigger message and j-1 `left` notices: the trigger
    // drops n01, whose notice drops n02, whose notice drops n03, ...
    let mut h = H::new(cfg(|c| c.send_queue = 2000));
    let ids = h.open_n(30);
    for (i, &id) in ids.iter().enumerate() {
        h.send(id, &format!("/nick n{i:02}\n"));
    }
    h.inbox.clear();
    h.auto_flush = false;
    let trigger = "<n00> go\n".len();
    let notice = "* n01 left (send queue exceeded)\n".len();
    for (j, &id) in ids.iter().enumerate().skip(1) {
        let target = 2000 - (trigger + (j - 1) * notice - 1);
        loop {
            let need = target - h.s.queued(id).unwrap();
            let text = if need > 425 { 400 } else { need - 12 };
            h.send(ids[0], &format!("/msg n{j:02} {}\n", "f".repeat(text)));
            if need <= 425 {
                break;
            }
        }
        assert_eq!(h.s.queued(id), Some(target));
    }
    assert_eq!(h.s.queued(ids[0]), Some(0));
    h.send(ids[0], "go\n");
    assert_eq!(
        h.s.connections(),
        1,
        "all slow readers dropped, the sender stays"
    );
    for &id in &ids[1..] {
        assert_eq!(h.closed[&id], CloseReason::SendQueueExceeded);
    }
    let want: Vec<String> = (1..30)
        .map(|j| format!("* n{j:02} left (send queue exceeded)"))
        .collect();
    assert_eq!(h.lines(ids[0]), want, "one at a time, in chain order");
    assert!(h.s.poll_output().is_none());
}

#[test]
fn send_queue_smaller_than_the_welcome_drops_the_newcomer_cleanly() {
    let mut h = H::new(cfg(|c| c.send_queue = 30));
    let a = h.open();
    assert_eq!(h.closed[&a], CloseReason::SendQueueExceeded);
    assert_eq!(h.take(a), "", "the 33-byte welcome never fits");
    assert_eq!(h.s.connections(), 0);
    assert_eq!(h.s.rooms().count(), 0);
    let b = h.open();
    assert_eq!(h.closed[&b], CloseReason::SendQueueExceeded);
    assert_eq!(h.s.nick(b), None);
}

// ----- idle timeout -----

#[test]
fn idle_timeout_via_poll_timeout_and_handle_timeout() {
    let t = Duration::from_secs(10);
    let mut h = H::new(cfg(|c| c.idle_timeout = Some(t)));
    let a = h.open();
    h.now = Instant::from_millis(2_000);
    let b = h.open();
    h.inbox.clear();
    assert_eq!(h.s.poll_timeout(), Some(Instant::from_millis(10_000)));
    // Activity (any bytes, even an incomplete line) postpones the deadline.
    h.now = Instant::from_millis(5_000);
    h.send(a, "x");
    assert_eq!(h.s.poll_timeout(), Some(Instant::from_millis(12_000)));
    h.now = Instant::from_millis(11_999);
    h.s.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.s.connections(), 2);
    h.now = Instant::from_millis(12_000);
    h.s.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.closed[&b], CloseReason::IdleTimeout);
    assert_eq!(h.take(a), "* guest2 left (idle timeout)\n");
    assert_eq!(h.s.poll_timeout(), Some(Instant::from_millis(15_000)));
    h.now = Instant::from_millis(60_000);
    h.s.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.closed[&a], CloseReason::IdleTimeout);
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn idle_timeout_off() {
    for t in [None, Some(Duration::ZERO)] {
        let mut h = H::new(cfg(|c| c.idle_timeout = t));
        let a = h.open();
        assert_eq!(h.s.poll_timeout(), None);
        h.s.handle_timeout(Instant::from_duration(Duration::from_secs(1_000_000)));
        h.drain();
        assert!(h.s.is_open(a));
    }
}

#[test]
fn idle_timeout_scales_to_ten_thousand_connections() {
    let mut h = H::new(cfg(|c| c.idle_timeout = Some(Duration::from_secs(60))));
    for i in 0..10_000u64 {
        h.now = Instant::from_millis(i);
        // Each in a room of its own: a 10 000-member room would make this test
        // about broadcast cost (n^2 join notices), not about timers.
        let id = h.s.handle_open(h.now);
        h.s.handle_data(h.now, id, format!("/join r{i}\n").as_bytes())
            .unwrap();
        while h.s.poll_output().is_some() {}
    }
    assert_eq!(h.s.poll_timeout(), Some(Instant::from_millis(60_000)));
    // Half of them time out at once.
    h.now = Instant::from_millis(64_999);
    h.s.handle_timeout(h.now);
    let mut closes = 0;
    while let Some(out) = h.s.poll_output() {
        closes += usize::from(matches!(
            out,
            Output::Close {
                reason: CloseReason::IdleTimeout,
                ..
            }
        ));
    }
    assert_eq!(closes, 5_000);
    assert!(h.s.poll_timeout().unwrap() > h.now);
    assert_eq!(h.s.connections(), 5_000);
}

// ----- shutdown -----

#[test]
fn shutdown_notifies_and_closes_everyone() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(b, "/join other\n");
    h.inbox.clear();
    h.s.shutdown();
    h.drain();
    assert_eq!(h.take(a), "* server shutting down\n", "no `left` notices");
    assert_eq!(h.take(b), "* server shutting down\n");
    assert_eq!(h.closed[&a], CloseReason::Shutdown);
    assert_eq!(h.closed[&b], CloseReason::Shutdown);
    assert_eq!(h.s.connections(), 0);
    assert_eq!(h.s.rooms().count(), 0);
    assert_eq!(h.s.poll_timeout(), None);
    let c = h.open();
    assert_eq!(h.take(c), "* server shutting down\n");
    assert_eq!(h.closed[&c], CloseReason::Shutdown);
    assert_eq!(h.s.handle_data(h.now, a, b"x\n"), Ok(()));
}

// ----- a small randomized model check -----

#[test]
fn random_operations_keep_invariants() {
    // Deterministic xorshift; no external randomness in the core's tests.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let pieces: [&[u8]; 16] = [
        b"hi\n",
        b"/nick a\n",
        b"/nick B\n",
        b"/join r\n",
        b"/join R\n",
        b"/join lobby\n",
        b"/who\n",
        b"/rooms\n",
        b"/msg a x\n",
        b"/me y\n",
        b"/quit\n",
        b"/help\n",
        b"\xff\n",
        b"\x1b\r\n",
        b"long long long long\n",
        b"/x",
    ];
    let mut h = H::new(cfg(|c| {
        c.max_line = 12;
        c.send_queue = 300;
        c.max_conns = Some(8);
        c.idle_timeout = Some(Duration::from_millis(500));
    }));
    let mut ids: Vec<ConnId> = Vec::new();
    for _ in 0..20_000 {
        h.now = h.now + Duration::from_millis(rnd(20));
        h.auto_flush = rnd(4) != 0;
        match rnd(10) {
            0 => ids.push(h.open()),
            1 if !ids.is_empty() => {
                let id = ids[rnd(ids.len() as u64) as usize];
                h.eof(id);
            }
            2 => {
                h.s.handle_timeout(h.now);
                h.drain();
                assert!(h.s.poll_timeout().map_or(true, |t| t > h.now));
            }
            3 if !ids.is_empty() => {
                let id = ids[rnd(ids.len() as u64) as usize];
                if let Some(q) = h.s.queued(id) {
                    h.s.handle_flushed(id, q).unwrap();
                }
            }
            _ if !ids.is_empty() => {
                let id = ids[rnd(ids.len() as u64) as usize];
                let data = [pieces[rnd(16) as usize], pieces[rnd(16) as usize]].concat();
                let cut = rnd(data.len() as u64 + 1) as usize;
                h.send_bytes(id, &data[..cut]);
                h.send_bytes(id, &data[cut..]);
            }
            _ => {}
        }
        for id in h.s.conn_ids() {
            assert!(h.s.framer_buffered(id).unwrap() <= 12 + 1 + 40);
            let nick = h.s.nick(id).unwrap();
            assert!(valid_name(nick));
        }
        ids.retain(|id| h.s.is_open(*id) || rnd(2) == 0);
        h.inbox.clear();
    }
    assert!(h.closed.len() > 100);
}

// ----- docs/PROTOCOL.md -----

#[test]
fn protocol_doc_example() {
    let mut h = H::default();
    let alice = h.open();
    h.send(alice, "/nick alice\n");
    let bob = h.open();
    h.send(bob, "/nick bob\n");
    h.send(bob, "hi alice!\n");
    h.send(alice, "hello bob\n");
    h.send(alice, "/who\n");
    h.send(bob, "/join rust\n");
    h.send(bob, "/rooms\n");
    h.send(alice, "/join RUST\n");
    h.send(bob, "/me waves\n");
    h.send(alice, "/msg BOB see you at lunch\n");
    h.send(alice, "/nick al ice\n");
    h.send(bob, "/quit lunch time\n");
    assert_eq!(
        h.lines(alice),
        [
            "* welcome guest1, 1 users online",
            "* guest1 is now known as alice",
            "* guest2 joined #lobby",
            "* guest2 is now known as bob",
            "<bob> hi alice!",
            "* in #lobby: alice, bob",
            "* bob left #lobby",
            "* alice joined #rust",
            "* bob waves",
            "! invalid nick",
            "* bob left (lunch time)",
        ]
    );
    assert_eq!(
        h.lines(bob),
        [
            "* welcome guest2, 2 users online",
            "* guest2 is now known as bob",
            "<alice> hello bob",
            "* bob joined #rust",
            "* rooms: #lobby (1), #rust (1)",
            "* alice joined #rust",
            "(pm) <alice> see you at lunch",
            "* bye",
        ]
    );
    assert_eq!(h.closed[&bob], CloseReason::Quit);
}
