//! The argument grammar (clap derive): subcommands, flags, defaults and value checks.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use echochat::runtime::RuntimeKind;

/// TCP echo (RFC 862) and a line-based chat, served on the runtime of your choice.
#[derive(Debug, Parser)]
#[command(name = "echochat", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG also works.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve TCP echo (RFC 862); prints `listening on IP:PORT` once ready.
    EchoServer(EchoServerArgs),
    /// Serve the chat; prints `listening on IP:PORT` once ready.
    ChatServer(ChatServerArgs),
    /// Send stdin lines (or one --message) to an echo server and print the echoes.
    EchoClient(EchoClientArgs),
    /// Talk on a chat server: stdin lines are sent, server lines are printed.
    ChatClient(ChatClientArgs),
    /// Load generator for echo and chat servers.
    Bench(crate::bench::BenchArgs),
}

/// `--runtime`: any built-in runtime name; clap lists them in its errors and help.
fn runtime_parser() -> impl clap::builder::TypedValueParser<Value = RuntimeKind> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(RuntimeKind::NAMES)
        .try_map(|name| name.parse::<RuntimeKind>())
}

/// `echochat echo-server`.
#[derive(Debug, Args)]
pub struct EchoServerArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:12345")]
    pub addr: String,
    /// Serve Prometheus metrics (`GET /metrics`) on this address.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
    /// Transport that serves the connections.
    #[arg(long, value_parser = runtime_parser(), default_value_t = RuntimeKind::Tokio)]
    pub runtime: RuntimeKind,
    /// Serve a single client, then exit 0.
    #[arg(long)]
    pub once: bool,
    /// Also echo UDP datagrams on the same port.
    #[arg(long)]
    pub udp: bool,
    /// Most simultaneous clients; extra connections are closed at once [default:
    /// what the process can hold: 3/4 of the open-file limit, raised to its hard
    /// limit at start; fewer on the threads runtime].
    #[arg(long, value_name = "N", value_parser = positive)]
    pub max_conns: Option<usize>,
    /// Most bytes received but not yet echoed, per connection.
    #[arg(long, value_name = "BYTES", default_value_t = 65536, value_parser = positive)]
    pub max_pending: usize,
    /// Most connections from one address before extra ones are closed at once
    /// (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_conns_per_ip: usize,
    /// Apply --max-conns-per-ip to loopback addresses too (exempt by default).
    #[arg(long)]
    pub no_loopback_exempt: bool,
    /// TLS options.
    #[command(flatten)]
    pub tls: ServerTlsArgs,
}

/// `echochat chat-server`.
#[derive(Debug, Args)]
pub struct ChatServerArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:12346")]
    pub addr: String,
    /// Serve Prometheus metrics (`GET /metrics`) on this address.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
    /// Transport that serves the connections.
    #[arg(long, value_parser = runtime_parser(), default_value_t = RuntimeKind::Tokio)]
    pub runtime: RuntimeKind,
    /// Most simultaneous clients; extra ones get `! server full` [default: what the
    /// process can hold: 3/4 of the open-file limit, raised to its hard limit at
    /// start; fewer on the threads runtime].
    #[arg(long, value_name = "N", value_parser = positive)]
    pub max_conns: Option<usize>,
    /// Longest accepted line in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024, value_parser = positive)]
    pub max_line: usize,
    /// Most bytes queued for one client before it is dropped.
    #[arg(long, value_name = "BYTES", default_value_t = 262144, value_parser = positive)]
    pub send_queue: usize,
    /// Drop clients silent for this many seconds (0 = never).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub idle_timeout: u64,
    /// Read at most this many lines per second from one client, commands included;
    /// excess waits unread, nothing is dropped (0 = off).
    #[arg(long, value_name = "LINES_PER_S", default_value_t = 0)]
    pub flood_rate: u32,
    /// Lines a client may send at once before --flood-rate applies.
    #[arg(long, value_name = "LINES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub flood_burst: u32,
    /// Most connections from one address, open or closing, before
    /// `! too many connections from your address` (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_conns_per_ip: usize,
    /// Apply --max-conns-per-ip to loopback addresses too (exempt by default).
    #[arg(long)]
    pub no_loopback_exempt: bool,
    /// In rooms of more than N members, send no `joined`, `left` or `is now known
    /// as` notices (the user concerned still gets its own) (0 = off).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub quiet_joins_above: usize,
    /// Be one node of the cluster of chat servers sharing this bus
    /// (`redis://HOST:PORT`; `memory://NAME` links servers of one process).
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// This node's name in the cluster, unique among its nodes [default: the
    /// listening address and the process id].
    #[arg(long, value_name = "NAME", requires = "cluster")]
    pub node_name: Option<String>,
    /// TLS options.
    #[command(flatten)]
    pub tls: ServerTlsArgs,
}

