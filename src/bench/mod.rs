//! `echochat bench`: a load generator for echo and chat servers (ours or anyone's).
//!
//! * `bench echo` — `pingpong` (round-trip latency), `stream` (bulk throughput) and
//!   `conns` (pingpong over many connections: the same code as `pingpong`, only the
//!   defaults differ: 100 connections × 512 B). Every byte echoed is checked against
//!   a deterministic per-connection pattern.
//! * `bench chat` — N line-protocol clients in one room each send M timestamped
//!   lines, flat out or paced; every receiver measures delivery latency, order
//!   violations per sender and, at the end, lost lines.
//! * `bench idle` — opens and holds N connections and measures how long that took
//!   (and, with `--server-pid`, the server's memory per connection on Linux).
//! * `bench flood` — one or more clients flood a chat server (`x` lines, `/me`,
//!   `/nick`) while a canary measures its `/who` round trips: fair service.
//! * `bench room` — attackers (`/me`, `/nick`, `/join` hops, tiny lines) in a
//!   `#lobby` of M reading members: collateral drops, a canary's round trips,
//!   amplification, server memory. `bench joins` — N arrivals in `#lobby`: server
//!   CPU and memory, canary round trips (docs/abuse-bench.md).
//!
//! `bench echo` and `bench chat` also speak TLS (`--tls`, without checking the
//! server's certificate, or `--ca PEM`); the handshake is part of connecting, so it
//! happens before the measured window.
//!
//! Human summary on stdout, or one JSON object with `--json`; a progress bar on
//! stderr only when stdout is a terminal. This module is part of the binary, not of
//! the library: it is a client and uses none of the core.
//!
//! The exit code tells the truth: after the summary, a run that lost, corrupted or
//! reordered anything, saw an error or a timeout, or checked nothing at all ends
//! with one `echochat: bench: …` line and exit 1. SIGINT or SIGTERM (Ctrl-C) stops
//! a run early: it prints the partial summary, marked as interrupted, and exits 1;
//! a second signal exits at once (130).
//!
//! File descriptors: each connection costs one descriptor here (and one in the
//! server); `bench idle --conns 10000` needs `ulimit -n` above that. We do not raise
//! `RLIMIT_NOFILE` ourselves: the limit is 20000 on the machines this project runs
//! on, and an explicit `ulimit -n` is clearer than a silent change.

mod chat;
mod conn;
mod crowd;
mod echo;
mod flood;
mod idle;
mod joins;
mod pattern;
mod procfs;
mod report;
mod room;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use tokio::sync::watch;

/// `echochat bench …` arguments.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which benchmark to run.
    #[command(subcommand)]
    pub cmd: BenchCmd,
}

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Load an echo server: round trips (pingpong, conns) or bulk throughput (stream).
    Echo(echo::EchoArgs),
    /// Load a chat server: N clients in one room each send M timestamped lines.
    Chat(chat::ChatArgs),
    /// Open and hold N idle connections; measure connect time (and server memory).
    Idle(idle::IdleArgs),
    /// Flood a chat server from one or more clients; measure a canary's round trips.
    Flood(flood::FloodArgs),
    /// Attack a crowded room (/me, /nick, /join hops, tiny lines); collateral drops,
    /// canary round trips, amplification, server memory.
    Room(room::RoomArgs),
    /// N connections arrive in #lobby; server CPU and memory, canary round trips.
    Joins(joins::JoinsArgs),
}

/// Options every benchmark takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Print one JSON object (for scripts) instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Worker threads of the load generator's tokio runtime (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Why a benchmark could not run (errors of single connections are counted, not fatal).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The address did not resolve.
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        /// The address given.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The address resolved to nothing.
    #[error("{0} resolves to no address")]
    NoAddress(String),
    /// The tokio runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// Not a single connection could be made.
    #[error("could not connect to {addr}: {reason}")]
    NoConnection {
        /// The server address.
        addr: SocketAddr,
        /// The first failure seen.
        reason: String,
    },
    /// An argument is out of range.
    #[error("{0}")]
    BadArgument(String),
    /// The report could not be encoded.
    #[error("cannot encode the report: {0}")]
    Json(#[from] serde_json::Error),
    /// SIGINT/SIGTERM handlers could not be installed.
    #[error("cannot install the signal handler: {0}")]
    Signal(#[from] ctrlc::Error),
    /// The run finished, but what came back was wrong or incomplete (see the report).
    #[error("failed: {0}")]
    Failed(String),
    /// Stopped by SIGINT/SIGTERM; the partial report has been printed.
    #[error("interrupted after {0:.1} s (partial results above)")]
    Interrupted(f64),
}

/// Set by the first SIGINT or SIGTERM: benchmarks stop early and report what they have.
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Installs the signal handler (once per process). The first signal sets the
    /// flag; a second one exits at once with 130, for a run that does not wind down.
    fn install() -> Result<Stop, BenchError> {
        let (tx, rx) = watch::channel(false);
        ctrlc::set_handler(move || {
            if tx.send_replace(true) {
                std::process::exit(130);
            }
        })?;
        Ok(Stop(rx))
    }

    /// Whether a signal has arrived.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once a signal has arrived (never, if none does).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|&stop| stop).await.is_err() {
            // The handler (the only sender) is never dropped; just in case.
            std::future::pending::<()>().await;
        }
    }
}

