//! The `echochat` binary end to end (the README's command line), on every compiled-in runtime:
//! servers announce `listening on IP:PORT`, stop with exit 0 on SIGTERM/SIGINT,
//! fail with one clear line on busy addresses and with clap's usage errors (and
//! hints) on bad flags; our clients talk to our servers and to small Python
//! programs shipped in `tests/python/` (the socket calls of the classic tutorial
//! echochat started from), and vice versa; `bench` exits non-zero when what came
//! back was wrong.
//!
//! These tests need `python3` (on every machine this project runs on, and installed
//! by `.ci/run`): without it they fail with a clear message, they never pass unrun.
//!
//! Every wait is for an observable event (a line, an exit) with a generous deadline.
#![cfg(feature = "cli")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_echochat");
/// The project's own Python echo programs (see each file's header).
const PYTHON_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");
/// Generous: nothing here should take more than a fraction of it.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Harness: a child process with stdout lines on a channel and stderr collected.
// ---------------------------------------------------------------------------

/// A running process (killed on drop). Its stdout arrives line by line on a
/// channel; its stderr is collected for assertions and failure messages.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// How a process ended.
struct Finished {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_cmd(BIN, args, &[])
    }

    fn spawn_cmd(program: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let name = format!(
            "{} {}",
            Path::new(program)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(program),
            args.join(" ")
        );
        let mut child = Command::new(program)
            .args(args)
            .env_remove("RUST_LOG") // log levels are part of what is tested
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match out.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.strip_suffix('\n').unwrap_or(&text);
                        if tx.send(text.to_owned()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            let mut pipe = stderr_pipe;
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The next stdout line, within the deadline.
    fn next_line(&self, waiting_for: &str) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(e) => panic!(
                "{}: no line ({e:?}) while waiting for {waiting_for}; stderr: {}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// Skips stdout lines until one matches, within the deadline.
    fn wait_for_line(&self, waiting_for: &str, matches: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!(
                    "{}: {e:?} while waiting for {waiting_for}; saw {seen:?}; stderr: {}",
                    self.name,
                    self.stderr()
                ),
            }
        }
    }

    /// Waits until stderr contains `needle` (polled: stderr is collected, not split).
    fn wait_for_stderr(&self, needle: &str) {
        let end = Instant::now() + DEADLINE;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < end,
                "{}: no {needle:?} on stderr; stderr: {}",
                self.name,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .expect("write to child's stdin");
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the exit (within the deadline), then collects what is left of stdout and stderr.
    fn finish(mut self) -> Finished {
        let end = Instant::now() + DEADLINE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(10)),
                Ok(None) => panic!(
                    "{}: still running after {DEADLINE:?}; stderr: {}",
                    self.name,
                    self.stderr()
                ),
                Err(e) => panic!("{}: cannot wait: {e}", self.name),
            }
        };
        let mut stdout = Vec::new();
        loop {
            match self.lines.recv_timeout(DEADLINE) {
                Ok(line) => stdout.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: stdout still open after exit", self.name)
                }
            }
        }
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        Finished {
            status,
            stdout,
            stderr: self.stderr(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Finished {
    fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what}: {:?}; stdout {:?}; stderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert_no_panic(&self.stderr);
    }

    /// Non-zero exit with exactly one line on stderr, returned.
    fn assert_one_line_failure(&self, what: &str) -> String {
        assert!(
            !self.status.success(),
            "{what}: should fail; stdout {:?}",
            self.stdout
        );
        assert_no_panic(&self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "{what}: want one stderr line, got {:?}",
            self.stderr
        );
        assert!(lines[0].starts_with("echochat: "), "{what}: {:?}", lines[0]);
        lines[0].to_owned()
    }
}

impl Finished {
    /// A usage error as clap prints it: exit 2, nothing on stdout, and stderr
    /// starting with clap's one-line `error: …` (then its hints and usage).
    fn assert_usage_error(&self, what: &str) -> &str {
        assert_eq!(
            self.status.code(),
            Some(2),
            "{what}: {:?}; stderr: {}",
            self.status,
            self.stderr
        );
        assert!(self.stdout.is_empty(), "{what}: stdout {:?}", self.stdout);
        assert_no_panic(&self.stderr);
        assert!(
            self.stderr.starts_with("error: "),
            "{what}: not a clap error: {:?}",
            self.stderr
        );
        &self.stderr
    }
}

fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "panic in stderr: {stderr}"
    );
}

/// A server started on `127.0.0.1:0`, with the address it announced.
struct Server {
    proc: Proc,
    addr: SocketAddr,
}

impl Server {
    fn start(service: &str, runtime: &str, extra: &[&str]) -> Server {
        let mut args = vec![service, "--addr", "127.0.0.1:0", "--runtime", runtime];
        args.extend_from_slice(extra);
        Server::announced(Proc::spawn(&args))
    }

