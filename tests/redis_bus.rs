//! The Redis bus adapter (`echochat::bus::redis`) against a real `redis-server` that
//! each test starts on a free port (`common::redis`): publish/subscribe order,
//! claims (race, renewal, release, expiry), `Lost` … `Restored` when Redis is
//! killed, hung or too slow, unsubscribing, and the error when Redis is unreachable
//! at start. Every wait is for an observable event with a generous deadline; no
//! test times anything. `measure` prints throughput and latency numbers.
//!
//! The tests that need `redis-server` are `#[ignore = "needs redis-server"]`; run
//! them with `cargo test --features cluster --test redis_bus -- --include-ignored`.

#![cfg(feature = "cluster")]

mod common;

use std::net::TcpListener;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::redis::RedisServer;
use echochat::bus::redis::{connect, connect_with, RedisBus, RedisBusConfig};
use echochat::bus::{Bus, BusError};
use echochat::cluster::{BusAction, BusEvent};

/// How long any single wait may take before the test fails.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A bus and the events it delivered.
struct Node {
    bus: RedisBus,
    events: Receiver<BusEvent>,
}

impl Node {
    fn connect(url: &str) -> Node {
        Node::connect_with(url, RedisBusConfig::default())
    }

    fn connect_with(url: &str, config: RedisBusConfig) -> Node {
        let (tx, events) = mpsc::channel();
        let deliver = Box::new(move |event| {
            let _ = tx.send(event);
        });
        let bus = connect_with(url, deliver, config).expect("connect to redis-server");
        Node { bus, events }
    }

    fn publish(&self, topic: &str, payload: impl Into<Bytes>) {
        self.bus.submit(BusAction::Publish {
            topic: topic.into(),
            payload: payload.into(),
        });
    }

    /// Subscribes to `topic` and waits until the subscription is in effect: a bus
    /// applies actions in order, so its own publish after the `Subscribe` comes back.
    fn subscribe(&self, topic: &str) {
        self.bus.submit(BusAction::Subscribe {
            topic: topic.into(),
        });
        self.sync(topic);
    }

    /// Publishes a marker on subscribed `topic` and waits for it (everything the bus
    /// was asked before is done by then).
    fn sync(&self, topic: &str) {
        self.publish(topic, "sync");
        self.expect(&format!("the marker on {topic}"), |e| {
            *e == message(topic, "sync")
        });
    }

    fn claim(&self, token: u64, key: &str, owner: &str, ttl: Duration) -> bool {
        self.bus.submit(BusAction::Claim {
            token,
            key: key.into(),
            owner: owner.into(),
            ttl,
        });
        let event = self.next(&format!("the answer to claim {token}"));
        match event {
            BusEvent::Claimed { token: t, won } if t == token => won,
            other => panic!("expected the answer to claim {token}, got {other:?}"),
        }
    }

    fn release(&self, key: &str, owner: &str) {
        self.bus.submit(BusAction::Release {
            key: key.into(),
            owner: owner.into(),
        });
    }

