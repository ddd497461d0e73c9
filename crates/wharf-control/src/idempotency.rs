//! `clientToken`: the same token with the same request returns what the
//! first request did and does nothing new; the same token with another
//! request is a conflict. The record is written in the same transaction as
//! the request's own writes, so a retry after a crash, a lost answer or a
//! timeout never does the work twice. Records expire with a shared lease
//! (one per hour, living [`TOKEN_LIFETIME`]), so tokens cost nothing after
//! a day.

use crate::error::from_store;
use crate::error::{invalid, ApiResult};
use crate::records;
use crate::Control;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use wharf_core::records::keys;
use wharf_protocol::AwsError;
use wharf_store::{LeaseId, Op};

/// How long a token is remembered, at least (23 hours) and at most (24).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A new lease is taken this often; tokens share the current one.
const LEASE_ROTATION: Duration = Duration::from_secs(3600);
/// ECS: "Up to 64 ASCII characters are allowed."
const MAX_TOKEN_LEN: usize = 64;

/// A request's token, and the fingerprint of the request it came with.
#[derive(Debug, Clone)]
pub struct Token {
    key: String,
    fingerprint: String,
}

/// What the first request with a token did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord<T> {
    fingerprint: String,
    /// The resources it made (task ARNs, a service ARN), named in a conflict.
    pub resource_ids: Vec<String>,
    /// The rest of its answer that the resources themselves do not tell.
    pub outcome: T,
}

/// The lease tokens are written under now.
#[derive(Default)]
pub struct Leases {
    current: tokio::sync::Mutex<Option<(LeaseId, Instant)>>,
}

impl Token {
    /// The token of `request` (its `clientToken`, given as `token`) for
    /// `operation` in `scope` (a cluster) of `region`, or None without one.
    /// `request` is fingerprinted with its token left out.
    pub fn of<R: Serialize>(
        operation: &str,
        region: &str,
        scope: &str,
        token: Option<&str>,
        request: &R,
    ) -> ApiResult<Option<Token>> {
        let Some(token) = token else { return Ok(None) };
        if token.is_empty() || token.len() > MAX_TOKEN_LEN || !token.is_ascii() {
            return Err(invalid(format!(
                "clientToken must be 1 to {MAX_TOKEN_LEN} ASCII characters."
            )));
        }
        let mut body = serde_json::to_value(request)
            .map_err(|e| AwsError::internal(format!("fingerprinting the request: {e}")))?;
        if let Some(o) = body.as_object_mut() {
            o.remove("clientToken");
        }
        Ok(Some(Token {
            key: keys::client_token(
                operation,
                region,
                scope,
                &hex::encode(Sha256::digest(token)),
            ),
            fingerprint: hex::encode(Sha256::digest(body.to_string())),
        }))
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// What the token's first request did, if it was this request;
    /// ConflictException if the token came with another one.
    pub async fn recall<T: serde::de::DeserializeOwned>(
        &self,
        c: &Control,
        operation: &str,
    ) -> ApiResult<Option<TokenRecord<T>>> {
        let Some(found) = records::get::<TokenRecord<T>>(c.store.as_ref(), &self.key).await? else {
            return Ok(None);
        };
        if found.value.fingerprint != self.fingerprint {
            return Err(AwsError::client(
                "ConflictException",
                format!(
                    "The clientToken is already in use with a different {operation} request (resourceIds: {}). Use a new clientToken, or the original parameters.",
                    found.value.resource_ids.join(", ")
                ),
            ));
        }
        Ok(Some(found.value))
    }

    /// The write that remembers this request's outcome, to commit with it.
    pub fn remember<T: Serialize>(
        &self,
        lease: LeaseId,
        resource_ids: Vec<String>,
        outcome: T,
    ) -> Op {
        let record = TokenRecord {
            fingerprint: self.fingerprint.clone(),
            resource_ids,
            outcome,
        };
        Op::put_with_lease(self.key.clone(), wharf_store::typed::encode(&record), lease)
    }
}

impl Leases {
    /// The lease to write `token` under, if there is a token: the current
    /// one, or a new one once it is an hour old (so the current lease
    /// always has at least 23 hours left).
    pub async fn for_token(
        &self,
        c: &Control,
        token: Option<&Token>,
    ) -> ApiResult<Option<LeaseId>> {
        match token {
            Some(_) => self.current(c).await.map(Some),
            None => Ok(None),
        }
    }

    async fn current(&self, c: &Control) -> ApiResult<LeaseId> {
        let mut current = self.current.lock().await;
        if let Some((id, at)) = *current {
            if at.elapsed() < LEASE_ROTATION {
                return Ok(id);
            }
        }
        let id = c
            .store
            .grant_lease(TOKEN_LIFETIME)
            .await
            .map_err(from_store)?;
        *current = Some((id, Instant::now()));
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        count: i32,
        client_token: Option<String>,
    }

    fn token(count: i32, t: &str) -> Token {
        let r = Req {
            count,
            client_token: Some(t.into()),
        };
        Token::of(
            "RunTask",
            "us-east-1",
            "default",
            r.client_token.as_deref(),
            &r,
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn the_fingerprint_is_the_request_without_its_token() {
        let a = token(2, "t1");
        assert_eq!(a.fingerprint, token(2, "t2").fingerprint);
        assert_ne!(a.fingerprint, token(3, "t1").fingerprint);
        assert_eq!(a.key, token(3, "t1").key);
        assert_ne!(a.key, token(2, "t2").key);
        assert!(a.key.starts_with("/idempotency/RunTask/us-east-1/default/"));
    }

    #[test]
    fn tokens_are_1_to_64_ascii_characters() {
        let r = Req {
            count: 1,
            client_token: None,
        };
        assert!(Token::of("RunTask", "us-east-1", "d", None, &r)
            .unwrap()
            .is_none());
        for bad in ["", "é", &"x".repeat(65)] {
            let e = Token::of("RunTask", "us-east-1", "d", Some(bad), &r).unwrap_err();
            assert_eq!(e.code, "InvalidParameterException", "{bad:?}");
        }
        assert!(Token::of("RunTask", "us-east-1", "d", Some(&"x".repeat(64)), &r).is_ok());
    }
}
