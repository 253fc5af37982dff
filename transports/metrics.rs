//! Process-wide counters of every server in the process, and their Prometheus text
//! exposition (README, "Operations").
//!
//! The driver layer bumps plain atomics as it executes the cores' outputs (no lock,
//! no allocation on the hot path: one relaxed add per event or batch); [`render`]
//! writes them in the Prometheus text format (version 0.0.4), and [`serve`] answers
//! `GET /metrics` over HTTP/1.0 on a thread of its own (the CLI's `--metrics
//! HOST:PORT`). Requests are bounded (8 KiB, 2 s) and served one at a time: a
//! scraper that misbehaves only delays the next scrape.
//!
//! ```
//! let text = echochat::metrics::render();
//! assert!(text.contains("# TYPE echochat_connections_open gauge"));
//! assert!(text.contains("echochat_bytes_total{direction=\"in\"}"));
//! // Cluster bus traffic (`echochat_bus_up` too, once a server has a bus).
//! assert!(text.contains("echochat_bus_events_total{direction=\"out\"}"));
//! ```

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::chat::CloseReason;
use crate::net::Shutdown;

/// The counters (process-wide: every server in the process adds to them).
pub(crate) struct Metrics {
    pub(crate) open: AtomicI64,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) lines_in: AtomicU64,
    pub(crate) deliveries: AtomicU64,
    /// Cluster bus events received / actions submitted.
    pub(crate) bus_in: AtomicU64,
    pub(crate) bus_out: AtomicU64,
    /// -1: no bus in this process; 0: lost; 1: up.
    bus_up: AtomicI64,
    drops: [AtomicU64; DROP_REASONS.len()],
}

/// `drops_total{reason=…}` labels, in `CloseReason` order of [`drop_index`].
const DROP_REASONS: [&str; 7] = [
    "quit",
    "peer_closed",
    "reset",
    "send_queue_exceeded",
    "idle_timeout",
    "server_full",
    "shutdown",
];

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);

static METRICS: Metrics = Metrics {
    open: AtomicI64::new(0),
    accepted: AtomicU64::new(0),
    refused: AtomicU64::new(0),
    bytes_in: AtomicU64::new(0),
    bytes_out: AtomicU64::new(0),
    lines_in: AtomicU64::new(0),
    deliveries: AtomicU64::new(0),
    bus_in: AtomicU64::new(0),
    bus_out: AtomicU64::new(0),
    bus_up: AtomicI64::new(-1),
    drops: [ZERO; DROP_REASONS.len()],
};

/// The process's counters.
pub(crate) fn global() -> &'static Metrics {
    &METRICS
}

