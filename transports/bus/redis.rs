//! The Redis bus adapter (`redis://HOST:PORT`): [`BusAction`]s become Redis commands,
//! subscribed channels' messages and claim answers come back as [`BusEvent`]s (the
//! protocol: `docs/cluster.md`; the semantics: `src/cluster.rs`).
//!
//! It uses the `redis` crate's blocking client on two threads of its own, so it
//! works the same under every runtime (std threads, tokio, smol, a user's runtime
//! through `echochat::runtime`) with no runtime-specific code, and never blocks
//! the hub that calls [`Bus::submit`]:
//!
//! * **the command thread** drains the bounded queue in order, a pipeline of up to
//!   [`RedisBusConfig::batch`] consecutive actions per round trip: `PUBLISH`, and
//!   claims and releases as small Lua scripts (claim: set if free, renew the expiry
//!   if already held by the same owner; release: delete only if held by the owner).
//!   It owns the bus's state: connection, loss, back-off, reconnection.
//! * **the pub/sub thread** holds the `SUBSCRIBE`d connection and calls the
//!   [`Deliver`] callback for each message. A `Subscribe` or `Unsubscribe` is handed
//!   to it by the command thread, which wakes it with a `PUBLISH` on the thread's own
//!   wake channel and waits for the answer: so a bus applies every action in the
//!   order submitted (a node that subscribes and then publishes receives its own
//!   message). Messages of a topic unsubscribed from are not delivered after the
//!   `Unsubscribe` is done.
//!
//! So messages are delivered from the pub/sub thread and claim answers, `Lost` and
//! `Restored` from the command thread (never a message after `Lost` from the session
//! that was lost).
//!
//! Names are namespaced: topic `T` is channel `{prefix}topic:T`, claim key `K` is key
//! `{prefix}claim:K` (prefix `echochat:` by default).
//!
//! Failures ([`BusEvent::Lost`] … [`BusEvent::Restored`]): a connection error or
//! timeout on either connection (an idle pub/sub connection is `PING`ed every
//! [`RedisBusConfig::ping_interval`], every reply is awaited at most
//! [`RedisBusConfig::io_timeout`], so a hung Redis is noticed too); a full queue (the
//! hub submits faster than Redis takes: more than [`RedisBusConfig::queue`] actions
//! or [`RedisBusConfig::queue_bytes`] bytes wait); or Redis closing a subscriber that
//! reads too slowly (its `client-output-buffer-limit pubsub`). A killed Redis is
//! noticed at once, a hung one within `ping_interval` + `io_timeout` (3 s by
//! default), an overflow after the batch in flight. Then the bus delivers `Lost`
//! once, drops what is queued and what is submitted until it is back, closes both
//! connections, reconnects (at once after an overflow; after a lost connection with
//! back-off from [`RedisBusConfig::backoff_min`] doubling to
//! [`RedisBusConfig::backoff_max`], going on from where it was if the session
//! before lasted less than 10 s) and delivers `Restored` once both connections are
//! up again, with no subscriptions.
//!
//! A command that Redis refuses (out of memory, not permitted by an ACL) is not a
//! failure: a refused claim is answered as not won, refusals are logged (at most
//! every 10 s).

use std::collections::HashSet;
use std::hash::RandomState;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError, RedisResult, Value};

use super::{Bus, BusError, Deliver};
use crate::cluster::{BusAction, BusEvent};

/// Claim `KEYS[1]` for owner `ARGV[1]` for `ARGV[2]` ms: free or already ours wins.
const CLAIM: &str = "local v = redis.call('GET', KEYS[1]) \
     if v == false or v == ARGV[1] then \
       redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 \
     end return 0";
/// Delete `KEYS[1]` only if owner `ARGV[1]` holds it.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
       return redis.call('DEL', KEYS[1]) \
     end return 0";

/// A session that lasts this long resets the back-off.
const STEADY: Duration = Duration::from_secs(10);

/// The Redis adapter's settings ([`RedisBusConfig::default`] is what [`connect`] uses).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisBusConfig {
    /// Prefix of every channel and key (default `echochat:`).
    pub prefix: String,
    /// Bound of the action queue (default 65,536 actions); when full: `Lost`.
    pub queue: usize,
    /// Bound of the bytes (payloads, topics, keys) queued (default 32 MiB); when
    /// reached: `Lost`.
    pub queue_bytes: usize,
    /// Most actions sent in one pipeline, one round trip (default 256; 1: none).
    pub batch: usize,
    /// Connecting, the initial one included, may take this long (default 1 s).
    pub connect_timeout: Duration,
    /// Any reply may take this long before the connection counts as lost (default 2 s;
    /// this and the other durations must not be zero).
    pub io_timeout: Duration,
    /// An idle pub/sub connection is checked with `PING` this often (default 1 s).
    pub ping_interval: Duration,
    /// First reconnection delay after a lost connection (default 100 ms).
    pub backoff_min: Duration,
    /// The delay doubles up to this (default 2 s).
    pub backoff_max: Duration,
}

