//! `echo-client` / `chat-client` over TLS (`--tls`, `--ca`, `--insecure`):
//!
//! * against an in-process rustls echo server that honours the TLS 1.3
//!   half-close (it echoes until the client's `close_notify`, then sends its own);
//! * against OpenSSL's `openssl s_server -rev` (a line-reversing server), TLS 1.3
//!   and 1.2, with a certificate made by `openssl req`. Those tests are
//!   `#[ignore = "needs openssl"]`; CI installs openssl and runs them with
//!   `--include-ignored`, where a missing openssl fails with a clear message.
#![cfg(all(feature = "cli", feature = "tls"))]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echochat::tls::rustls::{ServerConnection, StreamOwned};

const BIN: &str = env!("CARGO_BIN_EXE_echochat");
const DEADLINE: Duration = Duration::from_secs(20);

/// A fresh empty directory under the system temp dir (removed on drop).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "echochat-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `echochat ARGS` with `stdin`, waits (bounded) and returns its output.
fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn echochat");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let feeder = thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("echochat {args:?} did not finish within {DEADLINE:?}");
        }
    };
    let _ = feeder.join();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// An in-process rustls echo server (a self-signed certificate from echochat::tls).
// ---------------------------------------------------------------------------

/// Serves TLS echo on a free port until the test ends: echoes everything until
/// the client's `close_notify`, then sends its own and closes.
fn rustls_echo_server() -> (String, echochat::tls::SelfSigned) {
    let made = echochat::tls::self_signed().expect("self-signed");
    let config = made.config.clone();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { continue };
            let config = Arc::clone(&config);
            thread::spawn(move || {
                let conn = ServerConnection::new(config).expect("conn");
                let mut tls = StreamOwned::new(conn, sock);
                let mut buf = [0u8; 4096];
                loop {
                    match tls.read(&mut buf) {
                        Ok(0) => break, // close_notify: the client's half-close
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (addr, made)
}

#[test]
fn echo_client_with_ca_and_half_close() {
    let (addr, made) = rustls_echo_server();
    let dir = TempDir::new();
    let ca = dir.path("ca.pem");
    std::fs::write(&ca, &made.cert_pem).expect("write ca");
    let ca = ca.to_str().expect("utf-8");
    // Lines mode: at stdin EOF the client sends close_notify and reads the rest.
    let input: String = (0..2000).map(|i| format!("line {i} over TLS\n")).collect();
    let out = run(
        &["echo-client", "--addr", &addr, "--ca", ca],
        input.as_bytes(),
    );
    assert_ok(&out, "echo-client --ca");
    assert!(out.stdout == input.as_bytes(), "echo differs");
    // The name in --addr is checked: `localhost` is in the certificate too.
    let port = addr.rsplit_once(':').expect("port").1;
    let out = run(
        &[
            "echo-client",
            "--addr",
            &format!("localhost:{port}"),
            "--ca",
            ca,
            "--message",
            "hi",
        ],
        b"",
    );
    assert_ok(&out, "echo-client --message");
    assert_eq!(text(&out.stdout), "hi\n");
}

#[test]
fn insecure_accepts_a_self_signed_certificate_and_says_so() {
    let (addr, _) = rustls_echo_server();
    let out = run(
        &[
            "echo-client",
            "--addr",
            &addr,
            "--insecure",
            "--message",
            "x y",
        ],
        b"",
    );
    assert_ok(&out, "echo-client --insecure");
    assert_eq!(text(&out.stdout), "x y\n");
    assert_eq!(
        text(&out.stderr),
        "echochat: warning: --insecure: the server's certificate is not checked\n"
    );
}

#[test]
fn an_untrusted_certificate_is_a_one_line_error() {
    let (addr, _) = rustls_echo_server();
    let other = echochat::tls::self_signed().expect("another certificate");
    let dir = TempDir::new();
    let ca = dir.path("other.pem");
    std::fs::write(&ca, &other.cert_pem).expect("write");
    for tls in [&["--ca", ca.to_str().expect("utf-8")][..], &["--tls"][..]] {
        let mut args = vec!["echo-client", "--addr", &addr, "--message", "hi"];
        args.extend_from_slice(tls);
        let out = run(&args, b"");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        let want = format!("echochat: cannot connect to {addr}: invalid peer certificate: ");
        assert!(err.starts_with(&want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_missing_ca_file_is_a_one_line_error() {
    let out = run(
        &[
            "echo-client",
            "--addr",
            "127.0.0.1:9",
            "--ca",
            "/nonexistent/ca.pem",
        ],
        b"",
    );
    // The connection may be refused first (port 9); either way one line, exit 1.
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    // With a listening port, the CA file is what fails.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let out = run(
        &[
            "chat-client",
            "--addr",
            &addr,
            "--ca",
            "/nonexistent/ca.pem",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).lines().collect::<Vec<_>>(),
        ["echochat: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)"]
    );
}

#[test]
fn ca_and_insecure_do_not_mix() {
    let out = run(
        &[
            "echo-client",
            "--ca",
            "x.pem",
            "--insecure",
            "--message",
            "m",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2), "clap usage error");
}

// ---------------------------------------------------------------------------
// Against `openssl s_server -rev`.
// ---------------------------------------------------------------------------

/// `openssl s_server` on a free port (killed by PID on drop).
struct SServer {
    child: Child,
    addr: String,
    dir: TempDir,
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("these tests need `openssl` on PATH: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
}

/// A leaf certificate (not a CA: webpki refuses a CA as an end entity) for
/// `localhost` and `127.0.0.1`, as `NAME.pem` / `NAME.key` in `dir`.
fn make_cert(dir: &Path, name: &str) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
        dir,
    );
}

fn s_server(extra: &[&str]) -> SServer {
    let dir = TempDir::new();
    make_cert(&dir.0, "server");
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &addr,
            "-cert",
            "server.pem",
            "-key",
            "server.key",
        ])
        .args(["-rev", "-quiet"])
        .args(extra)
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("these tests need `openssl` on PATH: {e}"));
    let server = SServer { child, addr, dir };
    let start = Instant::now();
    // Ready once it accepts (this probe is just a failed handshake to it).
    while TcpStream::connect(&server.addr).is_err() {
        assert!(start.elapsed() < DEADLINE, "openssl s_server did not start");
        thread::sleep(Duration::from_millis(50));
    }
    server
}

impl SServer {
    fn ca(&self) -> String {
        self.dir.path("server.pem").to_str().expect("utf-8").into()
    }
}

#[test]
#[ignore = "needs openssl"]
fn echo_client_talks_to_openssl_s_server() {
    for version in [&[][..], &["-tls1_2"][..]] {
        let server = s_server(version);
        let ca = server.ca();
        let out = run(
            &["echo-client", "--addr", &server.addr, "--ca", &ca],
            b"hello\nTLS world\n",
        );
        assert_ok(&out, "echo-client against s_server");
        // s_server -rev answers each line reversed.
        assert_eq!(text(&out.stdout), "olleh\ndlrow SLT\n", "{version:?}");
        // One message, with its newline (s_server answers whole lines).
        let out = run(
            &[
                "echo-client",
                "--addr",
                &server.addr,
                "--ca",
                &ca,
                "--message",
                "abc\n",
            ],
            b"",
        );
        assert_ok(&out, "echo-client --message against s_server");
        assert_eq!(text(&out.stdout), "cba\n\n");
    }
}

#[test]
#[ignore = "needs openssl"]
fn chat_client_talks_to_openssl_s_server() {
    let server = s_server(&[]);
    let out = run(
        &[
            "chat-client",
            "--addr",
            &server.addr,
            "--ca",
            &server.ca(),
            "--nick",
            "bob",
        ],
        b"hi there\n",
    );
    assert_ok(&out, "chat-client against s_server");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("bob kcin/\n"), "{stdout}");
    assert!(stdout.contains("ereht ih\n"), "{stdout}");
}

#[test]
#[ignore = "needs openssl"]
fn insecure_and_untrusted_against_openssl_s_server() {
    let server = s_server(&[]);
    let out = run(
        &["echo-client", "--addr", &server.addr, "--insecure"],
        b"pinned?\n",
    );
    assert_ok(&out, "--insecure");
    assert_eq!(text(&out.stdout), "?dennip\n");
    assert!(text(&out.stderr).contains("--insecure: the server's certificate is not checked"));
    // A CA that did not sign the server's certificate.
    make_cert(&server.dir.0, "other");
    let other = server.dir.path("other.pem");
    let out = run(
        &[
            "echo-client",
            "--addr",
            &server.addr,
            "--ca",
            other.to_str().expect("utf-8"),
        ],
        b"x\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "echochat: cannot connect to {}: invalid peer certificate: ",
            server.addr
        )),
        "{err}"
    );
}
