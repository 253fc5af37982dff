//! Fuzz bodies and invariant checkers for the sans-IO core.
//!
//! Every cargo-fuzz target in `fuzz/fuzz_targets/` is a three-line wrapper around one
//! function here, and `tests/fuzz_corpus.rs` replays every checked-in corpus and
//! regression file through the same functions, so a crash found by a fuzzer becomes
//! a `cargo test` failure once its input is saved under `fuzz/regressions/<target>/`.
//!
//! * [`framer`]: chunking invariance and bounds of [`LineFramer`](crate::framing::LineFramer);
//! * [`echo`]: identity and bounds of [`EchoConn`](crate::echo::EchoConn);
//! * [`command`]: [`Command::parse`](crate::chat::Command::parse), [`sanitize`](crate::chat::sanitize)
//!   and [`valid_name`](crate::chat::valid_name) never panic and keep their promises;
//! * [`telnet`](fn@telnet): chunking invariance and bounds of
//!   [`TelnetDecoder`](crate::telnet::TelnetDecoder), against the model's own parser;
//! * [`chat`](fn@chat): structure-aware event sequences against [`ChatServer`](crate::chat::ChatServer),
//!   checked after every step by [`ChatChecker`].
//!
//! Each body panics (with a message saying which invariant broke) on a violation.

mod check;
mod command;
mod echo;
mod framer;
mod model;
mod telnet;

#[cfg(feature = "fuzzing")]
mod chat;
#[cfg(feature = "fuzzing")]
mod cluster;
#[cfg(all(feature = "fuzzing", feature = "tls"))]
mod tls;

pub use check::{forbidden_char, token, ChatChecker};
pub use command::{check_parse, check_sanitize, check_valid_name, command};
pub use echo::{check_echo, echo, EchoOp};
pub use framer::{check_framer, chunk, framer, reference};
pub use model::Model;
pub use telnet::{check_telnet, telnet, telnet_reference, TelnetOut};

#[cfg(feature = "fuzzing")]
pub use chat::{agree, chat, run_chat, run_chat_chunked, ChatEvent, ChatInput, Payload};
#[cfg(feature = "fuzzing")]
pub use cluster::cluster;
#[cfg(all(feature = "fuzzing", feature = "tls"))]
pub use tls::{run_tls, tls, tls_configs, TlsConfigs, TlsInput, TlsOp, TlsPair};

/// Names of the fuzz targets, as in `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: &[&str] = &["framer", "command", "echo", "chat", "telnet", "cluster"];

/// Runs the body of fuzz target `target` on `data`; `false` if there is no such target.
pub fn replay(target: &str, data: &[u8]) -> bool {
    match target {
        "framer" => framer(data),
        "command" => command(data),
        "echo" => echo(data),
        "telnet" => telnet(data),
        #[cfg(feature = "fuzzing")]
        "chat" => chat(data),
        #[cfg(feature = "fuzzing")]
        "cluster" => cluster(data),
        #[cfg(all(feature = "fuzzing", feature = "tls"))]
        "tls" => tls(data),
        _ => return false,
    }
    true
}
