//! The bad-input table of `docs/PROTOCOL.md` and limits: line length, UTF-8, control characters,
//! departures, send queue, idle timeout, shutdown.

use alloc::format;
use alloc::vec::Vec;

use super::*;

use core::time::Duration;

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
        // `\xff\xff` is telnet's escaped 0xFF: a literal 0xFF byte, not UTF-8.
        b"bad \xff\xff\xfe bytes\n\xc3\n/nick \xe9t\xe9\nfine \xc3\xa9\n",
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
fn slow_reader_pauses_its_room_then_is_dropped_after_the_stall_timeout() {
    let mut h = H::new(cfg(|c| c.send_queue = 400));
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    h.auto_flush = false;
    // b and c read, a does not.
    let mut sent = 0;
    while h.s.wants_read(b) {
        h.send(b, &format!("message number {sent:03}\n"));
        sent += 1;
        for id in [b, c] {
            let q = h.s.queued(id).unwrap();
            h.s.handle_flushed(id, q).unwrap();
        }
        assert!(sent < 20);
    }
    // a is above half its queue: everyone in its room is paused, nobody dropped.
    assert!(h.s.queued_cost(a).unwrap() > 200);
    assert!(!h.s.wants_read(c) && !h.s.wants_read(a));
    assert_eq!(h.s.connections(), 3);
    let at = h.s.poll_timeout().expect("stall deadline");
    assert_eq!(at, h.now + Duration::from_secs(2));
    // A line sent anyway waits, buffered.
    h.send(b, "waiting\n");
    assert!(h.take(c).ends_with(&format!("number {:03}\n", sent - 1)));
    h.now = at;
    h.s.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.closed[&a], CloseReason::SendQueueExceeded);
    assert!(!CloseReason::SendQueueExceeded.flush());
    assert!(h.s.wants_read(b) && h.s.wants_read(c));
    // The buffered line went out when a was dropped.
    assert_eq!(
        h.lines(c),
        ["* guest1 left (send queue exceeded)", "<guest2> waiting"]
    );
    assert_eq!(h.lines(b), ["* guest1 left (send queue exceeded)"]);
    let before = h.take(a);
    for id in [b, c] {
        h.s.handle_flushed(id, h.s.queued(id).unwrap()).unwrap();
    }
    h.send(b, "more\n");
    h.send(c, "/msg guest1 hi\n");
    assert_eq!(h.take(a), "", "nothing after the Close");
    assert!(!before.contains("left"));
    assert_eq!(h.take(c), "<guest2> more\n! no such nick guest1\n");
}

#[test]
fn a_reader_past_the_limit_is_still_dropped_at_once() {
    // A single reply bigger than what is left: the hard limit still applies.
    let mut h = H::new(cfg(|c| c.send_queue = 700));
    let [a, _b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.auto_flush = false;
    h.send(a, "/help\n");
    h.send(a, "/help\n");
    assert!(h.s.is_open(a), "one /help fits, the second waits");
    assert!(!h.s.wants_read(a));
    h.s.handle_flushed(a, h.s.queued(a).unwrap()).unwrap();
    h.drain();
    assert!(h.s.is_open(a));
    assert_eq!(h.take(a).matches("* /help").count(), 2);
}

#[test]
fn own_error_replies_count_against_the_sender() {
    let mut h = H::new(cfg(|c| c.send_queue = 400));
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.auto_flush = false;
    // A client spamming bad commands without reading is paused at half its queue;
    // the rest waits, and it is dropped once it stayed there for the stall timeout.
    h.send(a, &"/bogus\n".repeat(50));
    assert!(h.s.is_open(a) && !h.s.wants_read(a));
    assert!(h.take(a).lines().count() < 10);
    assert!(h.s.inbox_len(a).unwrap() + h.s.framer_buffered(a).unwrap() > 0);
    h.now = h.now + Duration::from_secs(2);
    h.s.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.closed[&a], CloseReason::SendQueueExceeded);
    assert_eq!(h.take(b), "* guest1 left (send queue exceeded)\n");
}

#[test]
fn drops_cascade_one_by_one_and_terminate() {
    // Nobody reads; arrivals' `joined` notices (not flow-controlled: accepting is
    // not reading) fill the earliest queues first. Each drop's `left` notice may
    // drop the next, one at a time, and the loop ends.
    let mut h = H::new(cfg(|c| c.send_queue = 2000));
    h.auto_flush = false;
    let ids: Vec<ConnId> = (0..60).map(|_| h.open()).collect();
    let dropped: Vec<ConnId> = ids
        .iter()
        .copied()
        .filter(|id| h.closed.contains_key(id))
        .collect();
    assert!(dropped.len() > 5, "{}", dropped.len());
    for id in &dropped {
        assert_eq!(h.closed[id], CloseReason::SendQueueExceeded);
    }
    // The earliest (most notices) went first.
    assert_eq!(dropped[..], ids[..dropped.len()]);
    for id in h.s.conn_ids().collect::<Vec<_>>() {
        assert!(h.s.queued_cost(id).unwrap() <= 2000);
    }
    assert!(h.s.poll_output().is_none());
}

