//! The server's side of the abuse workloads, read from Linux's /proc given its pid:
//! resident memory (now and peak), CPU time, and the machine's load average. Every
//! reader answers None where /proc is missing or the process is gone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` still runs: present in /proc and not a zombie (exited, waiting for
/// its parent to reap it).
pub fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the first field after the command name's closing parenthesis.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// How long [`sigterm`] waits for the server to exit.
pub const EXIT_WAIT: Duration = Duration::from_secs(30);

/// Sends `pid` SIGTERM (with `kill`) and waits for it to exit: gone from /proc, or
/// a zombie waiting for its parent. Returns the seconds that took (`None`: it had
/// not exited after [`EXIT_WAIT`]).
pub async fn sigterm(pid: u32) -> Result<Option<f64>, super::BenchError> {
    let sent = std::time::Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status =
        kill.map_err(|e| super::BenchError::BadArgument(format!("cannot run kill: {e}")))?;
    if !status.success() {
        return Err(super::BenchError::BadArgument(format!(
            "kill -TERM {pid} failed: no such process?"
        )));
    }
    while sent.elapsed() < EXIT_WAIT {
        if !running(pid) {
            return Ok(Some(sent.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(None)
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// User + system CPU seconds `pid` has used (utime + stime of `/proc/PID/stat`, in
/// clock ticks of 1/100 s: USER_HZ is 100 on every Linux this project runs on).
pub fn cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After `)`: state (3rd field of the line) … utime is the 14th, stime the 15th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The 1-minute load average of the machine (`/proc/loadavg`).
pub fn load1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Samples a process's VmRSS every 20 ms in the background and keeps the largest
/// (VmHWM covers the whole life of the process; this covers only a window).
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl PeakRss {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> PeakRss {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !d.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        PeakRss { peak, done }
    }

    /// The largest VmRSS seen so far, in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// What the server's process looked like around a workload (all None without a pid).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ServerUse {
    /// VmRSS when the measured phase began.
    pub rss_before_kib: Option<u64>,
    /// Largest VmRSS sampled during the measured phase (and its drain).
    pub rss_peak_kib: Option<u64>,
    /// VmHWM at the end: the peak over the process's whole life.
    pub hwm_kib: Option<u64>,
    /// VmRSS once everything queued had been delivered.
    pub rss_after_kib: Option<u64>,
    /// CPU seconds (user + system) the server spent in the measured phase.
    pub cpu_s: Option<f64>,
}

/// Watches the server's process over a workload's measured phase: RSS and CPU time
/// at the start, peak RSS sampled meanwhile ([`PeakRss`]); [`finish`](Self::finish)
/// gives the [`ServerUse`]. Does nothing without a pid.
pub struct ServerWatch {
    pid: Option<u32>,
    rss_before_kib: Option<u64>,
    cpu_before: Option<f64>,
    peak: Option<PeakRss>,
}

impl ServerWatch {
    /// Starts watching `pid` (if given).
    pub fn start(pid: Option<u32>) -> ServerWatch {
        ServerWatch {
            pid,
            rss_before_kib: pid.and_then(rss_kib),
            cpu_before: pid.and_then(cpu_s),
            peak: pid.map(PeakRss::start),
        }
    }

    /// What the server used since [`start`](Self::start); stops the sampling.
    pub fn finish(self) -> ServerUse {
        let pid = self.pid;
        ServerUse {
            rss_before_kib: self.rss_before_kib,
            rss_peak_kib: self.peak.as_ref().map(PeakRss::peak_kib),
            hwm_kib: pid.and_then(|p| status_kib(p, "VmHWM")),
            rss_after_kib: pid.and_then(rss_kib),
            cpu_s: pid.and_then(cpu_s).zip(self.cpu_before).map(|(a, b)| a - b),
        }
    }
}

impl std::fmt::Display for ServerUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |k: Option<u64>| match k {
            Some(k) => format!("{:.1} MiB", k as f64 / 1024.0),
            None => "?".into(),
        };
        write!(
            f,
            "VmRSS {} → peak {} (VmHWM {}) → {} after; CPU {}",
            mib(self.rss_before_kib),
            mib(self.rss_peak_kib),
            mib(self.hwm_kib),
            mib(self.rss_after_kib),
            self.cpu_s.map_or("?".into(), |s| format!("{s:.2} s"))
        )
    }
}
