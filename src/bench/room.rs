//! `bench room`: attackers in a crowded `#lobby` (docs/abuse-bench.md). M members
//! that all keep reading and a canary (pinging itself with `/msg`) join first; then
//! one or more attackers send, as fast as the server reads them, `/me` lines of
//! about 1,000 bytes, `/nick` renames, `/join` hops out of and back into `#lobby`,
//! or tiny messages. Reported: members the server closed although they kept
//! reading (collateral drops), whether the attackers were closed, the canary's
//! round trips, the attack's pace, the amplification (bytes the server sent to
//! everyone ÷ bytes the attackers sent) and, given `--server-pid`, the server's
//! memory (peak, and once every queue has drained) and CPU time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::crowd::{self, Canary, Phase, Shared};
use super::procfs::{self, ServerUse, ServerWatch};
use super::report::{Errors, Latency};
use super::{resolve, BenchError, Common, Stop};

/// What the attackers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomAttack {
    /// `/me` with about 1,000 bytes of text: one line to every member per line.
    Me,
    /// `/nick` renames back and forth: one notice to every member per line.
    Nick,
    /// `/join hopN` then `/join lobby`: a left and a joined notice per pair.
    Join,
    /// `a`: the smallest message, one tiny line to every member per line.
    Tiny,
}

/// `bench room` arguments.
#[derive(Debug, clap::Args)]
pub struct RoomArgs {
    /// Chat server address.
    #[arg(long, default_value = "127.0.0.1:12346")]
    pub addr: String,
    /// What the attackers send.
    #[arg(long, value_enum, default_value_t = RoomAttack::Me)]
    pub attack: RoomAttack,
    /// Members of `#lobby` besides the canary and the attackers (all keep reading).
    #[arg(long, default_value_t = 200)]
    pub members: usize,
    /// Attacking clients.
    #[arg(long, default_value_t = 1)]
    pub attackers: usize,
    /// Seconds to attack (and measure).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Milliseconds between two canary pings.
    #[arg(long, default_value_t = 10)]
    pub pace_ms: u64,
    /// Bytes per second each member reads at most, steadily (0: as fast as it can).
    /// A member that reads at any steady pace keeps reading: it must not be dropped.
    #[arg(long, default_value_t = 0)]
    pub member_rate: u64,
    /// SO_RCVBUF of the members' sockets (0: the system's autotuned default).
    #[arg(long, default_value_t = 0)]
    pub member_rcvbuf: u32,
    /// SO_SNDBUF of the attackers' sockets (0: the system's autotuned default). Small
    /// by default, so what an attacker has sent is close to what the server has read
    /// and the backlog left when the attack stops is small.
    #[arg(long, default_value_t = 16 * 1024)]
    pub attacker_sndbuf: u32,
    /// Most attack lines sent and not yet seen by the canary, all attackers together
    /// (0: no limit, a flood at the server's full reading pace). The server still
    /// always has input waiting, but less of it.
    #[arg(long, default_value_t = 0)]
    pub backlog: u64,
    /// Most members connecting at once.
    #[arg(long, default_value_t = 64)]
    pub parallel: usize,
    /// Longest wait, in seconds, for the queues to drain after the attack.
    #[arg(long, default_value_t = 30.0)]
    pub drain_cap: f64,
    /// The server's --send-queue, for the memory bound reported: clients × send
    /// queue + 64 KiB per connection (docs/abuse-bench.md).
    #[arg(long, default_value_t = 262_144)]
    pub send_queue: u64,
    /// The server's process id: report its memory and CPU time (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server's `--quiet-joins-above` (0 = off): expect a join notice only for
    /// members that made `#lobby` at most this many, canary included. Renames and
    /// hops in a quiet room reach nobody, so "lines/s served" is 0 for those attacks.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub quiet_joins_above: usize,
    /// Halfway through the attack, send the server SIGTERM, the attackers going on,
    /// and report how long it took to exit (instead of waiting for the drain).
    #[arg(long, requires = "server_pid")]
    pub sigterm: bool,
    /// Common options.
    #[command(flatten)]
    pub common: Common,
}

