//! The conformance harness: start an echo or chat server on any transport, either
//! in-process through the library (`Via::Lib`) or as the built `echochat` binary
//! (`Via::Bin`), and talk to it with blocking std clients that have read timeouts.
//!
//! * [`Target::echo`] / [`Target::chat`] start a server on `127.0.0.1:0` and return
//!   a [`Server`] guard (with its `addr`) that stops it and waits for it on drop.
//! * [`conformance!`] instantiates a list of test functions `fn(Target)` for every
//!   transport compiled in; [`conformance_bin!`] does the same through the binary.
//! * [`ChatClient`] is a line client: `send_line`, `read_line`, `expect_line`.
//!
//! No sleeps as synchronisation: every wait is for an observable event with a
//! generous deadline ([`TIMEOUT`]).
#![allow(dead_code, unused_macros, unused_imports)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown as How, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use echochat::chat::ChatConfig;
use echochat::echo::EchoServerConfig;
use echochat::net::{Listener, ServeError, Shutdown};
use echochat::runtime::{serve_chat, serve_echo, RuntimeKind};

/// TLS servers and clients for the harness (`Target::tls`, `TlsClient`).
#[cfg(feature = "tls")]
pub mod tls;

/// A real `redis-server` on a free port, for the cluster tests.
pub mod redis;

/// The out-of-tree runtime (see `examples/custom_runtime/`).
#[path = "../../examples/custom_runtime/pool.rs"]
mod pool;

/// How long any single wait may take before the test fails (never a timing assertion).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to return after being stopped (grace period is 2 s).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A runtime transport: a built-in one, or the out-of-tree runtime of
/// `examples/custom_runtime/` plugged in through the public `Runtime` trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `echochat::threads`, `echochat::tokio` or `echochat::smol`.
    Kind(RuntimeKind),
    /// `examples/custom_runtime/pool.rs` (library only: the binary has no such runtime).
    Pool,
}

impl Transport {
    /// The `--runtime` value.
    pub fn name(self) -> String {
        match self {
            Transport::Kind(kind) => kind.to_string(),
            Transport::Pool => "pool".into(),
        }
    }
}

/// How the server is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// In-process, calling `run_echo`/`run_chat` on a thread.
    Lib,
    /// The `echochat` binary.
    Bin,
}

/// Which server a test talks to.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The runtime.
    pub transport: Transport,
    /// Library or binary.
    pub via: Via,
    /// Run the binary under `prlimit --nofile=N` (binary only).
    pub fd_limit: Option<u32>,
    /// Serve TLS (a self-signed certificate), alone or beside plaintext.
    pub tls: Option<TlsMode>,
}

/// Where a [`Target`] serves TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// On the one listener (`Server::addr`).
    Only,
    /// On a second listener (`--tls-addr`), plaintext on `Server::addr`.
    Beside,
}

enum Service {
    Echo {
        config: EchoServerConfig,
        udp: bool,
    },
    Chat(ChatConfig),
    /// A chat server that is one node of a cluster (bus URL, node configuration).
    #[cfg(feature = "cluster")]
    ChatNode(ChatConfig, String, echochat::chat::cluster::ClusterConfig),
}

impl Target {
    /// Through the library.
    pub fn lib(transport: Transport) -> Self {
        Target {
            transport,
            via: Via::Lib,
            fd_limit: None,
            tls: None,
        }
    }

    /// Through the binary.
    pub fn bin(transport: Transport) -> Self {
        Target {
            transport,
            via: Via::Bin,
            fd_limit: None,
            tls: None,
        }
    }

    /// The same target with at most `n` open files (binary only; needs `prlimit`).
    pub fn with_fd_limit(self, n: u32) -> Self {
        assert_eq!(self.via, Via::Bin, "an fd limit needs the binary");
        Target {
            fd_limit: Some(n),
            ..self
        }
    }

    /// Starts an echo server.
    pub fn echo(self, config: EchoServerConfig) -> Server {
        self.start(Service::Echo { config, udp: false })
    }

    /// Starts an echo server that also echoes UDP on the same port.
    pub fn echo_udp(self, config: EchoServerConfig) -> Server {
        self.start(Service::Echo { config, udp: true })
    }

    /// Starts a chat server.
    pub fn chat(self, config: ChatConfig) -> Server {
        self.start(Service::Chat(config))
    }

