//! Shared reporting pieces: latency histograms, error counts, progress, output.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::BenchError;

/// A latency histogram in microseconds (1 µs to 1 h, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts: this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

/// Records a duration in whole microseconds (at least 1).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

/// Merges `from` into `into` (same bounds, so it cannot overflow).
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    let _ = into.add(from);
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Samples recorded.
    pub samples: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    /// Summarises `h`.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            samples: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs ({} samples)",
            self.p50_us, self.p99_us, self.p999_us, self.max_us, self.samples
        )
    }
}

/// Per-connection failures, counted rather than fatal.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Errors {
    /// Connections that could not be made.
    pub connect: u64,
    /// Bytes or lines that came back wrong.
    pub mismatch: u64,
    /// Connections closed or reset by the server while still expected to work.
    pub disconnect: u64,
    /// Reads or writes that took longer than the I/O timeout.
    pub timeout: u64,
}

impl Errors {
    /// Adds `other` in.
    pub fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.mismatch += other.mismatch;
        self.disconnect += other.disconnect;
        self.timeout += other.timeout;
    }

    /// All errors together.
    pub fn total(&self) -> u64 {
        self.connect + self.mismatch + self.disconnect + self.timeout
    }

    /// Counts an I/O failure (timeouts apart from the rest).
    pub fn io(&mut self, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::TimedOut {
            self.timeout += 1;
        } else {
            self.disconnect += 1;
        }
    }
}

impl std::fmt::Display for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (connect {}, mismatch {}, disconnect {}, timeout {})",
            self.total(),
            self.connect,
            self.mismatch,
            self.disconnect,
            self.timeout
        )
    }
}

/// A progress bar on stderr, shown only when stdout is a terminal and no JSON is
/// wanted; it follows a shared counter, updated by a background task.
pub struct Progress {
    /// The counter the workers bump.
    pub counter: Arc<AtomicU64>,
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// A bar counting up to `total` units named `unit`.
    pub fn new(json: bool, total: u64, unit: &str) -> Progress {
        let counter = Arc::new(AtomicU64::new(0));
        if json || !std::io::stdout().is_terminal() {
            return Progress {
                counter,
                bar: None,
                ticker: None,
            };
        }
        let bar = ProgressBar::new(total);
        let template = format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        let (c, b) = (Arc::clone(&counter), bar.clone());
        let ticker = tokio::spawn(async move {
            loop {
                b.set_position(c.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Progress {
            counter,
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// Prints the report: JSON (one line) or the human summary.
pub fn emit<R: Serialize + std::fmt::Display>(report: &R, json: bool) -> Result<(), BenchError> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// Megabytes (10^6 bytes) per second.
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}
