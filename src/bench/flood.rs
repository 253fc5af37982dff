//! `bench flood`: how a chat server serves others while one client floods it.
//!
//! Flooders send `x\n` (or `/me` lines, or `/nick` renames) as fast as the server
//! reads them, each alone in a room of its own unless `--same-room`; a canary in
//! `#lobby` meanwhile asks `/who` at a steady pace and measures each answer's round
//! trip. A fair server answers the canary in about the time it would without the
//! flood. Reported: canary latency percentiles and bytes the flooders got in.
//!
//! Two probes of what the flood must not delay (docs/PROTOCOL.md, "Fair service"):
//! with `--idle-timeout T` (the server's), a silent client connects with the flood
//! and the report gives when the server closed it (due at T); with `--sigterm
//! --server-pid PID`, the server gets SIGTERM when the flood window ends, the
//! flooders still flooding, and the report gives how long it took to exit.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::report::{self, Errors, Latency};
use super::{resolve, BenchError, Common, Stop, IO_TIMEOUT};

/// What the flooders send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Attack {
    /// `x\n` as fast as possible, alone in a room (no output at all).
    Lines,
    /// `/me` with 1,000-byte text into the canary's room (`--same-room`).
    Me,
    /// `/nick` renames, each one a notice to the room.
    Nick,
}

/// `bench flood` arguments.
#[derive(Debug, clap::Args)]
pub struct FloodArgs {
    /// Chat server address.
    #[arg(long, default_value = "127.0.0.1:12346")]
    pub addr: String,
    /// What the flooders send.
    #[arg(long, value_enum, default_value_t = Attack::Lines)]
    pub attack: Attack,
    /// Flooding clients.
    #[arg(long, default_value_t = 1)]
    pub flooders: usize,
    /// Seconds to flood (and measure).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Milliseconds between two canary questions.
    #[arg(long, default_value_t = 10)]
    pub pace_ms: u64,
    /// The server's `--idle-timeout` in seconds: a silent client connects with the
    /// flood; reported: when the server closed it (0: no silent client).
    #[arg(long, default_value_t = 0.0)]
    pub idle_timeout: f64,
    /// The server's process id, for `--sigterm`.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// When the flood window ends, send the server SIGTERM while the flooders go on,
    /// and report how long it took to exit (gives up after 30 s).
    #[arg(long, requires = "server_pid")]
    pub sigterm: bool,
    /// Common options.
    #[command(flatten)]
    pub common: Common,
}

/// The result of `bench flood`.
#[derive(Debug, Serialize)]
struct FloodReport {
    kind: &'static str,
    addr: SocketAddr,
    attack: Attack,
    flooders: usize,
    duration_s: f64,
    /// Round trips of the canary's `/who` during the flood.
    canary: Latency,
    /// The server's idle timeout the silent client was checked against.
    idle_timeout_s: Option<f64>,
    /// Whether SIGTERM was sent at the end of the window.
    sigterm: bool,
    /// Bytes the flooders managed to send (what the server read from them).
    flood_bytes: u64,
    /// Flooders the server closed during the run.
    flooders_closed: u64,
    /// `--idle-timeout`: seconds from the silent client's connect to its close by
    /// the server (`None`: not asked, or not closed within the run).
    idle_closed_after_s: Option<f64>,
    /// `--sigterm`: seconds from SIGTERM to the server's exit (`None`: not asked,
    /// or it had not exited after 30 s).
    exit_after_sigterm_s: Option<f64>,
    interrupted: bool,
    errors: Errors,
}

impl std::fmt::Display for FloodReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "flood ({:?} × {}) against {} for {:.1} s: {:.1} MB sent by the flooders, {} of them closed",
            self.attack,
            self.flooders,
            self.addr,
            self.duration_s,
            self.flood_bytes as f64 / 1e6,
            self.flooders_closed
        )?;
        writeln!(f, "  canary /who: {}", self.canary)?;
        if let Some(t) = self.idle_timeout_s {
            match self.idle_closed_after_s {
                Some(s) => writeln!(f, "  idle:        closed after {s:.2} s (timeout {t} s)")?,
                None => writeln!(
                    f,
                    "  idle:        not closed during the run (timeout {t} s)"
                )?,
            }
        }
        if self.sigterm {
            match self.exit_after_sigterm_s {
                Some(s) => writeln!(f, "  sigterm:     exited {s:.2} s after SIGTERM")?,
                None => writeln!(f, "  sigterm:     still running 30 s after SIGTERM")?,
            }
        }
        writeln!(f, "  errors:      {}", self.errors)?;
        if self.interrupted {
            writeln!(f, "  interrupted: partial results")?;
        }
        Ok(())
    }
}

