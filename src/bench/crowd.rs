//! The well-behaved side of the abuse workloads (`bench room`, `bench joins`): a
//! crowd of chat members that read everything they are sent (and count it), and a
//! canary that measures its own round trips with `/msg SELF ping N` while reading
//! everything too. Both note when the server closes them: a member that keeps
//! reading and still gets closed is a collateral drop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::report::{self, Latency};
use super::{connect, IO_TIMEOUT};

/// Counters every member (and the canary) updates.
#[derive(Debug)]
pub struct Shared {
    start: Instant,
    /// Members that got `* welcome`.
    pub joined: AtomicU64,
    /// Members whose first line was an error (`! server full`, …).
    pub refused: AtomicU64,
    /// Members that could not connect, or were closed before any line.
    pub failed: AtomicU64,
    /// Members closed by the server after their welcome, while still reading.
    pub dropped: AtomicU64,
    /// Bytes all members received.
    pub bytes: AtomicU64,
    /// When anything (member or canary) last received bytes, in ms since `start`.
    last_ms: AtomicU64,
    /// Set when the workload ends: closes from then on are ours, not drops.
    ending: AtomicBool,
}

impl Shared {
    /// Fresh counters.
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            start: Instant::now(),
            joined: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            ending: AtomicBool::new(false),
        })
    }

    /// Notes that bytes arrived just now.
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long since any bytes arrived.
    pub fn silent_for(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Whether the workload is winding down (closes are no longer drops).
    pub fn is_ending(&self) -> bool {
        self.ending.load(Ordering::Relaxed)
    }

    /// Marks the end: from now on a close is not counted as a drop.
    pub fn end(&self) {
        self.ending.store(true, Ordering::Relaxed);
    }

    /// Members whose connection attempt is over (joined, refused or failed).
    pub fn settled(&self) -> u64 {
        self.joined.load(Ordering::Relaxed)
            + self.refused.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
    }
}

/// Join notices the canary (`#lobby`'s first member) gets for `joined` arrivals
/// from a server with `--quiet-joins-above quiet` (0: off): arrival k makes the
/// room k + 1 members, and a quiet server announces it only up to `quiet`.
pub fn announced(quiet: usize, joined: u64) -> u64 {
    match quiet {
        0 => joined,
        q => joined.min(q as u64 - 1),
    }
}

