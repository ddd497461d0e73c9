//! The AWS wire protocol, independent of any web framework: SigV4 request
//! signing and verification, AWS JSON 1.1 bodies and its error envelope.
//!
//! The API server (`wharf-control`) verifies every request with [`sigv4::Presented::verify`];
//! the agent and test clients sign theirs with [`sigv4::sign`], so both sides
//! share one canonicalisation and cannot drift apart.

pub mod error;
pub mod json;
pub mod query;
pub mod sigv4;

pub use error::AwsError;

/// Content type of AWS JSON 1.1 requests and responses.
pub const JSON_1_1: &str = "application/x-amz-json-1.1";
