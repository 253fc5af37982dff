//! Abuse at small scale: floods, huge listings, connection hoarding, look-alike
//! text, impersonation. See "No collateral drops" and friends in `docs/PROTOCOL.md`.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::time::Duration;

use super::*;

/// Drains, then lets `readers` flush everything, until nothing moves.
fn settle(h: &mut H, readers: &[ConnId]) {
    loop {
        h.drain();
        let mut flushed = false;
        for &id in readers {
            if let Some(q) = h.s.queued(id).filter(|&q| q > 0) {
                h.s.handle_flushed(id, q).unwrap();
                flushed = true;
            }
        }
        if !flushed {
            break;
        }
    }
}

#[test]
fn me_flood_pauses_the_flooder_and_drops_only_the_non_reader() {
    let mut h = H::new(cfg(|c| c.send_queue = 16 * 1024));
    let ids = h.open_n(22);
    let (flooder, sleeper, readers) = (ids[0], ids[1], &ids[2..]);
    h.auto_flush = false;
    let line = alloc::format!("/me {}\n", "x".repeat(1000));
    let flood = line.repeat(200);
    h.s.handle_data(h.now, flooder, flood.as_bytes()).unwrap();
    // Processed only up to the first queue past half: the flooder is paused.
    assert!(!h.s.wants_read(flooder));
    assert!(h.s.queued_cost(readers[0]).unwrap() <= 16 * 1024);
    settle(&mut h, readers);
    // The sleeper is hot: the whole room waits; nobody is dropped yet.
    assert_eq!(h.s.connections(), 22);
    assert!(!h.s.wants_read(flooder));
    h.now = h.now + Duration::from_secs(2);
    h.s.handle_timeout(h.now);
    settle(&mut h, readers);
    assert_eq!(h.closed.len(), 1);
    assert_eq!(h.closed[&sleeper], CloseReason::SendQueueExceeded);
    // Then the whole flood reaches every reader, nobody else dropped.
    for &r in readers {
        let got = h.take(r);
        assert_eq!(got.matches("* guest1 xxx").count(), 200, "{r:?}");
        assert!(h.s.is_open(r));
    }
    assert!(h.s.wants_read(flooder));
}

#[test]
fn msg_flood_pauses_on_its_target() {
    let mut h = H::new(cfg(|c| c.send_queue = 4096));
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    h.send(a, "/join elsewhere\n");
    h.auto_flush = false;
    let flood = alloc::format!("/msg guest3 {}\n", "y".repeat(500)).repeat(50);
    h.send(a, &flood);
    assert!(!h.s.wants_read(a), "paused on its /msg target");
    assert!(!h.s.wants_read(b), "b shares a room with the hot c");
    settle(&mut h, &[c]);
    assert_eq!(h.take(c).matches("(pm) <guest1>").count(), 50);
    assert!(h.s.is_open(c));
}

#[test]
fn who_in_a_room_of_thousands_is_bounded() {
    let mut h = H::new(cfg(|c| c.send_queue = 16 * 1024));
    let ids = h.open_n(600);
    let asker = ids[300];
    h.auto_flush = false;
    h.send(asker, "/who\n");
    let reply = h.take(asker);
    let lines: Vec<&str> = reply.lines().collect();
    assert!(lines.len() > 1);
    assert!(lines
        .iter()
        .all(|l| l.starts_with("* in #lobby: ") && l.len() <= 1024));
    assert!(lines[0].starts_with("* in #lobby: guest1, guest10, guest100, "));
    assert!(
        lines.last().unwrap().ends_with(" more"),
        "{:?}",
        lines.last()
    );
    assert!(reply.len() <= reply_budget(h.s.config()));
    assert!(reply.len() + LINE_OVERHEAD <= 16 * 1024 / 4);
    assert!(h.s.is_open(asker));
    let shown = reply.matches("guest").count();
    let more: usize = lines
        .last()
        .unwrap()
        .rsplit(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(shown + more, 600);
}

#[test]
fn rooms_with_thousands_of_rooms_is_bounded_even_with_tiny_lines() {
    let mut h = H::new(cfg(|c| {
        c.max_line = 16;
        c.send_queue = 8 * 1024;
    }));
    let ids = h.open_n(1000);
    for (i, &id) in ids.iter().enumerate() {
        h.send(id, &alloc::format!("/join r{i}\n"));
    }
    h.inbox.clear();
    h.auto_flush = false;
    h.send(ids[0], "/rooms\n");
    let reply = h.take(ids[0]);
    assert!(reply.len() + LINE_OVERHEAD <= 8 * 1024 / 4);
    for l in reply.lines() {
        assert!(
            l.starts_with("* rooms: ") && l.len() <= MIN_REPLY_WIDTH,
            "{l:?}"
        );
    }
    assert!(
        reply.starts_with("* rooms: #r0 (1), #r1 (1), #r10 (1)"),
        "{reply}"
    );
    assert!(reply.ends_with(" more\n"));
    assert!(h.s.is_open(ids[0]));
}

#[test]
fn small_listings_are_unchanged() {
    let mut h = H::default();
    let [a, _b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "/who\n");
    h.send(a, "/rooms\n");
    assert_eq!(
        h.take(a),
        "* in #lobby: guest1, guest2\n* rooms: #lobby (2)\n"
    );
}

#[test]
fn per_ip_limit_with_loopback_exemption() {
    let mut h = H::new(cfg(|c| c.max_conns_per_ip = Some(2)));
    let far = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
    let a = h.s.handle_open_from(h.now, far);
    let b = h.s.handle_open_from(h.now, mapped);
    let c = h.s.handle_open_from(h.now, far);
    h.drain();
    assert!(h.s.is_open(a) && h.s.is_open(b));
    assert_eq!(h.closed[&c], CloseReason::TooManyFromAddress);
    assert!(CloseReason::TooManyFromAddress.flush());
    assert_eq!(h.take(c), "! too many connections from your address\n");
    // Loopback is exempt by default; other addresses are not affected.
    for _ in 0..5 {
        let id = h.s.handle_open_from(h.now, IpAddr::V6(Ipv6Addr::LOCALHOST));
        let id2 =
            h.s.handle_open_from(h.now, IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3)));
        h.drain();
        assert!(h.s.is_open(id) && h.s.is_open(id2));
    }
    // A connection counts until its socket is closed (auto_close reports it).
    h.send(a, "/quit\n");
    let d = h.s.handle_open_from(h.now, far);
    h.drain();
    assert!(h.s.is_open(d));
    // Without the exemption, loopback is limited too.
    let mut h = H::new(cfg(|c| {
        c.max_conns_per_ip = Some(1);
        c.loopback_exempt = false;
    }));
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let x = h.s.handle_open_from(h.now, lo);
    let y = h.s.handle_open_from(h.now, lo);
    h.drain();
    assert!(h.s.is_open(x));
    assert_eq!(h.closed[&y], CloseReason::TooManyFromAddress);
    // handle_open (no address) is never limited per address.
    assert!(h.open().0 > 0);
}

