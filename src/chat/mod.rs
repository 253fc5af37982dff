//! The chat service (SPEC §3) as one sans-IO state machine for the whole server.
//!
//! [`ChatServer`] owns every connection, nick and room. The transport tells it what
//! happened (`handle_open`, `handle_data`, `handle_flushed`, `handle_peer_closed`,
//! `handle_reset`, `handle_timeout`, `shutdown`), then drains
//! [`ChatServer::poll_output`] and executes each [`Output`]: send these bytes to
//! that connection, or close it. Time comes in as an [`Instant`](crate::Instant).
//!
//! Invariants the driver relies on:
//! * after every `handle_*` call, drain `poll_output` until `None`;
//! * after `handle_timeout(now)`, `poll_timeout()` is `None` or later than `now`;
//! * a broadcast is encoded once: every recipient's [`Output::Transmit`] holds a
//!   clone of the same [`bytes::Bytes`] (a reference-count bump, no copy);
//! * once a connection is closed ([`Output::Close`]) it gets no more output, and
//!   late events the transport reports for it are ignored.

mod command;
mod server;
mod text;

pub use command::Command;
pub use server::{ChatConfig, ChatError, ChatServer, CloseReason, ConnId, Output};
pub use text::{sanitize, valid_name};
