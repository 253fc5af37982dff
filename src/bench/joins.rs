//! `bench joins`: the cost of arrivals (docs/abuse-bench.md). A canary joins
//! `#lobby` and pings itself with `/msg` while N more connections arrive there (each
//! arrival is a notice to everyone already in: N²/2 notices in all), all reading
//! everything. Reported: how long until every notice was delivered, the canary's
//! round trips meanwhile and, given `--server-pid`, the server's CPU time and
//! memory (peak and at the end).
//!
//! Against a server with quiet rooms (`chat-server --quiet-joins-above Q`), pass
//! the same `--quiet-joins-above Q`: the canary then waits only for the notices of
//! the arrivals that made `#lobby` at most Q members (Q − 1 of them; it is the
//! first), not for every one.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::crowd::{self, Canary, Phase, Shared};
use super::procfs::{self, ServerUse, ServerWatch};
use super::report::{Errors, Latency};
use super::{resolve, BenchError, Common, Stop};

/// `bench joins` arguments.
#[derive(Debug, clap::Args)]
pub struct JoinsArgs {
    /// Chat server address.
    #[arg(long, default_value = "127.0.0.1:12346")]
    pub addr: String,
    /// Connections arriving in `#lobby` (besides the canary).
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Most connections being made at once.
    #[arg(long, default_value_t = 64)]
    pub parallel: usize,
    /// Milliseconds between two canary pings.
    #[arg(long, default_value_t = 10)]
    pub pace_ms: u64,
    /// Longest wait, in seconds, for every arrival and notice.
    #[arg(long, default_value_t = 300.0)]
    pub cap: f64,
    /// The server's process id: report its CPU time and memory (Linux /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server's `--quiet-joins-above` (0 = off): expect a join notice only for
    /// arrivals that made `#lobby` at most this many members, canary included.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub quiet_joins_above: usize,
    /// Common options.
    #[command(flatten)]
    pub common: Common,
}

/// The result of `bench joins`.
#[derive(Debug, Serialize)]
struct JoinsReport {
    kind: &'static str,
    addr: SocketAddr,
    /// 1-minute load average of the machine when the run began.
    load1: Option<f64>,
    conns: usize,
    /// The server's quiet-room limit, as given (0: off).
    quiet_joins_above: usize,
    joined: u64,
    /// Refused with an error line (`! server full`, …).
    refused: u64,
    /// Could not connect, or closed before a line.
    failed: u64,
    /// Closed by the server after joining, while reading.
    dropped: u64,
    /// Seconds from the first connect until every notice had arrived.
    settle_s: f64,
    settled: bool,
    /// Bytes of notices the members received.
    bytes_out: u64,
    /// The canary's `/msg` round trips while the crowd arrived.
    canary: Latency,
    canary_timeouts: u64,
    canary_dropped: bool,
    server: ServerUse,
    interrupted: bool,
    errors: Errors,
}

impl std::fmt::Display for JoinsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "joins against {}: {}/{} joined ({} refused, {} failed, {} dropped) in {:.2} s{} (load {})",
            self.addr,
            self.joined,
            self.conns,
            self.refused,
            self.failed,
            self.dropped,
            self.settle_s,
            if self.settled { "" } else { " (gave up)" },
            self.load1.map_or("?".into(), |l| format!("{l:.2}"))
        )?;
        writeln!(f, "  notices: {:.1} MB", self.bytes_out as f64 / 1e6)?;
        if self.quiet_joins_above > 0 {
            writeln!(
                f,
                "  quiet:   rooms above {} members (notices expected for the first arrivals only)",
                self.quiet_joins_above
            )?;
        }
        writeln!(
            f,
            "  canary:  {} ({} timeouts{})",
            self.canary,
            self.canary_timeouts,
            if self.canary_dropped { ", dropped" } else { "" }
        )?;
        if self.server.rss_before_kib.is_some() {
            writeln!(f, "  server:  {}", self.server)?;
        }
        writeln!(f, "  errors:  {}", self.errors)?;
        if self.interrupted {
            writeln!(f, "  interrupted: partial results")?;
        }
        Ok(())
    }
}

/// Runs `bench joins`.
pub async fn run(args: JoinsArgs, stop: Stop) -> Result<(), BenchError> {
    let addr = resolve(&args.addr)?;
    let load1 = procfs::load1();
    let shared = Shared::new();
    let canary = Canary::start(addr, Duration::from_millis(args.pace_ms.max(1)), &shared).await?;
    let pid = args.server_pid;
    let watch = ServerWatch::start(pid);
    canary.phase.send_replace(Phase::Measure);
    let start = Instant::now();
    let members = crowd::spawn_members(
        addr,
        args.conns,
        args.parallel,
        crowd::Reading::default(),
        &shared,
    );
    let n = args.conns as u64;
    let announced = |joined: u64| crowd::announced(args.quiet_joins_above, joined);
    let settled = crowd::settle(
        &shared,
        Duration::from_millis(300),
        Duration::from_secs_f64(args.cap.clamp(1.0, 3600.0)),
        || {
            stop.is_set()
                || (shared.settled() >= n
                    && canary.counts.joins.load(Ordering::Relaxed)
                        >= announced(shared.joined.load(Ordering::Relaxed)))
        },
    )
    .await;
    let settle_s = start.elapsed().saturating_sub(Duration::from_millis(300));
    canary.phase.send_replace(Phase::Idle);
    let server = watch.finish();
    shared.end();
    let canary_end = canary.finish().await;
    for task in members {
        task.abort();
    }
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let report = JoinsReport {
        kind: "joins",
        addr,
        load1,
        conns: args.conns,
        quiet_joins_above: args.quiet_joins_above,
        joined: load(&shared.joined),
        refused: load(&shared.refused),
        failed: load(&shared.failed),
        dropped: load(&shared.dropped),
        settle_s: settle_s.as_secs_f64(),
        settled: settled && !stop.is_set(),
        bytes_out: load(&shared.bytes),
        canary: canary_end.latency,
        canary_timeouts: canary_end.timeouts,
        canary_dropped: canary_end.dropped,
        server,
        interrupted: stop.is_set(),
        errors: Errors {
            connect: load(&shared.failed),
            timeout: canary_end.timeouts,
            ..Errors::default()
        },
    };
    let mut problems = Vec::new();
    if report.joined == 0 && args.conns > 0 {
        problems.push("nobody could join".into());
    }
    let interrupted = report.interrupted.then(|| start.elapsed());
    super::finish(&report, args.common.json, &problems, interrupted)
}
