//! `bench chat`: N clients in one room each send M timestamped lines; every receiver
//! measures delivery latency, order per sender, and what never arrived.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use super::conn::{self, ReadHalf, Tls, TlsArgs, WriteHalf};
use super::report::{self, Errors, Latency, Progress};
use super::{connect_all, resolve, BenchError, Common, Stop, IO_TIMEOUT};

/// `bench chat` arguments.
#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Chat server address; several, comma-separated, spread the clients over the
    /// nodes of a cluster (client i connects to address i mod N).
    #[arg(long, default_value = "127.0.0.1:12346")]
    pub addr: String,
    /// Clients, all in the server's default room.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Lines each client sends.
    #[arg(long, default_value_t = 200)]
    pub msgs: u64,
    /// Bytes per line, newline included (at least the `bench …` header).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Lines per second per client (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds to wait for missing lines after the last one was sent.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// TLS options.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Common options.
    #[command(flatten)]
    pub common: Common,
}

/// The result of `bench chat`.
#[derive(Debug, Serialize)]
struct ChatReport {
    kind: &'static str,
    addr: SocketAddr,
    /// Servers the clients were spread over (`--addr A,B,…`).
    nodes: usize,
    /// Over TLS (`--tls`, `--ca`).
    tls: bool,
    clients: usize,
    connected: usize,
    msgs: u64,
    size: usize,
    rate: Option<f64>,
    /// Stopped early by SIGINT/SIGTERM (then `expected` counts only the lines sent).
    interrupted: bool,
    /// Deliveries expected: every line to every other connected client.
    expected: u64,
    delivered: u64,
    lost: u64,
    order_violations: u64,
    /// From the first line sent to the last one delivered.
    elapsed_s: f64,
    deliveries_per_s: f64,
    latency: Latency,
    /// `! ` lines received (the server rejected something).
    server_errors: u64,
    errors: Errors,
}

impl std::fmt::Display for ChatReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self
            .rate
            .map_or("flat out".to_owned(), |r| format!("{r}/s each"));
        writeln!(
            f,
            "chat against {}{}{}: {}/{} clients × {} lines × {} B, {rate}",
            self.addr,
            match self.nodes {
                1 => String::new(),
                n => format!(" and {} more nodes", n - 1),
            },
            if self.tls { " (TLS)" } else { "" },
            self.connected,
            self.clients,
            self.msgs,
            self.size
        )?;
        writeln!(
            f,
            "  delivered: {}/{} in {:.2} s ({:.0} deliveries/s)",
            self.delivered, self.expected, self.elapsed_s, self.deliveries_per_s
        )?;
        writeln!(f, "  latency:   {}", self.latency)?;
        writeln!(
            f,
            "  lost:      {}   order violations: {}",
            self.lost, self.order_violations
        )?;
        writeln!(
            f,
            "  errors:    {} (server `!` lines: {})",
            self.errors, self.server_errors
        )?;
        if self.interrupted {
            writeln!(f, "  interrupted: partial results")?;
        }
        Ok(())
    }
}

impl ChatReport {
    /// What went wrong, for the exit code: anything lost, reordered, refused by the
    /// server or failed, or (with clients to deliver to) nothing delivered at all.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.lost > 0 {
            problems.push(format!("{} lost", self.lost));
        }
        if self.order_violations > 0 {
            problems.push(super::count(
                self.order_violations,
                "order violation",
                "order violations",
            ));
        }
        if self.server_errors > 0 {
            problems.push(super::count(
                self.server_errors,
                "server `!` line",
                "server `!` lines",
            ));
        }
        super::error_problems(&self.errors, &mut problems);
        if self.delivered == 0 && problems.is_empty() && !self.interrupted {
            problems.push("nothing was delivered (one client has no one to talk to)".into());
        }
        problems
    }
}

/// What one receiver saw.
struct Received {
    delivered: u64,
    order_violations: u64,
    server_errors: u64,
    last_at: Option<Instant>,
    hist: hdrhistogram::Histogram<u64>,
    errors: Errors,
}