    /// Starts a chat server that is node `cluster.node` of the cluster on the bus at
    /// `url` (library only: `memory://NAME` links the servers of this process).
    #[cfg(feature = "cluster")]
    pub fn chat_node(
        self,
        config: ChatConfig,
        url: &str,
        cluster: echochat::chat::cluster::ClusterConfig,
    ) -> Server {
        self.start(Service::ChatNode(config, url.to_string(), cluster))
    }

    /// The same target serving TLS only (a self-signed certificate).
    pub fn tls(self) -> Self {
        Target {
            tls: Some(TlsMode::Only),
            ..self
        }
    }

    /// The same target serving plaintext on `addr` and TLS on a second listener.
    pub fn tls_beside(self) -> Self {
        Target {
            tls: Some(TlsMode::Beside),
            ..self
        }
    }

    fn start(self, service: Service) -> Server {
        match self.via {
            Via::Lib => start_lib(self.transport, service, self.tls),
            Via::Bin => start_bin(self.transport, service, self.fd_limit, self.tls),
        }
    }
}

/// A running server; stops it (and waits for it) on drop.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its TLS listener and certificate, when it serves TLS.
    #[cfg(feature = "tls")]
    pub tls: Option<tls::ServerTls>,
    backend: Backend,
    stopped: bool,
}

enum Backend {
    Lib {
        shutdown: Shutdown,
        done: mpsc::Receiver<Result<(), String>>,
        thread: Option<thread::JoinHandle<()>>,
    },
    Bin {
        child: std::process::Child,
        /// Copies the server's stderr to ours; returns whether it reported a panic.
        stderr: Option<thread::JoinHandle<bool>>,
    },
}

impl Server {
    /// A new client connection with [`TIMEOUT`] read/write timeouts.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to the server");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// Waits up to `timeout` for the server to return by itself (e.g. `--once`).
    /// `None`: still running; `Some(Err)`: it failed (or exited non-zero).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Result<(), String>> {
        let result = match &mut self.backend {
            Backend::Lib { done, thread, .. } => {
                let result = done.recv_timeout(timeout).ok()?;
                if let Some(thread) = thread.take() {
                    thread
                        .join()
                        .map_err(|_| "server thread panicked".to_string())
                        .ok()?;
                }
                result
            }
            Backend::Bin { child, stderr } => {
                let deadline = Instant::now() + timeout;
                let status = loop {
                    // Polling a child's exit status: no other portable wait-with-deadline.
                    if let Some(status) = child.try_wait().expect("child status") {
                        break status;
                    }
                    if Instant::now() >= deadline {
                        return None;
                    }
                    thread::sleep(Duration::from_millis(10));
                };
                // The pipe closes when the server exits: its whole stderr has been seen.
                let panicked = stderr.take().is_some_and(|t| t.join().unwrap_or(true));
                if panicked {
                    Err("the server panicked (see its stderr above)".to_string())
                } else if status.success() {
                    Ok(())
                } else {
                    Err(format!("server exited with {status}"))
                }
            }
        };
        self.stopped = true;
        Some(result)
    }

    /// Stops the server (triggers its `Shutdown`, or sends SIGTERM to the binary)
    /// and waits for it to return; panics if it takes longer than [`STOP_TIMEOUT`].
    pub fn stop(&mut self) -> Result<(), String> {
        if self.stopped {
            return Ok(());
        }
        match &mut self.backend {
            Backend::Lib { shutdown, .. } => shutdown.trigger(),
            Backend::Bin { child, .. } => {
                let status = std::process::Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .expect("run kill");
                assert!(status.success(), "kill -TERM failed");
            }
        }
        match self.wait_exit(STOP_TIMEOUT) {
            Some(result) => result,
            None => panic!("server did not stop within {STOP_TIMEOUT:?}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if let Backend::Bin { child, .. } = &mut self.backend {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        if let Backend::Lib { shutdown, .. } = &self.backend {
            shutdown.trigger();
        }
        let result = self.wait_exit(STOP_TIMEOUT);
        if !thread::panicking() {
            match result {
                Some(result) => result.expect("server failed"),
                None => panic!("server did not stop within {STOP_TIMEOUT:?}"),
            }
        }
    }
}