/// The servers' TLS flags (docs/TLS.md): a certificate (`--tls-cert` and
/// `--tls-key`, or `--tls-self-signed`) serves TLS on `--addr`, or on `--tls-addr`
/// beside plaintext on `--addr`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerTlsArgs {
    /// Serve TLS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key", group = "tls_source")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a certificate made at start for localhost and 127.0.0.1 (its
    /// SHA-256 fingerprint is printed on stderr).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"], group = "tls_source")]
    pub tls_self_signed: bool,
    /// Serve TLS here and keep plaintext on --addr (needs a certificate).
    #[arg(long, value_name = "HOST:PORT", requires = "tls_source")]
    pub tls_addr: Option<String>,
}

/// `echochat echo-client`.
#[derive(Debug, Args)]
pub struct EchoClientArgs {
    /// Echo server to connect to.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:12345")]
    pub addr: String,
    /// Send this one message, print the echo and exit (instead of reading stdin).
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
    /// TLS options.
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// `echochat chat-client`.
#[derive(Debug, Args)]
pub struct ChatClientArgs {
    /// Chat server to connect to.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:12346")]
    pub addr: String,
    /// Nick to take on arrival (sent as `/nick NAME`).
    #[arg(long, value_name = "NAME")]
    pub nick: Option<String>,
    /// TLS options.
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

/// The clients' TLS flags. `--ca` and `--insecure` imply `--tls`; the server name
/// sent (SNI) and checked is the host part of `--addr`.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientTlsArgs {
    /// Connect with TLS, trusting the system's root certificates.
    #[arg(long)]
    pub tls: bool,
    /// Trust only the certificates in this PEM file (implies --tls).
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// Do not check the server's certificate at all (implies --tls; says so on stderr).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
}

impl ClientTlsArgs {
    /// Whether to speak TLS.
    pub fn enabled(&self) -> bool {
        self.tls || self.insecure || self.ca.is_some()
    }
}

/// A count or size of at least 1.
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_spec() {
        let cli = Cli::try_parse_from(["echochat", "echo-server"]).expect("parses");
        let Command::EchoServer(a) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(
            (a.addr.as_str(), a.runtime, a.max_pending),
            ("127.0.0.1:12345", RuntimeKind::Tokio, 65536)
        );
        let cli = Cli::try_parse_from(["echochat", "chat-server", "-vv"]).expect("parses");
        assert_eq!(cli.verbose, 2);
        let Command::ChatServer(a) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(
            (a.addr.as_str(), a.max_line, a.send_queue, a.idle_timeout),
            ("127.0.0.1:12346", 1024, 262144, 0)
        );
    }

    #[test]
    fn server_tls_flags_go_together() {
        let parse = |args: &[&str]| {
            let mut all = vec!["echochat", "echo-server"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
        };
        assert!(parse(&["--tls-cert", "c.pem"]).is_err(), "cert needs a key");
        assert!(parse(&["--tls-key", "k.pem"]).is_err(), "key needs a cert");
        assert!(parse(&["--tls-cert", "c", "--tls-key", "k"]).is_ok());
        assert!(parse(&["--tls-self-signed", "--tls-cert", "c", "--tls-key", "k"]).is_err());
        assert!(parse(&["--tls-self-signed", "--tls-addr", "127.0.0.1:0"]).is_ok());
        assert!(
            parse(&["--tls-addr", "127.0.0.1:0"]).is_err(),
            "needs a certificate"
        );
        assert!(parse(&["--tls-addr", "x:1", "--tls-cert", "c", "--tls-key", "k"]).is_ok());
    }

    #[test]
    fn quiet_joins_above_is_off_unless_given() {
        let parse = |args: &[&str]| {
            let mut all = vec!["echochat", "chat-server"];
            all.extend_from_slice(args);
            match Cli::try_parse_from(all).map(|c| c.command) {
                Ok(Command::ChatServer(a)) => Ok(a.quiet_joins_above),
                Ok(other) => panic!("wrong subcommand {other:?}"),
                Err(e) => Err(e),
            }
        };
        assert_eq!(parse(&[]).ok(), Some(0));
        assert_eq!(parse(&["--quiet-joins-above", "100"]).ok(), Some(100));
        assert!(parse(&["--quiet-joins-above", "-1"]).is_err());
    }

    #[test]
    fn zero_limits_are_rejected() {
        assert!(Cli::try_parse_from(["echochat", "chat-server", "--max-line", "0"]).is_err());
        assert!(Cli::try_parse_from(["echochat", "echo-server", "--max-conns", "0"]).is_err());
    }
}