#[test]
fn send_queue_smaller_than_the_welcome_drops_the_newcomer_cleanly() {
    let mut h = H::new(cfg(|c| c.send_queue = 30 + LINE_OVERHEAD));
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
    h.s.shutdown(h.now);
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

#[test]
fn a_closed_connection_counts_against_max_conns_until_its_socket_closes() {
    let mut h = H::new(cfg(|c| c.max_conns = Some(2)));
    h.auto_close = false;
    let [a, _b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "/quit\n");
    assert_eq!(h.closed[&a], CloseReason::Quit);
    assert_eq!((h.s.connections(), h.s.closing()), (1, 1));
    let x = h.open();
    assert_eq!(h.take(x), "! server full\n", "a is still flushing");
    h.s.handle_closed(h.now, a).unwrap();
    h.s.handle_closed(h.now, x).unwrap();
    assert_eq!(h.s.closing(), 0);
    let c = h.open();
    assert!(h.take(c).starts_with("* welcome "));
}

#[test]
fn a_closed_connection_that_never_flushes_is_aborted_after_the_grace() {
    let grace = Duration::from_secs(2);
    let mut h = H::new(cfg(|c| c.close_grace = grace));
    h.auto_close = false;
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.now = Instant::from_millis(500);
    h.send(a, "/quit\n");
    assert_eq!(h.s.poll_timeout(), Some(Instant::from_millis(2_500)));
    h.s.handle_timeout(Instant::from_millis(2_499));
    h.drain();
    assert!(h.aborted.is_empty());
    h.now = Instant::from_millis(2_500);
    h.s.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.aborted.iter().copied().collect::<Vec<_>>(), [a]);
    assert_eq!((h.s.closing(), h.s.poll_timeout()), (0, None));
    // A late report is harmless; the other connection never noticed.
    h.s.handle_closed(h.now, a).unwrap();
    h.drain();
    assert!(h.s.is_open(b));
}

#[test]
fn shutdown_finishes_when_every_socket_closed_or_the_grace_ran_out() {
    let mut h = H::default();
    h.auto_close = false;
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.now = Instant::from_millis(1_000);
    h.s.shutdown(h.now);
    h.drain();
    assert!(!h.s.is_finished());
    // Refused during shutdown: decided by the core, flushed like any other close.
    let c = h.open();
    assert_eq!(h.take(c), "* server shutting down\n");
    h.s.handle_closed(h.now, a).unwrap();
    h.s.handle_closed(h.now, c).unwrap();
    assert!(!h.s.is_finished(), "b is still flushing");
    assert_eq!(h.s.poll_timeout(), Some(Instant::from_millis(3_000)));
    h.now = Instant::from_millis(3_000);
    h.s.handle_timeout(h.now);
    h.drain();
    assert!(h.aborted.contains(&b));
    assert!(h.s.is_finished());
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
                assert!(h.s.poll_timeout().is_none_or(|t| t > h.now));
            }
            3 if !ids.is_empty() => {
                let id = ids[rnd(ids.len() as u64) as usize];
                if let Some(q) = h.s.queued(id) {
                    h.s.handle_flushed(id, q).unwrap();
                    h.drain();
                }
            }
            _ if !ids.is_empty() => {
                let id = ids[rnd(ids.len() as u64) as usize];
                let data = [pieces[rnd(16) as usize], pieces[rnd(16) as usize]].concat();
                let cut = rnd(data.len() as u64 + 1) as usize;
                if h.s.wants_read(id) {
                    h.send_bytes(id, &data[..cut]);
                }
                if h.s.wants_read(id) {
                    h.send_bytes(id, &data[cut..]);
                }
            }
            _ => {}
        }
        for id in h.s.conn_ids() {
            // The driver reads only connections that want it; what it delivered
            // before a pause (one read) is all that waits.
            let waiting = h.s.framer_buffered(id).unwrap() + h.s.inbox_len(id).unwrap();
            assert!(waiting <= 12 + 1 + 40, "{waiting}");
            let nick = h.s.nick(id).unwrap();
            assert!(valid_name(nick));
        }
        ids.retain(|id| h.s.is_open(*id) || rnd(2) == 0);
        h.inbox.clear();
    }
    assert!(h.closed.len() > 100);
}