/// The result of `bench room`.
#[derive(Debug, Serialize)]
struct RoomReport {
    kind: &'static str,
    addr: SocketAddr,
    attack: RoomAttack,
    /// 1-minute load average of the machine when the run began.
    load1: Option<f64>,
    members: usize,
    /// Each member's reading pace in bytes/s (0: as fast as it can).
    member_rate: u64,
    members_joined: u64,
    /// Members closed by the server although they kept reading.
    members_dropped: u64,
    attackers: usize,
    attackers_closed: u64,
    duration_s: f64,
    /// The canary's `/msg` round trips during the attack.
    canary: Latency,
    canary_timeouts: u64,
    canary_dropped: bool,
    /// Lines and bytes the attackers got into their sockets during the attack.
    attack_lines_sent: u64,
    attack_bytes_sent: u64,
    /// Attack lines the canary received during the attack, per second: the pace the
    /// server really served the attackers at.
    attack_lines_per_s: f64,
    /// Bytes everyone received during the attack.
    bytes_out: u64,
    /// bytes_out ÷ the bytes of the attack lines the server served meanwhile
    /// (attack_lines_per_s × duration × the attack's bytes per line).
    /// (`None`: no attack line reached the canary, e.g. renames in a quiet room.)
    amplification: Option<f64>,
    /// Seconds from the attack's end until nothing more arrived (or the cap).
    drain_s: f64,
    drained: bool,
    /// Whether SIGTERM was sent when the window ended (`--sigterm`; no drain then).
    sigterm: bool,
    /// Seconds from SIGTERM to the server's exit (`None`: not asked, or not
    /// exited within 30 s).
    exit_after_sigterm_s: Option<f64>,
    server: ServerUse,
    /// (members + canary + attackers) × send_queue + 64 KiB per connection, KiB.
    memory_bound_kib: u64,
    interrupted: bool,
    errors: Errors,
}

impl std::fmt::Display for RoomReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "room ({:?} × {}) against {} with {}/{} members, {:.1} s (load {}):",
            self.attack,
            self.attackers,
            self.addr,
            self.members_joined,
            self.members,
            self.duration_s,
            self.load1.map_or("?".into(), |l| format!("{l:.2}"))
        )?;
        writeln!(
            f,
            "  dropped:     {} members, {} of {} attackers, canary {}",
            self.members_dropped,
            self.attackers_closed,
            self.attackers,
            if self.canary_dropped { "yes" } else { "no" }
        )?;
        writeln!(
            f,
            "  canary:      {} ({} timeouts)",
            self.canary, self.canary_timeouts
        )?;
        writeln!(
            f,
            "  attack:      {} lines sent ({:.1} MB), {:.0} lines/s served; amplification {} ({:.1} MB out meanwhile)",
            self.attack_lines_sent,
            self.attack_bytes_sent as f64 / 1e6,
            self.attack_lines_per_s,
            self.amplification
                .map_or("n/a".into(), |a| format!("{a:.1}×")),
            self.bytes_out as f64 / 1e6
        )?;
        if self.sigterm {
            match self.exit_after_sigterm_s {
                Some(s) => writeln!(f, "  sigterm:     exited {s:.2} s after SIGTERM")?,
                None => writeln!(f, "  sigterm:     still running 30 s after SIGTERM")?,
            }
        } else {
            writeln!(
                f,
                "  drain:       {:.2} s{}",
                self.drain_s,
                if self.drained { "" } else { " (gave up)" }
            )?;
        }
        if self.server.rss_before_kib.is_some() {
            writeln!(
                f,
                "  server:      {} (bound {:.1} MiB)",
                self.server,
                self.memory_bound_kib as f64 / 1024.0
            )?;
        }
        writeln!(f, "  errors:      {}", self.errors)?;
        if self.interrupted {
            writeln!(f, "  interrupted: partial results")?;
        }
        Ok(())
    }
}

