//! [`ChatServer`]: connections, nicks, rooms, queues and timeouts.
//!
//! Layout: per-connection state and the output queue live in [`Sink`], rooms and
//! the nick index beside it, so a broadcast can walk a room's member set while
//! queueing output (disjoint field borrows, no member list copied).
//!
//! Drops for an exceeded send queue never recurse: [`Sink::transmit`] only marks
//! the connection doomed and puts it on a worklist; [`ChatServer::process_drops`]
//! removes doomed connections one by one (each one's `left` notice may doom
//! others). Every connection is doomed at most once, so the loop ends.
//!
//! Flow control (see [`ChatServer::wants_read`]): input is processed item by item
//! (a line, a telnet reply or interrupt), and before each item the core checks
//! whether the connection is paused. A paused connection's unprocessed input stays
//! in its `inbox` (raw bytes) and its framer (complete lines), and the connection is
//! on `stalled`; [`ChatServer::resume`] processes stalled connections again when
//! something that can unpause them happened (`Sink::resume`).

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use bytes::{Bytes, BytesMut};
use core::fmt::{self, Write as _};
use core::net::IpAddr;

use crate::addr_limit::AddrLimit;
use core::time::Duration;

use super::cluster::wire as cluster_wire;
use super::cluster::Cluster;
use super::command::Command;
use super::text::{sanitize, valid_name};
use crate::framing::{LineFramer, LineTooLong};
use crate::telnet::{Event as TelnetEvent, TelnetDecoder};
use crate::Instant;

mod cluster;
mod commands;

pub use commands::{reply_budget, reply_width, MAX_REPLY_COST, MIN_REPLY_WIDTH, RESERVED_NICK};

/// A connection's identity: issued by [`ChatServer::handle_open`], monotonic, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Limits of the chat service (the `chat-server` flags in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChatConfig {
    /// Longest accepted line in bytes, without `\r\n` (`--max-line`, default 1024).
    pub max_line: usize,
    /// Most bytes queued for one client before it is dropped (`--send-queue`, default 256 KiB).
    pub send_queue: usize,
    /// Drop clients silent for this long (`--idle-timeout`, default off).
    /// `Some(Duration::ZERO)` also means off, like `--idle-timeout 0`. A client the
    /// core is not reading (paused: see [`ChatServer::wants_read`]) is not idle.
    pub idle_timeout: Option<Duration>,
    /// Most simultaneous clients (`--max-conns`, default unlimited). Connections
    /// still flushing after their close count too.
    pub max_conns: Option<usize>,
    /// How long a closed connection may take to flush what is queued for it (after
    /// `/quit`, EOF, idle timeout, a refusal, or shutdown) before the core asks for its
    /// socket to be closed anyway ([`Output::Abort`]). This is also the shutdown grace
    /// period. Default 2 s.
    pub close_grace: Duration,
    /// How long a connection opened with [`ChatServer::handle_open_pending`] (a TLS
    /// handshake under way) may take to become ready before the core closes it
    /// (`Close{HandshakeTimeout}`). Default 10 s.
    pub ready_timeout: Duration,
    /// Most lines per second read from one client, commands included
    /// (`--flood-rate`, default off; `Some(0)` is off too). Excess lines are not
    /// dropped: the client is not read ([`ChatServer::wants_read`] is false) until its
    /// token bucket refills.
    pub flood_rate: Option<u32>,
    /// Lines a client may send at once before `flood_rate` applies (`--flood-burst`,
    /// default 10; 0 counts as 1). Unused while `flood_rate` is off.
    pub flood_burst: u32,
    /// How long a client's queued output may stay above half of `send_queue` before
    /// it is dropped (`send queue exceeded`), as a client that stopped reading.
    /// Default 2 s.
    pub stall_timeout: Duration,
    /// Most connections from one address, open or still closing
    /// (`--max-conns-per-ip`, default `Some(32)`; `None` or `Some(0)`: no limit).
    /// Applies to [`ChatServer::handle_open_from`] only.
    pub max_conns_per_ip: Option<usize>,
    /// Whether loopback sources (127.0.0.0/8, `::1`, and their IPv4-mapped forms)
    /// are exempt from `max_conns_per_ip` (default true; `--no-loopback-exempt`).
    pub loopback_exempt: bool,
    /// Quiet rooms (`--quiet-joins-above`, default off; `None` or `Some(0)`: off): a
    /// room with more than this many members, counting the user who joins, leaves or
    /// renames (in a cluster: on every node, as this node knows them), gets no
    /// `* nick joined #room`, `* nick left …` or `* old is now known as new` notices.
    /// That user's own lines are still sent: the welcome, its `* nick joined #room`
    /// after `/join`, its rename notice. See `docs/PROTOCOL.md`, "Quiet rooms".
    pub quiet_joins_above: Option<usize>,
}

impl ChatConfig {
    /// This configuration with another `max_line`.
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self
    }

    /// This configuration with another `send_queue`.
    pub fn with_send_queue(mut self, send_queue: usize) -> Self {
        self.send_queue = send_queue;
        self
    }

    /// This configuration with another `idle_timeout` (`None` or zero: off).
    pub fn with_idle_timeout(mut self, idle_timeout: Option<Duration>) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// This configuration with another `max_conns` (`None`: unlimited).
    pub fn with_max_conns(mut self, max_conns: Option<usize>) -> Self {
        self.max_conns = max_conns;
        self
    }

    /// This configuration with another `close_grace`.
    pub fn with_close_grace(mut self, close_grace: Duration) -> Self {
        self.close_grace = close_grace;
        self
    }

    /// This configuration with another `ready_timeout`.
    pub fn with_ready_timeout(mut self, ready_timeout: Duration) -> Self {
        self.ready_timeout = ready_timeout;
        self
    }

    /// This configuration with another `flood_rate` (`None` or 0: off).
    pub fn with_flood_rate(mut self, flood_rate: Option<u32>) -> Self {
        self.flood_rate = flood_rate;
        self
    }

    /// This configuration with another `flood_burst`.
    pub fn with_flood_burst(mut self, flood_burst: u32) -> Self {
        self.flood_burst = flood_burst;
        self
    }

    /// This configuration with another `stall_timeout`.
    pub fn with_stall_timeout(mut self, stall_timeout: Duration) -> Self {
        self.stall_timeout = stall_timeout;
        self
    }

    /// This configuration with another `max_conns_per_ip` (`None` or 0: no limit).
    pub fn with_max_conns_per_ip(mut self, max_conns_per_ip: Option<usize>) -> Self {
        self.max_conns_per_ip = max_conns_per_ip;
        self
    }

    /// This configuration with another `loopback_exempt`.
    pub fn with_loopback_exempt(mut self, loopback_exempt: bool) -> Self {
        self.loopback_exempt = loopback_exempt;
        self
    }

    /// This configuration with another `quiet_joins_above` (`None` or 0: off).
    pub fn with_quiet_joins_above(mut self, quiet_joins_above: Option<usize>) -> Self {
        self.quiet_joins_above = quiet_joins_above;
        self
    }
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_line: 1024,
            send_queue: 256 * 1024,
            idle_timeout: None,
            max_conns: None,
            close_grace: Duration::from_secs(2),
            ready_timeout: Duration::from_secs(10),
            flood_rate: None,
            flood_burst: 10,
            stall_timeout: Duration::from_secs(2),
            max_conns_per_ip: Some(32),
            loopback_exempt: true,
            quiet_joins_above: None,
        }
    }
}

