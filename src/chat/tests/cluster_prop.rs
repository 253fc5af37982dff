//! Property test of the cluster rules (`docs/cluster.md`): two or three nodes, users
//! chatting and racing for nicks, and the bus executing actions and delivering
//! events in a random interleaving (each publisher's order kept, as Redis does).
//! Checked: every receiver gets every sender's messages once, in order, none
//! missing; nicks stay unique across the cluster ignoring case, and each is claimed
//! by the node of the user who has it.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use proptest::prelude::*;

use super::cluster::Net;

#[derive(Debug, Clone)]
enum Op {
    Say(usize),
    Nick(usize, usize),
    Action(usize),
    Event(usize),
}

const NAMES: [&str; 5] = ["ann", "Ann", "bob", "BOB", "cy"];

fn op(users: usize, nodes: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..users).prop_map(Op::Say),
        1 => (0..users, 0..NAMES.len()).prop_map(|(u, n)| Op::Nick(u, n)),
        4 => (0..nodes).prop_map(Op::Action),
        4 => (0..nodes).prop_map(Op::Event),
    ]
}

fn run(nodes: usize, ops: &[Op]) {
    let per_node = 2;
    let mut net = Net::new(nodes);
    let mut users = Vec::new(); // (node, id)
    for i in 0..nodes {
        for _ in 0..per_node {
            users.push((i, net.open(i)));
        }
    }
    net.clear();
    let mut sent = vec![0u32; users.len()];
    for op in ops {
        match *op {
            Op::Say(u) => {
                let (i, id) = users[u];
                net.send_only(i, id, &format!("m{u}:{}\n", sent[u]));
                sent[u] += 1;
            }
            Op::Nick(u, n) => {
                let (i, id) = users[u];
                net.send_only(i, id, &format!("/nick {}\n", NAMES[n]));
            }
            Op::Action(i) => {
                net.step_action(i);
            }
            Op::Event(i) => {
                net.step_event(i);
            }
        }
    }
    net.pump();
    // Order, no duplicates, nothing missing.
    for (r, &(i, id)) in users.iter().enumerate() {
        let text = net.take(i, id);
        let mut next: BTreeMap<usize, u32> = BTreeMap::new();
        for line in text.lines() {
            assert!(!line.contains("missed"), "no loss here: {line}");
            let Some((_, body)) = line.split_once("> m") else {
                continue;
            };
            let (from, k) = body.split_once(':').expect("m<user>:<k>");
            let (from, k): (usize, u32) = (from.parse().unwrap(), k.parse().unwrap());
            assert_ne!(from, r, "nobody gets their own line");
            let want = next.entry(from).or_insert(0);
            assert_eq!(k, *want, "receiver {r}: from {from}, in order and once");
            *want += 1;
        }
        for (from, &n) in sent.iter().enumerate() {
            if from != r {
                assert_eq!(
                    next.get(&from).copied().unwrap_or(0),
                    n,
                    "receiver {r} got all of {from}"
                );
            }
        }
    }
    // Nicks unique ignoring case, each claimed by its user's node.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for &(i, id) in &users {
        let key = net.nick(i, id).to_ascii_lowercase();
        assert!(seen.insert(key.clone(), i).is_none(), "{key} twice");
        let owner = net.claims.get(&key).map(|(o, _)| o.clone());
        assert_eq!(owner, Some(format!("n{i}")), "{key} claimed by its node");
    }
    // Presence converged: everyone sees everyone.
    for &(i, id) in &users {
        net.send(i, id, "/who\n");
        let who = net.take(i, id);
        assert_eq!(who.matches(", ").count() + 1, users.len(), "{who}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn two_nodes_any_interleaving(ops in proptest::collection::vec(op(4, 2), 0..150)) {
        run(2, &ops);
    }

    #[test]
    fn three_nodes_any_interleaving(ops in proptest::collection::vec(op(6, 3), 0..200)) {
        run(3, &ops);
    }
}

/// Users hopping between rooms and renaming, any interleaving: once the bus
/// settles, every user of every node sees the same `/rooms`, and each room's
/// `/who` lists exactly its members on every node.
fn run_rooms(nodes: usize, ops: &[(usize, usize, usize)]) {
    const ROOMS: [&str; 3] = ["lobby", "Rust", "rust-fans"];
    let mut net = Net::new(nodes);
    let mut users = Vec::new();
    for i in 0..nodes {
        for _ in 0..2 {
            users.push((i, net.open(i)));
        }
    }
    for &(kind, u, arg) in ops {
        let (i, id) = users[u % users.len()];
        match kind % 4 {
            0 => net.send_only(i, id, &format!("/join {}\n", ROOMS[arg % ROOMS.len()])),
            1 => net.send_only(i, id, &format!("/nick {}\n", NAMES[arg % NAMES.len()])),
            2 => {
                net.step_action(arg % nodes);
            }
            _ => {
                net.step_event(arg % nodes);
            }
        }
    }
    net.pump();
    net.clear();
    // The truth: each user's room (local view of itself) and nick.
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for &(i, id) in &users {
        let room = net.nodes[i].s.room_of(id).unwrap().to_ascii_lowercase();
        members.entry(room).or_default().push(net.nick(i, id));
    }
    let mut rooms_line = None;
    for &(i, id) in &users {
        net.send(i, id, "/rooms\n");
        let got = net.take(i, id);
        let first = rooms_line.get_or_insert_with(|| got.clone());
        assert_eq!(&got, first, "every node lists the same rooms");
        for (room, nicks) in &members {
            assert!(
                got.to_ascii_lowercase()
                    .contains(&format!("{room} ({})", nicks.len())),
                "{got} vs {members:?}"
            );
        }
        net.send(i, id, "/who\n");
        let who = net.take(i, id);
        let room = net.nodes[i].s.room_of(id).unwrap().to_ascii_lowercase();
        let mut want = members[&room].clone();
        want.sort_by_key(|n| n.to_ascii_lowercase());
        let listed = who
            .trim_end()
            .split_once(": ")
            .map(|(_, l)| l.to_string())
            .unwrap_or_default();
        assert_eq!(listed, want.join(", "), "{who}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn rooms_and_presence_converge(
        nodes in 2usize..=3,
        ops in proptest::collection::vec((0usize..4, 0usize..6, 0usize..6), 0..120),
    ) {
        run_rooms(nodes, &ops);
    }
}