pub async fn run(args: ChatArgs, stop: Stop) -> Result<(), BenchError> {
    let addrs = args
        .addr
        .split(',')
        .map(|a| resolve(a.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let addr = addrs[0];
    let first_addr = args.addr.split(',').next().unwrap_or_default();
    let clients = args.clients.max(1);
    if matches!(args.rate, Some(r) if !(r > 0.0 && r.is_finite())) {
        return Err(BenchError::BadArgument("--rate must be positive".into()));
    }
    if !(args.drain >= 0.0 && args.drain < 1e6) {
        return Err(BenchError::BadArgument("--drain must be positive".into()));
    }

    // Connect everyone and wait for each one's first server line (the welcome): from
    // then on the client is in the room and will get every later broadcast.
    let tls = Tls::from_args(&args.tls, first_addr)?;
    let (conns, mut errors) = connect_all(addr, clients, 64, |i| {
        let tls = tls.clone();
        let addr = addrs[i % addrs.len()];
        async move {
            let (rd, wr) = conn::connect(addr, tls.as_ref()).await?.into_split();
            let mut rd = BufReader::with_capacity(64 * 1024, rd);
            let mut line = Vec::new();
            // A server without a greeting gets a short settle instead.
            let _ =
                tokio::time::timeout(Duration::from_secs(1), rd.read_until(b'\n', &mut line)).await;
            Ok((i, rd, wr))
        }
    })
    .await?;
    let connected = conns.len() as u64;
    let per_receiver = (connected - 1) * args.msgs;
    let expected = connected * per_receiver;
    log::info!(
        "bench chat: {connected}/{clients} connected to {addr}, sending {} lines each",
        args.msgs
    );
    let progress = Progress::new(args.common.json, expected, "deliveries");

    let origin = Instant::now();
    let (drain_tx, drain_rx) = watch::channel(None::<Instant>);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (i, rd, wr) in conns {
        let counter = Arc::clone(&progress.counter);
        readers.push(tokio::spawn(receive(
            rd,
            i,
            clients,
            per_receiver,
            origin,
            drain_rx.clone(),
            counter,
        )));
        writers.push(tokio::spawn(send(
            wr,
            i,
            args.msgs,
            args.size,
            args.rate,
            origin,
            stop.clone(),
        )));
    }
    let mut writers_back = Vec::new();
    let mut sent = 0;
    for w in writers {
        match w.await {
            Ok((n, Ok(wr))) => {
                sent += n;
                writers_back.push(wr);
            }
            Ok((n, Err(e))) => {
                sent += n;
                errors.io(&e);
            }
            Err(_) => errors.disconnect += 1,
        }
    }
    // Interrupted: what was sent is owed, and only a short drain is worth waiting.
    let interrupted = stop.is_set().then(|| origin.elapsed());
    let (expected, drain) = if interrupted.is_some() {
        (sent * (connected - 1), args.drain.min(1.0))
    } else {
        (expected, args.drain)
    };
    let _ = drain_tx.send(Some(Instant::now() + Duration::from_secs_f64(drain)));
    let mut hist = report::histogram();
    let (mut delivered, mut order_violations, mut server_errors) = (0, 0, 0);
    let mut last_at = origin;
    for r in readers {
        match r.await {
            Ok(r) => {
                delivered += r.delivered;
                order_violations += r.order_violations;
                server_errors += r.server_errors;
                last_at = last_at.max(r.last_at.unwrap_or(origin));
                report::merge(&mut hist, &r.hist);
                errors.add(&r.errors);
            }
            Err(_) => errors.disconnect += 1,
        }
    }
    drop(writers_back);
    progress.finish();
    let elapsed = last_at
        .saturating_duration_since(origin)
        .max(Duration::from_micros(1));
    let report = ChatReport {
        kind: "chat",
        addr,
        nodes: addrs.len(),
        tls: tls.is_some(),
        clients,
        connected: connected as usize,
        msgs: args.msgs,
        size: args.size,
        rate: args.rate,
        interrupted: interrupted.is_some(),
        expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        order_violations,
        elapsed_s: elapsed.as_secs_f64(),
        deliveries_per_s: delivered as f64 / elapsed.as_secs_f64(),
        latency: Latency::of(&hist),
        server_errors,
        errors,
    };
    let problems = report.problems();
    super::finish(&report, args.common.json, &problems, interrupted)
}

/// Sends `msgs` lines `bench <me> <seq> <send_time_ns> xxx…` of `size` bytes, or
/// fewer if a stop signal comes first; returns how many lines were written whole,
/// and the write half so the connection stays open until every receiver is done.
async fn send(
    mut wr: WriteHalf,
    me: usize,
    msgs: u64,
    size: usize,
    rate: Option<f64>,
    origin: Instant,
    stop: Stop,
) -> (u64, std::io::Result<WriteHalf>) {
    let mut ticks = rate.map(|r| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let mut line = Vec::with_capacity(size.max(64));
    let mut sent = 0;
    let result = async {
        for seq in 0..msgs {
            if let Some(t) = ticks.as_mut() {
                tokio::select! {
                    _ = t.tick() => {}
                    () = stop.wait() => break,
                }
            }
            if stop.is_set() {
                break;
            }
            line.clear();
            let now = origin.elapsed().as_nanos() as u64;
            line.extend_from_slice(format!("bench {me} {seq} {now} ").as_bytes());
            line.resize(line.len().max(size.saturating_sub(1)), b'x');
            line.push(b'\n');
            tokio::time::timeout(IO_TIMEOUT, wr.write_all(&line))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")
                })??;
            if ticks.is_some() {
                // Paced: a TLS line must not wait in rustls for the next one.
                tokio::time::timeout(IO_TIMEOUT, wr.flush())
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "flush timed out")
                    })??;
            }
            sent += 1;
        }
        // With TLS, what the last writes left in rustls (a no-op on plain TCP).
        tokio::time::timeout(IO_TIMEOUT, wr.flush())
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "flush timed out"))??;
        Ok(())
    }
    .await;
    (sent, result.map(|()| wr))
}