/// Why the core closes a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client sent `/quit`.
    Quit,
    /// The client finished sending (EOF).
    PeerClosed,
    /// The connection failed (reset, I/O error).
    Reset,
    /// The client read too slowly: its queue passed `send_queue`, or stayed above
    /// half of it for `stall_timeout`.
    SendQueueExceeded,
    /// The client was silent longer than `idle_timeout`.
    IdleTimeout,
    /// `max_conns` clients were already connected.
    ServerFull,
    /// The server is shutting down.
    Shutdown,
    /// A pending connection did not become ready within
    /// [`ChatConfig::ready_timeout`] (its TLS handshake did not finish).
    HandshakeTimeout,
    /// `max_conns_per_ip` connections from the client's address were already open
    /// or closing.
    TooManyFromAddress,
}

impl CloseReason {
    /// Whether the transport should first write what is still queued for the
    /// connection (false: drop it and close at once).
    pub fn flush(&self) -> bool {
        !matches!(self, CloseReason::SendQueueExceeded | CloseReason::Reset)
    }
}

/// What the transport must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Queue `bytes` (one or more whole lines, or one 3-byte telnet reply) for `to`;
    /// report with `handle_flushed`.
    Transmit {
        /// Recipient.
        to: ConnId,
        /// Encoded lines (or a telnet reply); broadcasts share one allocation.
        bytes: Bytes,
    },
    /// Close `id`: after flushing its queue if `reason.flush()`, else at once. The
    /// core has forgotten the client; until the transport reports the socket closed
    /// ([`ChatServer::handle_closed`]) the connection counts against `max_conns`, and
    /// after [`ChatConfig::close_grace`] the core outputs [`Output::Abort`] for it.
    Close {
        /// The connection.
        id: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// `id` was closed [`ChatConfig::close_grace`] ago and its socket is still not
    /// reported closed (a client that does not read): shut the socket down now and
    /// drop whatever is unsent. The core forgets the id entirely.
    Abort {
        /// The connection.
        id: ConnId,
    },
    /// Hand this to the cluster bus (only from a core made with
    /// [`ChatServer::with_cluster`]; see `docs/cluster.md`).
    Bus(crate::cluster::BusAction),
}

/// The caller broke the [`ChatServer`] protocol (a transport bug, never a peer's doing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// An id that `handle_open` never returned.
    #[error("unknown connection {0:?}")]
    UnknownConn(ConnId),
    /// More bytes reported flushed than were queued.
    #[error("{id:?}: reported {reported} bytes flushed, but only {queued} were queued")]
    FlushOverflow {
        /// The connection.
        id: ConnId,
        /// Bytes reported.
        reported: usize,
        /// Bytes queued.
        queued: usize,
    },
}

/// What one transmit costs against `send_queue` besides its bytes: the output
/// queue entry, the transport's write-queue slot and the buffer header (an estimate
/// of the per-line allocation and bookkeeping, rounded up). A client's queued output
/// counts as its unflushed bytes plus this much per transmit not yet fully flushed
/// ([`ChatServer::queued_cost`]), so `send_queue` bounds real memory, not just bytes.
pub const LINE_OVERHEAD: usize = 64;
/// Outputs the core's output queue keeps room for. A burst (one flooded room's
/// fan-out can be millions of transmits between two flushes) grows it past that;
/// the excess memory is given back once no burst came for [`RELEASE_AFTER`]
/// (docs/PROTOCOL.md, "Departures and limits").
const OUT_KEEP: usize = 4096;
/// Queued transmits one connection's accounting keeps room for once it drained.
const ITEMS_KEEP: usize = 64;
/// How long the output queue keeps a burst's capacity (a flood goes on in bursts:
/// giving it back between two of them would only make the next one regrow it).
const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// Encodes one line (the `\n` is added) into a fresh buffer.
fn line(args: fmt::Arguments<'_>) -> Bytes {
    let mut buf = BytesMut::new();
    // Writing into a BytesMut cannot fail.
    let _ = buf.write_fmt(args);
    buf.extend_from_slice(b"\n");
    buf.freeze()
}

/// Identity of a room while it exists (monotonic, never reused).
type RoomId = u64;

/// One open connection.
#[derive(Debug)]
struct Conn {
    nick: String,
    room: RoomId,
    framer: LineFramer,
    /// Telnet commands are removed (and refused) before line framing.
    telnet: TelnetDecoder,
    /// Raw input not processed yet (received while paused); it comes after any
    /// complete lines still in `framer`. See [`ChatServer::process`].
    inbox: BytesMut,
    /// The peer finished sending; the connection leaves once its input is processed.
    eof: bool,
    /// Bytes transmitted and not yet reported flushed.
    queued: usize,
    /// Unflushed bytes of each transmit not fully flushed yet, oldest first.
    items: VecDeque<usize>,
    /// `cost() > send_queue / 2` ("hot") since this deadline minus `stall_timeout`:
    /// counted in `Sink::room_hot` for `room` (member or not), on `Sink::stalls`.
    hot: Option<Instant>,
    /// The target of its last delivered `/msg` (it is paused while that one is hot).
    last_msg: Option<ConnId>,
    /// Flood control (GCRA): the theoretical arrival time of its next line.
    tat: Instant,
    /// Its key in `ChatServer::refills` (its bucket ran empty), if any.
    refill: Option<Instant>,
    /// Current key in `ChatServer::deadlines`, if idle timeouts are on.
    deadline: Option<Instant>,
    /// Its send queue overflowed; it is on `Sink::doomed` and gets nothing more.
    doomed: bool,
}

impl Conn {
    /// What its queued output counts against `send_queue`.
    fn cost(&self) -> usize {
        self.queued + self.items.len() * LINE_OVERHEAD
    }
}

/// Connections plus the output queue: what a broadcast needs mutably.
#[derive(Debug)]
struct Sink {
    conns: BTreeMap<ConnId, Conn>,
    out: VecDeque<Output>,
    /// Connections whose send queue overflowed, to be removed by `process_drops`.
    doomed: VecDeque<ConnId>,
    send_queue: usize,
    stall_timeout: Duration,
    /// The latest `now` passed in.
    now: Instant,
    /// Room → how many of its members are hot (absent: none).
    room_hot: BTreeMap<RoomId, usize>,
    /// Hot connections by the time they are dropped if still hot, earliest first.
    stalls: BTreeSet<(Instant, ConnId)>,
    /// Something happened that may unpause a stalled connection (a hot one cooled
    /// or left, a bucket refilled): [`ChatServer::resume`] has work.
    resume: bool,
    /// Outputs taken since `out` was last empty.
    taken: usize,
    /// When `out`'s capacity beyond [`OUT_KEEP`] is given back (the last burst
    /// plus [`RELEASE_AFTER`]).
    release_at: Option<Instant>,
}

