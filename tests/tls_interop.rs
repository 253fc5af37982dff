//! Interop with other TLS stacks, through the `echochat` binary with
//! `--tls-self-signed`: `openssl s_client` against the chat and echo servers
//! (ignored unless asked for: it needs `openssl`), Python's `ssl` against echo.

#![cfg(all(feature = "cli", feature = "tls"))]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use common::{Target, Transport, TIMEOUT};
use echochat::chat::ChatConfig;
use echochat::echo::EchoServerConfig;
use echochat::runtime::RuntimeKind;

fn target() -> Target {
    Target::bin(Transport::Kind(RuntimeKind::Tokio)).tls()
}

/// Runs `openssl s_client` against `port`, writes `input`, and returns its stdout
/// lines up to (and including) the first that satisfies `done`, then kills it.
fn s_client(port: u16, input: &[u8], done: impl Fn(&str) -> bool) -> Vec<String> {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl (install it to run these tests)");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    stdin.flush().unwrap();
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(TIMEOUT) {
            Ok(line) => {
                let end = done(&line);
                lines.push(line);
                if end {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("openssl s_client: no expected line; got {lines:?}");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
#[ignore = "needs openssl"]
fn openssl_s_client_chats() {
    let server = target().chat(ChatConfig::default());
    let lines = s_client(server.addr.port(), b"/who\n", |l| {
        l.starts_with("* in #lobby: ")
    });
    assert_eq!(
        lines,
        ["* welcome guest1, 1 users online", "* in #lobby: guest1"]
    );
}

#[test]
#[ignore = "needs openssl"]
fn openssl_s_client_echoes() {
    let server = target().echo(EchoServerConfig::default());
    let lines = s_client(server.addr.port(), b"hello from openssl\n", |l| {
        l == "hello from openssl"
    });
    assert_eq!(lines, ["hello from openssl"]);
}

#[test]
#[ignore = "needs openssl"]
fn openssl_s_client_tls12_echoes() {
    let server = target().echo(EchoServerConfig::default());
    let port = server.addr.port();
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_2",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TLSv1.2"), "{text}");
}

#[test]
fn python_ssl_echoes_and_closes_cleanly() {
    let server = target().echo(EchoServerConfig::default());
    let fingerprint = server.tls.as_ref().unwrap().fingerprint.clone();
    let script = r#"
import hashlib, socket, ssl, sys
port, pinned = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        fp = hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest().upper()
        assert ":".join(fp[i:i + 2] for i in range(0, 64, 2)) == pinned, "wrong certificate"
        data = bytes(range(256)) * 4096
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(65536)
            assert chunk, "closed early"
            got += chunk
        assert got == data, "echo differs"
        print(s.version())
        s.unwrap()
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &server.addr.port().to_string(), &fingerprint])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "TLSv1.3\nok\n");
}
