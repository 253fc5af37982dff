//! The smol transport. (Stub: to be completed by the transports work.)

use crate::chat::ChatConfig;
use crate::echo::EchoServerConfig;
use crate::net::{Listener, ServeError, Shutdown};

/// Serves the echo service on `listener` until `shutdown` is triggered.
pub async fn run_echo(listener: Listener, config: EchoServerConfig, shutdown: Shutdown) -> Result<(), ServeError> {
    todo!("{listener:?} {config:?} {shutdown:?}")
}

/// Serves the chat service on `listener` until `shutdown` is triggered.
pub async fn run_chat(listener: Listener, config: ChatConfig, shutdown: Shutdown) -> Result<(), ServeError> {
    todo!("{listener:?} {config:?} {shutdown:?}")
}
