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
//!
//! Human summary on stdout, or one JSON object with `--json`; a progress bar on
//! stderr only when stdout is a terminal. This module is part of the binary, not of
//! the library: it is a client and uses none of the core.
//!
//! File descriptors: each connection costs one descriptor here (and one in the
//! server); `bench idle --conns 10000` needs `ulimit -n` above that. We do not raise
//! `RLIMIT_NOFILE` ourselves: the limit is 20000 on the machines this project runs
//! on, and an explicit `ulimit -n` is clearer than a silent change.

mod chat;
mod echo;
mod idle;
mod pattern;
mod report;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

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
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = common.threads {
        builder.worker_threads(n.max(1));
    }
    let rt = builder.enable_all().build().map_err(BenchError::Runtime)?;
    rt.block_on(async move {
        match args.cmd {
            BenchCmd::Echo(a) => echo::run(a).await,
            BenchCmd::Chat(a) => chat::run(a).await,
            BenchCmd::Idle(a) => idle::run(a).await,
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
