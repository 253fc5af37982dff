//! Quiet rooms (`quiet_joins_above`, `--quiet-joins-above` in the README;
//! `docs/PROTOCOL.md`, "Quiet rooms"): no `joined`, `left` or `is now known as`
//! notices in a room of more than N members counting the user concerned; that
//! user's own lines still come. On one node, then across nodes (the other nodes'
//! members count).

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::cluster::Net;
use super::*;

fn quiet_above(n: usize) -> ChatConfig {
    ChatConfig::default().with_quiet_joins_above(Some(n))
}

#[test]
fn arrivals_are_announced_up_to_n_members_then_not() {
    let mut h = H::new(quiet_above(3));
    let a = h.open();
    let b = h.open();
    assert_eq!(
        h.lines(a),
        ["* welcome guest1, 1 users online", "* guest2 joined #lobby"]
    );
    let c = h.open();
    // #lobby has 3 members with c: at N, announced.
    assert_eq!(h.lines(a), ["* guest3 joined #lobby"]);
    assert_eq!(
        h.lines(b),
        ["* welcome guest2, 2 users online", "* guest3 joined #lobby"]
    );
    assert_eq!(h.lines(c), ["* welcome guest3, 3 users online"]);
    let d = h.open();
    // 4 with d: above N, nobody is told; d is still welcomed and in the room.
    h.quiet(&[a, b, c][..]);
    assert_eq!(h.lines(d), ["* welcome guest4, 4 users online"]);
    h.send(d, "/who\n");
    assert_eq!(h.lines(d), ["* in #lobby: guest1, guest2, guest3, guest4"]);
    // Everything else is as usual.
    h.send(d, "hello\n");
    assert_eq!(h.lines(a), ["<guest4> hello"]);
}

#[test]
fn departures_count_the_one_who_left() {
    let mut h = H::new(quiet_above(3));
    let [a, b, c, d] = h.open_n(4)[..] else {
        unreachable!()
    };
    // d leaves a room of 4 (d counted): not announced; d still gets its `* bye`.
    h.send(d, "/quit later\n");
    assert_eq!(h.lines(d), ["* bye"]);
    h.quiet(&[a, b, c][..]);
    // c leaves a room of 3: announced, whatever the reason.
    h.eof(c);
    assert_eq!(h.lines(a), ["* guest3 left (connection closed)"]);
    assert_eq!(h.lines(b), ["* guest3 left (connection closed)"]);
    h.s.handle_reset(h.now, b).unwrap();
    h.drain();
    assert_eq!(h.lines(a), ["* guest2 left (connection reset)"]);
}

#[test]
fn idle_timeouts_are_quiet_too() {
    let mut h = H::new(quiet_above(2).with_idle_timeout(Some(Duration::from_secs(5))));
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    h.now = h.now + Duration::from_secs(3);
    h.send(a, "still here\n");
    h.send(b, "me too\n");
    h.inbox.clear();
    h.now = h.now + Duration::from_secs(3);
    h.s.handle_timeout(h.now);
    h.drain();
    // c timed out of a room of 3: nobody is told.
    assert_eq!(h.closed[&c], CloseReason::IdleTimeout);
    h.quiet(&[a, b][..]);
}

#[test]
fn join_hopping_announces_only_in_small_rooms_and_always_to_the_hopper() {
    let mut h = H::new(quiet_above(2));
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    // a leaves #lobby (3 with a: quiet) for the new #rust (1): its own line only.
    h.send(a, "/join rust\n");
    assert_eq!(h.lines(a), ["* guest1 joined #rust"]);
    h.quiet(&[b, c][..]);
    // b leaves #lobby (2 with b: told) for #rust (2: told, b included).
    h.send(b, "/join rust\n");
    assert_eq!(h.lines(c), ["* guest2 left #lobby"]);
    assert_eq!(h.lines(a), ["* guest2 joined #rust"]);
    assert_eq!(h.lines(b), ["* guest2 joined #rust"]);
    // c makes #rust 3: only c sees its arrival; #lobby is gone.
    h.send(c, "/join RUST\n");
    assert_eq!(h.lines(c), ["* guest3 joined #rust"]);
    h.quiet(&[a, b][..]);
    h.send(c, "/rooms\n");
    assert_eq!(h.lines(c), ["* rooms: #rust (3)"]);
    // c leaves #rust (3 with c: quiet) for #go (1).
    h.send(c, "/join go\n");
    assert_eq!(h.lines(c), ["* guest3 joined #go"]);
    h.quiet(&[a, b][..]);
    // a leaves #rust (2 with a: told) for #go (2: told).
    h.send(a, "/join go\n");
    assert_eq!(h.lines(b), ["* guest1 left #rust"]);
    assert_eq!(h.lines(c), ["* guest1 joined #go"]);
    assert_eq!(h.lines(a), ["* guest1 joined #go"]);
}

