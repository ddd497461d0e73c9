//! CloudWatch Logs for Wharf: a durable log store ([`store`]) and the
//! `Logs_20140328` JSON 1.1 API over it ([`api`]).
//!
//! The crate knows nothing about HTTP or the control plane: the server
//! verifies the signature and forwards `(operation, body)` to [`api::dispatch`];
//! in-process callers (the agent's log driver, tests, benchmarks) may use
//! [`LogStore`] directly.

pub mod api;
pub mod error;
pub mod filter;
pub mod retention;
pub mod rules;
pub mod store;
mod token;

pub use api::{dispatch, Scope};
pub use error::LogError;
pub use store::{LogStore, StoredEvent, StreamSelection};
pub use token::{at, pos, Pos};