#[test]
fn look_alikes_become_replacement_characters() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "evil\u{202e}txt.exe\u{200b}\n");
    h.send(a, "/me waves\u{2066}\u{feff}\n");
    h.send(a, "/msg guest2 a\u{2028}b\n");
    h.send(a, "/quit bye\u{2029}\u{200f}\n");
    assert_eq!(
        h.take(b),
        "<guest1> evil�txt.exe�\n* guest1 waves��\n(pm) <guest1> a�b\n* guest1 left (bye��)\n"
    );
}

#[test]
fn the_nick_server_is_reserved() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "/nick server\n");
    h.send(a, "/nick SeRvEr\n");
    assert_eq!(
        h.take(a),
        "! nick server is reserved\n! nick SeRvEr is reserved\n"
    );
    h.quiet(&[b]);
    assert_eq!(h.s.nick(a), Some("guest1"));
}

#[test]
fn flood_rate_delays_lines_without_dropping_them() {
    let mut h = H::new(cfg(|c| {
        c.flood_rate = Some(2);
        c.flood_burst = 3;
    }));
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "1\n2\n3\n/who\n5\n");
    assert_eq!(h.take(b), "<guest1> 1\n<guest1> 2\n<guest1> 3\n");
    assert!(!h.s.wants_read(a));
    assert!(h.s.wants_read(b));
    assert_eq!(h.s.poll_timeout(), Some(h.now + Duration::from_millis(500)));
    h.now = h.now + Duration::from_millis(500);
    h.s.handle_timeout(h.now);
    h.drain();
    assert_eq!(
        h.take(a),
        "* in #lobby: guest1, guest2\n",
        "commands count too"
    );
    assert!(!h.s.wants_read(a));
    h.now = h.now + Duration::from_millis(500);
    h.s.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.take(b), "<guest1> 5\n");
    assert!(!h.s.wants_read(a), "burst spent: one line per 500 ms");
    // EOF while paused: the last lines still go out first.
    h.send(a, "6\n7\n8\n9\nlast");
    h.eof(a);
    assert!(h.s.is_open(a));
    let mut timers = 0;
    while let Some(at) = h.s.poll_timeout().filter(|_| h.s.is_open(a)) {
        h.now = at;
        h.s.handle_timeout(h.now);
        h.drain();
        timers += 1;
    }
    assert_eq!(timers, 5, "one line per 500 ms once the burst is spent");
    let got: String = h.take(b);
    assert!(
        got.ends_with("<guest1> last\n* guest1 left (connection closed)\n"),
        "{got:?}"
    );
    assert!(!h.s.is_open(a));
}

#[test]
fn a_bursts_output_queue_memory_is_given_back_once_bursts_stop() {
    let mut h = H::default();
    let ids = h.open_n(101);
    h.auto_flush = false;
    // 100 tiny lines to 100 others: 10,000 transmits in one burst.
    h.s.handle_data(h.now, ids[0], "a\n".repeat(100).as_bytes())
        .unwrap();
    let burst = h.s.output_capacity();
    assert!(burst >= 10_000, "{burst}");
    settle(&mut h, &ids);
    assert_eq!(h.s.output_capacity(), burst, "kept while bursts may go on");
    let release = h.now + Duration::from_secs(1);
    assert_eq!(h.s.poll_timeout(), Some(release));
    h.s.handle_timeout(h.now + Duration::from_millis(999));
    assert_eq!(h.s.output_capacity(), burst);
    h.s.handle_timeout(release);
    assert!(
        h.s.output_capacity() < burst / 2,
        "{}",
        h.s.output_capacity()
    );
    assert_eq!(h.s.poll_timeout(), None);
    for &r in &ids[1..] {
        assert_eq!(h.take(r).matches("<guest1> a").count(), 100);
    }
}
