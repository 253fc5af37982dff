//! `bench echo`: pingpong / conns (round trips) and stream (bulk) against an echo server.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conn::{self, Conn, Tls, TlsArgs};
use super::pattern::{Pattern, MAX_CHUNK};
use super::report::{self, Errors, Latency, Progress};
use super::{connect_all, resolve, BenchError, Common, Stop, IO_TIMEOUT};

/// `bench echo` arguments.
#[derive(Debug, clap::Args)]
pub struct EchoArgs {
    /// Echo server address.
    #[arg(long, default_value = "127.0.0.1:12345")]
    pub addr: String,
    /// pingpong: send `size` bytes, wait for all of them back, repeat. stream: write
    /// continuously while a reader checks and counts the echo. conns: pingpong over
    /// many connections (defaults 100 × 512 B).
    #[arg(long, value_enum, default_value_t = Mode::Pingpong)]
    pub mode: Mode,
    /// Connections (default: 1, or 100 for `conns`).
    #[arg(long)]
    pub conns: Option<usize>,
    /// Bytes per request (pingpong, conns) or per write (stream), up to 65536
    /// (default: 64 for pingpong, 512 for conns, 65536 for stream).
    #[arg(long)]
    pub size: Option<usize>,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// TLS options.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Common options.
    #[command(flatten)]
    pub common: Common,
}

/// What `bench echo` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Round-trip latency of one request at a time per connection.
    Pingpong,
    /// Bulk throughput: writer and reader halves run concurrently.
    Stream,
    /// Pingpong over many connections at once.
    Conns,
}

/// The result of `bench echo`.
#[derive(Debug, Serialize)]
struct EchoReport {
    kind: &'static str,
    addr: SocketAddr,
    mode: Mode,
    /// Over TLS (`--tls`, `--ca`).
    tls: bool,
    conns: usize,
    connected: usize,
    size: usize,
    /// The measured window: `--duration`, or less if interrupted.
    duration_s: f64,
    /// Stopped early by SIGINT/SIGTERM.
    interrupted: bool,
    /// Round trips completed (pingpong, conns).
    requests: u64,
    requests_per_s: f64,
    /// Bytes echoed back and checked within the measured window.
    bytes: u64,
    mb_per_s: f64,
    latency: Latency,
    errors: Errors,
}

impl std::fmt::Display for EchoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "echo {:?} against {}{}: {}/{} connections × {} B for {:.1} s",
            self.mode,
            self.addr,
            if self.tls { " (TLS)" } else { "" },
            self.connected,
            self.conns,
            self.size,
            self.duration_s
        )?;
        if self.mode != Mode::Stream {
            writeln!(
                f,
                "  requests:  {} ({:.0}/s)",
                self.requests, self.requests_per_s
            )?;
            writeln!(f, "  latency:   {}", self.latency)?;
        }
        if self.bytes > 0 {
            writeln!(
                f,
                "  echoed:    {} bytes ({:.1} MB/s), every byte checked",
                self.bytes, self.mb_per_s
            )?;
        } else {
            writeln!(f, "  echoed:    nothing (no byte came back to check)")?;
        }
        writeln!(f, "  errors:    {}", self.errors)?;
        if self.interrupted {
            writeln!(
                f,
                "  interrupted after {:.1} s: partial results",
                self.duration_s
            )?;
        }
        Ok(())
    }
}

impl EchoReport {
    /// What went wrong, for the exit code: any error, or nothing echoed at all.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        super::error_problems(&self.errors, &mut problems);
        if self.bytes == 0 && !self.interrupted {
            problems.push("nothing was echoed".into());
        }
        problems
    }
}

/// What one connection did.
struct ConnResult {
    requests: u64,
    bytes: u64,
    hist: hdrhistogram::Histogram<u64>,
    errors: Errors,
}

impl ConnResult {
    fn new() -> ConnResult {
        ConnResult {
            requests: 0,
            bytes: 0,
            hist: report::histogram(),
            errors: Errors::default(),
        }
    }
}

