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