/// The lines one attacker repeats (a whole number of lines, so it can wrap).
fn attack_chunk(attack: RoomAttack, index: usize) -> Vec<u8> {
    let (line, times) = match attack {
        RoomAttack::Me => (format!("/me {}\n", "y".repeat(996)), 16),
        RoomAttack::Nick => (format!("/nick atk{index}b\n/nick atk{index}a\n"), 256),
        RoomAttack::Join => (format!("/join hop{index}\n/join lobby\n"), 256),
        RoomAttack::Tiny => ("a\n".to_owned(), 4096),
    };
    line.repeat(times).into_bytes()
}

/// Counters the attackers share.
#[derive(Debug, Default)]
struct AttackCounts {
    lines: AtomicU64,
    bytes: AtomicU64,
    received: AtomicU64,
    closed: AtomicU64,
}

/// What every attacker of a run shares.
#[derive(Clone)]
struct Plan {
    addr: SocketAddr,
    attack: RoomAttack,
    /// When to start sending, and to stop.
    go: Instant,
    until: Instant,
    /// SO_SNDBUF (0: default).
    sndbuf: u32,
    /// Most lines ahead of what the canary has seen (0: no limit).
    backlog: u64,
    /// The canary's counts (attack lines seen: served).
    served: Arc<crowd::CanaryCounts>,
    counts: Arc<AttackCounts>,
    shared: Arc<Shared>,
}