    /// A started server process, once it printed `listening on IP:PORT`.
    fn announced(proc: Proc) -> Server {
        let line = proc.next_line("the `listening on` line");
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("{}: bad announcement {line:?}", proc.name));
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(addr.port(), 0);
        Server { proc, addr }
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Sends `signal`, expects a clean exit 0 and no further stdout.
    fn stop_with(self, signal: &str) {
        self.proc.signal(signal);
        let done = self.proc.finish();
        done.assert_success(&format!("server after SIG{signal}"));
        assert!(
            done.stdout.is_empty(),
            "only one stdout line expected, then {:?}",
            done.stdout
        );
    }
}

/// A port that was free a moment ago (for programs that cannot bind port 0).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Starts `python3 tests/python/<script> args…`; fails the test, loudly, if there
/// is no `python3`.
fn python(script: &str, args: &[&str]) -> Proc {
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("this test needs python3: `python3 --version` failed: {out:?}"),
        Err(e) => panic!("this test needs python3 (apt-get install python3): {e}"),
    }
    let path = format!("{PYTHON_DIR}/{script}");
    let mut argv = vec!["-u", path.as_str()];
    argv.extend_from_slice(args);
    Proc::spawn_cmd("python3", &argv, &[("PYTHONIOENCODING", "utf-8")])
}

/// One of our Python echo servers on `127.0.0.1:0`, once it announced its port.
fn python_server(script: &str) -> Server {
    Server::announced(python(script, &["127.0.0.1", "0"]))
}

// ---------------------------------------------------------------------------
// Behaviour, written once per runtime.
// ---------------------------------------------------------------------------

fn echo_server_announces_and_stops_on_sigterm(runtime: &str) {
    let server = Server::start("echo-server", runtime, &[]);
    let mut conn = TcpStream::connect(server.addr).expect("connect to the announced address");
    conn.set_read_timeout(Some(DEADLINE)).expect("timeout");
    conn.write_all(b"ping\n").expect("write");
    let mut echo = [0; 5];
    conn.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"ping\n");
    server.stop_with("TERM");
}

fn chat_server_announces_and_stops_on_sigterm(runtime: &str) {
    Server::start("chat-server", runtime, &[]).stop_with("TERM");
}

fn servers_stop_on_sigint(runtime: &str) {
    Server::start("echo-server", runtime, &[]).stop_with("INT");
    Server::start("chat-server", runtime, &[]).stop_with("INT");
}

fn bad_flags_fail_with_a_usage_error(runtime: &str) {
    for args in [
        &["echo-server", "--runtime", runtime, "--bogus"][..],
        &["chat-server", "--runtime", runtime, "--max-line", "0"],
        &["echo-server", "--runtime", runtime, "--max-conns", "many"],
    ] {
        let done = Proc::spawn(args).finish();
        done.assert_usage_error(&args.join(" "));
    }
}

fn address_in_use_fails_with_one_line(runtime: &str) {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    for service in ["echo-server", "chat-server"] {
        let done = Proc::spawn(&[service, "--addr", &addr, "--runtime", runtime]).finish();
        let line = done.assert_one_line_failure(service);
        assert!(line.contains(&format!("cannot bind {addr}")), "{line}");
        assert!(done.stdout.is_empty(), "{:?}", done.stdout);
    }
}

fn once_serves_one_client_then_exits(runtime: &str) {
    let server = Server::start("echo-server", runtime, &["--once"]);
    let client = Proc::spawn(&[
        "echo-client",
        "--addr",
        &server.addr(),
        "--message",
        "just once",
    ])
    .finish();
    client.assert_success("echo-client");
    assert_eq!(client.stdout, ["just once"]);
    server
        .proc
        .finish()
        .assert_success("--once server after its client");
}

fn echo_client_message_mode(runtime: &str) {
    let server = Server::start("echo-server", runtime, &[]);
    for message in ["hello, echo", "unicode: 안녕하세요 ✓", ""] {
        let client = Proc::spawn(&[
            "echo-client",
            "--addr",
            &server.addr(),
            "--message",
            message,
        ])
        .finish();
        client.assert_success("echo-client --message");
        assert_eq!(client.stdout, [message]);
    }
    server.stop_with("TERM");
}

fn echo_client_stdin_mode(runtime: &str) {
    let server = Server::start("echo-server", runtime, &[]);
    let mut client = Proc::spawn(&["echo-client", "--addr", &server.addr()]);
    client.send("one\n");
    assert_eq!(client.next_line("echo of line one"), "one");
    client.send("two\nthree\nno newline at the end");
    client.close_stdin();
    let done = client.finish();
    done.assert_success("echo-client (stdin)");
    assert_eq!(done.stdout, ["two", "three", "no newline at the end"]);
    server.stop_with("TERM");
}