impl Default for RedisBusConfig {
    fn default() -> Self {
        RedisBusConfig {
            prefix: "echochat:".into(),
            queue: 65_536,
            queue_bytes: 32 << 20,
            batch: 256,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(2),
            ping_interval: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// A bus through one Redis server: [`connect`] or [`connect_with`]. Dropping it stops
/// its threads and closes its connections (after what was queued; the pub/sub
/// thread at its next check, within [`RedisBusConfig::ping_interval`]); the drop
/// itself does not wait.
pub struct RedisBus {
    queue: flume::Sender<BusAction>,
    state: Arc<State>,
}

/// What [`RedisBus::submit`] shares with the command thread.
struct State {
    /// Actions are queued (false from a failure until `Restored`: they are dropped).
    accepting: AtomicBool,
    /// The queue was found full (the command thread ends the session).
    overflow: AtomicBool,
    /// The [`weight`] of the queued actions (added by `submit`, taken off by whoever
    /// takes an action off the queue), and its bound.
    bytes: AtomicUsize,
    max_bytes: usize,
}

/// Connects to the Redis at `url` (`redis://HOST:PORT`) with the default settings.
pub fn connect(url: &str, deliver: Deliver) -> Result<RedisBus, BusError> {
    connect_with(url, deliver, RedisBusConfig::default())
}

/// Connects to the Redis at `url` with `config`: both connections are made before it
/// returns (each within `config.connect_timeout`), or it fails with
/// [`BusError::Unreachable`]. Events go to `deliver`, from the bus's threads.
pub fn connect_with(
    url: &str,
    deliver: Deliver,
    config: RedisBusConfig,
) -> Result<RedisBus, BusError> {
    if !url.starts_with("redis://") {
        return Err(BusError::Scheme(url.into()));
    }
    let unreachable = |reason: String| BusError::Unreachable {
        url: url.into(),
        reason,
    };
    let client = Client::open(url).map_err(|e| unreachable(e.to_string()))?;
    let worker = Worker {
        client,
        config: Arc::new(config),
        deliver: Arc::new(deliver),
    };
    let session = worker.open().map_err(unreachable)?;
    let (queue, actions) = flume::bounded(worker.config.queue.max(1));
    let state = Arc::new(State {
        accepting: AtomicBool::new(true),
        overflow: AtomicBool::new(false),
        bytes: AtomicUsize::new(0),
        max_bytes: worker.config.queue_bytes,
    });
    let shared = Arc::clone(&state);
    thread::Builder::new()
        .name("echochat-redis-commands".into())
        .spawn(move || worker.run(session, &actions, &shared))
        .map_err(|e| unreachable(format!("cannot start a thread: {e}")))?;
    Ok(RedisBus { queue, state })
}

impl Bus for RedisBus {
    fn submit(&self, action: BusAction) {
        if !self.state.accepting.load(Ordering::Acquire) {
            return;
        }
        let state = &*self.state;
        let weight = weight(&action);
        let full = state.bytes.fetch_add(weight, Ordering::Relaxed) + weight > state.max_bytes;
        if full || self.queue.try_send(action).is_err() {
            state.bytes.fetch_sub(weight, Ordering::Relaxed);
            // Full (or the bus's thread is gone, which only a panic does).
            state.accepting.store(false, Ordering::Release);
            state.overflow.store(true, Ordering::Release);
        }
    }
}

impl core::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisBus")
            .field("queued", &self.queue.len())
            .field("accepting", &self.state.accepting.load(Ordering::Relaxed))
            .finish()
    }
}

/// The command thread's fixed parts.
struct Worker {
    client: Client,
    config: Arc<RedisBusConfig>,
    deliver: Arc<Deliver>,
}

/// One pair of connections, from connecting until a failure ends it.
struct Session {
    commands: Connection,
    /// Subscription changes for the pub/sub thread.
    control: flume::Sender<Control>,
    /// Its answers and its failure.
    notes: flume::Receiver<Note>,
    /// The pub/sub thread's own channel, published to after each control.
    wake: String,
    /// Whether the pub/sub thread may still deliver (cleared before `Lost`).
    live: Arc<Mutex<bool>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // The pub/sub thread delivers nothing more and ends at its next check.
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }
}

