//! Elastic Load Balancing v2 for Wharf.
//!
//! - [`api`]: the ELBv2 API (awsQuery, `Version=2015-12-01`): load
//!   balancers, target groups, targets, listeners, rules, attributes, tags.
//!   Handlers validate and write records to the store ([`records`]); they
//!   never talk to the data plane.
//! - [`dataplane`]: the listeners. It follows the store's watch, serves each
//!   listener on its host port, routes by the listener's rules, and checks
//!   the health of every target of the groups in use, writing each verdict
//!   back to the store. A second server on a shared store would serve the
//!   same listeners from the same records.
//!
//! The crate knows nothing about the API server's HTTP: the server verifies
//! the signature and forwards `(action, params)` to [`api::dispatch`].

pub mod api;
pub mod arn;
pub mod dataplane;
pub mod health;
pub mod records;
pub mod registry;
pub mod routing;
pub mod validate;

pub use api::{dispatch, Lb, LbConfig, Scope};