/// One flooder: sends its attack until `until`; returns the bytes sent and
/// whether the server closed it.
async fn flood(addr: SocketAddr, attack: Attack, index: usize, until: Instant) -> (u64, bool) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return (0, true);
    };
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.split();
    let join = match attack {
        Attack::Lines => format!("/join flood{index}\n"),
        Attack::Me | Attack::Nick => String::new(),
    };
    if write.write_all(join.as_bytes()).await.is_err() {
        return (0, true);
    }
    let chunk: Vec<u8> = match attack {
        Attack::Lines => b"x\n".repeat(16 * 1024),
        Attack::Me => {
            let line = format!("/me {}\n", "y".repeat(1000));
            line.repeat(32).into_bytes()
        }
        Attack::Nick => (0..512)
            .map(|i| format!("/nick f{index}n{}\n", i % 2))
            .collect::<String>()
            .into_bytes(),
    };
    // Read (and drop) whatever the server sends, so the flooder is a good reader.
    let drain = async move {
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
    };
    let send = async {
        let mut sent = 0u64;
        while Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(200), write.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len() as u64,
                Ok(Err(_)) => return (sent, true),
                Err(_) => {} // the server is not reading us: it paused us, fine
            }
        }
        (sent, false)
    };
    tokio::select! {
        r = send => r,
        () = drain => (0, true),
    }
}

/// The silent client of `--idle-timeout`: connects, reads, never sends. Returns the
/// seconds until the server closed it (`None`: still open at `until`).
async fn silent(addr: SocketAddr, until: Instant) -> Option<f64> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let connected = Instant::now();
    let mut lines = BufReader::new(&mut stream).lines();
    let closed = tokio::time::timeout_at(until.into(), async {
        while let Ok(Some(_)) = lines.next_line().await {}
    })
    .await;
    closed.ok().map(|()| connected.elapsed().as_secs_f64())
}

/// Runs `bench flood`.
pub async fn run(args: FloodArgs, stop: Stop) -> Result<(), BenchError> {
    let addr = resolve(&args.addr)?;
    if args.flooders == 0 {
        return Err(BenchError::BadArgument(
            "--flooders must be at least 1".into(),
        ));
    }
    let mut errors = Errors::default();
    // The canary first, so its welcome is not behind the flood.
    let canary = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))
        .and_then(|r| r)
        .map_err(|e| BenchError::NoConnection {
            addr,
            reason: e.to_string(),
        })?;
    let _ = canary.set_nodelay(true);
    let (read, mut write) = canary.into_split();
    let mut lines = BufReader::new(read).lines();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.duration.max(0.1));
    // With --sigterm the flood goes on past the window, until the server is gone.
    let flood_until = if args.sigterm {
        until + super::procfs::EXIT_WAIT
    } else {
        until
    };
    let flooders: Vec<_> = (0..args.flooders)
        .map(|i| tokio::spawn(flood(addr, args.attack, i, flood_until)))
        .collect();
    let idle = (args.idle_timeout > 0.0).then(|| tokio::spawn(silent(addr, until)));
    let mut hist = report::histogram();
    let mut interrupted = false;
    let mut next = Instant::now();
    while Instant::now() < until {
        if stop.is_set() {
            interrupted = true;
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        next += Duration::from_millis(args.pace_ms.max(1));
        let asked = Instant::now();
        if write.write_all(b"/who\n").await.is_err() {
            errors.disconnect += 1;
            break;
        }
        // Skip notices (joins, renames, /me lines) until the answer.
        let answer = tokio::time::timeout(IO_TIMEOUT, async {
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l.starts_with("* in #") => return Ok(()),
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(()),
                    Err(_) => return Err(()),
                }
            }
        })
        .await;
        match answer {
            Ok(Ok(())) => report::record(&mut hist, asked.elapsed()),
            Ok(Err(())) => {
                errors.disconnect += 1;
                break;
            }
            Err(_) => {
                errors.timeout += 1;
                break;
            }
        }
    }
    let exit_after_sigterm_s = match (args.sigterm, args.server_pid) {
        (true, Some(pid)) => super::procfs::sigterm(pid).await?,
        _ => None,
    };
    let idle_closed_after_s = match idle {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };
    let (mut flood_bytes, mut closed) = (0, 0);
    for f in flooders {
        if let Ok((bytes, was_closed)) = f.await {
            flood_bytes += bytes;
            closed += u64::from(was_closed);
        }
    }
    let report = FloodReport {
        kind: "flood",
        addr,
        attack: args.attack,
        flooders: args.flooders,
        duration_s: start.elapsed().as_secs_f64(),
        canary: Latency::of(&hist),
        idle_timeout_s: (args.idle_timeout > 0.0).then_some(args.idle_timeout),
        sigterm: args.sigterm,
        flood_bytes,
        flooders_closed: closed,
        idle_closed_after_s,
        exit_after_sigterm_s,
        interrupted,
        errors,
    };
    let mut problems = Vec::new();
    super::error_problems(&report.errors, &mut problems);
    if args.sigterm && report.exit_after_sigterm_s.is_none() {
        problems.push("the server did not exit within 30 s of SIGTERM".into());
    }
    if report.canary.samples == 0 {
        problems.push("the canary got no answer".into());
    }
    let interrupted = interrupted.then(|| start.elapsed());
    super::finish(&report, args.common.json, &problems, interrupted)
}
