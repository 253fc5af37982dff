//! `bench idle`: open and hold many connections; connect times and, given the
//! server's pid (Linux), its resident memory per held connection.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpStream;

use super::report::{self, Errors, Latency, Progress};
use super::{connect, connect_all, resolve, BenchError, Common, Stop};

/// `bench idle` arguments.
#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    /// Server address (echo or chat).
    #[arg(long, default_value = "127.0.0.1:12345")]
    pub addr: String,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// Most connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    pub parallel: usize,
    /// Seconds to hold every connection open once all are made.
    #[arg(long, default_value_t = 1.0)]
    pub hold: f64,
    /// The server's process id: report its VmRSS (from /proc) before and while holding.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Common options.
    #[command(flatten)]
    pub common: Common,
}

/// The result of `bench idle`.
#[derive(Debug, Serialize)]
struct IdleReport {
    kind: &'static str,
    addr: SocketAddr,
    conns: usize,
    connected: usize,
    /// Connections still open (not closed by the server) at the end of the hold.
    alive_after_hold: usize,
    connect_total_s: f64,
    connect_latency: Latency,
    /// How long every connection was held (less than `--hold` if interrupted).
    hold_s: f64,
    /// Stopped early by SIGINT/SIGTERM.
    interrupted: bool,
    server_rss_before_kib: Option<u64>,
    server_rss_held_kib: Option<u64>,
    server_bytes_per_conn: Option<f64>,
    errors: Errors,
}

impl std::fmt::Display for IdleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "idle against {}: {}/{} connected in {:.2} s, {} still open after {:.1} s",
            self.addr,
            self.connected,
            self.conns,
            self.connect_total_s,
            self.alive_after_hold,
            self.hold_s
        )?;
        writeln!(f, "  connect:   {}", self.connect_latency)?;
        if let (Some(before), Some(held)) = (self.server_rss_before_kib, self.server_rss_held_kib) {
            let per = self.server_bytes_per_conn.unwrap_or(0.0);
            writeln!(
                f,
                "  server:    VmRSS {before} KiB → {held} KiB ({per:.0} B per connection)"
            )?;
        }
        writeln!(f, "  errors:    {}", self.errors)?;
        if self.interrupted {
            writeln!(f, "  interrupted: partial results")?;
        }
        Ok(())
    }
}

/// VmRSS of `pid` in KiB, from /proc (None elsewhere or if it is gone).
fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub async fn run(args: IdleArgs, stop: Stop) -> Result<(), BenchError> {
    let addr = resolve(&args.addr)?;
    if !(args.hold >= 0.0 && args.hold < 1e6) {
        return Err(BenchError::BadArgument("--hold must be positive".into()));
    }
    let rss_before = args.server_pid.and_then(vm_rss_kib);
    let progress = Progress::new(args.common.json, args.conns as u64, "connections");
    let start = Instant::now();
    let counter = &progress.counter;
    let connected = connect_all(addr, args.conns, args.parallel, |_| {
        let counter = Arc::clone(counter);
        async move {
            let t = Instant::now();
            let s = connect(addr).await;
            counter.fetch_add(1, Ordering::Relaxed);
            s.map(|s| (s, t.elapsed()))
        }
    })
    .await;
    let connect_total = start.elapsed();
    progress.finish();
    let (conns, mut errors) = connected?;
    let mut hist = report::histogram();
    let mut streams: Vec<TcpStream> = Vec::with_capacity(conns.len());
    for (s, took) in conns {
        report::record(&mut hist, took);
        streams.push(s);
    }
    log::info!(
        "bench idle: {}/{} connected to {addr}, holding for {:.1} s",
        streams.len(),
        args.conns,
        args.hold
    );
    let held_from = Instant::now();
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs_f64(args.hold)) => {}
        () = stop.wait() => {}
    }
    let held = held_from.elapsed();
    let rss_held = args.server_pid.and_then(vm_rss_kib);
    // Still open? A pending read (would block) or data (a greeting) means yes; EOF or
    // an error means the server dropped it.
    let mut buf = [0u8; 4096];
    let alive = streams
        .iter()
        .filter(|s| match s.try_read(&mut buf) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        })
        .count();
    errors.disconnect += (streams.len() - alive) as u64;
    let connected = streams.len();
    drop(streams);
    let per_conn = match (rss_before, rss_held) {
        (Some(b), Some(h)) if connected > 0 => {
            Some(h.saturating_sub(b) as f64 * 1024.0 / connected as f64)
        }
        _ => None,
    };
    let report = IdleReport {
        kind: "idle",
        addr,
        conns: args.conns,
        connected,
        alive_after_hold: alive,
        connect_total_s: connect_total.as_secs_f64(),
        connect_latency: Latency::of(&hist),
        hold_s: held.as_secs_f64().min(args.hold),
        interrupted: stop.is_set(),
        server_rss_before_kib: rss_before,
        server_rss_held_kib: rss_held,
        server_bytes_per_conn: per_conn,
        errors,
    };
    let mut problems = Vec::new();
    super::error_problems(&report.errors, &mut problems);
    super::finish(
        &report,
        args.common.json,
        &problems,
        report.interrupted.then(|| start.elapsed()),
    )
}
