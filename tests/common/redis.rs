//! A real `redis-server` for the cluster tests: [`RedisServer::start`] runs one on a
//! free loopback port as a process of its own (no disk persistence) and waits until
//! it answers (`INFO`, with its own process id). [`RedisServer::kill`] (SIGKILL),
//! [`RedisServer::restart`] (same port), [`RedisServer::pause`] and
//! [`RedisServer::resume`] (SIGSTOP, SIGCONT) make it fail on purpose; dropping it
//! kills it by its PID.
//!
//! Tests that use it are `#[ignore = "needs redis-server"]` (README, "Quick start":
//! tests that need what not every machine has are reported ignored, never passed;
//! `.ci/run` installs `redis-server` and runs them with `--include-ignored`). Run
//! without one on the PATH, [`RedisServer::start`] panics saying so.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long `redis-server` may take to answer after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process on `127.0.0.1:port`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        // The port is free when looked at; another process may take it before
        // redis-server binds it: then another one is tried.
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            let mut server = RedisServer { child: None, port };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => failures.push(e),
            }
        }
        panic!("cannot start redis-server: {failures:?}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it if it runs, then starts it again on the same port (empty: no disk).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("cannot restart redis-server: {e}");
        }
    }

    /// SIGSTOP: the process stays, its sockets stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let status = Command::new("kill")
            .args([which, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {which} failed");
    }

    /// Runs `redis-server` on `self.port` until it answers; `Err` if it exits.
    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server is not on the PATH (install it: apt-get install redis-server)")
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        let child = self.child.insert(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + READY_TIMEOUT;
        // Ours answers, not one that another test started on the same port.
        while server_pid(addr) != Some(child.id()) {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited: {status}",
                    self.port
                ));
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within {READY_TIMEOUT:?}",
                self.port
            );
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL works on a SIGSTOPped process too.
        self.kill();
    }
}

/// The process id of the Redis answering at `addr` (`INFO server`), if one answers.
pub fn server_pid(addr: SocketAddr) -> Option<u32> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0; 4096];
    // A bulk string: `$LEN\r\n` then LEN bytes; the pid line is early in it.
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some(start) = text.find("process_id:") {
            let value = &text[start + "process_id:".len()..];
            if let Some(end) = value.find('\r') {
                return value[..end].parse().ok();
            }
        }
        if reply.len() > 1 << 16 {
            return None;
        }
    }
}