fn start_lib(transport: Transport, service: Service, tls_mode: Option<TlsMode>) -> Server {
    let udp = matches!(service, Service::Echo { udp: true, .. });
    let listener = Listener::bind("127.0.0.1:0", udp).expect("bind 127.0.0.1:0");
    #[cfg(feature = "cluster")]
    let (listener, service) = match service {
        Service::ChatNode(config, url, cluster) => {
            let link = echochat::bus::ClusterLink::connect(&url, cluster).expect("reach the bus");
            (listener.with_cluster(link), Service::Chat(config))
        }
        service => (listener, service),
    };
    let addr = listener.local_addr().unwrap();
    #[cfg(feature = "tls")]
    let (listener, tls) = tls::listen(listener, tls_mode);
    #[cfg(not(feature = "tls"))]
    assert!(tls_mode.is_none(), "TLS needs the `tls` feature");
    let shutdown = Shutdown::new();
    let (tx, done) = mpsc::channel();
    let signal = shutdown.clone();
    let thread = thread::Builder::new()
        .name(format!("server-{}", transport.name()))
        .spawn(move || {
            let result = run_lib(transport, service, listener, signal).map_err(|e| e.to_string());
            let _ = tx.send(result);
        })
        .unwrap();
    Server {
        addr,
        #[cfg(feature = "tls")]
        tls,
        backend: Backend::Lib {
            shutdown,
            done,
            thread: Some(thread),
        },
        stopped: false,
    }
}

fn run_lib(
    transport: Transport,
    service: Service,
    listener: Listener,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    match (transport, service) {
        (Transport::Kind(kind), Service::Echo { config, .. }) => {
            kind.serve_echo(listener, config, shutdown)
        }
        (Transport::Kind(kind), Service::Chat(config)) => {
            kind.serve_chat(listener, config, shutdown)
        }
        #[cfg(feature = "cluster")]
        (Transport::Kind(_), Service::ChatNode(..)) => unreachable!("made a Chat by start_lib"),
        (Transport::Pool, service) => {
            let rt = pool::PoolRuntime::new(2)?;
            futures_executor::block_on(async move {
                match service {
                    Service::Echo { config, .. } => {
                        serve_echo(rt, listener, config, shutdown).await
                    }
                    Service::Chat(config) => serve_chat(rt, listener, config, shutdown).await,
                    #[cfg(feature = "cluster")]
                    Service::ChatNode(..) => unreachable!("made a Chat by start_lib"),
                }
            })
        }
    }
}

