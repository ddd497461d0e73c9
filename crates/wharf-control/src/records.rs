//! Typed access to the store: JSON records under the keys of
//! `wharf_core::records::keys`, read with their revision so that writes
//! can compare-and-swap.

use crate::error::{from_store, ApiResult};
use serde::{de::DeserializeOwned, Serialize};
use wharf_protocol::AwsError;
use wharf_store::{Compare, Op, Revision, Store, Txn};

/// A record and the revision it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub key: String,
    pub mod_revision: Revision,
}

impl<T: Serialize> Versioned<T> {
    /// The compare that makes a write conditional on this read.
    pub fn unchanged(&self) -> Compare {
        Compare::ModRevision(self.key.clone(), self.mod_revision)
    }
    pub fn put(&self) -> Op {
        put(&self.key, &self.value)
    }
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        tracing::error!(key, error = %e, "undecodable record");
        AwsError::internal(format!("Corrupt record at {key}: {e}"))
    })
}

pub fn put<T: Serialize>(key: &str, v: &T) -> Op {
    Op::Put {
        key: key.to_string(),
        value: encode(v),
        lease: None,
    }
}

pub async fn get<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> ApiResult<Option<Versioned<T>>> {
    match store.get(key).await.map_err(from_store)? {
        None => Ok(None),
        Some(kv) => Ok(Some(Versioned {
            value: decode(key, &kv.value)?,
            key: kv.key,
            mod_revision: kv.mod_revision,
        })),
    }
}

/// Every record under `prefix`, in key order, and the revision read at.
pub async fn list<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> ApiResult<(Vec<Versioned<T>>, Revision)> {
    let mut out = Vec::new();
    let mut bad = None;
    let revision = wharf_store::scan(store, prefix, 10_000, |kv| {
        match decode(&kv.key, &kv.value) {
            Ok(value) => out.push(Versioned {
                value,
                key: kv.key,
                mod_revision: kv.mod_revision,
            }),
            Err(e) => {
                bad.get_or_insert(e);
            }
        }
    })
    .await
    .map_err(from_store)?;
    match bad {
        Some(e) => Err(e),
        None => Ok((out, revision)),
    }
}

/// Commits `txn`; false if a compare failed (someone wrote first).
pub async fn commit(store: &dyn Store, txn: Txn) -> ApiResult<bool> {
    Ok(store.txn(txn).await.map_err(from_store)?.succeeded)
}

/// How many times an optimistic write is retried before giving up.
pub const MAX_ATTEMPTS: usize = 50;

pub fn contention() -> AwsError {
    AwsError::internal("Too much contention on a resource; try again.")
}
