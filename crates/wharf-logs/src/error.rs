//! The log store's errors, and how they appear on the wire.

use wharf_protocol::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("The specified log group does not exist.")]
    GroupNotFound,
    #[error("The specified log stream does not exist.")]
    StreamNotFound,
    #[error("The specified log group already exists")]
    GroupExists,
    #[error("The specified log stream already exists")]
    StreamExists,
    #[error("{0}")]
    InvalidParameter(String),
    /// The storage engine failed; the request may be retried. Boxed: redb's
    /// error is large and every `Result` here would carry its size.
    #[error("log storage failure: {0}")]
    Storage(#[source] Box<redb::Error>),
    /// A stored record did not decode: a bug or a damaged file.
    #[error("corrupt log record: {0}")]
    Corrupt(String),
}

pub type LogResult<T> = Result<T, LogError>;

pub(crate) fn invalid(msg: impl Into<String>) -> LogError {
    LogError::InvalidParameter(msg.into())
}

/// redb has one error type per step; all of them fold into [`redb::Error`].
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for LogError {
            fn from(e: $t) -> Self {
                LogError::Storage(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

impl LogError {
    /// The CloudWatch Logs exception shape this error is returned as.
    pub fn code(&self) -> &'static str {
        match self {
            LogError::GroupNotFound | LogError::StreamNotFound => "ResourceNotFoundException",
            LogError::GroupExists | LogError::StreamExists => "ResourceAlreadyExistsException",
            LogError::InvalidParameter(_) => "InvalidParameterException",
            LogError::Storage(_) | LogError::Corrupt(_) => "ServiceUnavailableException",
        }
    }
}

impl From<LogError> for AwsError {
    fn from(e: LogError) -> Self {
        let code = e.code();
        if matches!(e, LogError::Storage(_) | LogError::Corrupt(_)) {
            tracing::error!(error = %e, "log store failure");
        }
        let status = wharf_model::logs::error_http_status(code).unwrap_or(400);
        AwsError::new(status, code, e.to_string())
    }
}
