//! The command line itself: parses arguments ([`args`]), sets up logging and
//! signals, dispatches to a subcommand, and turns every failure into an exit code
//! (never a panic): usage errors as clap prints them (with its hints), our own
//! errors as one `echochat: …` line on stderr.

mod args;
mod chat_client;
mod chat_tty;
mod client;
mod echo_client;
mod limits;
mod serve;
mod tls_client;

use std::io::{self, Write};

use clap::Parser;

pub use args::{Cli, Command};

/// Everything that can make `echochat` fail; `main` prints it as one line and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A server could not start or stopped on an error of its own.
    #[error("{0}")]
    Serve(#[from] echochat::net::ServeError),
    /// `--cluster`: the bus could not be reached at start.
    #[error("{0}")]
    Bus(#[from] echochat::bus::BusError),
    /// SIGINT/SIGTERM handlers could not be installed.
    #[error("cannot install the signal handler: {0}")]
    Signal(#[from] ctrlc::Error),
    /// A client could not reach its server.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address asked for.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An established connection failed.
    #[error("connection to {addr} failed: {source}")]
    Connection {
        /// The server's address.
        addr: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The echo server closed before echoing everything back.
    #[error("{addr} closed the connection after echoing {got} of {sent} bytes")]
    ShortEcho {
        /// The server's address.
        addr: String,
        /// Bytes echoed back.
        got: usize,
        /// Bytes sent.
        sent: usize,
    },
    /// Reading stdin or writing stdout failed.
    #[error("{what}: {source}")]
    Stdio {
        /// `"cannot read stdin"` or `"cannot write stdout"`.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A TLS certificate, key or CA file is missing or unusable.
    #[error("{0}")]
    Tls(#[from] echochat::tls::TlsConfigError),
    /// The load generator failed.
    #[error("{0}")]
    Bench(String),
}

impl CliError {
    fn stdin(source: io::Error) -> Self {
        CliError::Stdio {
            what: "cannot read stdin",
            source,
        }
    }
    fn stdout(source: io::Error) -> Self {
        CliError::Stdio {
            what: "cannot write stdout",
            source,
        }
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return report_usage_error(&err),
    };
    init_logging(cli.verbose);
    match run(cli.command) {
        Ok(()) => 0,
        Err(err) => {
            log::debug!("{err:?}");
            // Nothing better to do if stderr is gone.
            let _ = writeln!(io::stderr(), "echochat: {err}");
            1
        }
    }
}

fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::EchoServer(args) => serve::echo_server(args),
        Command::ChatServer(args) => serve::chat_server(args),
        Command::EchoClient(args) => echo_client::run(args),
        Command::ChatClient(args) => chat_client::run(args),
        Command::Bench(args) => crate::bench::run(args).map_err(CliError::Bench),
    }
}

/// What `clap::Error::exit` does, minus the exit: `--help`/`--version` print in
/// full on stdout (exit 0); a usage error prints as clap formats it on stderr, with
/// its hints (possible values, "a similar argument exists", usage), exit 2.
fn report_usage_error(err: &clap::Error) -> i32 {
    // Nothing sensible to do if the stream is gone.
    let _ = err.print();
    err.exit_code()
}

/// Logs go to stderr: `warn` by default, `-v` info, `-vv` debug, `-vvv` trace;
/// `RUST_LOG` (env_logger syntax) is applied on top and wins where it speaks.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    builder.parse_env(env_logger::Env::default());
    builder.target(env_logger::Target::Stderr);
    // Fails only if a logger is already set, which cannot happen here.
    let _ = builder.try_init();
}