/// Far more than the server's 64 KiB pending limit and the socket buffers: the
/// client must read echoes while still sending, or both sides would stall.
fn echo_client_streams_large_input(runtime: &str) {
    let server = Server::start("echo-server", runtime, &["--max-pending", "4096"]);
    let mut client = Proc::spawn(&["echo-client", "--addr", &server.addr()]);
    let lines: Vec<String> = (0..20_000)
        .map(|i| format!("line {i:05} {}", "x".repeat(i % 200)))
        .collect();
    let mut stdin = client.stdin.take().expect("stdin");
    let input = lines.join("\n") + "\n";
    let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));
    let done = client.finish();
    writer.join().expect("writer thread").expect("feed stdin");
    done.assert_success("echo-client with 2 MB of lines");
    assert_eq!(done.stdout.len(), lines.len());
    assert!(done.stdout == lines, "echoed lines differ");
    server.stop_with("TERM");
}

fn echo_client_fails_when_the_server_refuses_it(runtime: &str) {
    let server = Server::start("echo-server", runtime, &["--max-conns", "1"]);
    // Take the only slot, and make sure the server counts it.
    let mut holder = TcpStream::connect(server.addr).expect("connect");
    holder.set_read_timeout(Some(DEADLINE)).expect("timeout");
    holder.write_all(b"mine").expect("write");
    let mut echo = [0; 4];
    holder.read_exact(&mut echo).expect("echo");
    let addr = server.addr();
    let message = Proc::spawn(&["echo-client", "--addr", &addr, "--message", "no room?"]);
    let mut lines = Proc::spawn(&["echo-client", "--addr", &addr]);
    lines.send("no room?\n");
    lines.close_stdin();
    for client in [message, lines] {
        let name = client.name.clone();
        let done = client.finish();
        let line = done.assert_one_line_failure(&name);
        assert_eq!(done.status.code(), Some(1), "{line}");
    }
    drop(holder);
    server.stop_with("TERM");
}