/// Command thread → pub/sub thread.
enum Control {
    Subscribe(String),
    Unsubscribe(String),
}

/// Pub/sub thread → command thread.
enum Note {
    Ready,
    Done,
    Failed(String),
}

impl Worker {
    /// Connects both connections (the pub/sub one on a new thread).
    fn open(&self) -> Result<Session, String> {
        let timeout = self.config.connect_timeout;
        let commands = self
            .client
            .get_connection_with_timeout(timeout)
            .map_err(|e| why(&e))?;
        let timeouts = commands
            .set_read_timeout(Some(self.config.io_timeout))
            .and_then(|()| commands.set_write_timeout(Some(self.config.io_timeout)));
        timeouts.map_err(|e| why(&e))?;
        // A channel only this session's pub/sub connection subscribes to: 64 random
        // bits (std's per-process random hash keys; no command that ACLs may deny).
        let id = std::hash::BuildHasher::hash_one(&RandomState::new(), Instant::now());
        let wake = format!("{}wake:{id:016x}", self.config.prefix);
        let (control, controls) = flume::unbounded();
        let (noter, notes) = flume::unbounded();
        let live = Arc::new(Mutex::new(true));
        let listener = Listener {
            client: self.client.clone(),
            config: Arc::clone(&self.config),
            deliver: Arc::clone(&self.deliver),
            wake: wake.clone(),
            live: Arc::clone(&live),
        };
        thread::Builder::new()
            .name("echochat-redis-pubsub".into())
            .spawn(move || listener.run(&controls, &noter))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let failed = match notes.recv_timeout(timeout + self.config.io_timeout) {
            Ok(Note::Ready) => {
                return Ok(Session {
                    commands,
                    control,
                    notes,
                    wake,
                    live,
                })
            }
            Ok(Note::Failed(reason)) => reason,
            Ok(Note::Done) | Err(_) => "the pub/sub connection did not answer".into(),
        };
        // A late pub/sub connection ends at its first check.
        *live.lock().unwrap_or_else(|e| e.into_inner()) = false;
        Err(failed)
    }

    /// The command thread: serve a session until it fails, report `Lost`, reconnect,
    /// report `Restored`; until the [`RedisBus`] is dropped.
    fn run(self, mut session: Session, actions: &flume::Receiver<BusAction>, state: &State) {
        let mut delay = Duration::ZERO;
        let mut restored: Option<Instant> = None;
        loop {
            let failure = self.serve(&mut session, actions, state);
            state.accepting.store(false, Ordering::Release);
            drop(session);
            let Some(failure) = failure else { return };
            log::warn!("cluster bus: {failure}; reconnecting");
            (self.deliver)(BusEvent::Lost);
            // A session that fails soon after it was restored (Redis dropping a slow
            // subscriber again and again, say) goes on with the back-off it had.
            let steady = restored.is_none_or(|at| at.elapsed() >= STEADY);
            delay = match failure {
                Failure::Overflow if steady => Duration::ZERO,
                Failure::Redis(_) if steady => self.config.backoff_min,
                _ => (delay * 2).clamp(self.config.backoff_min, self.config.backoff_max),
            };
            session = loop {
                if !discard_for(actions, delay, state) {
                    return;
                }
                match self.open() {
                    Ok(session) => break session,
                    Err(reason) => log::debug!("cluster bus: reconnecting: {reason}"),
                }
                delay = (delay * 2).clamp(self.config.backoff_min, self.config.backoff_max);
            };
            // Anything that slipped in while the failure was being noticed is dropped.
            for action in actions.drain() {
                state.bytes.fetch_sub(weight(&action), Ordering::Relaxed);
            }
            state.overflow.store(false, Ordering::Release);
            state.accepting.store(true, Ordering::Release);
            restored = Some(Instant::now());
            log::warn!("cluster bus: Redis connected again");
            (self.deliver)(BusEvent::Restored);
        }
    }