    /// The next event.
    fn next(&self, what: &str) -> BusEvent {
        match self.events.recv_timeout(TIMEOUT) {
            Ok(event) => event,
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }

    /// The next event, which must match.
    fn expect(&self, what: &str, matches: impl Fn(&BusEvent) -> bool) -> BusEvent {
        let event = self.next(what);
        assert!(matches(&event), "waiting for {what}, got {event:?}");
        event
    }

    /// Waits for `Lost` (skipping messages delivered before it).
    fn expect_lost(&self) {
        loop {
            match self.next("Lost") {
                BusEvent::Lost => return,
                BusEvent::Message { .. } => {}
                other => panic!("waiting for Lost, got {other:?}"),
            }
        }
    }

    /// Nothing is delivered for a moment (a check for absence; the later checks
    /// that depend on it are ordered by `sync`, not by this delay).
    fn expect_quiet(&self) {
        match self.events.recv_timeout(Duration::from_millis(100)) {
            Err(RecvTimeoutError::Timeout) => {}
            other => panic!("expected no event, got {other:?}"),
        }
    }
}

fn message(topic: &str, payload: &str) -> BusEvent {
    BusEvent::Message {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

/// A direct connection to the server, to look at keys.
fn inspect(server: &RedisServer) -> redis::Connection {
    let client = redis::Client::open(server.url()).expect("redis URL");
    client.get_connection().expect("connect to redis-server")
}

#[test]
#[ignore = "needs redis-server"]
fn publish_subscribe_preserves_order_of_10000_publishes() {
    let server = RedisServer::start();
    let a = Node::connect(&server.url());
    let b = Node::connect(&server.url());
    b.subscribe("room:lobby");
    for n in 0..10_000 {
        a.publish("room:lobby", n.to_string());
    }
    for n in 0..10_000 {
        b.expect(&format!("message {n}"), |e| {
            *e == message("room:lobby", &n.to_string())
        });
    }
    // The publisher is not subscribed: it got nothing.
    a.expect_quiet();
}

#[test]
#[ignore = "needs redis-server"]
fn topics_and_keys_are_namespaced() {
    let server = RedisServer::start();
    let a = Node::connect(&server.url());
    a.subscribe("room:x");
    assert!(a.claim(1, "alice", "node-a", Duration::from_secs(60)));
    let mut con = inspect(&server);
    let owner: Option<String> = redis::cmd("GET")
        .arg("echochat:claim:alice")
        .query(&mut con)
        .expect("GET");
    assert_eq!(owner.as_deref(), Some("node-a"));
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg("echochat:topic:*")
        .query(&mut con)
        .expect("PUBSUB CHANNELS");
    assert_eq!(channels, ["echochat:topic:room:x"]);
}

#[test]
#[ignore = "needs redis-server"]
fn claim_race_has_exactly_one_winner() {
    let server = RedisServer::start();
    let barrier = Arc::new(Barrier::new(2));
    let racers: Vec<_> = ["node-a", "node-b"]
        .into_iter()
        .map(|owner| {
            let node = Node::connect(&server.url());
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                (0..100u64)
                    .map(|round| {
                        barrier.wait();
                        node.claim(
                            round,
                            &format!("nick{round}"),
                            owner,
                            Duration::from_secs(60),
                        )
                    })
                    .collect::<Vec<bool>>()
            })
        })
        .collect();
    let won: Vec<Vec<bool>> = racers
        .into_iter()
        .map(|r| r.join().expect("racer"))
        .collect();
    let mut wins = [0; 2];
    for round in 0..100 {
        assert!(
            won[0][round] != won[1][round],
            "round {round}: node-a {}, node-b {}",
            won[0][round],
            won[1][round]
        );
        wins[usize::from(won[1][round])] += 1;
    }
    eprintln!("claim race: node-a won {}, node-b won {}", wins[0], wins[1]);
}

#[test]
#[ignore = "needs redis-server"]
fn claim_is_renewed_by_its_owner_and_refused_to_others() {
    let server = RedisServer::start();
    let a = Node::connect(&server.url());
    let b = Node::connect(&server.url());
    assert!(a.claim(1, "alice", "node-a", Duration::from_secs(5)));
    assert!(!b.claim(2, "alice", "node-b", Duration::from_secs(5)));
    // The owner's claim again succeeds and renews the expiry.
    assert!(a.claim(3, "alice", "node-a", Duration::from_secs(600)));
    let pttl: i64 = redis::cmd("PTTL")
        .arg("echochat:claim:alice")
        .query(&mut inspect(&server))
        .expect("PTTL");
    assert!(pttl > 60_000, "expiry not renewed: {pttl} ms left");
    assert!(!b.claim(4, "alice", "node-b", Duration::from_secs(5)));
}

#[test]
#[ignore = "needs redis-server"]
fn release_only_by_the_owner() {
    let server = RedisServer::start();
    let a = Node::connect(&server.url());
    let b = Node::connect(&server.url());
    assert!(a.claim(1, "alice", "node-a", Duration::from_secs(60)));
    b.release("alice", "node-b");
    assert!(!b.claim(2, "alice", "node-b", Duration::from_secs(60)));
    a.release("alice", "node-a");
    // Released (a's claim after its release is answered after it, in order).
    assert!(a.claim(3, "other", "node-a", Duration::from_secs(60)));
    assert!(b.claim(4, "alice", "node-b", Duration::from_secs(60)));
}

#[test]
#[ignore = "needs redis-server"]
fn claim_expires_after_its_ttl() {
    let server = RedisServer::start();
    let a = Node::connect(&server.url());
    let b = Node::connect(&server.url());
    assert!(a.claim(1, "alice", "node-a", Duration::from_millis(300)));
    assert!(!b.claim(2, "alice", "node-b", Duration::from_secs(60)));
    // Nobody renews it: it becomes free.
    let deadline = Instant::now() + TIMEOUT;
    let mut token = 3;
    while !b.claim(token, "alice", "node-b", Duration::from_secs(60)) {
        assert!(Instant::now() < deadline, "the claim never expired");
        thread::sleep(Duration::from_millis(50));
        token += 1;
    }
    assert!(!a.claim(0, "alice", "node-a", Duration::from_secs(60)));
}

#[test]
#[ignore = "needs redis-server"]
fn commands_redis_refuses_do_not_end_the_session() {
    let server = RedisServer::start();
    let a = Node::connect(&server.url());
    let mut admin = inspect(&server);
    a.subscribe("room");
    // Out of memory: writes (the claim script) are refused, PUBLISH is not.
    let set = |admin: &mut redis::Connection, bytes: &str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .query::<()>(admin)
            .expect("CONFIG SET");
    };
    set(&mut admin, "1");
    assert!(!a.claim(1, "alice", "node-a", Duration::from_secs(60)));
    a.release("alice", "node-a");
    a.sync("room");
    set(&mut admin, "0");
    assert!(a.claim(2, "alice", "node-a", Duration::from_secs(60)));
    a.expect_quiet();
}

