//! `echo-client`: blocking std I/O against an echo server.
//!
//! * `--message TEXT`: send it, read back exactly as many bytes, print them as a line.
//! * otherwise: stdin lines go out (each with its `\n`) from this thread while a
//!   second thread copies the echoes to stdout as they arrive, so a huge input can
//!   never deadlock against the server's backpressure. At EOF the write side is
//!   shut down and the remaining echoes are drained until the server closes.
//!
//! Getting back fewer bytes than were sent is an error in both modes (e.g. a
//! server at its `--max-conns` closes new connections at once).
//!
//! With `--tls` (or `--ca`, `--insecure`) the same runs over TLS; "shut down the
//! write side" then starts with a `close_notify`.

use std::io::{self, Read, Write};
use std::thread;

use super::args::EchoClientArgs;
use super::client::send_stdin_lines;
use super::tls_client::{open, ClientReader, ClientWriter};
use super::CliError;

/// `echochat echo-client`.
pub fn run(args: EchoClientArgs) -> Result<(), CliError> {
    let (reader, writer) = open(&args.addr, &args.tls)?;
    match args.message {
        Some(message) => one_message(reader, writer, &args.addr, message.as_bytes()),
        None => lines(reader, writer, &args.addr),
    }
}

fn one_message(
    mut reader: ClientReader,
    mut writer: ClientWriter,
    addr: &str,
    message: &[u8],
) -> Result<(), CliError> {
    let lost = |source| CliError::Connection {
        addr: addr.into(),
        source,
    };
    writer.write_all(message).map_err(lost)?;
    let mut echo = vec![0; message.len()];
    let mut got = 0;
    while got < echo.len() {
        match reader.read(&mut echo[got..]) {
            Ok(0) => {
                return Err(CliError::ShortEcho {
                    addr: addr.into(),
                    got,
                    sent: message.len(),
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(lost(e)),
        }
    }
    writer.finish();
    let mut out = io::stdout().lock();
    out.write_all(&echo)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(CliError::stdout)
}

fn lines(reader: ClientReader, mut writer: ClientWriter, addr: &str) -> Result<(), CliError> {
    let lost = |source| CliError::Connection {
        addr: addr.into(),
        source,
    };
    let reader_addr = addr.to_owned();
    let printer = thread::Builder::new()
        .name("echo-printer".into())
        .spawn(move || print_echoes(reader, &reader_addr))
        .map_err(lost)?;
    let sent = send_stdin_lines(&mut writer);
    // Whatever happened, let the server know we are done sending.
    writer.finish();
    let printed = printer.join().unwrap_or_else(|_| {
        Err(CliError::stdout(io::Error::other(
            "printer thread panicked",
        )))
    });
    // When both sides failed, the reading side usually tells the real story
    // (the sender only sees the broken pipe it caused).
    let got = printed?;
    let sent = sent.map_err(|e| e.into_cli(addr))?;
    if got < sent {
        return Err(CliError::ShortEcho {
            addr: addr.into(),
            got,
            sent,
        });
    }
    Ok(())
}

/// Copies everything the server sends to stdout until it closes, and returns how
/// many bytes that was. On failure the socket is shut down so the sending thread
/// cannot block forever on a server that waits for us to read.
fn print_echoes(mut stream: ClientReader, addr: &str) -> Result<usize, CliError> {
    let result = copy_to_stdout(&mut stream, addr);
    if result.is_err() {
        stream.abort();
    }
    result
}

fn copy_to_stdout(stream: &mut ClientReader, addr: &str) -> Result<usize, CliError> {
    let mut out = io::stdout().lock();
    let mut buf = vec![0; 64 * 1024];
    let mut got = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(CliError::Connection {
                    addr: addr.into(),
                    source,
                })
            }
        };
        out.write_all(&buf[..n])
            .and_then(|()| out.flush())
            .map_err(CliError::stdout)?;
        got += n;
    }
}
