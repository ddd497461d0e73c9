//! The host agent: registers this host as a container instance, runs the
//! tasks the control plane assigns to it on Docker, and reports their state.

pub mod agent;
pub mod awslogs;
pub mod client;
pub mod credentials;
pub mod deps;
pub mod endpoint;
pub mod exec;
pub mod metadata;
pub mod pause;
pub mod policy;
pub mod runtime;
pub mod sim;
pub mod spec;
