//! The chat service (`docs/PROTOCOL.md`) as one sans-IO state machine for the whole server.
//!
//! [`ChatServer`] owns every connection, nick and room. The transport tells it what
//! happened (`handle_open`, `handle_data`, `handle_flushed`, `handle_peer_closed`,
//! `handle_reset`, `handle_closed`, `handle_timeout`, `shutdown`), then drains
//! [`ChatServer::poll_output`] and executes each [`Output`]: send these bytes to
//! that connection, or close it. Time comes in as an [`Instant`](crate::Instant).
//!
//! Invariants the driver relies on:
//! * after every `handle_*` call, drain `poll_output` until `None`;
//! * after `handle_timeout(now)`, `poll_timeout()` is `None` or later than `now`;
//! * a broadcast is encoded once: every recipient's [`Output::Transmit`] holds a
//!   clone of the same [`bytes::Bytes`] (a reference-count bump, no copy);
//! * once a connection is closed ([`Output::Close`]) it gets no more output but a
//!   possible [`Output::Abort`] (its grace for flushing ran out), and late events the
//!   transport reports for it are ignored; report its socket closed with
//!   `handle_closed`;
//! * after `shutdown(now)`, the driver may return once `is_finished()` is true.
//! * outputs for one connection come in order: its `Close` follows its last
//!   `Transmit`; execute them in the order polled.
//!
//! The user-visible protocol (commands, notices, errors, limits) is written up in
//! `docs/PROTOCOL.md`; the finer decisions are listed on [`ChatServer`].
//!
//! A core made with [`ChatServer::with_cluster`] is one node of a cluster
//! (`docs/cluster.md`, rules in [`cluster`] and `server/cluster.rs`): it also outputs
//! [`Output::Bus`] actions for the bus and takes the bus's events through
//! [`ChatServer::handle_bus`]. It stays pure: no I/O, time passed in.
//!
//! ```
//! use echochat::chat::{ChatConfig, ChatServer, Output};
//! use echochat::Instant;
//!
//! let mut chat = ChatServer::new(ChatConfig::default());
//! let now = Instant::ZERO;
//! let alice = chat.handle_open(now);
//! let bob = chat.handle_open(now);
//! while chat.poll_output().is_some() {} // welcome and join notices
//! chat.handle_data(now, alice, b"hi bob\n").unwrap();
//! match chat.poll_output() {
//!     Some(Output::Transmit { to, bytes }) => {
//!         assert_eq!(to, bob);
//!         assert_eq!(&bytes[..], b"<guest1> hi bob\n");
//!         chat.handle_flushed(to, bytes.len()).unwrap(); // once written
//!     }
//!     other => panic!("{other:?}"),
//! }
//! assert!(chat.poll_output().is_none());
//! ```

pub mod cluster;
mod command;
mod server;
mod text;

#[cfg(test)]
mod tests;

pub use command::Command;
pub use server::{
    reply_budget, reply_width, ChatConfig, ChatError, ChatServer, CloseReason, ConnId, Output,
    LINE_OVERHEAD, MAX_REPLY_COST, MIN_REPLY_WIDTH, RESERVED_NICK,
};
pub use text::{is_look_alike, sanitize, valid_name, MAX_NAME, REPLACEMENT};
