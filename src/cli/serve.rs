//! `echo-server` and `chat-server`: bind, announce `listening on IP:PORT`, run the
//! chosen transport until it finishes (`--once`) or SIGINT/SIGTERM triggers the
//! [`Shutdown`], then return so the process exits 0.

use std::io::Write;
use std::time::Duration;

use echochat::chat::ChatConfig;
use echochat::echo::{EchoConfig, EchoServerConfig};
use echochat::net::{Listener, ServeError, Shutdown, TlsConfig};
use echochat::runtime::RuntimeKind;

use super::args::{ChatServerArgs, EchoServerArgs, ServerTlsArgs};
use super::limits::{default_max_conns, Service};
use super::CliError;

/// `echochat echo-server`.
pub fn echo_server(args: EchoServerArgs) -> Result<(), CliError> {
    ensure_available(args.runtime)?;
    let mut config = EchoServerConfig::default();
    config.conn = EchoConfig::with_max_pending(args.max_pending);
    config.max_conns = Some(
        args.max_conns
            .unwrap_or_else(|| default_max_conns(args.runtime, Service::Echo)),
    );
    config.once = args.once;
    config.max_conns_per_ip = (args.max_conns_per_ip > 0).then_some(args.max_conns_per_ip);
    config.loopback_exempt = !args.no_loopback_exempt;
    let (listener, shutdown) = start(&args.addr, args.udp, &args.tls, Ok)?;
    let _metrics = serve_metrics(args.metrics.as_deref(), &shutdown)?;
    log::info!("echo server on the {} runtime: {config:?}", args.runtime);
    args.runtime.serve_echo(listener, config, shutdown)?;
    log::info!("echo server stopped");
    Ok(())
}

/// `echochat chat-server`.
pub fn chat_server(args: ChatServerArgs) -> Result<(), CliError> {
    ensure_available(args.runtime)?;
    let mut config = ChatConfig::default();
    config.max_line = args.max_line;
    config.send_queue = args.send_queue;
    config.idle_timeout = (args.idle_timeout > 0).then(|| Duration::from_secs(args.idle_timeout));
    config.max_conns = Some(
        args.max_conns
            .unwrap_or_else(|| default_max_conns(args.runtime, Service::Chat)),
    );
    config.flood_rate = (args.flood_rate > 0).then_some(args.flood_rate);
    config.flood_burst = args.flood_burst;
    config.max_conns_per_ip = (args.max_conns_per_ip > 0).then_some(args.max_conns_per_ip);
    config.loopback_exempt = !args.no_loopback_exempt;
    config.quiet_joins_above = (args.quiet_joins_above > 0).then_some(args.quiet_joins_above);
    let cluster = (args.cluster.as_deref(), args.node_name.as_deref());
    let (listener, shutdown) = start(&args.addr, false, &args.tls, |listener| {
        join_cluster(listener, cluster)
    })?;
    let _metrics = serve_metrics(args.metrics.as_deref(), &shutdown)?;
    log::info!("chat server on the {} runtime: {config:?}", args.runtime);
    args.runtime.serve_chat(listener, config, shutdown)?;
    log::info!("chat server stopped");
    Ok(())
}

/// `--cluster URL [--node-name NAME]`: connects to the bus (before `listening on`
/// is printed, so an unreachable bus is a one-line error and a non-zero exit). The
/// default node name is the listening address and the process id; the incarnation
/// (a restarted node is a new run for the others) is the start time.
fn join_cluster(
    listener: Listener,
    (url, name): (Option<&str>, Option<&str>),
) -> Result<Listener, CliError> {
    let Some(url) = url else {
        return Ok(listener);
    };
    let node = match name {
        Some(name) => name.to_string(),
        None => format!(
            "{}-{}",
            listener.local_addr().map_err(ServeError::from)?,
            std::process::id()
        ),
    };
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let config = echochat::chat::cluster::ClusterConfig::new(node, incarnation);
    log::info!("joining the cluster at {url} as node {:?}", config.node);
    let link = echochat::bus::ClusterLink::connect(url, config)?;
    Ok(listener.with_cluster(link))
}