#[cfg(feature = "cli")]
fn start_bin(
    transport: Transport,
    service: Service,
    fd_limit: Option<u32>,
    tls_mode: Option<TlsMode>,
) -> Server {
    use std::process::{Command, Stdio};
    let binary = env!("CARGO_BIN_EXE_echochat");
    let mut command = match fd_limit {
        Some(n) => {
            let mut command = Command::new("prlimit");
            command.arg(format!("--nofile={n}:{n}")).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    match service {
        Service::Echo { config, udp } => {
            command.arg("echo-server");
            command.args(["--max-pending", &config.conn.max_pending.to_string()]);
            if let Some(n) = config.max_conns {
                command.args(["--max-conns", &n.to_string()]);
            }
            let per_ip = config.max_conns_per_ip.unwrap_or(0);
            command.args(["--max-conns-per-ip", &per_ip.to_string()]);
            if !config.loopback_exempt {
                command.arg("--no-loopback-exempt");
            }
            if config.once {
                command.arg("--once");
            }
            if udp {
                command.arg("--udp");
            }
        }
        #[cfg(feature = "cluster")]
        Service::ChatNode(..) => panic!("cluster nodes of one process: library only"),
        Service::Chat(config) => {
            command.arg("chat-server");
            command.args(["--max-line", &config.max_line.to_string()]);
            command.args(["--send-queue", &config.send_queue.to_string()]);
            if let Some(idle) = config.idle_timeout {
                assert!(
                    idle.subsec_nanos() == 0 && idle.as_secs() > 0,
                    "the binary takes whole seconds"
                );
                command.args(["--idle-timeout", &idle.as_secs().to_string()]);
            }
            if let Some(n) = config.max_conns {
                command.args(["--max-conns", &n.to_string()]);
            }
            if let Some(rate) = config.flood_rate {
                command.args(["--flood-rate", &rate.to_string()]);
                command.args(["--flood-burst", &config.flood_burst.to_string()]);
            }
            let per_ip = config.max_conns_per_ip.unwrap_or(0);
            command.args(["--max-conns-per-ip", &per_ip.to_string()]);
            if !config.loopback_exempt {
                command.arg("--no-loopback-exempt");
            }
            if let Some(n) = config.quiet_joins_above {
                command.args(["--quiet-joins-above", &n.to_string()]);
            }
            assert_eq!(
                config.stall_timeout,
                ChatConfig::default().stall_timeout,
                "the binary has no flag for stall_timeout"
            );
        }
    }
    command.args(["--addr", "127.0.0.1:0", "--runtime", &transport.name()]);
    match tls_mode {
        Some(TlsMode::Only) => {
            command.arg("--tls-self-signed");
        }
        Some(TlsMode::Beside) => {
            command.args(["--tls-self-signed", "--tls-addr", "127.0.0.1:0"]);
        }
        None => {}
    }
    let (fingerprint_tx, fingerprint_rx) = mpsc::channel::<String>();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the echochat binary");
    let server_stderr = child.stderr.take().unwrap();
    let stderr = thread::spawn(move || {
        let mut panicked = false;
        for line in BufReader::new(server_stderr).lines() {
            let Ok(line) = line else { break };
            panicked |= line.contains("panicked");
            if let Some((_, fp)) = line.split_once("SHA-256 fingerprint ") {
                let _ = fingerprint_tx.send(fp.trim().to_string());
            }
            eprintln!("{line}");
        }
        panicked
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let lines = if tls_mode == Some(TlsMode::Beside) {
        2
    } else {
        1
    };
    thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        for _ in 0..lines {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
        }
    });
    let line = match rx.recv_timeout(TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("the binary printed no `listening on` line within {TIMEOUT:?}");
        }
    };
    let tls_only = tls_mode == Some(TlsMode::Only);
    let expected = if tls_only { " (tls)" } else { "" };
    let Some(addr) = line
        .trim_end()
        .strip_suffix(expected)
        .and_then(|l| l.strip_prefix("listening on "))
        .and_then(|a| a.parse().ok())
    else {
        let _ = child.kill();
        let status = child.wait();
        panic!("unexpected first stdout line {line:?} (exit: {status:?})");
    };
    #[cfg(feature = "tls")]
    let tls = tls_mode.map(|mode| {
        let addr = match mode {
            TlsMode::Only => addr,
            TlsMode::Beside => {
                let line = rx
                    .recv_timeout(TIMEOUT)
                    .expect("a second `listening on` line");
                line.trim_end()
                    .strip_prefix("listening on ")
                    .and_then(|l| l.strip_suffix(" (tls)"))
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected second stdout line {line:?}"))
            }
        };
        let fingerprint = fingerprint_rx
            .recv_timeout(TIMEOUT)
            .expect("the fingerprint line on stderr");
        tls::ServerTls::pinned(addr, fingerprint)
    });
    #[cfg(not(feature = "tls"))]
    let _ = fingerprint_rx;
    Server {
        addr,
        #[cfg(feature = "tls")]
        tls,
        backend: Backend::Bin {
            child,
            stderr: Some(stderr),
        },
        stopped: false,
    }
}

#[cfg(not(feature = "cli"))]
fn start_bin(_: Transport, _: Service, _: Option<u32>, _: Option<TlsMode>) -> Server {
    panic!("the binary needs the `cli` feature")
}

/// Whether `prlimit` (util-linux) can be run.
pub fn have_prlimit() -> bool {
    std::process::Command::new("prlimit")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Instantiates `fn name(Target)` tests for every transport compiled in, through
/// the library: `conformance!(round_trip, half_close);` makes
/// `threads::round_trip`, `tokio::round_trip`, `smol::round_trip` and
/// `pool::round_trip` (the out-of-tree runtime of `examples/custom_runtime/`).
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "threads")]
        mod threads {
            $( #[test] fn $test() { super::$test(crate::common::Target::lib(crate::common::Transport::Kind(echochat::runtime::RuntimeKind::Threads))) } )*
        }
        #[cfg(feature = "tokio")]
        mod tokio {
            $( #[test] fn $test() { super::$test(crate::common::Target::lib(crate::common::Transport::Kind(echochat::runtime::RuntimeKind::Tokio))) } )*
        }
        #[cfg(feature = "smol")]
        mod smol {
            $( #[test] fn $test() { super::$test(crate::common::Target::lib(crate::common::Transport::Kind(echochat::runtime::RuntimeKind::Smol))) } )*
        }
        mod pool {
            $( #[test] fn $test() { super::$test(crate::common::Target::lib(crate::common::Transport::Pool)) } )*
        }
    };
}

/// Like [`conformance!`], through the `echochat` binary (`bin_threads::…`, …).
macro_rules! conformance_bin {
    ($($test:ident),* $(,)?) => {
        #[cfg(all(feature = "cli", feature = "threads"))]
        mod bin_threads {
            $( #[test] fn $test() { super::$test(crate::common::Target::bin(crate::common::Transport::Kind(echochat::runtime::RuntimeKind::Threads))) } )*
        }
        #[cfg(feature = "cli")]
        mod bin_tokio {
            $( #[test] fn $test() { super::$test(crate::common::Target::bin(crate::common::Transport::Kind(echochat::runtime::RuntimeKind::Tokio))) } )*
        }
        #[cfg(all(feature = "cli", feature = "smol"))]
        mod bin_smol {
            $( #[test] fn $test() { super::$test(crate::common::Target::bin(crate::common::Transport::Kind(echochat::runtime::RuntimeKind::Smol))) } )*
        }
    };
}

pub(crate) use {conformance, conformance_bin};

/// The next line of `reader` without its `\n` (`None`: closed or failed). Panics
/// when nothing arrives within [`TIMEOUT`] (the stream's read timeout).
pub fn read_line_from(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => None,
        Ok(_) => Some(line.strip_suffix('\n').unwrap_or(&line).to_string()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            panic!("no line within {TIMEOUT:?} (partial: {line:?})")
        }
        Err(_) => None,
    }
}

/// A small deterministic PRNG (xorshift64*) for test data.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (any seed; 0 is remapped).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Reads until EOF (or a reset, which a closing server may cause); panics on timeout.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "connection not closed within {TIMEOUT:?} ({} bytes read)",
                    out.len()
                )
            }
            Err(_) => return out,
        }
    }
}

