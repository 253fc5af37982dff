//! `chat-client`: a line-oriented terminal for the chat (blocking std I/O).
//!
//! A reader thread prints server lines as they arrive (flushing each) and ends the
//! process with exit 0 as soon as the server closes, even while the main thread is
//! still blocked reading stdin. The main thread sends `/nick NAME` (if asked) and
//! then every stdin line; at EOF it shuts down its write side and gives the server
//! about a second to send its last lines and close.
//!
//! With `--tls` (or `--ca`, `--insecure`) the same runs over TLS.
//!
//! When stdin and stdout are both terminals, a line editor takes over instead
//! ([`super::chat_tty`]): a prompt, history, colours, and server lines printed
//! above the line being typed. Where it cannot work (`TERM=dumb`), the plain mode
//! above is used.

use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::thread;
use std::time::Duration;

use super::args::ChatClientArgs;
use super::client::{send_stdin_lines, SendError};
use super::tls_client::{open, ClientReader};
use super::CliError;

/// How long to keep printing after stdin ended, waiting for the server to close.
const LINGER: Duration = Duration::from_secs(1);

/// `echochat chat-client`.
pub fn run(args: ChatClientArgs) -> Result<(), CliError> {
    let addr = args.addr;
    let lost = |source| CliError::Connection {
        addr: addr.clone(),
        source,
    };
    let (reader, mut writer) = open(&addr, &args.tls)?;
    if io::stdin().is_terminal() && io::stdout().is_terminal() {
        if let Some(editor) = super::chat_tty::Editor::open() {
            return super::chat_tty::run(editor, &addr, args.nick.as_deref(), reader, writer);
        }
    }
    let reader_addr = addr.clone();
    thread::Builder::new()
        .name("chat-printer".into())
        .spawn(move || {
            let err = print_lines(reader, &reader_addr);
            let _ = writeln!(io::stderr(), "echochat: {err}");
            std::process::exit(1);
        })
        .map_err(lost)?;

    let sent = send(&mut writer, args.nick.as_deref());
    writer.finish();
    // The printer ends the process (exit 0) as soon as the server closes; give it
    // that long to print the server's last lines. A failed send is often just the
    // server going away, which the printer reports better, so it waits too.
    thread::sleep(LINGER);
    sent.map_err(|e| e.into_cli(&addr))
}

/// Sends `/nick NAME` if given, then every stdin line.
fn send(stream: &mut dyn Write, nick: Option<&str>) -> Result<(), SendError> {
    if let Some(nick) = nick {
        stream
            .write_all(format!("/nick {nick}\n").as_bytes())
            .map_err(SendError::Socket)?;
    }
    send_stdin_lines(stream).map(drop)
}

/// Prints server lines until the server closes, then exits the process with 0.
/// Returns only on failure.
fn print_lines(stream: ClientReader, addr: &str) -> CliError {
    let mut server = BufReader::new(stream);
    let mut out = io::stdout();
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        match server.read_until(b'\n', &mut line) {
            Ok(0) => {
                log::info!("server closed the connection");
                std::process::exit(0);
            }
            Ok(_) => {
                if line.last() != Some(&b'\n') {
                    line.push(b'\n'); // the server closed mid-line
                }
                if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
                    return CliError::stdout(e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return CliError::Connection {
                    addr: addr.into(),
                    source,
                }
            }
        }
    }
}