#[test]
fn unreachable_at_start_is_one_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let started = Instant::now();
    let error = connect(&url, Box::new(|_| {})).expect_err("nothing listens there");
    assert!(
        matches!(&error, BusError::Unreachable { url: u, .. } if *u == url),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.starts_with(&format!("cannot reach the cluster bus at {url}: ")));
    assert!(!text.contains('\n'), "{text:?}");
    eprintln!("{text} (after {:?})", started.elapsed());

    let error = connect("http://127.0.0.1:1", Box::new(|_| {})).expect_err("not redis");
    assert!(matches!(error, BusError::Scheme(_)), "{error:?}");
}

#[test]
#[ignore = "needs redis-server"]
fn killed_redis_is_lost_then_restored_without_subscriptions() {
    let mut server = RedisServer::start();
    let a = Node::connect(&server.url());
    let b = Node::connect(&server.url());
    b.subscribe("room");
    a.publish("room", "before");
    b.expect("before", |e| *e == message("room", "before"));

    server.kill();
    a.expect_lost();
    b.expect_lost();
    // Dropped while lost (and nothing blocks).
    for n in 0..1000 {
        a.publish("room", n.to_string());
    }
    server.restart();
    a.expect("Restored", |e| *e == BusEvent::Restored);
    b.expect("Restored", |e| *e == BusEvent::Restored);

    // Subscriptions are gone until the core makes them again.
    a.subscribe("sync");
    b.subscribe("sync");
    a.expect("b's marker", |e| *e == message("sync", "sync"));
    a.publish("room", "unheard");
    a.publish("sync", "after");
    b.expect("after", |e| *e == message("sync", "after"));
    b.subscribe("room");
    a.publish("room", "heard");
    b.expect("heard", |e| *e == message("room", "heard"));
    a.expect("after", |e| *e == message("sync", "after"));
    a.expect_quiet();
}

#[test]
#[ignore = "needs redis-server"]
fn hung_redis_at_start_is_unreachable() {
    let server = RedisServer::start();
    server.pause();
    // The kernel accepts the connection; nothing answers within `connect_timeout`.
    let error = connect(&server.url(), Box::new(|_| {})).expect_err("redis-server is stopped");
    assert!(matches!(error, BusError::Unreachable { .. }), "{error:?}");
    eprintln!("{error}");
    server.resume();
    Node::connect(&server.url()).subscribe("room");
}

