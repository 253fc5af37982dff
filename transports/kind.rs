//! [`RuntimeKind`]: the built-in transports by name, chosen at run time.
//!
//! The one place that matches over the built-in runtimes: the CLI (`--runtime`),
//! the tests and the examples all go through it.

use std::fmt;
use std::str::FromStr;

use crate::chat::ChatConfig;
use crate::echo::EchoServerConfig;
use crate::net::{Listener, ServeError, Shutdown};

/// A built-in transport.
///
/// ```
/// use echochat::runtime::RuntimeKind;
/// let kind: RuntimeKind = "tokio".parse()?;
/// assert_eq!(kind.to_string(), "tokio");
/// assert!(RuntimeKind::NAMES.contains(&"smol"));
/// assert!("tokyo".parse::<RuntimeKind>().is_err());
/// # Ok::<(), echochat::runtime::UnknownRuntime>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuntimeKind {
    /// One OS thread per connection (std only): `echochat::threads`.
    Threads,
    /// tokio's multi-threaded runtime: `echochat::tokio`.
    Tokio,
    /// smol's global executor: `echochat::smol`.
    Smol,
}

/// A runtime name that is not a [`RuntimeKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown runtime '{0}' (expected one of: threads, tokio, smol)")]
pub struct UnknownRuntime(pub String);

impl RuntimeKind {
    /// Every kind, compiled in or not.
    pub const ALL: [RuntimeKind; 3] = [RuntimeKind::Threads, RuntimeKind::Tokio, RuntimeKind::Smol];

    /// Their names, as accepted by [`FromStr`] and printed by [`Display`](fmt::Display).
    pub const NAMES: [&'static str; 3] = ["threads", "tokio", "smol"];

    /// The kinds compiled into this build (one cargo feature each).
    pub fn available() -> impl Iterator<Item = RuntimeKind> {
        Self::ALL.into_iter().filter(|k| k.is_available())
    }

    /// Whether this kind's cargo feature is enabled.
    pub fn is_available(self) -> bool {
        match self {
            RuntimeKind::Threads => cfg!(feature = "threads"),
            RuntimeKind::Tokio => cfg!(feature = "tokio"),
            RuntimeKind::Smol => cfg!(feature = "smol"),
        }
    }

    /// The cargo feature that compiles this kind in.
    pub fn feature(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Serves echo on this runtime, blocking the calling thread until `shutdown`
    /// (or `--once`) ends it. tokio: a multi-threaded runtime made for it; smol:
    /// `smol::block_on` with the global executor; threads: this thread accepts.
    pub fn serve_echo(
        self,
        listener: Listener,
        config: EchoServerConfig,
        shutdown: Shutdown,
    ) -> Result<(), ServeError> {
        self.serve(listener, Service::Echo(config), shutdown)
    }

    /// Serves chat on this runtime, blocking the calling thread (which owns the chat
    /// core) until `shutdown`.
    pub fn serve_chat(
        self,
        listener: Listener,
        config: ChatConfig,
        shutdown: Shutdown,
    ) -> Result<(), ServeError> {
        self.serve(listener, Service::Chat(config), shutdown)
    }

    /// The one match over the built-in runtimes.
    fn serve(
        self,
        listener: Listener,
        service: Service,
        shutdown: Shutdown,
    ) -> Result<(), ServeError> {
        match self {
            #[cfg(feature = "threads")]
            RuntimeKind::Threads => match service {
                Service::Echo(config) => crate::threads::run_echo(listener, config, shutdown),
                Service::Chat(config) => crate::threads::run_chat(listener, config, shutdown),
            },
            #[cfg(feature = "tokio")]
            RuntimeKind::Tokio => {
                on_tokio(service.serve(crate::tokio::TokioRuntime::default(), listener, shutdown))?
            }
            #[cfg(feature = "smol")]
            RuntimeKind::Smol => smol::block_on(async {
                crate::smol::start_global_executor().await;
                let rt = crate::smol::SmolRuntime::default();
                service.serve(rt, listener, shutdown).await
            }),
            #[allow(unreachable_patterns)]
            other => {
                // Built without any runtime (`net` alone): nothing can serve.
                let _ = (listener, service, shutdown);
                Err(ServeError::RuntimeUnavailable {
                    runtime: other.to_string(),
                })
            }
        }
    }
}

/// What to serve.
enum Service {
    Echo(EchoServerConfig),
    Chat(ChatConfig),
}

impl Service {
    #[allow(dead_code)] // only with an async runtime compiled in
    async fn serve<R: crate::runtime::Runtime>(
        self,
        rt: R,
        listener: Listener,
        shutdown: Shutdown,
    ) -> Result<(), ServeError> {
        match self {
            Service::Echo(config) => {
                crate::runtime::serve_echo(rt, listener, config, shutdown).await
            }
            Service::Chat(config) => {
                crate::runtime::serve_chat(rt, listener, config, shutdown).await
            }
        }
    }
}

/// Runs a server future on a fresh multi-threaded tokio runtime.
#[cfg(feature = "tokio")]
fn on_tokio<F: std::future::Future>(server: F) -> Result<F::Output, ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("echochat-tokio")
        .build()?;
    let out = runtime.block_on(server);
    // The server returned: its tasks get this long to wind down.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(out)
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::NAMES[*self as usize])
    }
}

impl FromStr for RuntimeKind {
    type Err = UnknownRuntime;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| Self::NAMES[*k as usize] == s)
            .ok_or_else(|| UnknownRuntime(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in RuntimeKind::ALL {
            assert_eq!(kind.to_string().parse::<RuntimeKind>(), Ok(kind));
            assert_eq!(kind.feature(), kind.to_string());
        }
        assert_eq!(
            "tokyo".parse::<RuntimeKind>(),
            Err(UnknownRuntime("tokyo".into()))
        );
    }

    #[test]
    fn available_matches_the_features() {
        let names: Vec<String> = RuntimeKind::available().map(|k| k.to_string()).collect();
        assert_eq!(
            names.contains(&"tokio".to_string()),
            cfg!(feature = "tokio")
        );
        assert_eq!(names.contains(&"smol".to_string()), cfg!(feature = "smol"));
        assert_eq!(
            names.contains(&"threads".to_string()),
            cfg!(feature = "threads")
        );
    }
}