/// The label of a close reason (`other` for reasons newer than this list).
fn drop_index(reason: &CloseReason) -> Option<usize> {
    let name = match reason {
        CloseReason::Quit => "quit",
        CloseReason::PeerClosed => "peer_closed",
        CloseReason::Reset => "reset",
        CloseReason::SendQueueExceeded => "send_queue_exceeded",
        CloseReason::IdleTimeout => "idle_timeout",
        CloseReason::ServerFull => "server_full",
        CloseReason::Shutdown => "shutdown",
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    DROP_REASONS.iter().position(|&n| n == name)
}

impl Metrics {
    /// The cluster bus is up (or not).
    pub(crate) fn bus_up(&self, up: bool) {
        self.bus_up.store(i64::from(up), Ordering::Relaxed);
    }

    /// A cluster bus event arrived.
    pub(crate) fn bus_event(&self, event: &crate::cluster::BusEvent) {
        self.bus_in.fetch_add(1, Ordering::Relaxed);
        match event {
            crate::cluster::BusEvent::Lost => self.bus_up(false),
            crate::cluster::BusEvent::Restored => self.bus_up(true),
            _ => {}
        }
    }

    /// A connection was closed by the core for `reason`.
    pub(crate) fn closed(&self, reason: &CloseReason) {
        if let Some(i) = drop_index(reason) {
            self.drops[i].fetch_add(1, Ordering::Relaxed);
        }
        if matches!(reason, CloseReason::ServerFull) {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// When the process started serving metrics (for `echochat_uptime_seconds`).
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// The counters in the Prometheus text format.
pub fn render() -> String {
    let m = global();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "echochat_connections_open",
        "gauge",
        "Connections open now.",
        &[("", m.open.load(Ordering::Relaxed).max(0).to_string())],
    );
    metric(
        "echochat_connections_accepted_total",
        "counter",
        "Connections accepted.",
        &[("", get(&m.accepted).to_string())],
    );
    metric(
        "echochat_connections_refused_total",
        "counter",
        "Connections refused (server full).",
        &[("", get(&m.refused).to_string())],
    );
    metric(
        "echochat_bytes_total",
        "counter",
        "Bytes received from and written to clients.",
        &[
            ("{direction=\"in\"}", get(&m.bytes_in).to_string()),
            ("{direction=\"out\"}", get(&m.bytes_out).to_string()),
        ],
    );
    metric(
        "echochat_lines_in_total",
        "counter",
        "Chat lines received.",
        &[("", get(&m.lines_in).to_string())],
    );
    metric(
        "echochat_deliveries_total",
        "counter",
        "Chat outputs queued for a client (a broadcast counts once per recipient).",
        &[("", get(&m.deliveries).to_string())],
    );
    let drops: Vec<(String, String)> = DROP_REASONS
        .iter()
        .zip(&m.drops)
        .map(|(r, c)| (format!("{{reason=\"{r}\"}}"), get(c).to_string()))
        .collect();
    let drops: Vec<(&str, String)> = drops.iter().map(|(l, v)| (l.as_str(), v.clone())).collect();
    metric(
        "echochat_drops_total",
        "counter",
        "Chat connections closed by the server, by reason.",
        &drops,
    );
    metric(
        "echochat_bus_events_total",
        "counter",
        "Cluster bus events received (in) and actions submitted (out).",
        &[
            ("{direction=\"in\"}", get(&m.bus_in).to_string()),
            ("{direction=\"out\"}", get(&m.bus_out).to_string()),
        ],
    );
    let up = m.bus_up.load(Ordering::Relaxed);
    if up >= 0 {
        metric(
            "echochat_bus_up",
            "gauge",
            "1 if the cluster bus is connected, 0 if it is lost.",
            &[("", up.to_string())],
        );
    }
    let uptime = START.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    metric(
        "echochat_uptime_seconds",
        "gauge",
        "Seconds since metrics were first served.",
        &[("", format!("{uptime:.3}"))],
    );
    out
}

/// Largest request accepted.
const MAX_REQUEST: usize = 8 * 1024;
/// Longest a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `GET /metrics` on `listener` until `shutdown` is triggered, one request
/// at a time, on the calling thread (blocking). Other paths get 404.
pub fn serve(listener: TcpListener, shutdown: &Shutdown) -> io::Result<()> {
    START.get_or_init(Instant::now);
    listener.set_nonblocking(true)?;
    while !shutdown.is_triggered() {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Poll for the stop signal too: a scrape every few seconds is the load.
                shutdown.wait_timeout(Duration::from_millis(50));
                continue;
            }
            Err(e) => {
                log::debug!("metrics accept failed: {e}");
                shutdown.wait_timeout(Duration::from_millis(100));
                continue;
            }
        };
        if let Err(e) = answer(stream) {
            log::debug!("metrics request failed: {e}");
        }
    }
    Ok(())
}

/// Reads one request head (bounded) and answers it.
fn answer(mut stream: std::net::TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return respond(&mut stream, "431 Request Header Fields Too Large", "");
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    match (parts.next(), parts.next()) {
        (Some(b"GET"), Some(b"/metrics")) => respond(&mut stream, "200 OK", &render()),
        (Some(b"GET"), Some(_)) => respond(&mut stream, "404 Not Found", "not found\n"),
        _ => respond(&mut stream, "405 Method Not Allowed", ""),
    }
}

fn respond(stream: &mut std::net::TcpStream, status: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_metrics_and_404_then_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let server = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || serve(listener, &shutdown))
        };
        let get = |path: &str| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        };
        global().accepted.fetch_add(1, Ordering::Relaxed);
        let text = get("/metrics");
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\n\r\n# HELP echochat_connections_open "));
        assert!(text.contains("echochat_drops_total{reason=\"send_queue_exceeded\"} "));
        assert!(get("/other").starts_with("HTTP/1.0 404"));
        shutdown.trigger();
        server.join().unwrap().unwrap();
    }
}