impl Sink {
    /// Queues `bytes` for `to`, or dooms `to` if that would pass its send-queue limit.
    fn transmit(&mut self, to: ConnId, bytes: Bytes) {
        let Some(conn) = self.conns.get_mut(&to) else {
            return;
        };
        if conn.doomed {
            return;
        }
        match conn.cost().checked_add(bytes.len() + LINE_OVERHEAD) {
            Some(cost) if cost <= self.send_queue => {
                conn.queued += bytes.len();
                conn.items.push_back(bytes.len());
                self.out.push_back(Output::Transmit { to, bytes });
                if conn.hot.is_none() && cost > self.send_queue / 2 {
                    let deadline = self.now + self.stall_timeout;
                    conn.hot = Some(deadline);
                    self.stalls.insert((deadline, to));
                    *self.room_hot.entry(conn.room).or_default() += 1;
                }
            }
            _ => {
                conn.doomed = true;
                self.doomed.push_back(to);
            }
        }
    }

    /// A hot connection of `room` is no longer counted there.
    fn uncount_hot(&mut self, room: RoomId) {
        if let Some(n) = self.room_hot.get_mut(&room) {
            *n -= 1;
            if *n == 0 {
                self.room_hot.remove(&room);
            }
        }
        self.resume = true;
    }

    fn alive(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| !c.doomed)
    }
}

/// A room: display name (`#` + the creator's spelling) and members.
#[derive(Debug)]
struct Room {
    name: String,
    members: BTreeSet<ConnId>,
}

/// How [`ChatServer::process`] ended.
enum Processed {
    /// Everything was processed.
    Done,
    /// The connection is paused; this many bytes of the input were consumed.
    Paused(usize),
    /// The connection is gone (quit, dropped).
    Gone,
}

/// The whole chat server's state. No I/O, no clock.
///
/// Finer points of the protocol (written up for users in `docs/PROTOCOL.md`):
/// * **Full server**: `handle_open` still issues an id (ids are never reused) and
///   outputs `! server full` then `Close{ServerFull}`; no guest number is used and
///   nobody is told. **Per address** ([`handle_open_from`](Self::handle_open_from)):
///   when `max_conns_per_ip` connections from the same address (IPv4-mapped IPv6
///   counts as IPv4) are open or closing, the newcomer gets
///   `! too many connections from your address` and `Close{TooManyFromAddress}`.
///   Refused connections count too while their socket is open. Checked after
///   shutdown and before `max_conns`.
/// * **Guest numbers** count admitted connections from 1; a `guestN` already taken
///   (ignoring case) by someone who renamed is skipped.
/// * **Send queue**: a connection's queued output costs its bytes transmitted minus
///   bytes reported by `handle_flushed`, plus [`LINE_OVERHEAD`] per transmit not
///   fully flushed ([`queued_cost`](Self::queued_cost)). A transmit that would take
///   it above `send_queue` is not emitted; the connection is closed with
///   `Close{SendQueueExceeded}` and its room gets `* nick left (send queue
///   exceeded)` (which may in turn drop other slow readers). Its earlier transmits
///   stay in the output queue, before its `Close`. A connection whose cost stays
///   above `send_queue / 2` ("hot") for `stall_timeout` is dropped the same way by
///   `handle_timeout`.
/// * **Flow control**: see [`wants_read`](Self::wants_read). A paused connection's
///   input is kept and processed, in order, when it is unpaused (inside whichever
///   `handle_*` call unpauses it).
/// * **Idle timeout**: activity is any non-empty `handle_data`. `Some(ZERO)` is off.
/// * **Shutdown**: every open connection gets `* server shutting down` (if it fits
///   its send queue) and `Close{Shutdown}`; rooms get no `left` notices. Afterwards
///   `handle_open` still issues ids but answers `* server shutting down` and
///   `Close{Shutdown}` at once.
/// * **Late events** for ids already closed are ignored (`Ok`); ids never issued
///   are `Err(UnknownConn)`. Refused ids (full, shutting down) are closed at once.
/// * **Input**: each line is checked (length, UTF-8), then sanitized as a whole
///   ([`sanitize`]) before it is parsed, so nicks in errors and quit reasons are
///   clean too. Empty lines are ignored; a line of spaces is a message.
/// * **`/nick`**: changing only the case of your own nick is a rename; asking for
///   exactly your current nick answers `* you are already NAME` to you alone.
///   `server` (any case) is reserved.
/// * **`/who`, `/rooms`** answer in bounded size (see `commands.rs`, `list_reply`).
/// * **Rooms** are created on demand with the creator's spelling and deleted when
///   empty, `#lobby` included (the next arrival re-creates it). `/msg` gives the
///   sender no copy.
/// * **Quiet rooms** ([`ChatConfig::quiet_joins_above`] = N): presence notices
///   (`joined`, `left (why)`, `left #room`, `is now known as`) go to a room only
///   while it has at most N members counting their subject: after a join or rename
///   the room as it is, after a departure the room plus the one who left. Decided
///   in one place (`quiet`), for local events and the other nodes' alike (their
///   members count as this node last heard). The subject's own copies (its
///   `joined` after `/join`, its rename) are always sent; so is the welcome.
/// * **Order**: recipients of a broadcast are served in id order; all outputs for
///   one connection are in the order the core decided them.
#[derive(Debug)]
pub struct ChatServer {
    config: ChatConfig,
    idle_timeout: Option<Duration>,
    /// Flood control: (time per line, burst tolerance), if on.
    flood: Option<(Duration, Duration)>,
    sink: Sink,
    next_conn: u64,
    next_room: RoomId,
    guests: u64,
    /// Lowercased nick → connection.
    nicks: BTreeMap<String, ConnId>,
    rooms: BTreeMap<RoomId, Room>,
    /// Lowercased room name (without `#`) → room.
    room_index: BTreeMap<String, RoomId>,
    /// Idle deadlines of open connections, earliest first.
    deadlines: BTreeSet<(Instant, ConnId)>,
    /// Closed connections whose socket is not reported closed yet → abort deadline.
    closing: BTreeMap<ConnId, Instant>,
    /// The same deadlines, earliest first.
    close_deadlines: BTreeSet<(Instant, ConnId)>,
    /// Connections not ready yet (`handle_open_pending`) → ready deadline.
    pending: BTreeMap<ConnId, Instant>,
    /// The same deadlines, earliest first.
    pending_deadlines: BTreeSet<(Instant, ConnId)>,
    /// Open or closing connections per client address (`max_conns_per_ip`).
    addr_limit: AddrLimit,
    /// Connections whose bucket ran empty, by when it has a token again.
    refills: BTreeSet<(Instant, ConnId)>,
    /// Paused connections with unprocessed input (or an unprocessed EOF).
    stalled: BTreeSet<ConnId>,
    /// The latest `now` passed in (closes issued without one are timed from it).
    now: Instant,
    shut_down: bool,
    /// This node's cluster state (`None`: a single node). See `server/cluster.rs`.
    cluster: Option<alloc::boxed::Box<Cluster>>,
}