#[test]
fn renames_in_a_quiet_room_reach_only_the_renamer() {
    let mut h = H::new(quiet_above(2));
    let [a, b, c] = h.open_n(3)[..] else {
        unreachable!()
    };
    h.send(a, "/nick alice\n");
    assert_eq!(h.lines(a), ["* guest1 is now known as alice"]);
    h.quiet(&[b, c][..]);
    assert_eq!(h.s.nick(a), Some("alice"));
    // The errors and `you are already` answers are the asker's alone anyway.
    h.send(b, "/nick ALICE\n/nick guest2\n");
    assert_eq!(
        h.lines(b),
        ["! nick ALICE is taken", "* you are already guest2"]
    );
    // At N members the room hears renames again.
    h.send(c, "/quit\n");
    h.inbox.clear();
    h.send(b, "/nick bob\n");
    assert_eq!(h.lines(a), ["* guest2 is now known as bob"]);
    assert_eq!(h.lines(b), ["* guest2 is now known as bob"]);
}

#[test]
fn off_by_default_and_with_zero() {
    for config in [ChatConfig::default(), quiet_above(0)] {
        let mut h = H::new(config);
        let ids = h.open_n(5);
        let e = h.open();
        for &id in &ids {
            assert_eq!(h.lines(id), ["* guest6 joined #lobby"]);
        }
        h.send(e, "/nick eve\n/join x\n");
        for &id in &ids {
            assert_eq!(
                h.lines(id),
                ["* guest6 is now known as eve", "* eve left #lobby"]
            );
        }
    }
}

/// Opens one user on each listed node, settles, and forgets the welcome traffic.
fn users(net: &mut Net, on: &[usize]) -> Vec<ConnId> {
    let ids = on.iter().map(|&i| net.open(i)).collect();
    net.clear();
    ids
}

#[test]
fn other_nodes_members_count_in_a_clusters_rooms() {
    let mut net = Net::with(2, quiet_above(2), |c| c);
    let [a] = users(&mut net, &[0])[..] else {
        unreachable!()
    };
    // #lobby: a here, b there: 2, announced on node 0.
    let b = net.open(1);
    assert_eq!(net.lines(0, a), ["* guest2 joined #lobby"]);
    net.clear();
    // c on node 1 makes 3: nobody told, on either node.
    let c = net.open(1);
    assert_eq!(net.lines(1, c), ["* welcome guest3, 3 users online"]);
    assert_eq!(net.take(0, a), "");
    assert_eq!(net.take(1, b), "");
    // d on node 0 makes 4: node 0 counts node 1's members too.
    let d = net.open(0);
    assert_eq!(net.lines(0, d), ["* welcome guest4, 4 users online"]);
    for (i, id) in [(0, a), (1, b), (1, c)] {
        assert_eq!(net.take(i, id), "", "node {i} {id:?}");
    }
    // Renames in the room of 4: the renamer alone.
    net.send(1, c, "/nick cy\n");
    assert_eq!(net.lines(1, c), ["* guest3 is now known as cy"]);
    for (i, id) in [(0, a), (1, b), (0, d)] {
        assert_eq!(net.take(i, id), "", "node {i} {id:?}");
    }
    // Departures: d (4 with d) and cy (3 with cy) quietly, then b (2) is announced.
    net.send(0, d, "/quit\n");
    net.send(1, c, "/join elsewhere\n");
    assert_eq!(net.lines(1, c), ["* cy joined #elsewhere"]);
    assert_eq!(net.take(0, a), "");
    assert_eq!(net.take(1, b), "");
    net.send(1, b, "/quit\n");
    assert_eq!(net.lines(0, a), ["* guest2 left (quit)"]);
}

#[test]
fn a_lost_nodes_users_leave_one_after_the_other() {
    let mut net = Net::with(2, quiet_above(2), |c| c);
    let [a] = users(&mut net, &[0])[..] else {
        unreachable!()
    };
    let _others: Vec<ConnId> = (0..2).map(|_| net.open(1)).collect();
    net.run_to(3000, 500);
    net.clear();
    // Node 1 dies with 2 of the 3 members: the first leaves a room of 3 (quiet),
    // the second a room of 2 (announced).
    net.cut.insert(1);
    net.run_to(15_000, 250);
    let lost: Vec<String> = net
        .lines(0, a)
        .into_iter()
        .filter(|l| l.ends_with(" left (server lost)"))
        .collect();
    assert_eq!(lost, ["* guest3 left (server lost)"]);
    net.send(0, a, "/who\n");
    assert_eq!(net.take(0, a), "* in #lobby: guest1\n");
}