/// Fails early (before binding) when `--runtime` names a transport not compiled in.
fn ensure_available(runtime: RuntimeKind) -> Result<(), CliError> {
    if runtime.is_available() {
        Ok(())
    } else {
        Err(ServeError::RuntimeUnavailable {
            runtime: runtime.to_string(),
        }
        .into())
    }
}

/// With `--metrics HOST:PORT`, serves `GET /metrics` on a thread of its own until
/// `shutdown` (stdout stays the `listening on` lines only; the address is logged).
fn serve_metrics(
    addr: Option<&str>,
    shutdown: &Shutdown,
) -> Result<Option<std::thread::JoinHandle<()>>, CliError> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = std::net::TcpListener::bind(addr).map_err(|reason| ServeError::Bind {
        addr: addr.to_string(),
        reason,
    })?;
    log::info!(
        "metrics on http://{}/metrics",
        listener.local_addr().map_err(ServeError::from)?
    );
    let shutdown = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            if let Err(e) = echochat::metrics::serve(listener, &shutdown) {
                log::warn!("metrics server stopped: {e}");
            }
        })
        .map_err(ServeError::from)?;
    Ok(Some(thread))
}

/// The TLS configuration the flags ask for (`None`: plaintext only; clap already
/// checked that `--tls-addr` comes with a certificate). With
/// `--tls-self-signed`, prints the certificate's fingerprint on stderr.
fn tls_config(tls: &ServerTlsArgs) -> Result<Option<TlsConfig>, CliError> {
    if let (Some(cert), Some(key)) = (&tls.tls_cert, &tls.tls_key) {
        return Ok(Some(echochat::tls::server_config_from_pem(cert, key)?));
    }
    if tls.tls_self_signed {
        let made = echochat::tls::self_signed()?;
        eprintln!(
            "echochat: tls: self-signed certificate for localhost, 127.0.0.1, SHA-256 fingerprint {}",
            made.fingerprint
        );
        return Ok(Some(made.config));
    }
    Ok(None)
}

/// Binds (plaintext on `addr`, TLS there or on `--tls-addr`), routes SIGINT/SIGTERM
/// to a fresh [`Shutdown`], then prints one `listening on IP:PORT` line per
/// listener, plaintext first, a TLS one ending in ` (tls)` (after the handler is
/// in place, so a signal sent by someone who saw the lines always means a clean
/// shutdown).
fn start(
    addr: &str,
    udp: bool,
    tls: &ServerTlsArgs,
    prepare: impl FnOnce(Listener) -> Result<Listener, CliError>,
) -> Result<(Listener, Shutdown), CliError> {
    let config = tls_config(tls)?;
    let mut listener = Listener::bind(addr, udp)?;
    let mut lines = vec![format!(
        "listening on {}",
        listener.local_addr().map_err(ServeError::from)?
    )];
    match (config, &tls.tls_addr) {
        (Some(config), Some(tls_addr)) => {
            let second = Listener::bind(tls_addr, false)?.with_tls(config);
            let local = second.local_addr().map_err(ServeError::from)?;
            lines.push(format!("listening on {local} (tls)"));
            listener = listener.with_second(second);
        }
        (Some(config), None) => {
            listener = listener.with_tls(config);
            lines[0].push_str(" (tls)");
        }
        (None, _) => {}
    }
    let listener = prepare(listener)?;
    let shutdown = Shutdown::new();
    let signal = shutdown.clone();
    ctrlc::set_handler(move || {
        if signal.is_triggered() {
            // A second signal: the user does not want to wait for the flush.
            std::process::exit(130);
        }
        log::info!("signal received, shutting down");
        signal.trigger();
    })?;
    let mut stdout = std::io::stdout().lock();
    lines
        .iter()
        .try_for_each(|line| writeln!(stdout, "{line}"))
        .and_then(|()| stdout.flush())
        .map_err(CliError::stdout)?;
    Ok((listener, shutdown))
}
