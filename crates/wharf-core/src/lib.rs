//! Wharf's domain: the records the control plane stores, and pure,
//! deterministic logic over them — task-definition validation, the task
//! lifecycle state machine, placement. Nothing here does I/O or reads the
//! wall clock: time comes in as an argument (see [`clock`]), randomness
//! through `rand::Rng`, so controllers can be driven by a simulation.

pub mod account_settings;
pub mod admin_protocol;
pub mod agent_protocol;
pub mod arn;
pub mod capacity;
pub mod clock;
pub mod container_rules;
pub mod error;
pub mod exec_protocol;
pub mod lifecycle;
pub mod placement;
pub mod query;
pub mod records;
pub mod service;
pub mod taskdef;

pub use error::CoreError;
