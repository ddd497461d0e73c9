use thiserror::Error;

/// A request the domain refuses. The variant names the ECS error code the
/// API layer returns for it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Client(String),
}

impl CoreError {
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidParameter(_) => "InvalidParameterException",
            CoreError::Client(_) => "ClientException",
        }
    }
}

pub(crate) fn client(msg: impl Into<String>) -> CoreError {
    CoreError::Client(msg.into())
}

pub(crate) fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::InvalidParameter(msg.into())
}