impl ChatServer {
    /// A server with no connections.
    pub fn new(config: ChatConfig) -> Self {
        let flood = config.flood_rate.filter(|&r| r > 0).map(|r| {
            let per_line = Duration::from_secs(1) / r;
            (per_line, per_line * (config.flood_burst.max(1) - 1))
        });
        ChatServer {
            config,
            idle_timeout: config.idle_timeout.filter(|d| !d.is_zero()),
            flood,
            sink: Sink {
                conns: BTreeMap::new(),
                out: VecDeque::new(),
                doomed: VecDeque::new(),
                send_queue: config.send_queue,
                stall_timeout: config.stall_timeout,
                now: Instant::ZERO,
                room_hot: BTreeMap::new(),
                stalls: BTreeSet::new(),
                resume: false,
                taken: 0,
                release_at: None,
            },
            next_conn: 0,
            next_room: 0,
            guests: 0,
            nicks: BTreeMap::new(),
            rooms: BTreeMap::new(),
            room_index: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            closing: BTreeMap::new(),
            close_deadlines: BTreeSet::new(),
            pending: BTreeMap::new(),
            pending_deadlines: BTreeSet::new(),
            addr_limit: AddrLimit::new(config.max_conns_per_ip, config.loopback_exempt),
            refills: BTreeSet::new(),
            stalled: BTreeSet::new(),
            now: Instant::ZERO,
            shut_down: false,
            cluster: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// A connection was accepted at `now`; returns its id. When the server is full
    /// the outputs are `! server full` and a `Close` (after [`shutdown`](Self::shutdown):
    /// `* server shutting down` and a `Close`). Otherwise the newcomer is `guestN`
    /// in `#lobby`, gets `* welcome guestN, K users online`, and the other members
    /// of `#lobby` get `* guestN joined #lobby`. No per-address limit applies (the
    /// address is unknown): see [`handle_open_from`](Self::handle_open_from).
    pub fn handle_open(&mut self, now: Instant) -> ConnId {
        self.open(now, None)
    }

    /// [`handle_open`](Self::handle_open) for a connection from `peer`: refused with
    /// `! too many connections from your address` and
    /// `Close{TooManyFromAddress}` when [`ChatConfig::max_conns_per_ip`]
    /// connections from that address are already open or closing (loopback exempt
    /// if [`ChatConfig::loopback_exempt`]). The connection counts against its
    /// address until its socket is reported closed (`handle_closed`) or aborted.
    pub fn handle_open_from(&mut self, now: Instant, peer: IpAddr) -> ConnId {
        self.open(now, Some(peer))
    }

    fn open(&mut self, now: Instant, addr: Option<IpAddr>) -> ConnId {
        self.advance(now);
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let refuse = if self.shut_down {
            Some((&b"* server shutting down\n"[..], CloseReason::Shutdown))
        } else if addr.is_some_and(|ip| self.addr_limit.is_full(ip)) {
            Some((
                &b"! too many connections from your address\n"[..],
                CloseReason::TooManyFromAddress,
            ))
        } else {
            None
        };
        let refuse = refuse.or_else(|| {
            self.config
                .max_conns
                .is_some_and(|max| self.occupied() >= max)
                .then_some((&b"! server full\n"[..], CloseReason::ServerFull))
        });
        if let Some(ip) = addr {
            self.addr_limit.count(id, ip);
        }
        if let Some((msg, reason)) = refuse {
            self.sink.out.push_back(Output::Transmit {
                to: id,
                bytes: Bytes::from_static(msg),
            });
            self.close(id, reason);
            return id;
        }
        self.admit(now, id);
        id
    }

    /// The id the next `handle_open` or `handle_open_refused` will issue (so a
    /// transport can start a connection's reader and writer before admitting it).
    pub fn next_id(&self) -> ConnId {
        ConnId(self.next_conn)
    }

    /// A connection was accepted but the transport cannot serve it (no thread or
    /// task could be started for it): it is issued an id, gets `! server full` and
    /// is closed (`Close{ServerFull}`); nobody else is told.
    pub fn handle_open_refused(&mut self, now: Instant) -> ConnId {
        self.advance(now);
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.sink.out.push_back(Output::Transmit {
            to: id,
            bytes: Bytes::from_static(b"! server full\n"),
        });
        self.close(id, CloseReason::ServerFull);
        id
    }

    /// A connection was accepted that cannot talk yet (a TLS handshake is under
    /// way): it is issued an id and counts against `max_conns`, but nobody sees it
    /// (no welcome, no `joined`, not in `/who` or the user count) until
    /// [`handle_ready`](Self::handle_ready). A refused one (full, shutting down) is
    /// closed at once **without text** (`Close{ServerFull}` / `Close{Shutdown}`):
    /// it could not be read before the handshake anyway. Not ready within
    /// [`ChatConfig::ready_timeout`]: `Close{HandshakeTimeout}` (through
    /// [`handle_timeout`](Self::handle_timeout)). Until it is ready, `handle_data`
    /// is ignored, and EOF, reset or close remove it silently (no `left` notice).
    pub fn handle_open_pending(&mut self, now: Instant) -> ConnId {
        self.open_pending(now, None)
    }

    /// [`handle_open_pending`](Self::handle_open_pending) for a connection from
    /// `peer`: also closed at once, without text (`Close{TooManyFromAddress}`), when
    /// [`ChatConfig::max_conns_per_ip`] connections from that address are open,
    /// pending or closing.
    pub fn handle_open_pending_from(&mut self, now: Instant, peer: IpAddr) -> ConnId {
        self.open_pending(now, Some(peer))
    }

    fn open_pending(&mut self, now: Instant, addr: Option<IpAddr>) -> ConnId {
        self.advance(now);
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let crowded = addr.is_some_and(|ip| self.addr_limit.is_full(ip));
        if let Some(ip) = addr {
            self.addr_limit.count(id, ip);
        }
        if self.shut_down {
            self.close(id, CloseReason::Shutdown);
        } else if crowded {
            self.close(id, CloseReason::TooManyFromAddress);
        } else if self
            .config
            .max_conns
            .is_some_and(|max| self.occupied() >= max)
        {
            self.close(id, CloseReason::ServerFull);
        } else {
            let deadline = now + self.config.ready_timeout;
            self.pending.insert(id, deadline);
            self.pending_deadlines.insert((deadline, id));
        }
        id
    }

    /// The pending connection `id` is ready (its handshake completed): it is welcomed
    /// and joins `#lobby` exactly as [`handle_open`](Self::handle_open) does. `Ok`
    /// and nothing happens for an id no longer pending (closed, or already ready).
    pub fn handle_ready(&mut self, now: Instant, id: ConnId) -> Result<(), ChatError> {
        self.advance(now);
        if id.0 >= self.next_conn {
            return Err(ChatError::UnknownConn(id));
        }
        let Some(deadline) = self.pending.remove(&id) else {
            return Ok(());
        };
        self.pending_deadlines.remove(&(deadline, id));
        self.admit(now, id);
        Ok(())
    }

    /// Whether `id` was opened pending and is not ready (nor closed) yet.
    pub fn is_pending(&self, id: ConnId) -> bool {
        self.pending.contains_key(&id)
    }

    /// Connections opened pending and not ready yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// What counts against `max_conns`: open, pending, and closed but not yet
    /// reported closed.
    fn occupied(&self) -> usize {
        self.sink.conns.len() + self.closing.len() + self.pending.len() + self.cluster_admitting()
    }

    /// Closes `id` silently if it is pending (`true`), with `reason`.
    fn close_pending(&mut self, id: ConnId, reason: CloseReason) -> bool {
        let Some(deadline) = self.pending.remove(&id) else {
            return false;
        };
        self.pending_deadlines.remove(&(deadline, id));
        self.close(id, reason);
        true
    }

    /// Admits `id` (issued, not open): `guestN` in `#lobby`, welcomed, announced.
    /// In a cluster the guest name is claimed first (see `server/cluster.rs`).
    fn admit(&mut self, now: Instant, id: ConnId) {
        if self.cluster_admit(now, id) {
            return;
        }
        let nick = self.next_guest();
        self.admit_as(now, id, nick);
    }

    /// Admits `id` as `nick` (unused): in `#lobby`, welcomed, announced.
    fn admit_as(&mut self, now: Instant, id: ConnId, nick: String) {
        self.nicks.insert(nick.to_ascii_lowercase(), id);
        let room = self.room_for("lobby");
        let deadline = self.idle_timeout.map(|t| now + t);
        if let Some(d) = deadline {
            self.deadlines.insert((d, id));
        }
        let conn = Conn {
            nick,
            room,
            framer: LineFramer::new(self.config.max_line),
            telnet: TelnetDecoder::new(),
            inbox: BytesMut::new(),
            eof: false,
            queued: 0,
            items: VecDeque::new(),
            hot: None,
            last_msg: None,
            tat: self.now,
            refill: None,
            deadline,
            doomed: false,
        };
        let welcome = line(format_args!(
            "* welcome {}, {} users online",
            conn.nick,
            self.users_online() + 1
        ));
        self.sink.conns.insert(id, conn);
        self.sink.transmit(id, welcome);
        self.enter_room(id, room, false);
        self.process_drops();
        self.resume();
    }

    /// Bytes received from `id`: telnet commands are removed first (see
    /// [`telnet`](crate::telnet)), then the data is processed line by line, in
    /// stream order: `IAC IP` discards the partial line, and a reply to a telnet
    /// option is transmitted after the output of the lines before it.
    ///
    /// Processing stops while `id` is paused ([`wants_read`](Self::wants_read) is
    /// false): the rest of `data` (complete lines included) stays buffered and is
    /// processed when `id` is unpaused, inside whichever later call unpauses it. The
    /// driver should not read a paused connection; what it delivers anyway is kept.
    pub fn handle_data(&mut self, now: Instant, id: ConnId, data: &[u8]) -> Result<(), ChatError> {
        self.advance(now);
        let Some(conn) = self.open_conn(id)? else {
            self.cluster_early_data(id, data);
            return Ok(());
        };
        if conn.eof {
            return Ok(());
        }
        let direct = conn.inbox.is_empty();
        if !data.is_empty() {
            self.touch(now, id);
        }
        if direct {
            // The common case: nothing buffered, no copy.
            match self.process(id, data) {
                Processed::Done | Processed::Gone => {
                    self.stalled.remove(&id);
                }
                Processed::Paused(used) => {
                    if let Some(conn) = self.sink.conns.get_mut(&id) {
                        conn.inbox.extend_from_slice(&data[used..]);
                    }
                    self.stalled.insert(id);
                }
            }
        } else if let Some(conn) = self.sink.conns.get_mut(&id) {
            conn.inbox.extend_from_slice(data);
            self.pump(id);
        }
        self.resume();
        Ok(())
    }

    /// The transport wrote `n` more bytes of what was transmitted to `id`. This may
    /// unpause other connections (and process their buffered input).
    pub fn handle_flushed(&mut self, id: ConnId, n: usize) -> Result<(), ChatError> {
        let half = self.sink.send_queue / 2;
        let Some(conn) = self.open_conn(id)? else {
            return Ok(());
        };
        conn.queued = conn.queued.checked_sub(n).ok_or(ChatError::FlushOverflow {
            id,
            reported: n,
            queued: conn.queued,
        })?;
        let mut left = n;
        while let Some(front) = conn.items.front_mut() {
            if left < *front {
                *front -= left;
                break;
            }
            left -= *front;
            conn.items.pop_front();
        }
        if conn.items.is_empty() && conn.items.capacity() > ITEMS_KEEP {
            conn.items.shrink_to(ITEMS_KEEP);
        }
        if let Some(deadline) = conn.hot {
            if conn.cost() <= half {
                conn.hot = None;
                let room = conn.room;
                self.sink.stalls.remove(&(deadline, id));
                self.sink.uncount_hot(room);
            }
        }
        self.resume();
        Ok(())
    }

    /// `id` finished sending (EOF): once its buffered input is processed (at once
    /// unless it is paused), its last unterminated line is processed, then it leaves
    /// (`* nick left (connection closed)`, `Close{PeerClosed}`).
    pub fn handle_peer_closed(&mut self, now: Instant, id: ConnId) -> Result<(), ChatError> {
        self.advance(now);
        if self.close_pending(id, CloseReason::PeerClosed) || self.cluster_early_eof(id) {
            return Ok(());
        }
        let Some(conn) = self.open_conn(id)? else {
            return Ok(());
        };
        if !conn.eof {
            conn.eof = true;
            self.pump(id);
        }
        self.resume();
        Ok(())
    }

    /// `id` failed (reset, I/O error): it leaves at once
    /// (`* nick left (connection reset)`, `Close{Reset}`).
    pub fn handle_reset(&mut self, now: Instant, id: ConnId) -> Result<(), ChatError> {
        self.advance(now);
        if self.close_pending(id, CloseReason::Reset)
            || self.cluster_early_reset(id, CloseReason::Reset)
        {
            return Ok(());
        }
        if self.open_conn(id)?.is_none() {
            return Ok(());
        }
        self.remove(id, "connection reset", CloseReason::Reset);
        self.process_drops();
        self.resume();
        Ok(())
    }

    /// The transport closed `id`'s socket (its writer ended after a [`Output::Close`],
    /// or failed): it no longer counts against `max_conns` (nor its address's
    /// `max_conns_per_ip`). For a connection still open this is a reset
    /// (`* nick left (connection reset)`).
    pub fn handle_closed(&mut self, now: Instant, id: ConnId) -> Result<(), ChatError> {
        self.handle_reset(now, id)?;
        if let Some(deadline) = self.closing.remove(&id) {
            self.close_deadlines.remove(&(deadline, id));
            self.addr_limit.forget(id);
        }
        Ok(())
    }

    /// Time passed: drops every client whose idle deadline is `<= now`
    /// (`* nick left (idle timeout)`, `Close{IdleTimeout}`), then every client whose
    /// queued output has been above half of `send_queue` for `stall_timeout`
    /// (`* nick left (send queue exceeded)`, `Close{SendQueueExceeded}`), aborts
    /// every closed connection whose grace ran out ([`Output::Abort`]), and resumes
    /// connections whose flood bucket refilled. Afterwards
    /// [`poll_timeout`](Self::poll_timeout) is `None` or later than `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if self.sink.release_at.is_some_and(|at| at <= now) {
            self.sink.release_at = None;
            self.sink.out.shrink_to(OUT_KEEP);
        }
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let (true, Some(t)) = (self.paused_id(id), self.idle_timeout) {
                // Not read because of flow control: it may be sending; not idle.
                let again = now + t;
                if let Some(conn) = self.sink.conns.get_mut(&id) {
                    conn.deadline = Some(again);
                }
                self.deadlines.insert((again, id));
                continue;
            }
            if let Some(conn) = self.sink.conns.get_mut(&id) {
                conn.deadline = None;
            }
            self.remove(id, "idle timeout", CloseReason::IdleTimeout);
            self.process_drops();
        }
        while let Some(&(deadline, id)) = self.sink.stalls.first() {
            if deadline > now {
                break;
            }
            self.sink.stalls.pop_first();
            self.remove(id, "send queue exceeded", CloseReason::SendQueueExceeded);
            self.process_drops();
        }
        while let Some(&(deadline, id)) = self.close_deadlines.first() {
            if deadline > now {
                break;
            }
            self.close_deadlines.pop_first();
            self.closing.remove(&id);
            self.addr_limit.forget(id);
            self.sink.out.push_back(Output::Abort { id });
        }
        while let Some(&(deadline, id)) = self.pending_deadlines.first() {
            if deadline > now {
                break;
            }
            self.close_pending(id, CloseReason::HandshakeTimeout);
        }
        self.cluster_timeout(now);
        self.resume();
    }

    /// The server stops at `now`: everyone gets `* server shutting down`, then a
    /// `Close` (no `left` notices); they have [`ChatConfig::close_grace`] to flush.
    /// Buffered input is discarded. Later connections are refused the same way. See
    /// [`is_finished`](Self::is_finished).
    pub fn shutdown(&mut self, now: Instant) {
        self.advance(now);
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        self.cluster_shutdown();
        for id in core::mem::take(&mut self.pending).into_keys() {
            self.close(id, CloseReason::Shutdown);
        }
        self.pending_deadlines.clear();
        let notice = Bytes::from_static(b"* server shutting down\n");
        let ids: Vec<ConnId> = self.sink.conns.keys().copied().collect();
        for id in ids {
            self.sink.transmit(id, notice.clone());
            self.close(id, CloseReason::Shutdown);
        }
        self.sink.conns.clear();
        self.sink.doomed.clear();
        self.sink.room_hot.clear();
        self.sink.stalls.clear();
        self.nicks.clear();
        self.rooms.clear();
        self.room_index.clear();
        self.deadlines.clear();
        self.refills.clear();
        self.stalled.clear();
    }

    /// Whether the server is done: [`shutdown`](Self::shutdown) was called and every
    /// connection's socket is reported closed or aborted. The transport may return.
    pub fn is_finished(&self) -> bool {
        self.shut_down && self.closing.is_empty()
    }

    /// The next thing the transport must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        let output = self.sink.out.pop_front();
        if output.is_some() {
            self.sink.taken += 1;
        } else if core::mem::take(&mut self.sink.taken) > OUT_KEEP {
            self.sink.release_at = Some(self.sink.now + RELEASE_AFTER);
        }
        output
    }

    /// When `handle_timeout` should next be called, if ever (O(log n)): the next
    /// idle deadline, stall deadline, close grace end, flood bucket refill or the
    /// release of a burst's output-queue memory.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.deadlines.first(),
            self.sink.stalls.first(),
            self.close_deadlines.first(),
            self.refills.first(),
            self.pending_deadlines.first(),
        ]
        .into_iter()
        .flatten()
        .map(|&(deadline, _)| deadline)
        .chain(self.sink.release_at)
        .chain(self.cluster.as_ref().map(|c| c.poll_timeout()))
        .min()
    }

    /// Whether the driver should read from `id` now. False for connections not open
    /// (or that sent EOF), and while `id` is **paused**:
    ///
    /// * some member of `id`'s room (itself included) is *hot*: its
    ///   [`queued_cost`](Self::queued_cost) is above `send_queue / 2`;
    /// * the target of `id`'s last delivered `/msg` is hot;
    /// * `id`'s flood bucket is empty (`flood_rate`; [`poll_timeout`](Self::poll_timeout)
    ///   includes when it refills).
    ///
    /// The core checks the same before each line (and telnet command) it processes,
    /// so one read with many lines is processed only up to the point where the
    /// connection becomes paused. As every line's output goes to the sender's room,
    /// to itself or to its `/msg` target, a recipient gets at most one line's output
    /// per sender past half its queue, then every sender that can reach it is paused
    /// until it drains; only a client that stops reading is dropped.
    ///
    /// Re-check after every `handle_*` call: `handle_flushed` and `handle_timeout`
    /// (and others) may unpause connections; buffered input of unpaused connections
    /// is processed inside those calls.
    pub fn wants_read(&self, id: ConnId) -> bool {
        match self.sink.conns.get(&id) {
            Some(conn) => !conn.eof && !self.paused(conn) && !self.cluster_holds(id),
            None => self.is_admitting(id),
        }
    }

    /// Outputs the output queue has room for (its memory).
    #[cfg(test)]
    pub(crate) fn output_capacity(&self) -> usize {
        self.sink.out.capacity()
    }

    /// Closed connections whose socket is not reported closed yet.
    pub fn closing(&self) -> usize {
        self.closing.len()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.sink.conns.len()
    }

    /// Bytes transmitted to `id` and not yet reported flushed (`None`: not open).
    pub fn queued(&self, id: ConnId) -> Option<usize> {
        self.sink.conns.get(&id).map(|c| c.queued)
    }

    /// What `id`'s queued output counts against `send_queue`: [`queued`](Self::queued)
    /// plus [`LINE_OVERHEAD`] per transmit not fully flushed (`None`: not open).
    pub fn queued_cost(&self, id: ConnId) -> Option<usize> {
        self.sink.conns.get(&id).map(Conn::cost)
    }

    /// Whether `id` is open (issued and not closed).
    pub fn is_open(&self, id: ConnId) -> bool {
        self.sink.conns.contains_key(&id)
    }

    /// The nick of `id` (`None`: not open).
    pub fn nick(&self, id: ConnId) -> Option<&str> {
        self.sink.conns.get(&id).map(|c| c.nick.as_str())
    }

    /// The room `id` is in, with its `#` (`None`: not open).
    pub fn room_of(&self, id: ConnId) -> Option<&str> {
        let conn = self.sink.conns.get(&id)?;
        self.rooms.get(&conn.room).map(|r| r.name.as_str())
    }

    /// Every room (`#name`, member count), sorted by name ignoring case.
    pub fn rooms(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.room_index
            .values()
            .filter_map(|r| self.rooms.get(r))
            .map(|r| (r.name.as_str(), r.members.len()))
    }

    /// Open connections, by id.
    pub fn conn_ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.sink.conns.keys().copied()
    }

    /// Bytes buffered by `id`'s line framer (for memory-bound tests).
    #[cfg(test)]
    pub(super) fn framer_buffered(&self, id: ConnId) -> Option<usize> {
        self.sink.conns.get(&id).map(|c| c.framer.buffered())
    }

    /// Raw input buffered for `id` while paused (for tests).
    #[cfg(test)]
    pub(super) fn inbox_len(&self, id: ConnId) -> Option<usize> {
        self.sink.conns.get(&id).map(|c| c.inbox.len())
    }

    // ----- internals -----

    /// `Err` for ids never issued, `Ok(None)` for closed ones.
    fn open_conn(&mut self, id: ConnId) -> Result<Option<&mut Conn>, ChatError> {
        if id.0 >= self.next_conn {
            return Err(ChatError::UnknownConn(id));
        }
        Ok(self.sink.conns.get_mut(&id))
    }

    /// Time never goes back: a late `now` is taken as the latest one seen. Flood
    /// buckets that refilled by then may unpause their connections.
    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.sink.now = self.now;
        while let Some(&(at, id)) = self.refills.first() {
            if at > self.now {
                break;
            }
            self.refills.pop_first();
            if let Some(conn) = self.sink.conns.get_mut(&id) {
                conn.refill = None;
            }
            self.sink.resume = true;
        }
    }

    /// Whether `conn` is paused (see [`wants_read`](Self::wants_read)).
    fn paused(&self, conn: &Conn) -> bool {
        self.sink.room_hot.contains_key(&conn.room)
            || conn
                .last_msg
                .and_then(|t| self.sink.conns.get(&t))
                .is_some_and(|t| t.hot.is_some())
            || self.flood.is_some_and(|(_, tau)| conn.tat > self.now + tau)
    }

    fn paused_id(&self, id: ConnId) -> bool {
        self.sink.conns.get(&id).is_some_and(|c| self.paused(c)) || self.cluster_holds(id)
    }

    /// `id` is about to process a line: takes a token from its flood bucket.
    fn take_token(&mut self, id: ConnId) {
        let (Some((per_line, tau)), Some(conn)) = (self.flood, self.sink.conns.get_mut(&id)) else {
            return;
        };
        conn.tat = conn.tat.max(self.now) + per_line;
        if conn.tat > self.now + tau && conn.refill.is_none() {
            let at = Instant::from_duration(conn.tat.since_origin().saturating_sub(tau));
            conn.refill = Some(at);
            self.refills.insert((at, id));
        }
    }

    /// Processes `data` (after any complete lines in `id`'s framer) item by item
    /// until done or `id` is paused (checked before each item).
    fn process(&mut self, id: ConnId, data: &[u8]) -> Processed {
        let mut rest = data;
        loop {
            loop {
                let Some(conn) = self.sink.conns.get(&id) else {
                    return Processed::Gone;
                };
                if self.paused(conn) || self.cluster_holds(id) {
                    return Processed::Paused(data.len() - rest.len());
                }
                let Some(conn) = self.sink.conns.get_mut(&id) else {
                    return Processed::Gone;
                };
                let Some(item) = conn.framer.next_line() else {
                    break;
                };
                self.take_token(id);
                self.handle_line(id, item);
                self.process_drops();
            }
            // Not paused (just checked), and nothing happened since.
            let Some(conn) = self.sink.conns.get_mut(&id) else {
                return Processed::Gone;
            };
            let Some(event) = conn.telnet.decode(&mut rest) else {
                return Processed::Done;
            };
            match event {
                TelnetEvent::Data(bytes) => conn.framer.push(bytes),
                TelnetEvent::Interrupt => conn.framer.discard_partial(),
                TelnetEvent::Reply(reply) => {
                    self.sink.transmit(id, Bytes::copy_from_slice(&reply));
                    self.process_drops();
                }
            }
        }
    }

    /// Processes `id`'s buffered input (and its EOF, once the input is done) unless
    /// it is paused; keeps it on `stalled` while anything is left.
    fn pump(&mut self, id: ConnId) {
        let Some(conn) = self.sink.conns.get_mut(&id) else {
            self.stalled.remove(&id);
            return;
        };
        let mut inbox = core::mem::take(&mut conn.inbox);
        match self.process(id, &inbox) {
            Processed::Gone => {
                self.stalled.remove(&id);
            }
            Processed::Paused(used) => {
                if let Some(conn) = self.sink.conns.get_mut(&id) {
                    let _ = inbox.split_to(used);
                    conn.inbox = inbox;
                }
                self.stalled.insert(id);
            }
            Processed::Done => {
                let Some(conn) = self.sink.conns.get_mut(&id) else {
                    self.stalled.remove(&id);
                    return;
                };
                // Reuse the buffer's allocation only if it is small.
                if inbox.capacity() <= 4096 {
                    inbox.clear();
                    conn.inbox = inbox;
                }
                if !conn.eof {
                    self.stalled.remove(&id);
                    return;
                }
                if self.paused_id(id) {
                    self.stalled.insert(id);
                    return;
                }
                self.stalled.remove(&id);
                let conn = self.sink.conns.get_mut(&id).expect("checked above");
                if let Some(item) = conn.framer.finish() {
                    self.take_token(id);
                    self.handle_line(id, item);
                    self.process_drops();
                }
                self.remove(id, "connection closed", CloseReason::PeerClosed);
                self.process_drops();
            }
        }
    }

    /// Processes the buffered input of every stalled connection that is no longer
    /// paused, in id order, until none is left that can go on. Runs only when
    /// something that can unpause a connection happened since the last run.
    fn resume(&mut self) {
        while core::mem::take(&mut self.sink.resume) {
            let ids: Vec<ConnId> = self.stalled.iter().copied().collect();
            let mut progressed = false;
            for id in ids {
                if self.stalled.contains(&id) && !self.paused_id(id) {
                    self.pump(id);
                    progressed = true;
                }
            }
            if progressed {
                // What they did (a quit, a drop, a room change) may unpause others.
                self.sink.resume = true;
            } else {
                self.sink.resume = false;
                break;
            }
        }
    }

    /// Outputs `Close{id, reason}` and starts `id`'s grace for flushing.
    fn close(&mut self, id: ConnId, reason: CloseReason) {
        let deadline = self.now + self.config.close_grace;
        self.closing.insert(id, deadline);
        self.close_deadlines.insert((deadline, id));
        self.sink.out.push_back(Output::Close { id, reason });
    }

    /// `id`'s socket is gone: it no longer counts against its address.
    fn touch(&mut self, now: Instant, id: ConnId) {
        let Some(timeout) = self.idle_timeout else {
            return;
        };
        let Some(conn) = self.sink.conns.get_mut(&id) else {
            return;
        };
        if let Some(old) = conn.deadline.replace(now + timeout) {
            self.deadlines.remove(&(old, id));
        }
        self.deadlines.insert((now + timeout, id));
    }

    fn error(&mut self, id: ConnId, args: fmt::Arguments<'_>) {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"! ");
        let _ = buf.write_fmt(args);
        buf.extend_from_slice(b"\n");
        self.sink.transmit(id, buf.freeze());
    }

    /// Sends `bytes` to every member of `room` but `except`.
    fn broadcast(&mut self, room: RoomId, except: Option<ConnId>, bytes: &Bytes) {
        let Some(room) = self.rooms.get(&room) else {
            return;
        };
        for &member in &room.members {
            if Some(member) != except {
                self.sink.transmit(member, bytes.clone());
            }
        }
    }

    /// The room called `name` (no `#`), created with that spelling if needed.
    fn room_for(&mut self, name: &str) -> RoomId {
        let key = name.to_ascii_lowercase();
        if let Some(&room) = self.room_index.get(&key) {
            return room;
        }
        let room = self.next_room;
        self.next_room += 1;
        // In a cluster a room that exists on other nodes keeps its spelling.
        let name = self
            .cluster_room_name(&key)
            .unwrap_or_else(|| alloc::format!("#{name}"));
        self.room_index.insert(key, room);
        self.rooms.insert(
            room,
            Room {
                name,
                members: BTreeSet::new(),
            },
        );
        room
    }

    /// Adds `id` (already pointing at `room`) to it; members get `* nick joined #room`
    /// (unless the room is [quiet](Self::quiet); `id` itself if `tell_self`, always).
    fn enter_room(&mut self, id: ConnId, room: RoomId, tell_self: bool) {
        let (Some(conn), Some(r)) = (self.sink.conns.get(&id), self.rooms.get_mut(&room)) else {
            return;
        };
        r.members.insert(id);
        let notice = line(format_args!("* {} joined {}", conn.nick, r.name));
        let (nick, name) = (conn.nick.clone(), r.name.clone());
        self.announce(room, Some(id), tell_self, false, &notice);
        self.cluster_publish(cluster_wire::Body::Enter {
            nick,
            room: name,
            notice,
        });
    }

    /// Takes `id` out of `room` (deleted when empty); those left get `notice` (unless
    /// the room is [quiet](Self::quiet)). `hot`: whether `id` was counted hot there.
    fn exit_room(&mut self, id: ConnId, room: RoomId, hot: bool, notice: &Bytes) {
        if hot {
            self.sink.uncount_hot(room);
        }
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        r.members.remove(&id);
        if r.members.is_empty() {
            let key = r.name[1..].to_ascii_lowercase();
            self.rooms.remove(&room);
            self.room_index.remove(&key);
        } else {
            self.announce(room, None, false, true, notice);
        }
    }

    /// Members of `room` on every node (the other nodes' as last heard).
    fn room_size(&self, room: RoomId) -> usize {
        let Some(r) = self.rooms.get(&room) else {
            return 0;
        };
        let remote = match self.cluster {
            Some(_) => self.cluster_room_size(&r.name[1..].to_ascii_lowercase()),
            None => 0,
        };
        r.members.len() + remote
    }

    /// The quiet-room rule (`quiet_joins_above`, `--quiet-joins-above` in the README;
    /// decided here only): whether `room` gets no presence notice about a user who
    /// just joined or renamed there (`gone` false: the room counts them) or just left
    /// it (`gone`: they count too, on top of the members now).
    fn quiet(&self, room: RoomId, gone: bool) -> bool {
        match self.config.quiet_joins_above {
            Some(n) if n > 0 => self.room_size(room) + usize::from(gone) > n,
            _ => false,
        }
    }

    /// A presence notice (`joined`, `left`, `is now known as`) about `subject` to
    /// `room`: to every member, `subject` too if `tell_subject`, unless the room is
    /// [quiet](Self::quiet) (`gone`: the subject just left it); then to `subject`
    /// alone if `tell_subject` (its own confirmation is always sent).
    fn announce(
        &mut self,
        room: RoomId,
        subject: Option<ConnId>,
        tell_subject: bool,
        gone: bool,
        notice: &Bytes,
    ) {
        if !self.quiet(room, gone) {
            self.broadcast(room, subject.filter(|_| !tell_subject), notice);
        } else if let (Some(id), true) = (subject, tell_subject) {
            self.sink.transmit(id, notice.clone());
        }
    }

    /// Forgets `id`, outputs its `Close`, tells its room `* nick left (why)`.
    fn remove(&mut self, id: ConnId, why: &str, reason: CloseReason) {
        let Some(conn) = self.sink.conns.remove(&id) else {
            return;
        };
        self.nicks.remove(&conn.nick.to_ascii_lowercase());
        if let Some(d) = conn.deadline {
            self.deadlines.remove(&(d, id));
        }
        if let Some(d) = conn.hot {
            self.sink.stalls.remove(&(d, id));
        }
        if let Some(at) = conn.refill {
            self.refills.remove(&(at, id));
        }
        self.stalled.remove(&id);
        self.sink.resume = true;
        self.close(id, reason);
        let notice = line(format_args!("* {} left ({})", conn.nick, why));
        self.cluster_exit(&conn.nick, conn.room, &notice);
        self.exit_room(id, conn.room, conn.hot.is_some(), &notice);
        self.cluster_release(&conn.nick);
    }

    /// Removes every connection whose send queue overflowed (worklist, no recursion).
    fn process_drops(&mut self) {
        while let Some(id) = self.sink.doomed.pop_front() {
            self.remove(id, "send queue exceeded", CloseReason::SendQueueExceeded);
        }
    }
}
