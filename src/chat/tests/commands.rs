//! The command table of `docs/PROTOCOL.md`, arrival notices, and the `docs/PROTOCOL.md` session.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::*;

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
