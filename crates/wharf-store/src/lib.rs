//! An etcd-shaped key-value store: revisioned keys, compare-and-swap
//! transactions, prefix watches with history replay, and leases.
//!
//! Two backends share one engine:
//!
//! * [`MemStore`] — purely in memory.
//! * [`RedbStore`] — the same engine with the data in a
//!   [redb](https://docs.rs/redb) file. Every write is committed to disk
//!   (fsync) *before* it becomes visible and before [`Store::txn`] returns,
//!   so an acknowledged write survives `kill -9`. Memory holds each key's
//!   revisions and lease, not its value: reads are served from a redb read
//!   transaction (a consistent snapshot whose revision is its last commit),
//!   so memory grows with the number of keys, not with their size.
//!
//! # Semantics in brief
//!
//! * The revision is global and strictly increasing: the first write is
//!   revision 1, `0` means "nothing written yet". Every write of one
//!   transaction shares one new revision; a transaction that writes nothing
//!   (failed compares with an empty `failure` branch, deletes of absent keys)
//!   does not bump it. The revision never goes backwards, also not across a
//!   reopen of a [`RedbStore`].
//! * Ops of one transaction are applied in order; a later op sees the effect
//!   of an earlier op on the same key (two puts of one key in one txn give
//!   `version` + 2 and two `Put` events with the same revision).
//! * Watches deliver whole revisions in order, without gaps or duplicates.
//!   History for replay is bounded (see [`Options`]); watching from an older
//!   revision fails with [`StoreError::Compacted`]. A [`RedbStore`] does not
//!   persist history: after a reopen only revisions from `current + 1` on can
//!   be watched.
//! * **A watcher that falls behind is closed**: when its channel (see
//!   [`Options::watch_buffer`]) cannot take the next revision's events, the
//!   store drops the sender instead of blocking writers. The receiver then
//!   yields what is still buffered and ends with `None` — it never ends in
//!   the middle of a revision. The consumer should re-watch from the last
//!   revision it saw `+ 1` (or, on [`StoreError::Compacted`], re-list with
//!   [`Store::range`] and watch from the range's `revision + 1`). The channel
//!   also ends when the store itself is dropped.
//! * Leases: keys put with a lease are deleted, all in one revision with
//!   `Delete` events, when the lease expires or is revoked. Expiry is checked
//!   by a background tokio task (started with the first
//!   [`Store::grant_lease`]) and before every write. A [`RedbStore`]
//!   persists leases; after a reopen their deadline restarts from "now" with
//!   the full TTL (as etcd does).

mod codec;
mod engine;
pub mod typed;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use engine::Engine;

/// Global store revision. Strictly increasing; `1` is the first write, `0`
/// means nothing has been written yet.
pub type Revision = i64;
/// Identifier of a lease returned by [`Store::grant_lease`].
pub type LeaseId = i64;
/// A shareable, type-erased store.
pub type DynStore = Arc<dyn Store>;

/// A key with its value and revision metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision at which the key was (last) created.
    pub create_revision: Revision,
    /// Revision of the last modification (or, in a `Delete` event, the
    /// revision of the deletion).
    pub mod_revision: Revision,
    /// Number of modifications since creation; `1` after the first put.
    /// `0` in a `Delete` event.
    pub version: i64,
    pub lease: Option<LeaseId>,
}

/// A condition of a [`Txn`].
#[derive(Debug, Clone)]
pub enum Compare {
    /// The key's `mod_revision` equals the revision; revision `0` means "the
    /// key must not exist".
    ModRevision(String, Revision),
    /// The key exists.
    Exists(String),
    /// The key does not exist.
    NotExists(String),
}

/// A write of a [`Txn`].
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    /// Deleting an absent key is a no-op (and writes nothing).
    Delete { key: String },
}

impl Op {
    /// A put without a lease.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    /// A put attached to `lease`.
    pub fn put_with_lease(key: impl Into<String>, value: impl Into<Vec<u8>>, lease: LeaseId) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }

    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// A transaction: if all `compares` hold, `success` is applied atomically,
/// otherwise `failure`.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Adds a compare.
    pub fn when(mut self, compare: Compare) -> Txn {
        self.compares.push(compare);
        self
    }

    /// Adds an op to the success branch.
    pub fn then(mut self, op: Op) -> Txn {
        self.success.push(op);
        self
    }

    /// Adds an op to the failure branch.
    pub fn otherwise(mut self, op: Op) -> Txn {
        self.failure.push(op);
        self
    }
}

/// Result of [`Store::txn`].
#[derive(Debug, Clone)]
pub struct TxnResponse {
    /// Whether all compares held (and `success` was applied).
    pub succeeded: bool,
    /// The store revision after the transaction: the transaction's own
    /// revision if it wrote anything, else the current revision.
    pub revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change delivered by [`Store::watch`].
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For `Put`: the new key-value. For `Delete`: the key, with
    /// `mod_revision` = the deletion revision, an empty value,
    /// `create_revision` = `version` = 0 and no lease.
    pub kv: KeyValue,
    /// The key before this event, if it existed: its revisions, version
    /// and lease, with an empty value. The value is not carried (etcd sends
    /// it only on request): nothing here needs it, and it would double the
    /// memory of every event in the watch history and in watchers' queues.
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    /// Revision of this event.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A prefix range read.
#[derive(Debug, Clone, Default)]
pub struct RangeRequest {
    /// Only keys starting with this prefix (`""` = all keys).
    pub prefix: String,
    /// Only keys strictly greater than this key (for paging).
    pub start_after: Option<String>,
    /// At most this many keys. `None` or `Some(0)` = no limit (as in etcd).
    pub limit: Option<usize>,
}

impl RangeRequest {
    pub fn prefix(prefix: impl Into<String>) -> RangeRequest {
        RangeRequest {
            prefix: prefix.into(),
            ..Default::default()
        }
    }
}

/// Result of [`Store::range`].
#[derive(Debug, Clone)]
pub struct RangeResponse {
    /// Matching keys in lexicographic (byte) order.
    pub kvs: Vec<KeyValue>,
    /// More keys match beyond `limit`.
    pub more: bool,
    /// The store revision the read was taken at.
    pub revision: Revision,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("revision {0} has been compacted")]
    Compacted(Revision),
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    #[error("storage: {0}")]
    Storage(String),
    #[error("corrupt record at {key}: {message}")]
    Corrupt { key: String, message: String },
}

