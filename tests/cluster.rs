//! Cluster over real TCP (`docs/cluster.md`): several chat servers in this process,
//! each one node of a cluster on an in-process `memory://` bus, with clients on
//! different nodes. Every test runs on every transport (`conformance!`). The same
//! scenarios against a real Redis are in the Redis adapter's tests.

#![cfg(feature = "cluster")]

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{conformance, ChatClient, Server, Target};
use echochat::bus::memory;
use echochat::chat::cluster::ClusterConfig;
use echochat::chat::ChatConfig;

conformance!(
    clients_on_three_nodes_chat,
    the_same_nick_on_two_nodes_at_once,
    a_stopped_node_is_announced,
    a_cut_off_node_is_lost_then_back,
    many_clients_on_three_nodes_lose_nothing,
);

/// A bus name of its own for each test.
fn bus(test: &str, target: Target) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "memory://{test}-{}-{}",
        target.transport.name(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn nodes(
    target: Target,
    url: &str,
    n: usize,
    tune: impl Fn(ClusterConfig) -> ClusterConfig,
) -> Vec<Server> {
    (0..n)
        .map(|i| {
            target.chat_node(
                ChatConfig::default(),
                url,
                tune(ClusterConfig::new(format!("n{i}"), 1)),
            )
        })
        .collect()
}

/// Connects and returns the client with its guest nick (from the welcome line).
fn join(server: &Server) -> (ChatClient, String) {
    let c = ChatClient::connect(server); // reads the welcome line
    let nick = c.nick.clone();
    (c, nick)
}

fn clients_on_three_nodes_chat(target: Target) {
    let url = bus("chat", target);
    let servers = nodes(target, &url, 3, |c| c);
    let (mut a, na) = join(&servers[0]);
    let (mut b, nb) = join(&servers[1]);
    a.expect_line(|l| l == format!("* {nb} joined #lobby"));
    let (mut c, nc) = join(&servers[2]);
    for x in [&mut a, &mut b] {
        x.expect_line(|l| l == format!("* {nc} joined #lobby"));
    }
    assert!(
        na != nb && nb != nc && na != nc,
        "guest names unique: {na} {nb} {nc}"
    );
    a.send_line("/nick alice");
    for x in [&mut a, &mut b, &mut c] {
        x.expect_line(|l| l == format!("* {na} is now known as alice"));
    }
    for k in 0..50 {
        a.send_line(&format!("hello {k}"));
    }
    for x in [&mut b, &mut c] {
        for k in 0..50 {
            assert_eq!(x.read_line().unwrap(), format!("<alice> hello {k}"));
        }
    }
    c.send_line("/who");
    let mut want = ["alice".to_string(), nb.clone(), nc.clone()];
    want.sort_by_key(|n| n.to_ascii_lowercase());
    assert_eq!(
        c.read_line().unwrap(),
        format!("* in #lobby: {}", want.join(", "))
    );
    c.send_line("/rooms");
    assert_eq!(c.read_line().unwrap(), "* rooms: #lobby (3)");
    c.send_line("/msg ALICE psst");
    a.expect_line(|l| l == format!("(pm) <{nc}> psst"));
    b.send_line("/join rust");
    b.expect_line(|l| l == format!("* {nb} joined #rust"));
    a.expect_line(|l| l == format!("* {nb} left #lobby"));
    // Node 1's events arrive in order: after this one, its `joined #rust` too.
    b.send_line("/msg alice synced");
    a.expect_line(|l| l == format!("(pm) <{nb}> synced"));
    a.send_line("/rooms");
    assert_eq!(a.read_line().unwrap(), "* rooms: #lobby (2), #rust (1)");
}

fn the_same_nick_on_two_nodes_at_once(target: Target) {
    let url = bus("race", target);
    let servers = nodes(target, &url, 2, |c| c);
    let (mut a, na) = join(&servers[0]);
    let (mut b, nb) = join(&servers[1]);
    a.expect_line(|l| l == format!("* {nb} joined #lobby"));
    a.send_line("/nick Same");
    b.send_line("/nick same");
    let outcome = |x: &mut ChatClient, old: &str| {
        let line = x.expect_line(|l| {
            l.starts_with(&format!("* {old} is now known as ")) || l.starts_with("! nick ")
        });
        line.starts_with('*')
    };
    let (won_a, won_b) = (outcome(&mut a, &na), outcome(&mut b, &nb));
    assert!(won_a ^ won_b, "exactly one wins (a: {won_a}, b: {won_b})");
}

fn a_stopped_node_is_announced(target: Target) {
    let url = bus("stop", target);
    let mut servers = nodes(target, &url, 2, |c| c);
    let (mut a, _) = join(&servers[0]);
    let (mut b, nb) = join(&servers[1]);
    a.expect_line(|l| l == format!("* {nb} joined #lobby"));
    b.send_line("/nick bob");
    a.expect_line(|l| l == format!("* {nb} is now known as bob"));
    servers[1].stop().unwrap();
    b.expect_line(|l| l == "* server shutting down");
    a.expect_line(|l| l == "* bob left (server shutting down)");
    a.send_line("/nick bob");
    a.expect_line(|l| l.ends_with(" is now known as bob"));
}

fn a_cut_off_node_is_lost_then_back(target: Target) {
    let url = bus("cut", target);
    // Faster than the defaults, with room for a node starved of CPU for a second
    // or two while other test binaries run (it must not be declared lost early).
    let fast = |c: ClusterConfig| {
        c.with_timings(
            Duration::from_millis(250),
            Duration::from_millis(3000),
            Duration::from_millis(3000),
        )
    };
    let servers = nodes(target, &url, 2, fast);
    let (mut a, _) = join(&servers[0]);
    let (mut b, nb) = join(&servers[1]);
    a.expect_line(|l| l == format!("* {nb} joined #lobby"));
    b.send_line("/nick bob");
    a.expect_line(|l| l == format!("* {nb} is now known as bob"));
    let (mut b2, _) = join(&servers[1]);
    b.expect_line(|l| l.ends_with(" joined #lobby"));
    let name = url.strip_prefix("memory://").unwrap();
    let cut_at = Instant::now();
    memory::cut(name, "n1");
    b.expect_line(|l| l == "* other servers are unreachable");
    a.expect_line(|l| l == "* bob left (server lost)");
    assert!(cut_at.elapsed() < Duration::from_secs(10));
    // Local chat goes on on the cut-off node.
    b.send_line("still here");
    b2.expect_line(|l| l == "<bob> still here");
    memory::heal(name, "n1");
    b.expect_line(|l| l == "* other servers are back (messages may have been missed)");
    a.expect_line(|l| l == "* bob joined #lobby");
    a.send_line("back?");
    b.expect_line(|l| l.ends_with("> back?"));
}

/// 30 clients over 3 nodes, 100 lines each as fast as they can: every line reaches
/// every other client, in per-sender order, with no loss notice.
fn many_clients_on_three_nodes_lose_nothing(target: Target) {
    const PER_NODE: usize = 10;
    const LINES: usize = 100;
    let url = bus("many", target);
    let config = ChatConfig::default().with_send_queue(4 << 20);
    let servers: Vec<Server> = (0..3)
        .map(|i| target.chat_node(config, &url, ClusterConfig::new(format!("n{i}"), 1)))
        .collect();
    let clients: Vec<ChatClient> = (0..3 * PER_NODE)
        .map(|i| ChatClient::connect(&servers[i % 3]))
        .collect();
    let total = clients.len();
    let mut threads = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let mut out = c.stream().try_clone().unwrap();
        threads.push(std::thread::spawn(move || {
            for k in 0..LINES {
                out.write_all(format!("c{i}-{k}\n").as_bytes())
                    .expect("send");
            }
        }));
        threads.push(std::thread::spawn(move || {
            let mut next = vec![0usize; total];
            let mut left = (total - 1) * LINES;
            while left > 0 {
                let line = c.read_line().expect("connection open");
                assert!(
                    !line.contains("missed") && !line.contains("unreachable"),
                    "{line}"
                );
                let Some((_, text)) = line.split_once("> c") else {
                    continue; // joined notices
                };
                let (from, k) = text.split_once('-').expect("c<i>-<k>");
                let (from, k): (usize, usize) = (from.parse().unwrap(), k.parse().unwrap());
                assert_ne!(from, i, "own line back");
                assert_eq!(
                    k, next[from],
                    "client {i}: from {from}, in order, none lost"
                );
                next[from] += 1;
                left -= 1;
            }
        }));
    }
    for t in threads {
        t.join().expect("client thread");
    }
}

