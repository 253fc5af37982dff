//! # echochat
//!
//! TCP echo ([RFC 862]) and a line-based chat service, built as a **sans-IO core**
//! plus **pluggable transports**.
//!
//! * The core ([`echo`], [`chat`], [`framing`], [`telnet`], [`time`], [`admission`]) holds every
//!   protocol decision: framing, limits, backpressure, timeouts, notices and errors.
//!   It performs no I/O, reads no clock and spawns nothing: bytes and the current
//!   time go in, bytes to send and connections to close come out. It is `no_std`
//!   (with `alloc`) when built with `--no-default-features`.
//! * Each transport (`threads`, `tokio`, `smol`, one cargo feature each) owns
//!   sockets, tasks or threads and timers, and executes what the core decides.
//!
//! Pick the runtime you already use:
//!
//! ```toml
//! echochat = { version = "0.1", default-features = false, features = ["tokio"] }
//! ```
//!
//! [RFC 862]: https://www.rfc-editor.org/rfc/rfc862
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod admission;
pub mod chat;
pub mod echo;
pub mod framing;
pub mod telnet;
pub mod time;

pub use time::Instant;

#[cfg(any(test, fuzzing, feature = "fuzzing"))]
pub mod fuzzing;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

#[cfg(feature = "net")]
#[path = "../transports/net.rs"]
pub mod net;

#[cfg(feature = "net")]
#[path = "../transports/live.rs"]
mod live;

#[cfg(feature = "net")]
#[path = "../transports/hub.rs"]
mod hub;

#[cfg(any(feature = "tokio", feature = "smol"))]
#[path = "../transports/aio.rs"]
mod aio;

#[cfg(feature = "threads")]
#[path = "../transports/threads.rs"]
pub mod threads;

#[cfg(feature = "tokio")]
#[path = "../transports/tokio.rs"]
pub mod tokio;

#[cfg(feature = "smol")]
#[path = "../transports/smol.rs"]
pub mod smol;
