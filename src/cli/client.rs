//! What both clients share: connecting, and sending stdin line by line.

use std::io::{self, BufRead, Write};
use std::net::TcpStream;

use super::CliError;

/// Connects to `addr` (any `HOST:PORT` the resolver understands), with `TCP_NODELAY`.
pub fn connect(addr: &str) -> Result<TcpStream, CliError> {
    let stream = TcpStream::connect(addr).map_err(|source| CliError::Connect {
        addr: addr.into(),
        source,
    })?;
    // Only latency depends on it; never worth failing for.
    let _ = stream.set_nodelay(true);
    log::info!("connected to {addr}");
    Ok(stream)
}

/// Why [`send_stdin_lines`] stopped early.
pub enum SendError {
    /// Reading stdin failed.
    Stdin(io::Error),
    /// Writing to the server failed.
    Socket(io::Error),
}

impl SendError {
    /// As a [`CliError`], naming the server at `addr`.
    pub fn into_cli(self, addr: &str) -> CliError {
        match self {
            SendError::Stdin(e) => CliError::stdin(e),
            SendError::Socket(source) => CliError::Connection {
                addr: addr.into(),
                source,
            },
        }
    }
}

/// Sends every stdin line until EOF, each ending in `\n` (one is added to a last
/// line without it). Returns how many bytes were sent.
pub fn send_stdin_lines(stream: &mut dyn Write) -> Result<usize, SendError> {
    let mut stdin = io::stdin().lock();
    let mut line = Vec::with_capacity(1024);
    let mut sent = 0;
    loop {
        line.clear();
        if stdin
            .read_until(b'\n', &mut line)
            .map_err(SendError::Stdin)?
            == 0
        {
            return Ok(sent);
        }
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        stream.write_all(&line).map_err(SendError::Socket)?;
        sent += line.len();
    }
}