fn udp_flag_echoes_datagrams(runtime: &str) {
    let server = Server::start("echo-server", runtime, &["--udp"]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
    socket.send_to(b"datagram", server.addr).expect("send");
    let mut buf = [0; 64];
    let (n, from) = socket.recv_from(&mut buf).expect("udp echo");
    assert_eq!((&buf[..n], from), (&b"datagram"[..], server.addr));
    server.stop_with("TERM");
}

fn python_client_against_our_server(runtime: &str) {
    let server = Server::start("echo-server", runtime, &[]);
    let port = server.addr.port().to_string();
    let mut client = python("echo_client.py", &["127.0.0.1", &port]);
    client.send("hello from python, 안녕\n");
    client.close_stdin();
    let done = client.finish();
    done.assert_success("echo_client.py");
    assert_eq!(done.stdout, ["reply: hello from python, 안녕"]);
    server.stop_with("TERM");
}

fn chat_clients_talk(runtime: &str) {
    let server = Server::start("chat-server", runtime, &[]);
    let addr = server.addr();
    let mut bob = Proc::spawn(&["chat-client", "--addr", &addr]);
    bob.wait_for_line("bob's welcome", |l| l.starts_with("* welcome "));
    let mut alice = Proc::spawn(&["chat-client", "--addr", &addr, "--nick", "alice"]);
    bob.wait_for_line("alice's rename", |l| {
        l.starts_with("* ") && l.ends_with(" is now known as alice")
    });
    alice.send("hello bob\n");
    bob.wait_for_line("alice's message", |l| l == "<alice> hello bob");
    bob.send("hi alice\n");
    alice.wait_for_line("bob's message", |l| {
        l.starts_with("<guest") && l.ends_with("> hi alice")
    });
    alice.close_stdin();
    alice.finish().assert_success("alice after stdin ended");
    bob.wait_for_line("alice leaving", |l| l.starts_with("* alice left"));
    bob.close_stdin();
    bob.finish().assert_success("bob after stdin ended");
    server.stop_with("TERM");
}

fn chat_client_exits_when_server_stops(runtime: &str) {
    let server = Server::start("chat-server", runtime, &[]);
    let client = Proc::spawn(&["chat-client", "--addr", &server.addr()]);
    client.wait_for_line("the welcome", |l| l.starts_with("* welcome "));
    server.proc.signal("TERM");
    client.wait_for_line("the shutdown notice", |l| l == "* server shutting down");
    // Its stdin is still open: the server closing alone must end it, with 0.
    client
        .finish()
        .assert_success("chat-client after the server stopped");
    server
        .proc
        .finish()
        .assert_success("chat-server after SIGTERM");
}

fn chat_server_flags_reach_the_core(runtime: &str) {
    let server = Server::start(
        "chat-server",
        runtime,
        &["--max-conns", "1", "--max-line", "16"],
    );
    let mut first = Proc::spawn(&["chat-client", "--addr", &server.addr()]);
    first.wait_for_line("the welcome", |l| l.starts_with("* welcome "));
    first.send(&format!("{}\n", "y".repeat(17)));
    first.wait_for_line("the line limit", |l| l == "! line too long (max 16 bytes)");
    let second = Proc::spawn(&["chat-client", "--addr", &server.addr()]);
    second.wait_for_line("the refusal", |l| l == "! server full");
    second
        .finish()
        .assert_success("chat-client refused by a full server");
    first.close_stdin();
    first.finish().assert_success("first chat-client");
    server.stop_with("TERM");
}

macro_rules! on_every_runtime {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "threads")]
        mod on_threads {
            $(#[test] fn $test() { super::$test("threads") })*
        }
        #[cfg(feature = "tokio")]
        mod on_tokio {
            $(#[test] fn $test() { super::$test("tokio") })*
        }
        #[cfg(feature = "smol")]
        mod on_smol {
            $(#[test] fn $test() { super::$test("smol") })*
        }
    };
}

on_every_runtime!(
    metrics_move_and_connections_are_logged,
    echo_server_announces_and_stops_on_sigterm,
    chat_server_announces_and_stops_on_sigterm,
    servers_stop_on_sigint,
    bad_flags_fail_with_a_usage_error,
    address_in_use_fails_with_one_line,
    once_serves_one_client_then_exits,
    echo_client_message_mode,
    echo_client_stdin_mode,
    echo_client_streams_large_input,
    echo_client_fails_when_the_server_refuses_it,
    udp_flag_echoes_datagrams,
    python_client_against_our_server,
    chat_clients_talk,
    chat_client_exits_when_server_stops,
    chat_server_flags_reach_the_core,
);

// ---------------------------------------------------------------------------
// Runtime-independent behaviour.
// ---------------------------------------------------------------------------

#[test]
fn clients_report_a_server_that_is_down() {
    let addr = format!("127.0.0.1:{}", free_port());
    for args in [
        &["echo-client", "--addr", &addr, "--message", "anyone?"][..],
        &["echo-client", "--addr", &addr],
        &["chat-client", "--addr", &addr],
    ] {
        let done = Proc::spawn(args).finish();
        let line = done.assert_one_line_failure(&args.join(" "));
        assert_eq!(done.status.code(), Some(1), "{line}");
        assert!(
            line.starts_with(&format!("echochat: cannot connect to {addr}: ")),
            "{line}"
        );
    }
}

#[test]
fn our_client_against_the_python_server() {
    let server = python_server("echo_server.py");
    let client = Proc::spawn(&[
        "echo-client",
        "--addr",
        &server.addr(),
        "--message",
        "hello, python",
    ])
    .finish();
    client.assert_success("echo-client against echo_server.py");
    assert_eq!(client.stdout, ["hello, python"]);
    // It serves one client, then exits 0 by itself.
    server.proc.finish().assert_success("echo_server.py");
}

/// Two of our clients at once: the second is served while the first is still
/// connected, so the server really runs a thread per client. The server never
/// exits by itself: it is killed by PID when `server` is dropped.
#[test]
fn our_clients_against_the_threaded_python_server() {
    let server = python_server("threaded_echo_server.py");
    let addr = server.addr();
    let mut first = Proc::spawn(&["echo-client", "--addr", &addr]);
    first.send("first, still connected\n");
    assert_eq!(
        first.next_line("the first client's echo"),
        "first, still connected"
    );
    let second = Proc::spawn(&["echo-client", "--addr", &addr, "--message", "second"]).finish();
    second.assert_success("echo-client while another one is connected");
    assert_eq!(second.stdout, ["second"]);
    first.send("first again\n");
    first.close_stdin();
    let done = first.finish();
    done.assert_success("first echo-client");
    assert_eq!(done.stdout, ["first again"]);
    let bench = Proc::spawn(&[
        "bench",
        "echo",
        "--addr",
        &addr,
        "--conns",
        "3",
        "--duration",
        "0.3",
    ])
    .finish();
    bench.assert_success("bench echo against threaded_echo_server.py");
    assert!(
        bench
            .stdout
            .iter()
            .any(|l| l.contains("every byte checked")),
        "{:?}",
        bench.stdout
    );
    drop(server);
}

#[test]
fn usage_errors_keep_clap_hints() {
    for (args, hints) in [
        (
            &["chat-server", "--runtime", "tokyo"][..],
            &[
                "invalid value 'tokyo'",
                "[possible values: threads, tokio, smol]",
            ][..],
        ),
        (
            &["chat-server", "--max-con", "5"],
            &["'--max-con'", "a similar argument exists: '--max-conns'"],
        ),
        (
            &["chat-sever"],
            &["'chat-sever'", "similar subcommand", "'chat-server'"],
        ),
    ] {
        let what = args.join(" ");
        let done = Proc::spawn(args).finish();
        let stderr = done.assert_usage_error(&what);
        for hint in hints {
            assert!(stderr.contains(hint), "{what}: no {hint:?} in {stderr:?}");
        }
    }
}

#[test]
fn help_and_version_succeed() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["echo-server", "--help"],
        &["chat-client", "--help"],
    ] {
        let done = Proc::spawn(args).finish();
        done.assert_success(&args.join(" "));
        assert!(!done.stdout.is_empty());
    }
}

