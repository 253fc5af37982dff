//! Transports: the driver layer (sans-IO step types shared by every runtime), the
//! public runtime seam, and one module per built-in runtime, each behind its cargo
//! feature. Included once from `src/lib.rs`; the public modules are re-exported
//! there (`echochat::net`, `echochat::runtime`, `echochat::threads`, …).

pub(crate) mod driver;

#[cfg(feature = "cluster")]
pub mod bus;
#[cfg(feature = "net")]
pub(crate) mod kind;
#[cfg(feature = "net")]
pub mod metrics;
#[cfg(feature = "net")]
pub mod net;
#[cfg(feature = "net")]
pub mod runtime;

#[cfg(feature = "smol")]
pub mod smol;
#[cfg(feature = "threads")]
pub mod threads;
#[cfg(feature = "tokio")]
pub mod tokio;
