//! Typed records over a [`Store`]: JSON values read with the revision they
//! were read at, so that a write can compare-and-swap against the read.

use crate::{Compare, Op, Revision, Store, StoreError, Txn};
use serde::{de::DeserializeOwned, Serialize};

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

pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| {
        tracing::error!(key, error = %e, "undecodable record");
        StoreError::Corrupt {
            key: key.to_owned(),
            message: e.to_string(),
        }
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
) -> Result<Option<Versioned<T>>, StoreError> {
    match store.get(key).await? {
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
) -> Result<(Vec<Versioned<T>>, Revision), StoreError> {
    let mut out = Vec::new();
    let mut bad = None;
    let revision = crate::scan(store, prefix, 10_000, |kv| {
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
    .await?;
    match bad {
        Some(e) => Err(e),
        None => Ok((out, revision)),
    }
}

/// Commits `txn`; false if a compare failed (someone wrote first).
pub async fn commit(store: &dyn Store, txn: Txn) -> Result<bool, StoreError> {
    Ok(store.txn(txn).await?.succeeded)
}