#[test]
#[ignore = "needs redis-server"]
fn either_connection_killed_is_lost_then_restored() {
    let server = RedisServer::start();
    let a = Node::connect(&server.url());
    let mut admin = inspect(&server);
    for kind in ["pubsub", "normal"] {
        a.subscribe("room");
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg(kind)
            .query(&mut admin)
            .expect("CLIENT KILL");
        assert_eq!(killed, 1, "{kind}");
        if kind == "normal" {
            // The command connection finds out when it is next used.
            a.publish("room", "into the void");
        }
        a.expect_lost();
        a.expect("Restored", |e| *e == BusEvent::Restored);
    }
    a.subscribe("room");
}

#[test]
#[ignore = "needs redis-server"]
fn dropping_the_bus_closes_its_connections() {
    let server = RedisServer::start();
    let mut admin = inspect(&server);
    let clients = |admin: &mut redis::Connection| -> usize {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(admin)
            .expect("CLIENT LIST");
        list.lines().count()
    };
    let alone = clients(&mut admin);
    let a = Node::connect(&server.url());
    a.subscribe("room");
    assert_eq!(clients(&mut admin), alone + 2);
    drop(a);
    let deadline = Instant::now() + TIMEOUT;
    while clients(&mut admin) > alone {
        assert!(Instant::now() < deadline, "connections still open");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs redis-server"]
fn hung_redis_is_noticed_by_the_timeouts() {
    let server = RedisServer::start();
    let a = Node::connect(&server.url());
    a.subscribe("room");
    server.pause();
    // Idle: the pub/sub connection's PING goes unanswered.
    a.expect_lost();
    server.resume();
    a.expect("Restored", |e| *e == BusEvent::Restored);
    a.subscribe("room");
}

#[test]
#[ignore = "needs redis-server"]
fn queue_overflow_is_lost_then_restored() {
    let server = RedisServer::start();
    let b = Node::connect(&server.url());
    b.subscribe("sync");
    // Bounded by actions, then by bytes.
    for (queue, queue_bytes) in [(100, 32 << 20), (65_536, 10_000)] {
        let config = {
            let mut c = RedisBusConfig::default();
            c.queue = queue;
            c.queue_bytes = queue_bytes;
            // Long enough that only the overflow can end this session.
            c.io_timeout = Duration::from_secs(60);
            c.ping_interval = Duration::from_secs(60);
            c
        };
        let a = Node::connect_with(&server.url(), config);
        a.subscribe("room");
        server.pause();
        let started = Instant::now();
        for n in 0..10_000 {
            a.publish("room", n.to_string());
        }
        let submitting = started.elapsed();
        server.resume();
        a.expect_lost();
        a.expect("Restored", |e| *e == BusEvent::Restored);
        eprintln!("10,000 submits to a paused Redis took {submitting:?}");
        // Restored with no subscriptions, and publishing works.
        a.publish("room", "unheard");
        a.publish("sync", "after");
        b.expect("after", |e| *e == message("sync", "after"));
        a.subscribe("room");
    }
}

#[test]
#[ignore = "needs redis-server"]
fn unsubscribe_stops_delivery() {
    let server = RedisServer::start();
    let a = Node::connect(&server.url());
    let b = Node::connect(&server.url());
    b.subscribe("t1");
    b.subscribe("t2");
    b.bus.submit(BusAction::Unsubscribe { topic: "t1".into() });
    b.sync("t2");
    // Same publisher, in order: had "x" been delivered, it would come before "y".
    a.publish("t1", "x");
    a.publish("t2", "y");
    b.expect("y", |e| *e == message("t2", "y"));
    b.expect_quiet();
}

/// Numbers for the report (prints them; asserts only that nothing was lost or
/// reordered): publish throughput with and without pipelining, one-way latency
/// through Redis (publish on one bus → delivery on another) unloaded and at a paced
/// 1,000/s, and Redis's CPU share meanwhile.
#[test]
#[ignore = "needs redis-server"]
fn measure() {
    let server = RedisServer::start();
    let pid = server.pid();
    for (batch, count) in [(256, 200_000u64), (1, 20_000)] {
        let config = {
            let mut c = RedisBusConfig::default();
            c.batch = batch;
            c
        };
        let (tx, rx) = mpsc::channel::<(u64, Instant)>();
        let deliver = Box::new(move |event| {
            if let BusEvent::Message { payload, .. } = event {
                let n = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
                let _ = tx.send((n, Instant::now()));
            } else {
                eprintln!("measure: {event:?}");
            }
        });
        let b = connect(&server.url(), deliver).expect("connect");
        b.submit(BusAction::Subscribe { topic: "t".into() });
        let a = Node::connect_with(&server.url(), config);
        // b's subscription is done once a marker published after it comes back.
        b.submit(BusAction::Publish {
            topic: "t".into(),
            payload: Bytes::from_static(&[0xff; 8]),
        });
        let (n, _) = rx.recv_timeout(TIMEOUT).expect("marker");
        assert_eq!(n, u64::MAX);
        let cpu = Cpu::start(pid);
        let started = Instant::now();
        let mut payload = [0u8; 64];
        let mut received = 0;
        let mut last = started;
        let mut receive = |received: &mut u64| {
            let (n, at) = rx.recv_timeout(TIMEOUT).expect("message");
            assert_eq!(n, *received, "lost or out of order");
            *received += 1;
            last = at;
        };
        for n in 0..count {
            payload[..8].copy_from_slice(&n.to_le_bytes());
            a.publish("t", Bytes::copy_from_slice(&payload));
            // At most 30,000 in flight: the bus's queue (65,536) never overflows.
            while n - received >= 30_000 {
                receive(&mut received);
            }
        }
        while received < count {
            receive(&mut received);
        }
        let secs = (last - started).as_secs_f64();
        eprintln!(
            "throughput, pipeline of up to {batch}: {count} publishes of 64 B in {secs:.3} s = {:.0}/s delivered; redis-server CPU {:.0}%",
            count as f64 / secs,
            cpu.share() * 100.0
        );
        drop(a);

        for (label, pace) in [("unloaded", None), ("paced 1000/s", Some(1000u32))] {
            let cpu = Cpu::start(pid);
            let mut samples = Vec::new();
            let started = Instant::now();
            for n in 0..2_000u64 {
                if let Some(rate) = pace {
                    let due = started + Duration::from_secs(n) / rate;
                    thread::sleep(due.saturating_duration_since(Instant::now()));
                }
                let sent = Instant::now();
                b.submit(BusAction::Publish {
                    topic: "t".into(),
                    payload: Bytes::copy_from_slice(&n.to_le_bytes()),
                });
                let (got, at) = rx.recv_timeout(TIMEOUT).expect("message");
                assert_eq!(got, n);
                samples.push(at - sent);
            }
            samples.sort();
            let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
            eprintln!(
                "latency publish→delivery through Redis, {label}, batch {batch}: p50 {:?} p99 {:?} max {:?}; redis-server CPU {:.0}%",
                at(0.50),
                at(0.99),
                at(1.0),
                cpu.share() * 100.0
            );
        }
    }
}

/// A process's CPU time (user + system, /proc/PID/stat) over a stretch of wall time.
struct Cpu {
    pid: u32,
    ticks: u64,
    started: Instant,
}

impl Cpu {
    fn start(pid: u32) -> Cpu {
        Cpu {
            pid,
            ticks: cpu_ticks(pid),
            started: Instant::now(),
        }
    }

    /// CPU seconds per wall second since `start` (1.0 = one core busy).
    fn share(&self) -> f64 {
        // USER_HZ: 100 on Linux.
        let used = (cpu_ticks(self.pid) - self.ticks) as f64 / 100.0;
        used / self.started.elapsed().as_secs_f64()
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let number = |i: usize| fields[i - 3].parse::<u64>().expect("number");
    number(14) + number(15)
}