/// Reads every key under `prefix` in key order, `page` keys per read (so a
/// large prefix is never one big read), handing each to `f`. Returns the
/// revision of the first read: what changes while later pages are read is
/// newer, so a watch from that revision + 1 sees it again — a repeat, never
/// a miss.
pub async fn scan(
    store: &dyn Store,
    prefix: &str,
    page: usize,
    mut f: impl FnMut(KeyValue),
) -> Result<Revision, StoreError> {
    let mut first = None;
    let mut start_after = None;
    loop {
        let resp = store
            .range(RangeRequest {
                prefix: prefix.to_string(),
                start_after: start_after.take(),
                limit: Some(page),
            })
            .await?;
        let revision = *first.get_or_insert(resp.revision);
        start_after = resp.kvs.last().map(|kv| kv.key.clone());
        resp.kvs.into_iter().for_each(&mut f);
        if !resp.more {
            return Ok(revision);
        }
    }
}

/// The key-value store. See the crate docs for the semantics.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError>;

    /// All compares true -> apply `success` atomically, else `failure`. A txn
    /// that writes nothing does not bump the revision. Every write in one txn
    /// shares one new revision. A put with an unknown lease fails the whole
    /// txn with [`StoreError::LeaseNotFound`] and writes nothing.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError>;

    /// Events for keys under `prefix` with revision >= `from` (`from` <= 0 or
    /// `current + 1`: only new events). Events arrive in revision order, with
    /// no gaps and no duplicates. If `from` is older than the retained history,
    /// [`StoreError::Compacted`]. The receiver ends if the watcher falls
    /// behind by more than [`Options::watch_buffer`] events (see crate docs).
    async fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> Result<tokio::sync::mpsc::Receiver<WatchEvent>, StoreError>;

    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// A fresh lease that expires `ttl` after the last grant / keep-alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Restarts the lease's TTL. [`StoreError::LeaseNotFound`] if it was
    /// revoked or has already expired.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Deletes the lease and its keys (in one revision).
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError>;
}

/// Tuning knobs shared by both backends.
#[derive(Debug, Clone)]
pub struct Options {
    /// Maximum number of recent events kept for watch replay.
    pub history_limit: usize,
    /// Approximate maximum bytes (keys + values) of recent events kept for
    /// watch replay.
    pub history_max_bytes: usize,
    /// Capacity of a watcher's channel (beyond its replay); a watcher that
    /// falls further behind is closed.
    pub watch_buffer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            history_limit: 100_000,
            // Enough for watchers that keep up and for pollers that come
            // back within about a second at 10,000 writes/s; one that falls
            // further behind gets `Compacted` and re-reads. It is most of
            // the durable store's memory besides redb's cache.
            history_max_bytes: 32 << 20,
            watch_buffer: 65_536,
        }
    }
}

/// In-memory store. Cheap to clone (clones share the same data).
#[derive(Clone)]
pub struct MemStore {
    engine: Arc<Engine>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::with_options(Options::default())
    }

    pub fn with_options(opts: Options) -> Self {
        MemStore {
            engine: Engine::new_mem(opts),
        }
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Durable store on a redb file; memory holds the keys' metadata, reads
/// come from redb. Cheap to clone (clones share the same database). The file is closed when the last
/// clone is dropped.
#[derive(Clone)]
pub struct RedbStore {
    engine: Arc<Engine>,
}

impl RedbStore {
    /// Opens (or creates) the database at `path` and loads its keys' metadata.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_options(path, Options::default())
    }

    pub fn open_with_options(path: &Path, opts: Options) -> Result<Self, StoreError> {
        Ok(RedbStore {
            engine: Engine::open_redb(path, opts)?,
        })
    }
}

macro_rules! impl_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl Store for $ty {
            async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
                self.engine.get(key)
            }
            async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
                self.engine.range(&req)
            }
            async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
                self.engine.txn(txn).await
            }
            async fn watch(
                &self,
                prefix: &str,
                from: Revision,
            ) -> Result<tokio::sync::mpsc::Receiver<WatchEvent>, StoreError> {
                self.engine.watch(prefix, from)
            }
            async fn current_revision(&self) -> Result<Revision, StoreError> {
                Ok(self.engine.current_revision())
            }
            async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
                self.engine.grant_lease(ttl).await
            }
            async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
                self.engine.keep_alive(lease)
            }
            async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
                self.engine.revoke_lease(lease).await
            }
        }
    };
}

impl_store!(MemStore);
impl_store!(RedbStore);