/// One attacker: connects, names itself `atkN` (for nick, `atkNa`), waits for `go`,
/// sends until `until` (whole lines, at most `backlog` ahead of what the canary has
/// seen served), and reads (and counts) everything meanwhile, until aborted.
async fn attacker(plan: Plan, index: usize) {
    let Plan {
        addr,
        attack,
        go,
        until,
        sndbuf,
        backlog,
        served,
        counts,
        shared,
    } = plan;
    let Ok(stream) = crowd::connect_with(addr, 0, sndbuf).await else {
        counts.closed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // When the attack ends the connection is reset, not closed: what is still in
    // this side's send buffer is discarded (what the server already received, it
    // may still process while the queues drain).
    let _ = stream.set_zero_linger();
    let (read, mut write) = stream.into_split();
    let nick = match attack {
        RoomAttack::Nick => format!("/nick atk{index}a\n"),
        _ => format!("/nick atk{index}\n"),
    };
    let c = Arc::clone(&counts);
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::clone(&ended);
    let drain = tokio::spawn(async move {
        loop {
            if read.readable().await.is_err() {
                break;
            }
            let mut buf = [0u8; 32 * 1024];
            match read.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    c.received.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if !shared.is_ending() && !done.load(Ordering::Relaxed) {
            c.closed.fetch_add(1, Ordering::Relaxed);
        }
    });
    let abort_drain = AbortOnDrop(drain);
    if write.write_all(nick.as_bytes()).await.is_err() {
        return;
    }
    tokio::time::sleep_until(go.into()).await;
    let chunk = attack_chunk(attack, index);
    let mut at = 0;
    while Instant::now() < until {
        // Lines sent that the canary has not seen yet: what the server has still to
        // read or to process. With --backlog, kept below it: the server still
        // always has input waiting, but less is left when the attack ends.
        let outstanding = counts
            .lines
            .load(Ordering::Relaxed)
            .saturating_sub(served.attack_lines.load(Ordering::Relaxed));
        let room = if backlog == 0 {
            u64::MAX
        } else {
            backlog.saturating_sub(outstanding)
        };
        if room == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        // `room` whole lines from `at`, at most to the end of the chunk.
        let len = memchr::memchr_iter(b'\n', &chunk[at..])
            .nth(usize::try_from(room - 1).unwrap_or(usize::MAX))
            .map_or(chunk.len() - at, |p| p + 1);
        let piece = &chunk[at..at + len];
        let left = until.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        match tokio::time::timeout(left, write.write_all(piece)).await {
            Ok(Ok(())) => {
                let lines = memchr::memchr_iter(b'\n', piece).count();
                counts.lines.fetch_add(lines as u64, Ordering::Relaxed);
                counts.bytes.fetch_add(len as u64, Ordering::Relaxed);
                at = (at + len) % chunk.len();
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    // Reset the connection: stop counting its close, drop the reader, then the
    // writer without a FIN (the last half dropped closes the socket, with RST).
    ended.store(true, Ordering::Relaxed);
    drop(abort_drain);
    write.forget();
}

/// Aborts a task when dropped (the attacker's reader goes with the attacker).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Silence that means everything queued has been delivered (long enough that a
/// server busy with one huge batch is not taken for a drained one).
const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// Runs `bench room`.
pub async fn run(args: RoomArgs, stop: Stop) -> Result<(), BenchError> {
    let addr = resolve(&args.addr)?;
    if args.attackers == 0 || !(args.duration > 0.0 && args.duration < 1e6) {
        return Err(BenchError::BadArgument(
            "--attackers must be at least 1 and --duration positive".into(),
        ));
    }
    let load1 = procfs::load1();
    let shared = Shared::new();
    let canary = Canary::start(addr, Duration::from_millis(args.pace_ms.max(1)), &shared).await?;
    let reading = crowd::Reading {
        rate: args.member_rate,
        rcvbuf: args.member_rcvbuf,
    };
    let members = crowd::spawn_members(addr, args.members, args.parallel, reading, &shared);
    let m = args.members as u64;
    let joined = |s: &Shared| s.joined.load(Ordering::Relaxed);
    // Everyone in, and every join notice delivered.
    let announced = |joined: u64| crowd::announced(args.quiet_joins_above, joined);
    crowd::settle(
        &shared,
        Duration::from_millis(300),
        Duration::from_secs(120),
        || {
            shared.settled() >= m
                && canary.counts.joins.load(Ordering::Relaxed) >= announced(joined(&shared))
        },
    )
    .await;
    let mut errors = Errors {
        connect: shared.failed.load(Ordering::Relaxed) + shared.refused.load(Ordering::Relaxed),
        ..Errors::default()
    };
    if joined(&shared) == 0 && m > 0 {
        return Err(BenchError::NoConnection {
            addr,
            reason: "no member got a welcome".into(),
        });
    }
    // The attackers connect and rename; the attack starts once that has settled.
    let counts = Arc::new(AttackCounts::default());
    let setup = Duration::from_millis(500);
    let go = Instant::now() + setup;
    let until = go + Duration::from_secs_f64(args.duration);
    // With --sigterm: SIGTERM halfway through, the attack going on until the
    // server is gone (or EXIT_WAIT has passed).
    let (until, attack_until) = match args.sigterm {
        true => (
            go + Duration::from_secs_f64(args.duration / 2.0),
            until + super::procfs::EXIT_WAIT,
        ),
        false => (until, until),
    };
    let plan = Plan {
        addr,
        attack: args.attack,
        go,
        until: attack_until,
        sndbuf: args.attacker_sndbuf,
        backlog: args.backlog,
        served: Arc::clone(&canary.counts),
        counts: Arc::clone(&counts),
        shared: Arc::clone(&shared),
    };
    let attackers: Vec<_> = (0..args.attackers)
        .map(|i| AbortOnDrop(tokio::spawn(attacker(plan.clone(), i))))
        .collect();
    tokio::time::sleep_until(go.into()).await;
    let pid = args.server_pid;
    let watch = ServerWatch::start(pid);
    let out_before = shared.bytes.load(Ordering::Relaxed)
        + canary.counts.bytes.load(Ordering::Relaxed)
        + counts.received.load(Ordering::Relaxed);
    let seen_before = canary.counts.attack_lines.load(Ordering::Relaxed);
    canary.phase.send_replace(Phase::Measure);
    tokio::select! {
        () = tokio::time::sleep_until(until.into()) => {}
        () = stop.wait() => {}
    }
    canary.phase.send_replace(Phase::Idle);
    let window = go.elapsed();
    // With --sigterm: the members' closes from here on are the shutdown's.
    let dropped_in_window = shared.dropped.load(Ordering::Relaxed);
    let exit_after_sigterm_s = match (args.sigterm, pid) {
        (true, Some(pid)) => {
            shared.end();
            Some(super::procfs::sigterm(pid).await?)
        }
        _ => None,
    };
    let served = canary.counts.attack_lines.load(Ordering::Relaxed) - seen_before;
    let bytes_out = shared.bytes.load(Ordering::Relaxed)
        + canary.counts.bytes.load(Ordering::Relaxed)
        + counts.received.load(Ordering::Relaxed)
        - out_before;
    let chunk = attack_chunk(args.attack, 0);
    let line_bytes = chunk.len() as f64 / memchr::memchr_iter(b'\n', &chunk).count() as f64;
    // Let everything queued (and everything the attackers had in flight) arrive.
    let drain_from = Instant::now();
    let drained = exit_after_sigterm_s.is_none()
        && crowd::drain(
            &shared,
            &canary,
            DRAIN_QUIET,
            Duration::from_secs_f64(args.drain_cap.clamp(1.0, 3600.0)),
        )
        .await;
    let drain_s = drain_from.elapsed().saturating_sub(DRAIN_QUIET);
    let server = watch.finish();
    shared.end();
    let members_dropped = match exit_after_sigterm_s {
        Some(_) => dropped_in_window,
        None => shared.dropped.load(Ordering::Relaxed),
    };
    let attackers_closed = counts.closed.load(Ordering::Relaxed);
    let canary_end = canary.finish().await;
    drop(attackers);
    for task in members {
        task.abort();
    }
    errors.timeout += canary_end.timeouts;
    let conns = joined(&shared) + 1 + args.attackers as u64;
    let attack_bytes_sent = counts.bytes.load(Ordering::Relaxed);
    let report = RoomReport {
        kind: "room",
        addr,
        attack: args.attack,
        load1,
        members: args.members,
        member_rate: args.member_rate,
        members_joined: joined(&shared),
        members_dropped,
        attackers: args.attackers,
        attackers_closed,
        duration_s: window.as_secs_f64(),
        canary: canary_end.latency,
        canary_timeouts: canary_end.timeouts,
        canary_dropped: canary_end.dropped,
        attack_lines_sent: counts.lines.load(Ordering::Relaxed),
        attack_bytes_sent,
        attack_lines_per_s: served as f64 / window.as_secs_f64().max(1e-9),
        bytes_out,
        amplification: (served > 0).then(|| bytes_out as f64 / (served as f64 * line_bytes)),
        drain_s: drain_s.as_secs_f64(),
        drained,
        exit_after_sigterm_s: exit_after_sigterm_s.flatten(),
        sigterm: args.sigterm,
        server,
        memory_bound_kib: conns * (args.send_queue / 1024 + 64),
        interrupted: stop.is_set(),
        errors,
    };
    // Drops, slow answers and memory are results, not failures: only a run that
    // could not measure anything fails.
    let mut problems = Vec::new();
    if report.canary.samples == 0 {
        problems.push("the canary got no answer".into());
    }
    if report.sigterm && report.exit_after_sigterm_s.is_none() {
        problems.push("the server did not exit within 30 s of SIGTERM".into());
    }
    let interrupted = report.interrupted.then_some(window);
    super::finish(&report, args.common.json, &problems, interrupted)
}