    /// Executes actions until a failure (`None`: the bus was dropped).
    fn serve(
        &self,
        session: &mut Session,
        actions: &flume::Receiver<BusAction>,
        state: &State,
    ) -> Option<Failure> {
        let batch_max = self.config.batch.max(1);
        let mut batch = Vec::with_capacity(batch_max);
        let mut refused = Refused::default();
        loop {
            if state.overflow.load(Ordering::Acquire) {
                return Some(Failure::Overflow);
            }
            let first = flume::Selector::new()
                .recv(actions, Next::Action)
                .recv(&session.notes, Next::Note)
                .wait();
            let action = match first {
                Next::Action(Ok(action)) => {
                    state.bytes.fetch_sub(weight(&action), Ordering::Relaxed);
                    action
                }
                Next::Action(Err(_)) => return None,
                Next::Note(Ok(Note::Failed(reason))) => return Some(Failure::Redis(reason)),
                Next::Note(Ok(_)) => continue,
                Next::Note(Err(_)) => return Some(Failure::Redis("pub/sub thread gone".into())),
            };
            // Consecutive publishes, claims and releases go in one pipeline; a
            // subscription change waits for them and then for its own answer.
            let mut change = None;
            let mut next = Some(action);
            while let Some(action) = next.take() {
                match action {
                    BusAction::Subscribe { topic } => change = Some(Control::Subscribe(topic)),
                    BusAction::Unsubscribe { topic } => {
                        change = Some(Control::Unsubscribe(topic));
                    }
                    other => {
                        batch.push(other);
                        if batch.len() < batch_max {
                            next = actions.try_recv().ok();
                            if let Some(action) = &next {
                                state.bytes.fetch_sub(weight(action), Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
            if !batch.is_empty() {
                if let Err(e) = self.execute(&mut session.commands, &batch, &mut refused) {
                    return Some(Failure::Redis(why(&e)));
                }
                batch.clear();
            }
            if let Some(change) = change {
                if let Err(reason) = self.change(session, change) {
                    return Some(Failure::Redis(reason));
                }
            }
        }
    }

    /// Runs `batch` as one pipeline and answers its claims.
    fn execute(
        &self,
        commands: &mut Connection,
        batch: &[BusAction],
        refused: &mut Refused,
    ) -> RedisResult<()> {
        let prefix = &self.config.prefix;
        let mut pipe = redis::pipe();
        for action in batch {
            match action {
                BusAction::Publish { topic, payload } => {
                    pipe.cmd("PUBLISH")
                        .arg(format!("{prefix}topic:{topic}"))
                        .arg(&payload[..]);
                }
                BusAction::Claim {
                    key, owner, ttl, ..
                } => {
                    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                    pipe.cmd("EVAL")
                        .arg(CLAIM)
                        .arg(1)
                        .arg(format!("{prefix}claim:{key}"))
                        .arg(owner)
                        .arg(ms);
                }
                BusAction::Release { key, owner } => {
                    pipe.cmd("EVAL")
                        .arg(RELEASE)
                        .arg(1)
                        .arg(format!("{prefix}claim:{key}"))
                        .arg(owner);
                }
                BusAction::Subscribe { .. } | BusAction::Unsubscribe { .. } => {}
            }
        }
        // A command Redis refuses (out of memory, not permitted, …) does not end the
        // session: a refused claim is not won, the rest is logged.
        let replies: Vec<Value> = pipe.ignore_errors().query(commands)?;
        for (action, reply) in batch.iter().zip(replies) {
            if let Value::ServerError(error) = &reply {
                refused.note(error);
            }
            if let BusAction::Claim { token, .. } = action {
                let won = matches!(reply, Value::Int(1));
                (self.deliver)(BusEvent::Claimed { token: *token, won });
            }
        }
        Ok(())
    }

    /// Hands a subscription change to the pub/sub thread and waits until it is done.
    fn change(&self, session: &mut Session, change: Control) -> Result<(), String> {
        if session.control.send(change).is_err() {
            return Err("pub/sub thread gone".into());
        }
        redis::cmd("PUBLISH")
            .arg(&session.wake)
            .arg("")
            .query::<Value>(&mut session.commands)
            .map_err(|e| why(&e))?;
        match session.notes.recv_timeout(self.config.io_timeout) {
            Ok(Note::Done) => Ok(()),
            Ok(Note::Failed(reason)) => Err(reason),
            Ok(Note::Ready) | Err(_) => Err("the pub/sub connection did not answer".into()),
        }
    }
}

/// What the command thread waits for.
enum Next {
    Action(Result<BusAction, flume::RecvError>),
    Note(Result<Note, flume::RecvError>),
}

/// Why a session ended.
enum Failure {
    /// The queue was full.
    Overflow,
    /// A connection failed (the reason).
    Redis(String),
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Overflow => f.write_str("queue full (Redis is too slow), actions dropped"),
            Failure::Redis(reason) => write!(f, "Redis connection lost: {reason}"),
        }
    }
}

/// Commands Redis refused, logged at most every 10 s (the hub may submit thousands a
/// second, all refused alike).
#[derive(Default)]
struct Refused {
    count: u64,
    logged: Option<Instant>,
}

impl Refused {
    fn note(&mut self, error: &redis::ServerError) {
        self.count += 1;
        if self
            .logged
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10))
        {
            log::warn!(
                "cluster bus: Redis refused {} command(s), last: {error}",
                self.count
            );
            self.count = 0;
            self.logged = Some(Instant::now());
        }
    }
}

/// A Redis error in a log line or a [`BusError::Unreachable`] (a timeout says so;
/// the OS's words for it are `Resource temporarily unavailable`).
fn why(e: &RedisError) -> String {
    if e.is_timeout() {
        "no answer (timed out)".into()
    } else {
        e.to_string()
    }
}

/// What an action counts against [`RedisBusConfig::queue_bytes`].
fn weight(action: &BusAction) -> usize {
    match action {
        BusAction::Publish { topic, payload } => topic.len() + payload.len(),
        BusAction::Subscribe { topic } | BusAction::Unsubscribe { topic } => topic.len(),
        BusAction::Claim { key, owner, .. } | BusAction::Release { key, owner } => {
            key.len() + owner.len()
        }
    }
}

/// Waits `delay` while dropping submitted actions; false if the bus was dropped.
fn discard_for(actions: &flume::Receiver<BusAction>, delay: Duration, state: &State) -> bool {
    let deadline = Instant::now() + delay;
    loop {
        match actions.recv_deadline(deadline) {
            Ok(action) => {
                state.bytes.fetch_sub(weight(&action), Ordering::Relaxed);
            }
            Err(flume::RecvTimeoutError::Timeout) => return true,
            Err(flume::RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// The pub/sub thread of one session.
struct Listener {
    client: Client,
    config: Arc<RedisBusConfig>,
    deliver: Arc<Deliver>,
    wake: String,
    live: Arc<Mutex<bool>>,
}

impl Listener {
    fn run(self, controls: &flume::Receiver<Control>, notes: &flume::Sender<Note>) {
        let reason = match self.listen(controls, notes) {
            Ok(()) => return,
            Err(e) => why(&e),
        };
        let _ = notes.send(Note::Failed(reason));
    }

    /// Subscribes to the wake channel, says `Ready`, then delivers messages and
    /// applies controls until the session ends (`Ok`) or the connection fails.
    fn listen(
        &self,
        controls: &flume::Receiver<Control>,
        notes: &flume::Sender<Note>,
    ) -> RedisResult<()> {
        let config = &*self.config;
        let mut connection = self
            .client
            .get_connection_with_timeout(config.connect_timeout)?;
        connection.set_write_timeout(Some(config.io_timeout))?;
        connection.set_read_timeout(Some(config.io_timeout))?;
        let mut pubsub = connection.as_pubsub();
        pubsub.subscribe(&self.wake)?;
        let _ = notes.send(Note::Ready);
        let topic_prefix = format!("{}topic:", config.prefix);
        let mut subscribed = HashSet::new();
        // Messages are awaited `ping_interval` (then a `PING` checks the connection),
        // replies to commands `io_timeout`.
        let mut polling = false;
        loop {
            if !*self.live.lock().unwrap_or_else(|e| e.into_inner()) {
                return Ok(());
            }
            while let Ok(control) = controls.try_recv() {
                if polling {
                    pubsub.set_read_timeout(Some(config.io_timeout))?;
                    polling = false;
                }
                match control {
                    Control::Subscribe(topic) => {
                        let channel = format!("{topic_prefix}{topic}");
                        pubsub.subscribe(&channel)?;
                        subscribed.insert(channel);
                    }
                    Control::Unsubscribe(topic) => {
                        let channel = format!("{topic_prefix}{topic}");
                        pubsub.unsubscribe(&channel)?;
                        subscribed.remove(&channel);
                    }
                }
                let _ = notes.send(Note::Done);
            }
            if !polling {
                pubsub.set_read_timeout(Some(config.ping_interval))?;
                polling = true;
            }
            let message = match pubsub.get_message() {
                Ok(message) => message,
                Err(e) if e.is_timeout() => {
                    pubsub.set_read_timeout(Some(config.io_timeout))?;
                    polling = false;
                    pubsub.ping::<Value>()?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let channel = message.get_channel_name();
            // Messages of a topic unsubscribed from since are not delivered.
            if !subscribed.contains(channel) {
                continue;
            }
            let Some(topic) = channel.strip_prefix(&topic_prefix) else {
                continue;
            };
            let event = BusEvent::Message {
                topic: topic.into(),
                payload: bytes::Bytes::copy_from_slice(message.get_payload_bytes()),
            };
            let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            if !*live {
                return Ok(());
            }
            (self.deliver)(event);
        }
    }
}
