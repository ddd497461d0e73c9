//! AWS Systems Manager Parameter Store for Wharf: the `AmazonSSM` JSON 1.1
//! operations on parameters (put, get by name / path, describe, history,
//! labels, delete, tags) over the key-value [`Store`].
//!
//! Layout in the store: see [`records`]. Every value is sealed at rest
//! with the [`Sealer`], bound to `{parameter ARN}#{version}`, whatever its
//! type; values never go to logs. There is no KMS: a SecureString's `KeyId`
//! is recorded as given (default `alias/aws/ssm`) and shown back, and its
//! "ciphertext" (a SecureString read without `WithDecryption`) is the
//! base64 of the sealed bytes, opaque as SSM's is.
//!
//! What is refused, as there is nothing behind it: parameter policies
//! (`Policies`), data types other than `text` (`aws:ec2:image` needs EC2),
//! resource types other than `Parameter` for tagging, and `Shared`
//! parameters (DescribeParameters with `Shared` lists none).

mod api;
mod filters;
mod names;
pub mod records;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use wharf_protocol::AwsError;
use wharf_seal::Sealer;
use wharf_store::Store;

pub use api::dispatch;

/// Where a request is served: parameters are per region (the store key)
/// and their ARNs name the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub region: String,
    pub account: String,
}

/// Parameter Store over a store, sealing values with a sealer.
#[derive(Clone)]
pub struct Ssm {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
}

impl std::fmt::Debug for Ssm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ssm")
    }
}

impl Ssm {
    pub fn new(store: Arc<dyn Store>, sealer: Arc<Sealer>) -> Ssm {
        Ssm { store, sealer }
    }

    /// The ARN IAM judges for a reference as a task definition's
    /// `secrets[].valueFrom` gives it: a name (`/a/b`, `a`) or a full ARN
    /// `arn:aws:ssm:REGION:ACCOUNT:parameter/a/b`, with or without a
    /// `:version` / `:label` selector (which the ARN leaves out). Err if it
    /// is not a well-formed parameter reference of this region and account.
    pub fn parameter_arn(scope: &Scope, reference: &str) -> Result<String, AwsError> {
        let r = names::reference(scope, reference, true)?;
        Ok(names::arn(scope, r.shown()))
    }

    /// The value (decrypted) of the parameter a reference names (name or
    /// ARN, with a `:version` or `:label` selector as GetParameter allows;
    /// without one, the current version). `ParameterNotFound` or
    /// `ParameterVersionNotFound` if there is no such parameter or version.
    pub async fn value(&self, scope: &Scope, reference: &str) -> Result<String, AwsError> {
        api::Api::new(self, scope, 0).value(reference).await
    }
}

/// An error with its code and the status SSM answers it with.
pub(crate) fn err(code: &str, message: impl Into<String>) -> AwsError {
    let status = wharf_model::ssm::error_http_status(code).unwrap_or(400);
    AwsError::new(status, code, message)
}

pub(crate) fn validation(message: impl Into<String>) -> AwsError {
    err("ValidationException", message)
}
