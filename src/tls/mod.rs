//! TLS for the echo and chat services (feature `tls`), with [rustls] and its
//! `ring` provider. The flags and behaviour are described in `docs/TLS.md`.
//!
//! This module owns:
//!
//! * [`TlsServerLayer`]: one server-side connection as a **sans-IO** state
//!   machine, like the core: ciphertext in, plaintext out, plaintext in,
//!   ciphertext out, time passed in. It bounds the handshake (bytes and
//!   [`HANDSHAKE_TIMEOUT`]), the plaintext it buffers (backpressure) and the
//!   ciphertext it has produced and not yet seen written;
//! * [`FlushMap`]: turns ciphertext written into the plaintext flushed, since the
//!   cores count queued bytes in plaintext (`ChatServer::handle_flushed`);
//! * configuration helpers: [`server_config_from_pem`], [`self_signed`] (with its
//!   SHA-256 [`fingerprint`]), [`client_config`] (system roots, a CA file, or
//!   [`AcceptAnyServerCert`] for `--insecure`) and [`server_name`] (SNI).
//!
//! It does not own sockets, timers or listeners: the driver layer feeds the layer
//! and executes what it says, as it does for the cores.
//!
//! [rustls]: https://docs.rs/rustls

mod config;
mod flush;
mod layer;

pub use config::{
    certs_from_pem, client_config, fingerprint, key_from_pem, self_signed, server_config,
    server_config_from_pem, server_name, AcceptAnyServerCert, SelfSigned, TlsConfigError,
};
pub use flush::FlushMap;
pub use layer::{
    handshake_deadline, TlsError, TlsLimits, TlsServerLayer, HANDSHAKE_TIMEOUT,
    MAX_HANDSHAKE_BYTES, MAX_UNWRITTEN,
};

/// The rustls version this module is built on, re-exported for drivers and tests.
pub use rustls;