#[cfg(feature = "tls")]
mod over_tls {
    use super::*;

    conformance!(a_tls_client_talks_across_nodes_before_its_welcome);

    /// A TLS client on one node (admitted once its handshake is done, then once its
    /// guest name is claimed) types before its welcome; a plaintext client on another
    /// node sees it all, in order.
    fn a_tls_client_talks_across_nodes_before_its_welcome(target: Target) {
        let url = bus("tls", target);
        let tls = target
            .tls()
            .chat_node(ChatConfig::default(), &url, ClusterConfig::new("n0", 1));
        let plain = target.chat_node(ChatConfig::default(), &url, ClusterConfig::new("n1", 1));
        let (mut a, _) = join(&plain);
        let mut b = common::tls::TlsClient::connect(&tls);
        b.send_line("/nick secure");
        b.send_line("hello from tls");
        let guest = b.welcome();
        // (Node 0 may hear of a's arrival after b's welcome: `* guest1 joined`.)
        b.expect_line(|l| l == format!("* {guest} is now known as secure"));
        a.expect_line(|l| l == format!("* {guest} joined #lobby"));
        assert_eq!(
            a.read_line().unwrap(),
            format!("* {guest} is now known as secure")
        );
        assert_eq!(a.read_line().unwrap(), "<secure> hello from tls");
        a.send_line("hi secure");
        b.expect_line(|l| l == format!("<{}> hi secure", a.nick));
    }
}
