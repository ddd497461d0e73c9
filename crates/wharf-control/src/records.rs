//! Typed access to the store: JSON records under the keys of
//! `wharf_core::records::keys`, read with their revision so that writes
//! can compare-and-swap.

use crate::error::{from_store, ApiResult};
use serde::de::DeserializeOwned;
use wharf_protocol::AwsError;
use wharf_store::{Revision, Store, Txn};

pub use wharf_store::typed::{encode, put, Versioned};

pub async fn get<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> ApiResult<Option<Versioned<T>>> {
    wharf_store::typed::get(store, key)
        .await
        .map_err(from_store)
}

/// Every record under `prefix`, in key order, and the revision read at.
pub async fn list<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> ApiResult<(Vec<Versioned<T>>, Revision)> {
    wharf_store::typed::list(store, prefix)
        .await
        .map_err(from_store)
}

/// Commits `txn`; false if a compare failed (someone wrote first).
pub async fn commit(store: &dyn Store, txn: Txn) -> ApiResult<bool> {
    wharf_store::typed::commit(store, txn)
        .await
        .map_err(from_store)
}

/// How many times an optimistic write is retried before giving up.
pub const MAX_ATTEMPTS: usize = 50;

pub fn contention() -> AwsError {
    AwsError::internal("Too much contention on a resource; try again.")
}
