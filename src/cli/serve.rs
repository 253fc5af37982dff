//! `echo-server` and `chat-server`: bind, announce `listening on IP:PORT`, run the
//! chosen transport until it finishes (`--once`) or SIGINT/SIGTERM triggers the
//! [`Shutdown`], then return so the process exits 0.

use std::io::Write;
use std::time::Duration;

use echochat::chat::ChatConfig;
use echochat::echo::{EchoConfig, EchoServerConfig};
use echochat::net::{Listener, ServeError, Shutdown};
use echochat::runtime::RuntimeKind;

use super::args::{ChatServerArgs, EchoServerArgs};
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
    let (listener, shutdown) = start(&args.addr, args.udp)?;
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
    let (listener, shutdown) = start(&args.addr, false)?;
    let _metrics = serve_metrics(args.metrics.as_deref(), &shutdown)?;
    log::info!("chat server on the {} runtime: {config:?}", args.runtime);
    args.runtime.serve_chat(listener, config, shutdown)?;
    log::info!("chat server stopped");
    Ok(())
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

/// Binds, routes SIGINT/SIGTERM to a fresh [`Shutdown`], then prints the one
/// `listening on` line (after the handler is in place, so a signal sent by someone
/// who saw the line always means a clean shutdown).
fn start(addr: &str, udp: bool) -> Result<(Listener, Shutdown), CliError> {
    let listener = Listener::bind(addr, udp)?;
    let local = listener.local_addr().map_err(ServeError::from)?;
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
    writeln!(stdout, "listening on {local}")
        .and_then(|()| stdout.flush())
        .map_err(CliError::stdout)?;
    Ok((listener, shutdown))
}
