//! # echochat
//!
//! TCP echo ([RFC 862]) and a line-based chat service, built as a **sans-IO core**
//! plus **pluggable transports**.
//!
//! * The core ([`echo`], [`chat`], [`framing`], [`telnet`], [`time`]) holds every
//!   protocol decision: framing, limits, backpressure, timeouts, notices and errors.
//!   It performs no I/O, reads no clock and spawns nothing: bytes and the current
//!   time go in, bytes to send and connections to close come out. It is `no_std`
//!   (with `alloc`) when built with `--no-default-features`.
//! * Each transport (`threads`, `tokio`, `smol`, one cargo feature each) owns
//!   sockets, tasks or threads and timers, and executes what the core decides,
//!   through a driver layer that is sans-IO too. Any async runtime plugs in through
//!   the public [`runtime::Runtime`] trait; [`runtime::RuntimeKind`] picks a
//!   built-in one by name at run time.
//!
//! Pick the runtime you already use:
//!
//! ```toml
//! echochat = { version = "0.1", default-features = false, features = ["tokio"] }
//! ```
//!
//! [RFC 862]: https://www.rfc-editor.org/rfc/rfc862
#![cfg_attr(not(feature = "std"), no_std)]
// docs.rs (`--cfg docsrs`, see `[package.metadata.docs.rs]`): badge each
// feature-gated item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod addr_limit;
pub mod chat;
pub mod cluster;
pub mod echo;
pub mod framing;
pub mod telnet;
pub mod time;

pub use time::Instant;

#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;

#[cfg(any(test, fuzzing, feature = "fuzzing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "fuzzing")))]
pub mod fuzzing;

#[cfg(any(test, feature = "sim"))]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;

#[cfg(feature = "driver")]
#[path = "../transports/mod.rs"]
mod transports;

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use transports::bus;
#[cfg(feature = "driver")]
pub(crate) use transports::driver;
#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub use transports::metrics;
#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub use transports::net;
#[cfg(feature = "net")]
#[cfg_attr(docsrs, doc(cfg(feature = "net")))]
pub use transports::runtime;
#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub use transports::smol;
#[cfg(feature = "threads")]
#[cfg_attr(docsrs, doc(cfg(feature = "threads")))]
pub use transports::threads;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use transports::tokio;