#[test]
fn runtimes_not_compiled_in_are_a_clear_error() {
    for (runtime, compiled) in [
        ("threads", cfg!(feature = "threads")),
        ("smol", cfg!(feature = "smol")),
    ] {
        if compiled {
            continue;
        }
        let done =
            Proc::spawn(&["echo-server", "--addr", "127.0.0.1:0", "--runtime", runtime]).finish();
        let line = done.assert_one_line_failure(runtime);
        assert!(
            line.contains(&format!("runtime `{runtime}` is not compiled")),
            "{line}"
        );
    }
}

#[test]
fn logs_go_to_stderr_and_verbose_raises_the_level() {
    let server = Server::start("echo-server", "tokio", &["-v"]);
    server.proc.signal("TERM");
    let done = server.proc.finish();
    done.assert_success("echo-server -v");
    assert!(
        done.stdout.is_empty(),
        "stdout after the announcement: {:?}",
        done.stdout
    );
    assert!(
        done.stderr.contains("INFO"),
        "no info logs with -v: {:?}",
        done.stderr
    );

    let quiet = Server::start("echo-server", "tokio", &[]);
    quiet.proc.signal("TERM");
    let done = quiet.proc.finish();
    done.assert_success("echo-server");
    assert!(
        !done.stderr.contains("INFO"),
        "info logs without -v: {:?}",
        done.stderr
    );
}

// ---------------------------------------------------------------------------
// `bench`: its exit code says whether what came back was right.
// ---------------------------------------------------------------------------

/// Runs `echochat bench args…` to its end.
fn bench(args: &[&str]) -> Finished {
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    Proc::spawn(&argv).finish()
}

/// A failed bench run: the summary on stdout, then one `echochat: bench: …` line.
fn assert_bench_failed(done: &Finished, what: &str) -> String {
    assert!(!done.stdout.is_empty(), "{what}: no summary");
    let line = done.assert_one_line_failure(what);
    assert_eq!(done.status.code(), Some(1), "{line}");
    assert!(line.starts_with("echochat: bench: "), "{line}");
    line
}

#[test]
fn bench_passes_against_the_right_servers() {
    let echo = Server::start("echo-server", "tokio", &[]);
    for mode in ["pingpong", "stream"] {
        let done = bench(&[
            "echo",
            "--addr",
            &echo.addr(),
            "--mode",
            mode,
            "--duration",
            "0.3",
        ]);
        done.assert_success(&format!("bench echo --mode {mode}"));
        assert!(
            done.stdout.iter().any(|l| l.contains("every byte checked")),
            "{:?}",
            done.stdout
        );
    }
    let done = bench(&[
        "idle",
        "--addr",
        &echo.addr(),
        "--conns",
        "5",
        "--hold",
        "0",
    ]);
    done.assert_success("bench idle");
    echo.stop_with("TERM");

    let chat = Server::start("chat-server", "tokio", &[]);
    let done = bench(&[
        "chat",
        "--addr",
        &chat.addr(),
        "--clients",
        "3",
        "--msgs",
        "10",
    ]);
    done.assert_success("bench chat");
    assert!(
        done.stdout.iter().any(|l| l.contains("delivered: 60/60")),
        "{:?}",
        done.stdout
    );
    chat.stop_with("TERM");
}

/// Every line comes back to its own sender and reaches no one else: lost and
/// wrong, so the run fails.
#[test]
fn bench_chat_against_an_echo_server_fails() {
    let server = Server::start("echo-server", "tokio", &[]);
    let done = bench(&[
        "chat",
        "--addr",
        &server.addr(),
        "--clients",
        "2",
        "--msgs",
        "5",
        "--drain",
        "0.2",
    ]);
    let line = assert_bench_failed(&done, "bench chat against echo-server");
    assert!(line.contains("10 lost"), "{line}");
    assert!(
        done.stdout.iter().any(|l| l.contains("lost:      10")),
        "{:?}",
        done.stdout
    );
    server.stop_with("TERM");
}

/// The chat server's welcome is not the echo of anything: a mismatch at once,
/// nothing echoed, and no claim that any byte was checked.
#[test]
fn bench_echo_against_a_chat_server_fails() {
    let server = Server::start("chat-server", "tokio", &[]);
    for mode in ["pingpong", "stream"] {
        let what = format!("bench echo --mode {mode} against chat-server");
        let done = bench(&[
            "echo",
            "--addr",
            &server.addr(),
            "--mode",
            mode,
            "--duration",
            "0.3",
        ]);
        let line = assert_bench_failed(&done, &what);
        assert!(line.contains("mismatch"), "{what}: {line}");
        assert!(
            !done.stdout.iter().any(|l| l.contains("every byte checked")),
            "{what}: {:?}",
            done.stdout
        );
    }
    server.stop_with("TERM");
}