/// What a report found wrong, as one line for the exit message (None: all good).
fn verdict(problems: &[String]) -> Option<String> {
    (!problems.is_empty()).then(|| problems.join(", "))
}

/// Prints the report, then turns its problems, or an interruption, into the error
/// that makes the exit code non-zero.
fn finish<R: serde::Serialize + std::fmt::Display>(
    report: &R,
    json: bool,
    problems: &[String],
    interrupted: Option<Duration>,
) -> Result<(), BenchError> {
    report::emit(report, json)?;
    if let Some(problems) = verdict(problems) {
        return Err(BenchError::Failed(problems));
    }
    match interrupted {
        Some(after) => Err(BenchError::Interrupted(after.as_secs_f64())),
        None => Ok(()),
    }
}

/// `1 thing`/`n things`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The problems every benchmark shares: connection-level errors, by kind.
fn error_problems(errors: &report::Errors, problems: &mut Vec<String>) {
    for (n, one, many) in [
        (errors.connect, "connect error", "connect errors"),
        (errors.mismatch, "mismatch", "mismatches"),
        (errors.disconnect, "disconnect", "disconnects"),
        (errors.timeout, "timeout", "timeouts"),
    ] {
        if n > 0 {
            problems.push(count(n, one, many));
        }
    }
}

/// Runs a benchmark; the error is printed as one line by `main`.
pub fn run(args: BenchArgs) -> Result<(), String> {
    run_inner(args).map_err(|e| format!("bench: {e}"))
}

fn run_inner(args: BenchArgs) -> Result<(), BenchError> {
    let common = match &args.cmd {
        BenchCmd::Echo(a) => a.common.clone(),
        BenchCmd::Chat(a) => a.common.clone(),
        BenchCmd::Idle(a) => a.common.clone(),
        BenchCmd::Flood(a) => a.common.clone(),
        BenchCmd::Room(a) => a.common.clone(),
        BenchCmd::Joins(a) => a.common.clone(),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = common.threads {
        builder.worker_threads(n.max(1));
    }
    let rt = builder.enable_all().build().map_err(BenchError::Runtime)?;
    // Before any connection: from the first connect on, Ctrl-C gets a summary.
    let stop = Stop::install()?;
    rt.block_on(async move {
        match args.cmd {
            BenchCmd::Echo(a) => echo::run(a, stop).await,
            BenchCmd::Chat(a) => chat::run(a, stop).await,
            BenchCmd::Idle(a) => idle::run(a, stop).await,
            BenchCmd::Flood(a) => flood::run(a, stop).await,
            BenchCmd::Room(a) => room::run(a, stop).await,
            BenchCmd::Joins(a) => joins::run(a, stop).await,
        }
    })
}

/// Resolves `HOST:PORT` to its first address.
fn resolve(addr: &str) -> Result<SocketAddr, BenchError> {
    addr.to_socket_addrs()
        .map_err(|source| BenchError::Resolve {
            addr: addr.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| BenchError::NoAddress(addr.to_owned()))
}

/// How long one read, write or connect may take before the connection counts as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `n` connection attempts (`attempt(i)`, each run once a slot is free), at
/// most `parallel` at once, and keeps those that worked, in order; failures are
/// counted in the returned [`Errors`]. Fails only if `n > 0` and none worked.
async fn connect_all<T, Fut>(
    addr: SocketAddr,
    n: usize,
    parallel: usize,
    attempt: impl Fn(usize) -> Fut,
) -> Result<(Vec<T>, report::Errors), BenchError>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<T>> + Send + 'static,
{
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let limit = std::sync::Arc::clone(&limit);
            let attempt = attempt(i);
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                attempt.await
            })
        })
        .collect();
    let mut connected = Vec::with_capacity(n);
    let mut errors = report::Errors::default();
    let mut first_error = None;
    for task in tasks {
        let failure = match task.await {
            Ok(Ok(conn)) => {
                connected.push(conn);
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        errors.connect += 1;
        first_error.get_or_insert(failure);
    }
    if connected.is_empty() && n > 0 {
        return Err(BenchError::NoConnection {
            addr,
            reason: first_error.unwrap_or_default(),
        });
    }
    Ok((connected, errors))
}

/// Connects with `TCP_NODELAY` (each request is sent whole and waited for: Nagle
/// would add a delayed-ACK wait to every round trip).
async fn connect(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}
