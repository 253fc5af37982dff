//! Runs every library example (`examples/`, not the `ref_*` reference servers) as
//! its README says: started on port 0, it prints `listening on IP:PORT` first, serves
//! one round trip, and on Ctrl-C (SIGINT) or SIGTERM triggers its `Shutdown`
//! (connected chat users get `* server shutting down`) and exits 0.
//!
//! Examples have no `CARGO_BIN_EXE_*` variable: the binaries are cargo's, in
//! `target/<profile>/examples/` next to this test's `target/<profile>/deps/`. They are
//! (re)built once per run with this test's own features and profile (a no-op when
//! they are up to date), so a stale binary is never tested.
#![cfg(all(feature = "tokio", feature = "smol", feature = "threads"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long anything may take: the first line, a reply, the exit after a signal.
const DEADLINE: Duration = Duration::from_secs(10);

/// This test binary's features, passed on to `cargo build --examples` so the examples
/// link the very library this run built (same features, hence no second build).
fn features() -> String {
    let all = [
        ("std", cfg!(feature = "std")),
        ("driver", cfg!(feature = "driver")),
        ("net", cfg!(feature = "net")),
        ("threads", cfg!(feature = "threads")),
        ("tokio", cfg!(feature = "tokio")),
        ("smol", cfg!(feature = "smol")),
        ("fuzzing", cfg!(feature = "fuzzing")),
        ("sim", cfg!(feature = "sim")),
        ("tls", cfg!(feature = "tls")),
        ("cli", cfg!(feature = "cli")),
    ];
    let on: Vec<&str> = all.iter().filter(|(_, on)| *on).map(|(f, _)| *f).collect();
    on.join(",")
}

/// `target/<profile>/`: this test binary is `target/<profile>/deps/examples-HASH`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test binary's directory");
    deps.parent().expect("target/<profile>").to_path_buf()
}

/// Builds every example once per test run (serialised: tests run in parallel).
fn build_examples() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let result = BUILT.get_or_init(|| {
        let profile_dir = profile_dir();
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .unwrap_or("debug")
            .to_string();
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet", "--examples", "--manifest-path"]);
        cargo.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        cargo.args(["--no-default-features", "--features", &features()]);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cargo.arg("--release");
            }
            other => {
                cargo.args(["--profile", other]);
            }
        }
        let status = cargo
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build --examples failed: {status}"));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A running example, killed on drop (a failed assertion leaves no server behind).
struct Example {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    /// The first stdout line, as printed.
    first_line: String,
}

impl Example {
    /// Builds (once) and starts example `name` on port 0; waits for `listening on`.
    fn start(name: &'static str) -> Example {
        build_examples();
        let path = profile_dir().join("examples").join(name);
        assert!(
            path.exists(),
            "{} is missing after cargo build --examples",
            path.display()
        );
        let mut child = Command::new(&path)
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Reads every stdout line (so the pipe never fills); sends the first.
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            for _ in lines.map_while(Result::ok) {}
        });
        let mut example = Example {
            name,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            first_line: String::new(),
        };
        example.first_line = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("{name}: no stdout line within {DEADLINE:?}"));
        example.addr = example
            .first_line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{name}: first stdout line is not `listening on IP:PORT`: {:?}",
                    example.first_line
                )
            });
        assert_ne!(example.addr.port(), 0, "{name}: port 0 was not resolved");
        example
    }

    /// Sends `signal` (`INT`, `TERM`) with `kill`.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "{}: kill -{signal} failed", self.name);
    }

    /// Waits for the exit, at most `DEADLINE`.
    fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{}: still running {DEADLINE:?} after the signal",
                self.name
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and asserts a clean exit (status 0) within `DEADLINE`.
    fn stop_with(&mut self, signal: &str) {
        self.signal(signal);
        let status = self.wait();
        assert!(
            status.success(),
            "{}: exit status after SIG{signal}: {status}",
            self.name
        );
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A line-oriented TCP client with a read deadline.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let writer = TcpStream::connect(addr).expect("connect");
        writer.set_read_timeout(Some(DEADLINE)).unwrap();
        let reader = BufReader::new(writer.try_clone().unwrap());
        Client { reader, writer }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// The next line, without its line ending; panics on EOF or timeout.
    fn line(&mut self) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("EOF while waiting for a line"),
            Ok(_) => line.trim_end_matches(['\r', '\n']).to_string(),
            Err(e) => panic!("no line within {DEADLINE:?}: {e}"),
        }
    }

    /// Reads lines until one satisfies `want`; returns it.
    fn line_where(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!("EOF before {what}; got {seen:?}"),
                Ok(_) => {}
                Err(e) => panic!("no {what} within {DEADLINE:?} ({e}); got {seen:?}"),
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            if want(&line) {
                return line;
            }
            seen.push(line);
        }
    }

    /// Reads until EOF (or a reset), within the read deadline.
    fn read_to_close(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the connection was not closed within {DEADLINE:?}: {e}"),
        }
    }
}

/// Echo: bytes come back (over TCP, and over UDP on the same port if `udp`); then
/// `signal` stops the server with the TCP client still connected.
fn echo_example(name: &'static str, signal: &str, udp: bool) {
    let mut server = Example::start(name);
    let mut client = Client::connect(server.addr);
    client.send(b"hello, echo\n");
    assert_eq!(client.line(), "hello, echo", "{name}: echo");
    if udp {
        assert!(
            server.first_line.ends_with("(tcp and udp)"),
            "{name}: {:?}",
            server.first_line
        );
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        socket.send_to(b"ping", server.addr).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = socket.recv_from(&mut buf).expect("a UDP echo");
        assert_eq!((&buf[..n], from), (&b"ping"[..], server.addr), "{name}");
    }
    server.stop_with(signal);
    client.read_to_close();
}

/// Chat: two users get their welcome, one hears the other; on `signal` both are
/// told `* server shutting down` and the server exits 0.
fn chat_example(name: &'static str, signal: &str) {
    let mut server = Example::start(name);
    let mut alice = Client::connect(server.addr);
    let welcome = alice.line();
    assert!(welcome.starts_with("* welcome "), "{name}: {welcome:?}");
    let mut bob = Client::connect(server.addr);
    let welcome = bob.line();
    assert!(welcome.starts_with("* welcome "), "{name}: {welcome:?}");
    bob.send(b"hello from bob\n");
    alice.line_where("bob's message", |l| l.ends_with("> hello from bob"));
    server.signal(signal);
    for client in [&mut alice, &mut bob] {
        client.line_where("`* server shutting down`", |l| {
            l == "* server shutting down"
        });
    }
    let status = server.wait();
    assert!(
        status.success(),
        "{name}: exit status after SIG{signal}: {status}"
    );
    alice.read_to_close();
}

#[test]
fn echo_tokio_round_trip_then_sigint() {
    echo_example("echo_tokio", "INT", false);
}

#[test]
fn echo_tokio_sigterm() {
    echo_example("echo_tokio", "TERM", false);
}

#[test]
fn echo_smol_round_trip_then_sigint() {
    echo_example("echo_smol", "INT", true);
}

#[test]
fn chat_threads_round_trip_then_sigint() {
    chat_example("chat_threads", "INT");
}

#[test]
fn chat_threads_sigterm() {
    chat_example("chat_threads", "TERM");
}

#[test]
fn custom_runtime_round_trip_then_sigint() {
    chat_example("custom_runtime", "INT");
}
