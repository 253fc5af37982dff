//! The cluster for real (docs/cluster.md): a real `redis-server` on a free port,
//! several real `echochat chat-server --cluster redis://…` processes, clients on
//! different nodes over loopback TCP. Needs `redis-server` on the PATH, so every
//! test is `#[ignore = "needs redis-server"]` (`.ci/run` installs it and runs them
//! with `--include-ignored`; README, "Quick start").
//!
//! No test asserts a duration except through the clients' read timeout (10 s): a
//! notice documented "within 10 s" must come before it.

#![cfg(all(feature = "cli", feature = "cluster"))]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::ChatClient;

/// The longest a node may take to notice a lost node (docs/cluster.md: 10 s), plus
/// slack for a loaded machine.
const LOST_NOTICE: Duration = Duration::from_secs(15);

/// One `echochat chat-server` process in the cluster.
struct Node {
    child: Child,
    addr: SocketAddr,
    name: String,
}

impl Node {
    fn start(redis: &RedisServer, name: &str) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_echochat"))
            .args(["chat-server", "--addr", "127.0.0.1:0", "--runtime", "tokio"])
            .args(["--cluster", &redis.url(), "--node-name", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start echochat chat-server");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("node {name}: no listening line, got {line:?}"))
            .parse()
            .unwrap();
        Node {
            child,
            addr,
            name: name.to_string(),
        }
    }

    fn client(&self) -> ChatClient {
        ChatClient::welcomed(TcpStream::connect(self.addr).expect("connect to a node"))
    }

    /// A client with this nick (waits for the rename).
    fn named(&self, nick: &str) -> ChatClient {
        let mut c = self.client();
        c.send_line(&format!("/nick {nick}"));
        c.expect_line(|l| l.ends_with(&format!("is now known as {nick}")));
        c.nick = nick.to_string();
        c
    }

    /// SIGKILL: the node dies without a word.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let status = self.child.wait().expect("wait for the node");
        assert!(status.success(), "node {} exited with {status}", self.name);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `client`'s `/who` lists `nick` (presence converges in a heartbeat).
fn wait_until_listed(client: &mut ChatClient, nick: &str) {
    let deadline = Instant::now() + LOST_NOTICE;
    loop {
        client.send_line("/who");
        let who = client.expect_line(|l| l.starts_with("* in #"));
        if who.split([' ', ',']).any(|n| n == nick) {
            return;
        }
        assert!(Instant::now() < deadline, "{nick} never listed: {who}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs redis-server"]
fn two_nodes_share_a_room_who_and_msg() {
    let redis = RedisServer::start();
    let (a, b) = (Node::start(&redis, "a"), Node::start(&redis, "b"));
    let mut alice = a.named("alice");
    let mut bob = b.named("bob");
    wait_until_listed(&mut alice, "bob");
    wait_until_listed(&mut bob, "alice");
    alice.send_line("hello from a");
    bob.expect_line(|l| l == "<alice> hello from a");
    bob.send_line("hello from b");
    alice.expect_line(|l| l == "<bob> hello from b");
    alice.send_line("/msg bob psst");
    bob.expect_line(|l| l == "(pm) <alice> psst");
    // A third user arriving on a says how many are online: everyone, on both.
    let mut carol = a.client();
    carol.send_line("/who");
    let who = carol.expect_line(|l| l.starts_with("* in #lobby: "));
    for nick in ["alice", "bob", carol.nick.as_str()] {
        assert!(who.contains(nick), "{who}");
    }
    // Rooms are shared.
    bob.send_line("/join ops");
    alice.send_line("/join ops");
    bob.expect_line(|l| l == "* alice joined #ops");
    alice.send_line("/rooms");
    alice.expect_line(|l| l.starts_with("* rooms: ") && l.contains("#ops"));
}

#[test]
#[ignore = "needs redis-server"]
fn the_same_nick_on_two_nodes_at_once_has_one_winner() {
    let redis = RedisServer::start();
    let (a, b) = (Node::start(&redis, "a"), Node::start(&redis, "b"));
    for round in 0..10 {
        let mut x = a.client();
        let mut y = b.client();
        let nick = format!("racer{round}");
        // Both asks are on the wire before either answer.
        x.send_line(&format!("/nick {nick}"));
        y.send_line(&format!("/nick {nick}"));
        // Its own answer: the other one's rename (same room) is not it.
        let won = |c: &mut ChatClient| {
            let renamed = format!("* {} is now known as {nick}", c.nick);
            let taken = format!("! nick {nick} is taken");
            let l = c.expect_line(|l| l == renamed || l == taken);
            l == renamed
        };
        let (wx, wy) = (won(&mut x), won(&mut y));
        assert!(wx ^ wy, "round {round}: exactly one must win ({wx}, {wy})");
    }
}

#[test]
#[ignore = "needs redis-server"]
fn a_killed_node_is_announced_lost_and_its_nicks_freed() {
    let redis = RedisServer::start();
    let a = Node::start(&redis, "a");
    let _b = Node::start(&redis, "b");
    let mut c = Node::start(&redis, "c");
    let mut watcher = a.named("watcher");
    let _doomed = c.named("doomed");
    wait_until_listed(&mut watcher, "doomed");
    c.kill();
    // Each read waits at most 10 s (the clients' read timeout, SPEC's bound too).
    let deadline = Instant::now() + LOST_NOTICE;
    loop {
        let line = watcher.read_line();
        if line.as_deref() == Some("* doomed left (server lost)") {
            break;
        }
        assert!(
            line.is_some() && Instant::now() < deadline,
            "no lost notice: {line:?}"
        );
    }
    // The nick is free by the time the notice is sent.
    watcher.send_line("/nick doomed");
    watcher.expect_line(|l| l.ends_with("is now known as doomed"));
}

#[test]
#[ignore = "needs redis-server"]
fn a_stopped_node_says_its_users_are_shutting_down() {
    let redis = RedisServer::start();
    let a = Node::start(&redis, "a");
    let mut b = Node::start(&redis, "b");
    let mut watcher = a.named("watcher");
    let mut leaving = b.named("leaving");
    wait_until_listed(&mut watcher, "leaving");
    b.terminate();
    leaving.expect_line(|l| l == "* server shutting down");
    watcher.expect_line(|l| l == "* leaving left (server shutting down)");
}

#[test]
#[ignore = "needs redis-server"]
fn redis_lost_and_back_local_chat_goes_on() {
    let mut redis = RedisServer::start();
    let (a, b) = (Node::start(&redis, "a"), Node::start(&redis, "b"));
    let mut a1 = a.named("a1");
    let mut a2 = a.named("a2");
    let mut b1 = b.named("b1");
    wait_until_listed(&mut a1, "b1");
    redis.kill();
    a1.expect_line(|l| l == "* other servers are unreachable");
    a2.expect_line(|l| l == "* other servers are unreachable");
    b1.expect_line(|l| l == "* other servers are unreachable");
    // Local chat is not held up.
    a1.send_line("still here");
    a2.expect_line(|l| l == "<a1> still here");
    redis.restart();
    for c in [&mut a1, &mut a2, &mut b1] {
        c.expect_line(|l| l.starts_with("* other servers are back"));
    }
    // b still lists a1 from before; a newcomer on a is listed on b only once b's
    // subscription is back (until then a line from a may be missed: "messages may
    // have been missed" says so).
    let _a3 = a.named("a3");
    wait_until_listed(&mut b1, "a3");
    a1.send_line("across again");
    b1.expect_line(|l| l == "<a1> across again");
}

/// 50 clients spread over 3 nodes each send 200 numbered lines into one room: every
/// client gets every other client's lines, each sender's in order, none twice.
#[test]
#[ignore = "needs redis-server"]
fn fifty_clients_on_three_nodes_lose_nothing() {
    const CLIENTS: usize = 50;
    const LINES: usize = 200;
    let redis = RedisServer::start();
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Node::start(&redis, n))
        .collect();
    let mut clients: Vec<ChatClient> = (0..CLIENTS)
        .map(|i| nodes[i % 3].named(&format!("u{i:02}")))
        .collect();
    // Everyone sees everyone before anyone talks.
    for c in clients.iter_mut() {
        wait_until_listed(c, &format!("u{:02}", CLIENTS - 1));
        wait_until_listed(c, "u00");
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let mut writer = c.stream().try_clone().unwrap();
            let me = c.nick.clone();
            thread::spawn(move || {
                let lines: String = (0..LINES).map(|k| format!("m {me} {k}\n")).collect();
                writer.write_all(lines.as_bytes()).unwrap();
                let mut next: BTreeMap<String, usize> = BTreeMap::new();
                let mut got = 0;
                while got < (CLIENTS - 1) * LINES {
                    let line = c.read_line().expect("a client was dropped");
                    let Some(rest) = line.strip_prefix('<') else {
                        assert!(!line.contains("missed"), "{me}: {line}");
                        continue;
                    };
                    let (from, text) = rest.split_once("> ").unwrap();
                    let k: usize = text.rsplit(' ').next().unwrap().parse().unwrap();
                    let want = next.entry(from.to_string()).or_insert(0);
                    assert_eq!(k, *want, "{me}: line {k} from {from}, expected {want}");
                    *want += 1;
                    got += 1;
                }
                assert!(next.values().all(|&n| n == LINES));
                got
            })
        })
        .collect();
    let total: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert_eq!(total, CLIENTS * (CLIENTS - 1) * LINES);
}