pub async fn run(args: EchoArgs, stop: Stop) -> Result<(), BenchError> {
    let addr = resolve(&args.addr)?;
    let conns = args
        .conns
        .unwrap_or(if args.mode == Mode::Conns { 100 } else { 1 })
        .max(1);
    let size = args.size.unwrap_or(match args.mode {
        Mode::Pingpong => 64,
        Mode::Conns => 512,
        Mode::Stream => MAX_CHUNK,
    });
    if size == 0 || size > MAX_CHUNK {
        return Err(BenchError::BadArgument(format!(
            "--size must be 1..={MAX_CHUNK}"
        )));
    }
    if !(args.duration > 0.0 && args.duration < 1e6) {
        return Err(BenchError::BadArgument(
            "--duration must be positive".into(),
        ));
    }
    let duration = Duration::from_secs_f64(args.duration);
    let tls = Tls::from_args(&args.tls, &args.addr)?;

    // At most 256 connecting at once; fails only if none worked.
    let (streams, mut errors) = connect_all(addr, conns, 256, |i| {
        let tls = tls.clone();
        async move { conn::connect(addr, tls.as_ref()).await.map(|s| (i, s)) }
    })
    .await?;
    let connected = streams.len();
    log::info!(
        "bench echo: {connected}/{conns} connected to {addr}, running for {:.1} s",
        duration.as_secs_f64()
    );
    let progress = Progress::new(args.common.json, duration.as_secs().max(1), "s");
    let start = Instant::now();
    let deadline = start + duration;
    let ticker = {
        let c = Arc::clone(&progress.counter);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                c.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|(i, s)| {
            let pattern = Pattern::new(i as u64);
            let stop = stop.clone();
            match args.mode {
                Mode::Pingpong | Mode::Conns => {
                    tokio::spawn(pingpong(s, pattern, size, deadline, stop))
                }
                Mode::Stream => tokio::spawn(stream(s, pattern, size, deadline, stop)),
            }
        })
        .collect();
    let mut total = ConnResult::new();
    for t in tasks {
        match t.await {
            Ok(r) => {
                total.requests += r.requests;
                total.bytes += r.bytes;
                report::merge(&mut total.hist, &r.hist);
                errors.add(&r.errors);
            }
            Err(_) => errors.disconnect += 1,
        }
    }
    ticker.abort();
    progress.finish();
    // Requests are counted until the deadline (the last one may finish just after),
    // or until the signal that interrupted the run.
    let interrupted = stop.is_set();
    let elapsed = if interrupted {
        start.elapsed().min(duration).max(Duration::from_micros(1))
    } else {
        duration
    };
    let report = EchoReport {
        kind: "echo",
        addr,
        mode: args.mode,
        tls: tls.is_some(),
        conns,
        connected,
        size,
        duration_s: elapsed.as_secs_f64(),
        interrupted,
        requests: total.requests,
        requests_per_s: total.requests as f64 / elapsed.as_secs_f64(),
        bytes: total.bytes,
        mb_per_s: report::mb_per_s(total.bytes, elapsed),
        latency: Latency::of(&total.hist),
        errors,
    };
    let problems = report.problems();
    super::finish(
        &report,
        args.common.json,
        &problems,
        interrupted.then_some(elapsed),
    )
}

/// Runs `fut` with the I/O timeout, as an `io::Result`.
async fn timed<T>(
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(IO_TIMEOUT, fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))?
}

/// Reads `want.len()` bytes, checking each chunk as it arrives: `Ok(false)` at the
/// first wrong byte (say, a greeting from a server that is not an echo server),
/// without waiting for the rest.
async fn read_checked(s: &mut Conn, want: &[u8], buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < want.len() {
        let n = s.read(&mut buf[got..want.len()]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf[got..got + n] != want[got..got + n] {
            return Ok(false);
        }
        got += n;
    }
    Ok(true)
}

/// One request of `size` bytes at a time; each reply is checked and timed. A stop
/// signal abandons the request in flight (it is not counted).
async fn pingpong(
    mut s: Conn,
    pattern: Pattern,
    size: usize,
    deadline: Instant,
    stop: Stop,
) -> ConnResult {
    let mut r = ConnResult::new();
    let mut buf = vec![0u8; size];
    let mut offset = 0u64;
    while Instant::now() < deadline && !stop.is_set() {
        let sent_at = Instant::now();
        let want = pattern.at(offset, size);
        let io = async {
            s.write_all(want).await?;
            s.flush().await?;
            read_checked(&mut s, want, &mut buf).await
        };
        let outcome = tokio::select! {
            outcome = timed(io) => outcome,
            () = stop.wait() => return r,
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                r.errors.mismatch += 1;
                return r;
            }
            Err(e) => {
                r.errors.io(&e);
                return r;
            }
        }
        report::record(&mut r.hist, sent_at.elapsed());
        r.requests += 1;
        r.bytes += size as u64;
        offset += size as u64;
    }
    r
}

/// Writes `size`-byte chunks until the deadline, then half-closes; the reader checks
/// every byte until EOF and counts those that arrived before the deadline. A stop
/// signal ends both at once: what was checked so far counts, nothing more is owed.
async fn stream(
    s: Conn,
    pattern: Pattern,
    size: usize,
    deadline: Instant,
    stop: Stop,
) -> ConnResult {
    let pattern = Arc::new(pattern);
    let (mut rd, mut wr) = s.into_split();
    let writer = {
        let pattern = Arc::clone(&pattern);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while Instant::now() < deadline && !stop.is_set() {
                timed(wr.write_all(pattern.at(sent, size))).await?;
                sent += size as u64;
            }
            timed(wr.shutdown()).await?;
            Ok::<u64, std::io::Error>(sent)
        })
    };
    let mut r = ConnResult::new();
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut received = 0u64;
    loop {
        let read = tokio::select! {
            read = timed(rd.read(&mut buf)) => read,
            () = stop.wait() => {
                writer.abort();
                return r;
            }
        };
        match read {
            Ok(0) => break,
            Ok(n) => {
                if buf[..n] != *pattern.at(received, n) {
                    r.errors.mismatch += 1;
                    writer.abort();
                    return r;
                }
                received += n as u64;
                if Instant::now() <= deadline {
                    r.bytes += n as u64;
                }
            }
            Err(e) => {
                r.errors.io(&e);
                writer.abort();
                return r;
            }
        }
    }
    match writer.await {
        Ok(Ok(sent)) if sent == received => {}
        Ok(Ok(_)) => r.errors.disconnect += 1, // EOF before everything came back
        Ok(Err(e)) => r.errors.io(&e),
        Err(_) => r.errors.disconnect += 1,
    }
    r
}