/// SIGINT (Ctrl-C) in the middle of a long run: the partial summary is printed,
/// marked as interrupted, and the exit code is non-zero.
#[test]
fn bench_prints_a_partial_summary_on_ctrl_c() {
    let server = Server::start("echo-server", "tokio", &[]);
    let run = Proc::spawn(&[
        "bench",
        "echo",
        "--addr",
        &server.addr(),
        "--duration",
        "600",
        "-v",
    ]);
    // Logged once connected, after the signal handler is in place.
    run.wait_for_stderr("connected to");
    run.signal("INT");
    let done = run.finish();
    assert_eq!(done.status.code(), Some(1), "{:?}", done.stdout);
    assert_no_panic(&done.stderr);
    assert!(
        done.stdout.iter().any(|l| l.contains("every byte checked")),
        "{:?}",
        done.stdout
    );
    assert!(
        done.stdout.iter().any(|l| l.contains("interrupted after")),
        "{:?}",
        done.stdout
    );
    assert!(
        done.stderr.contains("echochat: bench: interrupted after"),
        "{}",
        done.stderr
    );
    server.stop_with("TERM");
}

// ---------------------------------------------------------------------------
// Operations: `--metrics` and connection logs.
// ---------------------------------------------------------------------------

/// `GET path` on `addr`; the response body.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to --metrics");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    body.to_string()
}

/// The value of the sample `name` (with its labels) in a Prometheus text body.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{body}"))
}

