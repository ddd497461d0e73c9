//! The error envelope of the AWS JSON protocols: a body with `__type` and
//! `message`, the `X-Amzn-Errortype` header, and an HTTP status.

use serde::Serialize;

/// An error as an AWS service returns it. `code` is the shape name that
/// clients turn into an exception class (botocore: `ClientError.response["Error"]["Code"]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub code: String,
    pub message: String,
    pub status: u16,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "__type")]
    code: &'a str,
    message: &'a str,
}

impl AwsError {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            status,
        }
    }

    /// A 400 client error with the given code.
    pub fn client(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn serialization(message: impl Into<String>) -> Self {
        Self::client("SerializationException", message)
    }

    pub fn unknown_operation(target: &str) -> Self {
        Self::client(
            "UnknownOperationException",
            format!("Operation {target} is not supported by this service."),
        )
    }

    pub fn missing_authentication() -> Self {
        Self::new(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    }

    pub fn unrecognized_client() -> Self {
        Self::client(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    }

    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Self::client("InvalidSignatureException", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "ServerException", message)
    }

    /// JSON body: `{"__type": code, "message": message}`.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            code: &self.code,
            message: &self.message,
        })
        .expect("error envelope serializes")
    }

    /// Value of the `X-Amzn-Errortype` header (`Code:` followed by a namespace, as AWS sends it).
    pub fn error_type_header(&self) -> String {
        format!("{}:", self.code)
    }

    /// Parses an error envelope as clients do: `__type` may carry a
    /// `namespace#` prefix; `message` may be spelled `Message`.
    pub fn from_body(status: u16, body: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let code = v.get("__type")?.as_str()?;
        let code = code.rsplit('#').next().unwrap_or(code);
        let message = v
            .get("message")
            .or_else(|| v.get("Message"))
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        Some(Self::new(status, code, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips() {
        let e = AwsError::client("ClusterNotFoundException", "Cluster not found.");
        let body = e.body();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["__type"], "ClusterNotFoundException");
        assert_eq!(v["message"], "Cluster not found.");
        assert_eq!(AwsError::from_body(400, &body), Some(e));
    }

    #[test]
    fn from_body_strips_namespace() {
        let e = AwsError::from_body(
            400,
            br#"{"__type":"com.amazonaws.ecs#ClientException","Message":"x"}"#,
        )
        .unwrap();
        assert_eq!(e.code, "ClientException");
        assert_eq!(e.message, "x");
    }
}
