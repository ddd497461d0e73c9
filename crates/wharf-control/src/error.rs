//! Handler errors, rendered as AWS JSON error envelopes.

use wharf_core::CoreError;
use wharf_protocol::AwsError;
use wharf_store::StoreError;

pub type ApiResult<T> = Result<T, AwsError>;

pub fn from_core(e: CoreError) -> AwsError {
    AwsError::client(e.code(), e.to_string())
}

pub fn from_store(e: StoreError) -> AwsError {
    tracing::error!(error = %e, "store failure");
    AwsError::internal(format!("Storage failure: {e}"))
}

pub fn invalid(msg: impl Into<String>) -> AwsError {
    AwsError::client("InvalidParameterException", msg)
}

pub fn client(msg: impl Into<String>) -> AwsError {
    AwsError::client("ClientException", msg)
}

/// What Wharf does not do yet, named: `UnsupportedFeatureException`.
pub fn unsupported(what: &str) -> AwsError {
    AwsError::client(
        "UnsupportedFeatureException",
        format!("{what} is not supported by Wharf yet."),
    )
}

pub fn cluster_not_found() -> AwsError {
    AwsError::client("ClusterNotFoundException", "Cluster not found.")
}