/// The `HOST:PORT` of the metrics endpoint `server` logged (`-v`), once it has.
fn metrics_addr(server: &Server) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log = server.proc.stderr();
        if let Some(rest) = log.split("metrics on http://").nth(1) {
            return rest.split("/metrics").next().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no metrics address logged: {log}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn metrics_move_and_connections_are_logged(runtime: &str) {
    let server = Server::start("chat-server", runtime, &["-v", "--metrics", "127.0.0.1:0"]);
    // The metrics address is logged (stdout stays the `listening on` line only).
    let metrics = metrics_addr(&server);
    let before = http_get(&metrics, "/metrics");
    let mut a = TcpStream::connect(server.addr).unwrap();
    let mut b = BufReader::new(TcpStream::connect(server.addr).unwrap());
    let mut line = String::new();
    b.read_line(&mut line).unwrap(); // b's welcome
    a.write_all(b"hello metrics\n").unwrap();
    loop {
        line.clear();
        b.read_line(&mut line).unwrap();
        if line.contains("hello metrics") {
            break;
        }
    }
    a.write_all(b"/quit\n").unwrap();
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).unwrap();
    // Counters are process-wide and only grow; the quit is counted once it is seen.
    let deadline = Instant::now() + DEADLINE;
    let after = loop {
        let after = http_get(&metrics, "/metrics");
        if sample(&after, "echochat_drops_total{reason=\"quit\"}") >= 1.0 {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "the quit was not counted:\n{after}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let grew = |name: &str| sample(&after, name) - sample(&before, name);
    assert!(grew("echochat_connections_accepted_total") >= 2.0);
    assert!(grew("echochat_lines_in_total") >= 2.0);
    assert!(grew("echochat_deliveries_total") >= 1.0);
    assert!(grew("echochat_bytes_total{direction=\"in\"}") > 0.0);
    assert!(grew("echochat_bytes_total{direction=\"out\"}") > 0.0);
    assert_eq!(sample(&after, "echochat_connections_open"), 1.0);
    // Open and close are logged at info with the peer address and the reason.
    let peer = a.local_addr().unwrap().to_string();
    let log = server.proc.stderr();
    assert!(log.contains(&format!("from {peer} open")), "{log}");
    assert!(log.contains(&format!("from {peer} closed: Quit")), "{log}");
    drop(b);
    server.stop_with("TERM");
}

// ---------------------------------------------------------------------------
// chat-client on a terminal (tmux): the line editor.
// ---------------------------------------------------------------------------

/// A detached tmux session on a tmux server of its own (`-L`), killed on drop.
/// Needs `tmux` (installed by CI): without it the tests fail, they never pass unrun.
struct Tmux {
    socket: String,
    name: String,
    /// Where the session's command writes its exit code.
    status_file: std::path::PathBuf,
}

impl Tmux {
    /// Runs `BIN chat-client --addr ADDR` (with `env` settings before it, e.g.
    /// `NO_COLOR=1`) in a 120x30 detached session.
    fn chat_client(addr: &str, env: &str) -> Tmux {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("echochat-test-{}-{n}", std::process::id());
        let status_file = std::env::temp_dir().join(format!("{id}.status"));
        let _ = std::fs::remove_file(&status_file);
        let tmux = Tmux {
            socket: id.clone(),
            name: id,
            status_file,
        };
        let command = format!(
            "env {env} '{BIN}' chat-client --addr {addr}; echo $? > '{}'",
            tmux.status_file.display()
        );
        let size = ["-x", "120", "-y", "30"];
        let mut args = vec!["new-session", "-d", "-s", &tmux.name];
        args.extend(size);
        args.push(&command);
        let out = tmux.run(&args);
        assert!(out.status.success(), "tmux new-session failed: {out:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}): these tests need tmux installed (CI installs it)")
            })
    }

    /// The visible pane, with colour escapes if `escapes`.
    fn capture(&self, escapes: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", &self.name];
        if escapes {
            args.push("-e");
        }
        String::from_utf8_lossy(&self.run(&args).stdout).into_owned()
    }

    /// Waits until the pane (without escapes) satisfies `ok`; returns it.
    fn wait_for(&self, waiting_for: &str, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let screen = self.capture(false);
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < end,
                "tmux: no {waiting_for}; the screen:\n{screen}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        assert!(self
            .run(&["send-keys", "-t", &self.name, "-l", text])
            .status
            .success());
    }

    /// Presses a key (`Enter`, `C-d`, …).
    fn press(&self, key: &str) {
        assert!(self
            .run(&["send-keys", "-t", &self.name, key])
            .status
            .success());
    }

    /// Keeps the pane on screen after its command ends (to look at it then).
    fn keep_pane(&self) {
        let out = self.run(&["set-option", "-t", &self.name, "remain-on-exit", "on"]);
        assert!(out.status.success(), "tmux set-option failed: {out:?}");
    }

    /// Waits for the session's command to end; returns its exit code.
    fn wait_for_exit(&self) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let status = std::fs::read_to_string(&self.status_file).unwrap_or_default();
            if status.ends_with('\n') {
                return status.trim().to_owned();
            }
            assert!(
                Instant::now() < end,
                "tmux: the client did not exit; the screen:\n{}",
                self.capture(false)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the session to end (its command exited, the pane was not kept).
    fn wait_for_session_end(&self) {
        let end = Instant::now() + DEADLINE;
        while self
            .run(&["has-session", "-t", &self.name])
            .status
            .success()
        {
            assert!(Instant::now() < end, "tmux: the session did not end");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_file(&self.status_file);
    }
}

/// The nick in `* welcome NICK, …` on the screen.
fn welcomed_nick(screen: &str) -> Option<String> {
    screen.lines().find_map(|l| {
        let rest = l.strip_prefix("* welcome ")?;
        Some(rest.split_once(',')?.0.to_owned())
    })
}

/// The last non-empty row of the screen (where the prompt is).
fn last_row(screen: &str) -> &str {
    screen.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("")
}

#[test]
fn chat_client_on_a_terminal_keeps_the_typed_line() {
    let server = Server::start("chat-server", "tokio", &[]);
    let addr = server.addr();
    let tmux = Tmux::chat_client(&addr, "NO_COLOR=1");
    let screen = tmux.wait_for("welcome and prompt", |s| {
        welcomed_nick(s).is_some_and(|n| last_row(s) == format!("{n}>"))
    });
    let nick = welcomed_nick(&screen).unwrap();
    tmux.type_text("I am typing");
    tmux.wait_for("the typed text", |s| {
        last_row(s) == format!("{nick}> I am typing")
    });

    // Another client talks while the line is half typed.
    let mut other = TcpStream::connect(server.addr).unwrap();
    other.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut other_in = BufReader::new(other.try_clone().unwrap());
    let mut line = String::new();
    other_in.read_line(&mut line).unwrap();
    let other_nick = line
        .strip_prefix("* welcome ")
        .and_then(|r| r.split_once(','))
        .map(|(n, _)| n.to_owned())
        .unwrap_or_else(|| panic!("no welcome: {line:?}"));
    other.write_all(b"are you there?\n").unwrap();
    let incoming = format!("<{other_nick}> are you there?");
    let screen = tmux.wait_for("the incoming message", |s| s.lines().any(|l| l == incoming));
    assert_eq!(
        last_row(&screen),
        format!("{nick}> I am typing"),
        "the typed line must stay intact under the message:\n{screen}"
    );
    let rows: Vec<&str> = screen.lines().collect();
    let at = rows.iter().position(|l| *l == incoming).unwrap();
    assert!(
        rows[at + 1..].iter().all(|l| !l.contains("are you there")),
        "{screen}"
    );

    // Enter sends the line; the other client gets it.
    tmux.press("Enter");
    let want = format!("<{nick}> I am typing\n");
    loop {
        line.clear();
        assert_ne!(other_in.read_line(&mut line).unwrap(), 0, "server closed");
        if line == want {
            break;
        }
    }

    // Ctrl-D on an empty line leaves with 0; the other client sees it go.
    tmux.wait_for("a fresh prompt", |s| last_row(s) == format!("{nick}>"));
    tmux.press("C-d");
    assert_eq!(tmux.wait_for_exit(), "0", "exit code after Ctrl-D");
    tmux.wait_for_session_end();
    let gone = format!("* {nick} left");
    loop {
        line.clear();
        assert_ne!(other_in.read_line(&mut line).unwrap(), 0, "server closed");
        if line.starts_with(&gone) {
            break;
        }
    }
    drop((other, other_in));
    server.stop_with("TERM");
}

#[test]
fn chat_client_on_a_terminal_discards_the_typed_line_when_the_server_stops() {
    let server = Server::start("chat-server", "tokio", &[]);
    let tmux = Tmux::chat_client(&server.addr(), "NO_COLOR=1");
    let screen = tmux.wait_for("welcome and prompt", |s| {
        welcomed_nick(s).is_some_and(|n| last_row(s) == format!("{n}>"))
    });
    let nick = welcomed_nick(&screen).unwrap();
    tmux.keep_pane();
    // Longer than the 120 columns: it wraps, and every row of it goes.
    let long = format!("half typed {}", "x".repeat(150));
    tmux.type_text(&long);
    tmux.wait_for("the typed text", |s| {
        s.contains(&format!("{nick}> half typed xxx")) && s.contains(&"x".repeat(100))
    });
    server.proc.signal("TERM");
    assert_eq!(tmux.wait_for_exit(), "0", "exit code after the server left");
    let screen = tmux.capture(false);
    assert!(
        screen.lines().any(|l| l == "* server shutting down"),
        "the server's last line is shown:\n{screen}"
    );
    assert!(
        !screen.contains("half typed") && !screen.contains("xxx"),
        "the half-typed line is discarded:\n{screen}"
    );
    server
        .proc
        .finish()
        .assert_success("chat-server after SIGTERM");
}

#[test]
fn chat_client_on_a_terminal_highlights_its_own_nick() {
    let server = Server::start("chat-server", "tokio", &[]);
    let tmux = Tmux::chat_client(&server.addr(), "-u NO_COLOR");
    let screen = tmux.wait_for("welcome and prompt", |s| {
        welcomed_nick(s).is_some_and(|n| last_row(s) == format!("{n}>"))
    });
    let nick = welcomed_nick(&screen).unwrap();
    let coloured = tmux.capture(true);
    let welcome = coloured
        .lines()
        .find(|l| l.contains("welcome"))
        .unwrap_or_else(|| panic!("no welcome in:\n{coloured}"));
    let at = welcome.find(&nick).unwrap();
    // An SGR sequence (ESC [ … m) right before the nick.
    let before = &welcome[..at];
    assert!(
        before.ends_with('m') && before[before.len().saturating_sub(12)..].contains('\x1b'),
        "no highlight before {nick} in {welcome:?}"
    );
    tmux.press("C-c");
    assert_eq!(tmux.wait_for_exit(), "0", "exit code after Ctrl-C");
    server.stop_with("TERM");
}

// ---------------------------------------------------------------------------
// --cluster (docs/cluster.md). A cluster of several processes needs Redis (the
// Redis adapter's tests); these check the flags and a one-node in-process bus.
// ---------------------------------------------------------------------------

#[test]
fn cluster_flags_fail_clearly() {
    // An unusable bus: one line, non-zero, and never `listening on`.
    let done = Proc::spawn(&[
        "chat-server",
        "--addr",
        "127.0.0.1:0",
        "--cluster",
        "nats://127.0.0.1:4222",
    ])
    .finish();
    let line = done.assert_one_line_failure("an unsupported cluster URL");
    assert!(line.contains("unsupported cluster URL"), "{line}");
    assert!(done.stdout.is_empty(), "{:?}", done.stdout);
    // A node name without a cluster is a usage error.
    Proc::spawn(&["chat-server", "--node-name", "a"])
        .finish()
        .assert_usage_error("--node-name without --cluster");
}

#[test]
fn a_one_node_cluster_chats_as_usual() {
    let server = Server::start(
        "chat-server",
        "tokio",
        &[
            "-v",
            "--metrics",
            "127.0.0.1:0",
            "--cluster",
            "memory://cli-solo",
            "--node-name",
            "solo",
        ],
    );
    let addr = server.addr();
    let metrics = metrics_addr(&server);
    let bob = Proc::spawn(&["chat-client", "--addr", &addr]);
    bob.wait_for_line("bob's welcome", |l| {
        l.starts_with("* welcome guest1, 1 users online")
    });
    let mut alice = Proc::spawn(&["chat-client", "--addr", &addr, "--nick", "alice"]);
    bob.wait_for_line("alice's rename", |l| l == "* guest2 is now known as alice");
    alice.send("hello bob\n");
    bob.wait_for_line("alice's message", |l| l == "<alice> hello bob");
    // Its own events come back from the bus (and are ignored): both directions move.
    let text = http_get(&metrics, "/metrics");
    assert_eq!(sample(&text, "echochat_bus_up"), 1.0, "{text}");
    assert!(sample(&text, "echochat_bus_events_total{direction=\"out\"}") >= 1.0);
    assert!(sample(&text, "echochat_bus_events_total{direction=\"in\"}") >= 1.0);
    server.proc.signal("TERM");
    bob.wait_for_line("the shutdown notice", |l| l == "* server shutting down");
    bob.finish()
        .assert_success("chat-client after the server stopped");
    alice
        .finish()
        .assert_success("chat-client after the server stopped");
    server
        .proc
        .finish()
        .assert_success("chat-server after SIGTERM");
}
