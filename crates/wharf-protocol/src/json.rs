//! Request and response bodies of AWS JSON 1.1, with the errors AWS gives
//! for a body that isn't JSON, isn't an object, or lacks a required member.

use crate::AwsError;
use serde::{de::DeserializeOwned, Serialize};

pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    // An empty body is an empty request, as AWS reads it.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    // The common case parses once; a body that fails is parsed again as a
    // plain value only to say what is wrong with it.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        if let Ok(v) = serde_json::from_slice(body) {
            return Ok(v);
        }
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| AwsError::serialization(format!("Request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(AwsError::serialization(
            "Request body must be a JSON object.",
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        match msg.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            Some(field) => AwsError::client(
                "InvalidParameterException",
                format!("1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"),
            ),
            None => AwsError::serialization(format!("Invalid request: {msg}")),
        }
    })
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, AwsError> {
    serde_json::to_vec(v).map_err(|e| AwsError::internal(e.to_string()))
}