/// Whether the server closed this connection (EOF or reset) without sending
/// anything; panics if it stays open past the read timeout.
pub fn closed_at_once(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            panic!("connection still open after {TIMEOUT:?}")
        }
        Err(_) => true,
    }
}

/// Writes `data` and reads the same number of bytes back.
pub fn echo_once(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    stream.write_all(data).expect("write to echo server");
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).expect("read the echo back");
    back
}

/// A line-based chat client with a read timeout.
pub struct ChatClient {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// The nick from the welcome line (empty when connected with `connect_raw`).
    pub nick: String,
}

impl ChatClient {
    /// Connects and reads the welcome line (`* welcome guestN, K users online`).
    pub fn connect(server: &Server) -> Self {
        ChatClient::welcomed(server.connect())
    }

    /// Wraps a connected stream and reads the welcome line, as [`connect`](Self::connect).
    pub fn welcomed(stream: TcpStream) -> Self {
        let mut client = ChatClient::connect_raw(stream);
        let welcome = client.expect_line(|l| l.starts_with("* welcome "));
        client.nick = welcome["* welcome ".len()..]
            .split(',')
            .next()
            .unwrap_or_default()
            .to_string();
        client
    }

    /// Wraps a connected stream without reading anything.
    pub fn connect_raw(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        ChatClient {
            stream,
            reader,
            nick: String::new(),
        }
    }

    /// The socket, e.g. to shut it down.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends `line` plus `\n`.
    pub fn send_line(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("send a chat line");
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send chat bytes");
    }

    /// The next line without its `\n` (`None`: the server closed the connection).
    /// Panics when nothing arrives within [`TIMEOUT`].
    pub fn read_line(&mut self) -> Option<String> {
        read_line_from(&mut self.reader)
    }

    /// Reads lines until one matches `pred` and returns it; panics (listing what
    /// was skipped) on EOF or timeout.
    pub fn expect_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let mut skipped = Vec::new();
        loop {
            match self.read_line() {
                Some(line) if pred(&line) => return line,
                Some(line) => skipped.push(line),
                None => panic!("connection closed before the expected line; got {skipped:?}"),
            }
        }
    }

    /// Reads until the server closes the connection; returns the lines received.
    pub fn expect_close(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.read_line() {
            lines.push(line);
        }
        lines
    }

    /// Shuts down the sending side (EOF for the server).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(How::Write);
    }
}

impl ChatClient {
    /// The next line as raw bytes, without its `\n` (`None`: the server closed the
    /// connection). For checking exact bytes (e.g. that no ESC reached a client).
    /// Panics when nothing arrives within [`TIMEOUT`].
    pub fn read_raw_line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Some(line)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("no line within {TIMEOUT:?} (partial: {line:?})")
            }
            Err(_) => None,
        }
    }

    /// Closes the connection abruptly: `SO_LINGER` 0, then close, so the kernel
    /// sends a TCP reset (RST) instead of a FIN.
    pub fn reset(self) {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .expect("set SO_LINGER 0");
        drop(self);
    }
}