/// Reads lines until `expected` bench lines arrived, the server closes, or the drain
/// deadline (set once every sender is done) passes. Reads big chunks and splits
/// lines itself: a receiver handles `clients - 1` times more lines than a sender
/// writes, so it must be cheap, or the load generator becomes the slow consumer.
async fn receive(
    rd: BufReader<ReadHalf>,
    me: usize,
    clients: usize,
    expected: u64,
    origin: Instant,
    mut drain: watch::Receiver<Option<Instant>>,
    counter: Arc<std::sync::atomic::AtomicU64>,
) -> Received {
    let mut r = Received {
        delivered: 0,
        order_violations: 0,
        server_errors: 0,
        last_at: None,
        hist: report::histogram(),
        errors: Errors::default(),
    };
    let mut last_seq: Vec<Option<u64>> = vec![None; clients];
    let drained = async {
        let deadline = loop {
            if let Some(d) = *drain.borrow_and_update() {
                break d;
            }
            if drain.changed().await.is_err() {
                return;
            }
        };
        tokio::time::sleep_until(deadline.into()).await;
    };
    tokio::pin!(drained);
    let finder = memchr::memmem::Finder::new(b"bench ");
    // Bytes read but not yet split into lines (what the welcome read left over first).
    let mut buf: Vec<u8> = rd.buffer().to_vec();
    let mut rd = rd.into_inner();
    let mut done = 0usize;
    let mut first = true;
    while r.delivered < expected {
        if !first {
            buf.drain(..done);
            done = 0;
            let len = buf.len();
            if len > MAX_LINE {
                // No newline in a megabyte: not a line protocol.
                r.errors.mismatch += 1;
                break;
            }
            buf.resize(len + 128 * 1024, 0);
            let n = tokio::select! {
                n = rd.read(&mut buf[len..]) => n,
                _ = &mut drained => break,
            };
            match n {
                Ok(0) => {
                    r.errors.disconnect += 1;
                    break;
                }
                Ok(n) => buf.truncate(len + n),
                Err(e) => {
                    r.errors.io(&e);
                    break;
                }
            }
        }
        first = false;
        let now = origin.elapsed();
        let before = r.delivered;
        while let Some(end) = memchr::memchr(b'\n', &buf[done..]) {
            let line = &buf[done..done + end];
            done += end + 1;
            if line.starts_with(b"! ") {
                r.server_errors += 1;
                continue;
            }
            if line.starts_with(b"* ") {
                continue;
            }
            let Some(at) = finder.find(line) else {
                continue;
            };
            let Some((sender, seq, sent_ns)) = parse(&line[at + 6..]) else {
                r.errors.mismatch += 1;
                continue;
            };
            if sender >= clients || sender == me {
                r.errors.mismatch += 1;
                continue;
            }
            match last_seq[sender] {
                Some(last) if seq <= last => r.order_violations += 1,
                _ => last_seq[sender] = Some(seq),
            }
            report::record(
                &mut r.hist,
                now.saturating_sub(Duration::from_nanos(sent_ns)),
            );
            r.delivered += 1;
        }
        if r.delivered > before {
            r.last_at = Some(Instant::now());
            counter.fetch_add(r.delivered - before, Ordering::Relaxed);
        }
    }
    r
}

/// Longest line a receiver buffers before giving up on the connection.
const MAX_LINE: usize = 1024 * 1024;

/// `<sender> <seq> <send_time_ns> …` → the three numbers.
fn parse(rest: &[u8]) -> Option<(usize, u64, u64)> {
    let mut words = rest.split(|&b| b == b' ' || b == b'\r');
    let mut number = || -> Option<u64> {
        let w = words.next()?;
        if w.is_empty() || w.len() > 19 {
            return None;
        }
        w.iter().try_fold(0u64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
        })
    };
    let sender = usize::try_from(number()?).ok()?;
    Some((sender, number()?, number()?))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_the_bench_header_anywhere_in_a_line() {
        assert_eq!(parse(b"3 17 123456789 xxxx"), Some((3, 17, 123456789)));
        assert_eq!(parse(b"3 17 99\r"), Some((3, 17, 99)));
        assert_eq!(parse(b"3 x 99 "), None);
        assert_eq!(parse(b"3 17"), None);
        assert_eq!(
            parse(b"99999999999999999999 1 1 "),
            None,
            "overflow is rejected, not wrapped"
        );
    }
}