/// Waits until `ready()` holds and nothing has arrived for `quiet`; gives up after
/// `cap` (returns false then).
pub async fn settle(
    shared: &Shared,
    quiet: Duration,
    cap: Duration,
    ready: impl Fn() -> bool,
) -> bool {
    let until = Instant::now() + cap;
    loop {
        if ready() && shared.silent_for() >= quiet {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How members read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    /// Bytes per second each member reads at most, steadily (0: as fast as it can).
    pub rate: u64,
    /// SO_RCVBUF of each member's socket (0: the system's autotuned default); a small
    /// one keeps the kernel from hiding a growing backlog.
    pub rcvbuf: u32,
}

/// Waits until every queue has drained: nothing has arrived for `quiet`, and a
/// canary ping asked after that silence began came back with the silence unbroken
/// (a server busy with one huge batch is silent too, but does not answer). Gives up
/// after `cap` (returns false then). Leaves the canary probing: set its phase next.
pub async fn drain(shared: &Shared, canary: &Canary, quiet: Duration, cap: Duration) -> bool {
    let until = Instant::now() + cap;
    canary.phase.send_replace(Phase::Probe);
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        if !settle(shared, quiet, left, || true).await {
            return false;
        }
        let asked = canary.counts.answered.load(Ordering::Relaxed);
        while canary.counts.answered.load(Ordering::Relaxed) < asked + 2 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if shared.silent_for() >= quiet {
            return true;
        }
    }
    false
}

/// Spawns `n` members (at most `parallel` connecting at once), each in `#lobby`,
/// reading until the workload ends. Returns at once; watch `shared` for progress.
pub fn spawn_members(
    addr: SocketAddr,
    n: usize,
    parallel: usize,
    reading: Reading,
    shared: &Arc<Shared>,
) -> Vec<JoinHandle<()>> {
    let limit = Arc::new(Semaphore::new(parallel.max(1)));
    (0..n)
        .map(|_| {
            let (limit, shared) = (Arc::clone(&limit), Arc::clone(shared));
            tokio::spawn(async move {
                let permit = limit.acquire_owned().await;
                let Some(stream) = member_welcome(addr, reading.rcvbuf, &shared).await else {
                    return;
                };
                drop(permit);
                member_read(&stream, reading.rate, &shared).await;
            })
        })
        .collect()
}

/// Connects and reads the first line: `* welcome …` counts as joined (and returns
/// the stream), anything else as refused, no line at all as failed.
async fn member_welcome(addr: SocketAddr, rcvbuf: u32, shared: &Shared) -> Option<TcpStream> {
    let Ok(stream) = connect_with(addr, rcvbuf, 0).await else {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let mut first = Vec::new();
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let ready = tokio::time::timeout_at(deadline.into(), stream.readable()).await;
        if !matches!(ready, Ok(Ok(()))) {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mut buf = [0u8; 4096];
        match stream.try_read(&mut buf) {
            Ok(0) if !first.is_empty() => break,
            Ok(0) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Ok(n) => {
                shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
                shared.touch();
                first.extend_from_slice(&buf[..n]);
                if first.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
    }
    if first.starts_with(b"* welcome ") {
        shared.joined.fetch_add(1, Ordering::Relaxed);
        Some(stream)
    } else {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Connects with `TCP_NODELAY` and, where not 0, that SO_RCVBUF and SO_SNDBUF.
pub async fn connect_with(
    addr: SocketAddr,
    rcvbuf: u32,
    sndbuf: u32,
) -> std::io::Result<TcpStream> {
    if rcvbuf == 0 && sndbuf == 0 {
        return connect(addr).await;
    }
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if rcvbuf > 0 {
        socket.set_recv_buffer_size(rcvbuf)?;
    }
    if sndbuf > 0 {
        socket.set_send_buffer_size(sndbuf)?;
    }
    let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads (and counts) everything, at most `rate` bytes/s if not 0, until the server
/// closes the connection or the task is aborted. The buffer lives only between
/// awaits, so ten thousand idle members do not each hold one.
async fn member_read(stream: &TcpStream, rate: u64, shared: &Shared) {
    let start = Instant::now();
    let mut total = 0u64;
    // Paced reads take small bites, so the pace is steady rather than bursty.
    let bite = if rate == 0 {
        32 * 1024
    } else {
        (rate / 100).clamp(512, 32 * 1024) as usize
    };
    loop {
        if rate > 0 {
            let due = start + Duration::from_secs_f64(total as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        if stream.readable().await.is_err() {
            break;
        }
        let mut buf = [0u8; 32 * 1024];
        match stream.try_read(&mut buf[..bite]) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
                shared.touch();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    if !shared.is_ending() {
        shared.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the canary does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reads, but asks nothing.
    Idle,
    /// Asks a ping every pace and records the round trips.
    Measure,
    /// Asks a ping every pace, records nothing (see [`drain`]).
    Probe,
    /// Ends (once an outstanding ping is answered or has timed out).
    Done,
}

/// Counters the workload may look at while the canary runs.
#[derive(Debug, Default)]
pub struct CanaryCounts {
    /// `* guestN joined #lobby` notices seen.
    pub joins: AtomicU64,
    /// Lines from the attackers (nicks starting `atk`) seen.
    pub attack_lines: AtomicU64,
    /// Pings answered (in any phase).
    pub answered: AtomicU64,
    /// Bytes received.
    pub bytes: AtomicU64,
}

/// How the canary's run ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct CanaryEnd {
    /// Round trips recorded while measuring.
    pub latency: Latency,
    /// Pings not answered within the I/O timeout (30 s).
    pub timeouts: u64,
    /// The server closed the canary.
    pub dropped: bool,
}

/// A canary member of `#lobby`.
pub struct Canary {
    /// Set the phase here.
    pub phase: watch::Sender<Phase>,
    /// Live counters.
    pub counts: Arc<CanaryCounts>,
    task: JoinHandle<CanaryEnd>,
}

/// How long a ping may wait for its answer.
const PING_TIMEOUT: Duration = Duration::from_secs(30);

impl Canary {
    /// Connects (before everyone else, so its welcome is not behind a crowd), reads
    /// its welcome to learn its nick, and starts reading in the background.
    pub async fn start(
        addr: SocketAddr,
        pace: Duration,
        shared: &Arc<Shared>,
    ) -> Result<Canary, super::BenchError> {
        Canary::connect(addr, pace, shared)
            .await
            .map_err(|e| super::BenchError::NoConnection {
                addr,
                reason: e.to_string(),
            })
    }

    async fn connect(
        addr: SocketAddr,
        pace: Duration,
        shared: &Arc<Shared>,
    ) -> std::io::Result<Canary> {
        let stream = connect(addr).await?;
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let welcome = tokio::time::timeout(IO_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??
            .unwrap_or_default();
        let nick = welcome
            .strip_prefix("* welcome ")
            .and_then(|r| r.split(',').next())
            .map(str::to_owned)
            .ok_or_else(|| {
                std::io::Error::other(format!("not a chat server welcome: {welcome:?}"))
            })?;
        let (phase, rx) = watch::channel(Phase::Idle);
        let counts = Arc::new(CanaryCounts::default());
        let task = tokio::spawn(canary(
            lines,
            write,
            nick,
            pace,
            rx,
            Arc::clone(&counts),
            Arc::clone(shared),
        ));
        Ok(Canary {
            phase,
            counts,
            task,
        })
    }

    /// Ends the canary and returns its results.
    pub async fn finish(self) -> CanaryEnd {
        self.phase.send_replace(Phase::Done);
        self.task.await.unwrap_or_default()
    }
}

async fn canary(
    mut lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    nick: String,
    pace: Duration,
    mut phase_rx: watch::Receiver<Phase>,
    counts: Arc<CanaryCounts>,
    shared: Arc<Shared>,
) -> CanaryEnd {
    let mut hist: Histogram<u64> = report::histogram();
    let mut end = CanaryEnd::default();
    let mut phase = *phase_rx.borrow();
    let mut seq = 0u64;
    // The ping in flight: its number and when it was asked.
    let mut pending: Option<(u64, Instant)> = None;
    let mut next = Instant::now();
    let answer_prefix = format!("(pm) <{nick}> ping ");
    loop {
        if phase == Phase::Done && pending.is_none() {
            break;
        }
        let timeout_at =
            pending.map_or_else(|| Instant::now() + PING_TIMEOUT, |(_, t)| t + PING_TIMEOUT);
        tokio::select! {
            changed = phase_rx.changed(), if phase != Phase::Done => {
                phase = if changed.is_ok() { *phase_rx.borrow() } else { Phase::Done };
            }
            line = lines.next_line() => {
                let Ok(Some(line)) = line else {
                    end.dropped = !shared.is_ending();
                    break;
                };
                counts.bytes.fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
                if let Some(n) = line.strip_prefix(&answer_prefix) {
                    // Not activity: a probe's answer must not look like a queue draining.
                    if let Some((want, asked)) = pending {
                        if n.parse() == Ok(want) {
                            if phase == Phase::Measure {
                                report::record(&mut hist, asked.elapsed());
                            }
                            counts.answered.fetch_add(1, Ordering::Relaxed);
                            pending = None;
                        }
                    }
                    continue;
                }
                shared.touch();
                if line.starts_with("* atk") || line.starts_with("<atk") {
                    counts.attack_lines.fetch_add(1, Ordering::Relaxed);
                } else if line.starts_with("* guest") && line.ends_with(" joined #lobby") {
                    counts.joins.fetch_add(1, Ordering::Relaxed);
                }
            }
            () = tokio::time::sleep_until(next.into()), if matches!(phase, Phase::Measure | Phase::Probe) && pending.is_none() => {
                next = Instant::now() + pace;
                seq += 1;
                let ping = format!("/msg {nick} ping {seq}\n");
                if write.write_all(ping.as_bytes()).await.is_err() {
                    end.dropped = !shared.is_ending();
                    break;
                }
                pending = Some((seq, Instant::now()));
            }
            () = tokio::time::sleep_until(timeout_at.into()), if pending.is_some() => {
                end.timeouts += 1;
                pending = None;
            }
        }
    }
    end.latency = Latency::of(&hist);
    end
}
