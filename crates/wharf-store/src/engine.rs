//! The engine shared by both backends.
//!
//! Every key's revisions and lease live in [`State`] behind a short-lived
//! mutex; so do the values of the in-memory backend. The durable backend
//! keeps no values in memory: reads come from a redb read transaction (a
//! consistent snapshot, revision included), so memory per key is its
//! metadata, not its data.
//!
//! Writes are serialized by a second mutex (`writer`) that is held for a
//! whole write: plan the change against the state, persist it (redb
//! backend: one redb write transaction, committed with fsync), then apply
//! it to the state and deliver it to watchers. Because only the holder of
//! `writer` mutates the state, the plan stays valid while the state mutex
//! is released during the disk commit, and readers never wait for the disk.
//!
//! For the durable backend a write runs on tokio's blocking pool, which
//! also makes `txn` cancel-safe: dropping the future does not abort a
//! half-done write (it completes, or fails as a whole, in the background).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::codec;
use crate::{
    Compare, EventKind, KeyValue, LeaseId, Op, Options, RangeRequest, RangeResponse, Revision,
    StoreError, Txn, TxnResponse, WatchEvent,
};

/// key -> encoded [`KeyValue`] (see [`codec`]).
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// "format", "revision", "next_lease" -> i64.
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// lease id -> TTL in milliseconds.
const LEASES: TableDefinition<i64, u64> = TableDefinition::new("leases");

const META_FORMAT: &str = "format";
const META_REVISION: &str = "revision";
const META_NEXT_LEASE: &str = "next_lease";
const FORMAT: i64 = 1;

/// Longest time the lease reaper sleeps without re-checking.
const REAPER_MAX_SLEEP: Duration = Duration::from_secs(1);

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

pub(crate) struct Engine {
    opts: Options,
    /// The durable backend's file (readers use it without the writer lock);
    /// with one, writes touch the disk and run on the blocking pool.
    db: Option<Database>,
    /// Serializes writes; held across the disk commit.
    writer: Mutex<Writer>,
    /// Keys' metadata (and, in memory, values), leases, history and
    /// watchers; never held across disk I/O.
    state: Mutex<State>,
    reaper: Mutex<Option<JoinHandle<()>>>,
    wake_reaper: Arc<Notify>,
    /// Durable txns waiting for the group committer.
    group: Mutex<Group>,
}

type Reply = oneshot::Sender<Result<TxnResponse, StoreError>>;

/// Group commit: txns that arrive while a disk commit is under way wait
/// here, and the committer writes all of them in one redb transaction (one
/// fsync). Each keeps its own revision, planned in arrival order.
#[derive(Default)]
struct Group {
    pending: Vec<(Txn, Reply)>,
    /// A committer is running on the blocking pool.
    active: bool,
}

struct Writer {
    next_lease: LeaseId,
}

struct Lease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

struct Watcher {
    prefix: String,
    min_rev: Revision,
    tx: mpsc::Sender<WatchEvent>,
}

/// What memory holds of one key.
#[derive(Debug, Clone)]
struct Meta {
    create_revision: Revision,
    mod_revision: Revision,
    version: i64,
    lease: Option<LeaseId>,
    /// In-memory backend only; the durable one reads values from redb.
    value: Option<Vec<u8>>,
}

impl Meta {
    fn of(kv: &KeyValue, keep_value: bool) -> Meta {
        Meta {
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
            value: keep_value.then(|| kv.value.clone()),
        }
    }

    /// The key-value, with an empty value when memory holds none.
    fn to_kv(&self, key: &str) -> KeyValue {
        KeyValue {
            value: self.value.clone().unwrap_or_default(),
            ..self.to_prev(key)
        }
    }

    /// What an event says of the key before it: everything but the value.
    fn to_prev(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Vec::new(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        }
    }
}

struct State {
    kvs: BTreeMap<String, Meta>,
    /// Whether `kvs` holds values (the in-memory backend).
    keep_values: bool,
    revision: Revision,
    leases: HashMap<LeaseId, Lease>,
    /// (deadline, id) of every lease, for cheap expiry checks.
    deadlines: BTreeSet<(Instant, LeaseId)>,
    /// Recent events in revision order.
    history: VecDeque<WatchEvent>,
    history_bytes: usize,
    /// Every event with revision >= this is in `history`.
    history_floor: Revision,
    watchers: Vec<Watcher>,
}

/// A planned write: everything needed to persist it and apply it in memory.
#[derive(Default)]
struct Change {
    /// The new revision; meaningful only if `events` is non-empty.
    revision: Revision,
    events: Vec<WatchEvent>,
    granted: Option<(LeaseId, Duration)>,
    removed_leases: Vec<LeaseId>,
    next_lease: Option<LeaseId>,
}

impl Change {
    fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.granted.is_none()
            && self.removed_leases.is_empty()
            && self.next_lease.is_none()
    }
}

fn deadline(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn event_size(ev: &WatchEvent) -> usize {
    128 + 2 * ev.kv.key.len() + ev.kv.value.len()
}

impl State {
    fn new(kvs: BTreeMap<String, Meta>, revision: Revision, keep_values: bool) -> State {
        State {
            kvs,
            keep_values,
            revision,
            leases: HashMap::new(),
            deadlines: BTreeSet::new(),
            history: VecDeque::new(),
            history_bytes: 0,
            history_floor: revision + 1,
            watchers: Vec::new(),
        }
    }

    fn compare(&self, c: &Compare) -> bool {
        match c {
            Compare::ModRevision(key, 0) => !self.kvs.contains_key(key),
            Compare::ModRevision(key, rev) => {
                self.kvs.get(key).is_some_and(|kv| kv.mod_revision == *rev)
            }
            Compare::Exists(key) => self.kvs.contains_key(key),
            Compare::NotExists(key) => !self.kvs.contains_key(key),
        }
    }

    /// Plans `txn` as if the earlier txns of its commit group (their
    /// writes in `overlay`, the revision they reach in `base`) were applied.
    fn plan_txn(
        &self,
        txn: Txn,
        base: Revision,
        overlay: &HashMap<String, Option<KeyValue>>,
    ) -> Result<(bool, Change), StoreError> {
        // The key before this txn, without its value (see `WatchEvent::prev`).
        let get = |key: &str| -> Option<KeyValue> {
            match overlay.get(key) {
                Some(v) => v.as_ref().map(|kv| KeyValue {
                    value: Vec::new(),
                    ..kv.clone()
                }),
                None => self.kvs.get(key).map(|m| m.to_prev(key)),
            }
        };
        let exists = |key: &str| match overlay.get(key) {
            Some(v) => v.is_some(),
            None => self.kvs.contains_key(key),
        };
        let succeeded = txn.compares.iter().all(|c| match c {
            Compare::ModRevision(key, 0) => !exists(key),
            Compare::ModRevision(key, rev) => match overlay.get(key.as_str()) {
                Some(v) => v.as_ref().is_some_and(|kv| kv.mod_revision == *rev),
                None => self.compare(c),
            },
            Compare::Exists(key) => exists(key),
            Compare::NotExists(key) => !exists(key),
        });
        let ops = if succeeded { txn.success } else { txn.failure };
        let rev = base + 1;
        let mut events: Vec<WatchEvent> = Vec::with_capacity(ops.len());
        // Keys written earlier in this txn -> index of their latest event.
        let mut touched: HashMap<String, usize> = HashMap::new();
        for op in ops {
            let prev = match touched.get(op.key()) {
                Some(&i) => match events[i].kind {
                    EventKind::Put => Some(KeyValue {
                        value: Vec::new(),
                        ..events[i].kv.clone()
                    }),
                    EventKind::Delete => None,
                },
                None => get(op.key()),
            };
            match op {
                Op::Put { key, value, lease } => {
                    if let Some(id) = lease {
                        if !self.leases.contains_key(&id) {
                            return Err(StoreError::LeaseNotFound(id));
                        }
                    }
                    let kv = KeyValue {
                        key: key.clone(),
                        value,
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease,
                    };
                    touched.insert(key, events.len());
                    events.push(WatchEvent {
                        kind: EventKind::Put,
                        kv,
                        prev,
                    });
                }
                Op::Delete { key } => {
                    if prev.is_some() {
                        touched.insert(key.clone(), events.len());
                        events.push(tombstone(key, rev, prev));
                    }
                }
            }
        }
        Ok((
            succeeded,
            Change {
                revision: rev,
                events,
                ..Default::default()
            },
        ))
    }

    fn plan_revoke(&self, id: LeaseId) -> Result<Change, StoreError> {
        let lease = self.leases.get(&id).ok_or(StoreError::LeaseNotFound(id))?;
        let rev = self.revision + 1;
        let events = lease
            .keys
            .iter()
            .filter_map(|key| self.kvs.get(key).map(|m| (key, m)))
            .map(|(key, m)| tombstone(key.clone(), rev, Some(m.to_prev(key))))
            .collect();
        Ok(Change {
            revision: rev,
            events,
            removed_leases: vec![id],
            ..Default::default()
        })
    }

    fn first_expired(&self, now: Instant) -> Option<LeaseId> {
        self.deadlines
            .first()
            .filter(|(deadline, _)| *deadline <= now)
            .map(|&(_, id)| id)
    }

    fn detach(&mut self, lease: Option<LeaseId>, key: &str) {
        if let Some(l) = lease.and_then(|id| self.leases.get_mut(&id)) {
            l.keys.remove(key);
        }
    }

    fn attach(&mut self, lease: Option<LeaseId>, key: &str) {
        if let Some(id) = lease {
            match self.leases.get_mut(&id) {
                Some(l) => {
                    l.keys.insert(key.to_string());
                }
                None => tracing::warn!(key, lease = id, "key attached to an unknown lease"),
            }
        }
    }

    /// Applies a planned (and, if durable, persisted) change; returns the
    /// revision afterwards.
    fn apply(&mut self, change: Change, opts: &Options) -> Revision {
        let now = Instant::now();
        if !change.events.is_empty() {
            debug_assert_eq!(change.revision, self.revision + 1);
            self.revision = change.revision;
            for ev in &change.events {
                let prev_lease = ev.prev.as_ref().and_then(|p| p.lease);
                self.detach(prev_lease, &ev.kv.key);
                match ev.kind {
                    EventKind::Put => {
                        self.attach(ev.kv.lease, &ev.kv.key);
                        let meta = Meta::of(&ev.kv, self.keep_values);
                        self.kvs.insert(ev.kv.key.clone(), meta);
                    }
                    EventKind::Delete => {
                        self.kvs.remove(&ev.kv.key);
                    }
                }
            }
        }
        for id in &change.removed_leases {
            if let Some(l) = self.leases.remove(id) {
                self.deadlines.remove(&(l.deadline, *id));
            }
        }
        if let Some((id, ttl)) = change.granted {
            let deadline = deadline(now, ttl);
            self.leases.insert(
                id,
                Lease {
                    ttl,
                    deadline,
                    keys: BTreeSet::new(),
                },
            );
            self.deadlines.insert((deadline, id));
        }
        if !change.events.is_empty() {
            self.notify(&change.events, change.revision);
            self.remember(change.events, opts);
        }
        self.revision
    }

    /// Sends one revision's events to the watchers. A watcher gets all of a
    /// revision's events or, if its channel has no room for them, is closed.
    fn notify(&mut self, events: &[WatchEvent], rev: Revision) {
        self.watchers.retain(|w| {
            if w.tx.is_closed() {
                return false;
            }
            if rev < w.min_rev {
                return true;
            }
            let matching = events.iter().filter(|ev| ev.kv.key.starts_with(&w.prefix));
            let n = matching.clone().count();
            if n == 0 {
                return true;
            }
            // We are the only sender and hold the state lock, so the room
            // can only grow until the sends below.
            if w.tx.capacity() < n {
                tracing::warn!(prefix = %w.prefix, revision = rev, "closing a watcher that fell behind");
                return false;
            }
            matching.cloned().all(|ev| w.tx.try_send(ev).is_ok())
        });
    }

    fn remember(&mut self, events: Vec<WatchEvent>, opts: &Options) {
        for ev in events {
            self.history_bytes += event_size(&ev);
            self.history.push_back(ev);
        }
        while self.history.len() > opts.history_limit || self.history_bytes > opts.history_max_bytes
        {
            let Some(ev) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= event_size(&ev);
            self.history_floor = self.history_floor.max(ev.kv.mod_revision + 1);
        }
    }
}

fn tombstone(key: String, rev: Revision, prev: Option<KeyValue>) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Delete,
        kv: KeyValue {
            key,
            value: Vec::new(),
            create_revision: 0,
            mod_revision: rev,
            version: 0,
            lease: None,
        },
        prev,
    }
}

fn persist(db: &Database, change: &Change) -> Result<(), StoreError> {
    persist_all(db, [change])
}

/// One redb write transaction (one fsync) for a whole commit group.
fn persist_all<'a>(
    db: &Database,
    changes: impl IntoIterator<Item = &'a Change>,
) -> Result<(), StoreError> {
    let wtx = db.begin_write().map_err(storage)?;
    for change in changes {
        let mut meta = wtx.open_table(META).map_err(storage)?;
        if !change.events.is_empty() {
            let mut kv = wtx.open_table(KV).map_err(storage)?;
            for ev in &change.events {
                match ev.kind {
                    EventKind::Put => {
                        kv.insert(ev.kv.key.as_str(), codec::encode(&ev.kv).as_slice())
                            .map_err(storage)?;
                    }
                    EventKind::Delete => {
                        kv.remove(ev.kv.key.as_str()).map_err(storage)?;
                    }
                }
            }
            meta.insert(META_REVISION, change.revision)
                .map_err(storage)?;
        }
        if let Some(next) = change.next_lease {
            meta.insert(META_NEXT_LEASE, next).map_err(storage)?;
        }
        if change.granted.is_some() || !change.removed_leases.is_empty() {
            let mut leases = wtx.open_table(LEASES).map_err(storage)?;
            for id in &change.removed_leases {
                leases.remove(*id).map_err(storage)?;
            }
            if let Some((id, ttl)) = change.granted {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                leases.insert(id, ms).map_err(storage)?;
            }
        }
    }
    wtx.commit().map_err(storage)
}

type Loaded = (Database, State, LeaseId);

/// redb's page cache, which serves reads as well as B-tree updates. Its
/// 1 GiB default would make the cache, not the data, the server's memory.
const REDB_CACHE_BYTES: usize = 32 << 20;

fn load(path: &Path) -> Result<Loaded, StoreError> {
    let db = Database::builder()
        .set_cache_size(REDB_CACHE_BYTES)
        .create(path)
        .map_err(storage)?;
    // Create the tables and stamp the format on a fresh file.
    let wtx = db.begin_write().map_err(storage)?;
    {
        let mut meta = wtx.open_table(META).map_err(storage)?;
        let format = meta.get(META_FORMAT).map_err(storage)?.map(|g| g.value());
        match format {
            None => {
                meta.insert(META_FORMAT, FORMAT).map_err(storage)?;
            }
            Some(FORMAT) => {}
            Some(f) => return Err(StoreError::Storage(format!("unsupported store format {f}"))),
        }
        wtx.open_table(KV).map_err(storage)?;
        wtx.open_table(LEASES).map_err(storage)?;
    }
    wtx.commit().map_err(storage)?;

    let rtx = db.begin_read().map_err(storage)?;
    let meta = rtx.open_table(META).map_err(storage)?;
    let get_meta = |k: &str| -> Result<Option<i64>, StoreError> {
        Ok(meta.get(k).map_err(storage)?.map(|g| g.value()))
    };
    let mut revision = get_meta(META_REVISION)?.unwrap_or(0);
    let next_lease = get_meta(META_NEXT_LEASE)?.unwrap_or(1);

    let mut kvs = BTreeMap::new();
    for entry in rtx
        .open_table(KV)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (k, v) = entry.map_err(storage)?;
        let kv = codec::decode(k.value(), v.value())?;
        revision = revision.max(kv.mod_revision);
        kvs.insert(kv.key.clone(), Meta::of(&kv, false));
    }
    let mut state = State::new(kvs, revision, false);

    let now = Instant::now();
    for entry in rtx
        .open_table(LEASES)
        .map_err(storage)?
        .iter()
        .map_err(storage)?
    {
        let (id, ms) = entry.map_err(storage)?;
        let (id, ttl) = (id.value(), Duration::from_millis(ms.value()));
        let deadline = deadline(now, ttl);
        state.leases.insert(
            id,
            Lease {
                ttl,
                deadline,
                keys: BTreeSet::new(),
            },
        );
        state.deadlines.insert((deadline, id));
    }
    let attached: Vec<(LeaseId, String)> = state
        .kvs
        .iter()
        .filter_map(|(key, m)| m.lease.map(|l| (l, key.clone())))
        .collect();
    for (lease, key) in attached {
        state.attach(Some(lease), &key);
    }
    drop(meta);
    drop(rtx);
    Ok((db, state, next_lease))
}

impl Engine {
    pub(crate) fn new_mem(opts: Options) -> Arc<Engine> {
        let mut state = State::new(BTreeMap::new(), 0, true);
        state.history_floor = 1;
        Self::build(opts, None, state, 1)
    }

    pub(crate) fn open_redb(path: &Path, opts: Options) -> Result<Arc<Engine>, StoreError> {
        let (db, state, next_lease) = load(path)?;
        tracing::debug!(path = %path.display(), revision = state.revision, keys = state.kvs.len(), "opened store");
        let engine = Self::build(opts, Some(db), state, next_lease);
        engine.ensure_reaper();
        Ok(engine)
    }

    fn build(
        opts: Options,
        db: Option<Database>,
        state: State,
        next_lease: LeaseId,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            opts,
            db,
            writer: Mutex::new(Writer { next_lease }),
            state: Mutex::new(state),
            reaper: Mutex::new(None),
            wake_reaper: Arc::new(Notify::new()),
            group: Mutex::new(Group::default()),
        })
    }

    // ---- reads ----

    pub(crate) fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        match &self.db {
            None => Ok(self.state.lock().kvs.get(key).map(|m| m.to_kv(key))),
            Some(db) => {
                let rtx = db.begin_read().map_err(storage)?;
                let table = rtx.open_table(KV).map_err(storage)?;
                let found = table.get(key).map_err(storage)?;
                found.map(|v| codec::decode(key, v.value())).transpose()
            }
        }
    }

    pub(crate) fn current_revision(&self) -> Revision {
        self.state.lock().revision
    }

    pub(crate) fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let limit = req.limit.filter(|&l| l > 0).unwrap_or(usize::MAX);
        let prefix = req.prefix.as_str();
        let lower = match req.start_after.as_deref() {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let Some(db) = &self.db else {
            let st = self.state.lock();
            let mut iter = st
                .kvs
                .range::<str, _>((lower, Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, m)| m.to_kv(k));
            let kvs: Vec<KeyValue> = iter.by_ref().take(limit).collect();
            let more = iter.next().is_some();
            return Ok(RangeResponse {
                kvs,
                more,
                revision: st.revision,
            });
        };
        // One snapshot: the values and the revision they are at. It may be
        // a group commit ahead of what watchers were sent yet, never behind.
        let rtx = db.begin_read().map_err(storage)?;
        let revision = {
            let meta = rtx.open_table(META).map_err(storage)?;
            let on_disk = meta.get(META_REVISION).map_err(storage)?.map(|g| g.value());
            on_disk.unwrap_or(0).max(self.current_revision())
        };
        let table = rtx.open_table(KV).map_err(storage)?;
        let mut kvs = Vec::new();
        let mut more = false;
        for entry in table
            .range::<&str>((lower, Bound::Unbounded))
            .map_err(storage)?
        {
            let (k, v) = entry.map_err(storage)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            if kvs.len() == limit {
                more = true;
                break;
            }
            kvs.push(codec::decode(key, v.value())?);
        }
        Ok(RangeResponse {
            kvs,
            more,
            revision,
        })
    }

    pub(crate) fn watch(
        &self,
        prefix: &str,
        from: Revision,
    ) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
        let mut st = self.state.lock();
        let current = st.revision;
        let from = if from <= 0 { current + 1 } else { from };
        let replay: Vec<WatchEvent> = if from <= current {
            if from < st.history_floor {
                return Err(StoreError::Compacted(from));
            }
            let start = st.history.partition_point(|ev| ev.kv.mod_revision < from);
            st.history
                .range(start..)
                .filter(|ev| ev.kv.key.starts_with(prefix))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let (tx, rx) = mpsc::channel(self.opts.watch_buffer.max(1) + replay.len());
        for ev in replay {
            tx.try_send(ev).expect("watch channel sized for the replay");
        }
        st.watchers.push(Watcher {
            prefix: prefix.to_string(),
            min_rev: from,
            tx,
        });
        Ok(rx)
    }

    // ---- writes ----

    /// Runs a write: inline for the in-memory backend, on the blocking pool
    /// for the durable one (it fsyncs while holding the writer lock).
    async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, StoreError> + Send + 'static,
    {
        self.ensure_reaper();
        if self.db.is_some() {
            let engine = Arc::clone(self);
            tokio::task::spawn_blocking(move || f(&engine))
                .await
                .map_err(|e| StoreError::Storage(format!("write task failed: {e}")))?
        } else {
            f(self)
        }
    }

    /// Persists (if durable) and applies a change; returns the revision after.
    fn commit(&self, w: &mut Writer, change: Change) -> Result<Revision, StoreError> {
        if change.is_empty() {
            return Ok(self.state.lock().revision);
        }
        if let Some(db) = &self.db {
            persist(db, &change)?;
        }
        if let Some(next) = change.next_lease {
            w.next_lease = next;
        }
        Ok(self.state.lock().apply(change, &self.opts))
    }

    /// Revokes every expired lease (each in its own revision).
    fn reap_locked(&self, w: &mut Writer) -> Result<(), StoreError> {
        let now = Instant::now();
        loop {
            let change = {
                let st = self.state.lock();
                match st.first_expired(now) {
                    Some(id) => {
                        tracing::debug!(lease = id, "lease expired");
                        st.plan_revoke(id)?
                    }
                    None => return Ok(()),
                }
            };
            self.commit(w, change)?;
        }
    }

    /// Commits a group of txns: plans each in order (seeing the earlier
    /// ones' writes), persists all in one disk transaction, then applies and
    /// publishes them one revision each. Nothing is visible before the disk
    /// commit; if it fails, every txn of the group fails.
    /// Returns the answers, to send once the caller is done with the engine.
    fn commit_group(
        &self,
        batch: Vec<(Txn, Reply)>,
    ) -> Vec<(Reply, Result<TxnResponse, StoreError>)> {
        let mut w = self.writer.lock();
        if let Err(e) = self.reap_locked(&mut w) {
            return batch
                .into_iter()
                .map(|(_, reply)| (reply, Err(StoreError::Storage(e.to_string()))))
                .collect();
        }
        let mut planned = Vec::with_capacity(batch.len());
        {
            let st = self.state.lock();
            let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
            let mut rev = st.revision;
            for (txn, reply) in batch {
                let plan = st.plan_txn(txn, rev, &overlay);
                if let Ok((_, change)) = &plan {
                    if !change.events.is_empty() {
                        rev = change.revision;
                        for ev in &change.events {
                            let now = (ev.kind == EventKind::Put).then(|| ev.kv.clone());
                            overlay.insert(ev.kv.key.clone(), now);
                        }
                    }
                }
                planned.push((plan, reply));
            }
        }
        if let Some(db) = &self.db {
            let changes = planned
                .iter()
                .filter_map(|(p, _)| p.as_ref().ok().map(|(_, c)| c));
            if let Err(e) = persist_all(db, changes) {
                return planned
                    .into_iter()
                    .map(|(_, reply)| (reply, Err(StoreError::Storage(e.to_string()))))
                    .collect();
            }
        }
        let mut st = self.state.lock();
        let mut out = Vec::with_capacity(planned.len());
        for (plan, reply) in planned {
            let result = plan.map(|(succeeded, change)| {
                let revision = if change.is_empty() {
                    st.revision
                } else {
                    st.apply(change, &self.opts)
                };
                TxnResponse {
                    succeeded,
                    revision,
                }
            });
            out.push((reply, result));
        }
        out
    }

    /// Drains the group queue until it is empty (runs on the blocking pool).
    fn committer(self: Arc<Self>) {
        // A panic must not leave the queue claimed by a committer that is gone.
        struct Release<'a>(&'a Mutex<Group>);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.lock().active = false;
                }
            }
        }
        let _release = Release(&self.group);
        let mut batch = std::mem::take(&mut self.group.lock().pending);
        loop {
            let answers = self.commit_group(batch);
            batch = {
                let mut g = self.group.lock();
                g.active = !g.pending.is_empty();
                std::mem::take(&mut g.pending)
            };
            if batch.is_empty() {
                // Let go of the engine before the last answers: a caller that
                // drops the store next must be able to reopen the file.
                drop(_release);
                drop(self);
                for (reply, result) in answers {
                    let _ = reply.send(result);
                }
                return;
            }
            for (reply, result) in answers {
                let _ = reply.send(result);
            }
        }
    }

    pub(crate) async fn txn(self: &Arc<Self>, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.ensure_reaper();
        let (tx, rx) = oneshot::channel();
        if self.db.is_none() {
            for (reply, result) in self.commit_group(vec![(txn, tx)]) {
                let _ = reply.send(result);
            }
        } else {
            let start = {
                let mut g = self.group.lock();
                g.pending.push((txn, tx));
                !std::mem::replace(&mut g.active, true)
            };
            if start {
                let engine = Arc::clone(self);
                // Detached: the group commits even if this caller goes away.
                tokio::task::spawn_blocking(move || engine.committer());
            }
        }
        rx.await
            .map_err(|_| StoreError::Storage("commit task failed".into()))?
    }

    pub(crate) async fn grant_lease(
        self: &Arc<Self>,
        ttl: Duration,
    ) -> Result<LeaseId, StoreError> {
        let id = self
            .write(move |e| {
                let mut w = e.writer.lock();
                e.reap_locked(&mut w)?;
                let id = w.next_lease;
                let change = Change {
                    granted: Some((id, ttl)),
                    next_lease: Some(id + 1),
                    ..Default::default()
                };
                e.commit(&mut w, change)?;
                Ok(id)
            })
            .await?;
        self.wake_reaper.notify_one();
        Ok(id)
    }

    pub(crate) fn keep_alive(self: &Arc<Self>, id: LeaseId) -> Result<(), StoreError> {
        self.ensure_reaper();
        let now = Instant::now();
        let mut st = self.state.lock();
        let lease = st
            .leases
            .get_mut(&id)
            .ok_or(StoreError::LeaseNotFound(id))?;
        // An expired lease stays expired: the reaper may already be deleting
        // its keys.
        if lease.deadline <= now {
            return Err(StoreError::LeaseNotFound(id));
        }
        let old = lease.deadline;
        lease.deadline = deadline(now, lease.ttl);
        let new = lease.deadline;
        st.deadlines.remove(&(old, id));
        st.deadlines.insert((new, id));
        Ok(())
    }

    pub(crate) async fn revoke_lease(self: &Arc<Self>, id: LeaseId) -> Result<(), StoreError> {
        self.write(move |e| {
            let mut w = e.writer.lock();
            e.reap_locked(&mut w)?;
            let change = e.state.lock().plan_revoke(id)?;
            e.commit(&mut w, change)?;
            Ok(())
        })
        .await
    }

    // ---- lease reaper ----

    /// Starts the background reaper if it is not running and we are inside a
    /// tokio runtime. Called on every write, so a store built outside a
    /// runtime (or whose runtime went away) gets a reaper when used.
    fn ensure_reaper(self: &Arc<Self>) {
        let mut reaper = self.reaper.lock();
        if reaper.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            *reaper = Some(rt.spawn(reap_loop(
                Arc::downgrade(self),
                Arc::clone(&self.wake_reaper),
            )));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.state.lock().deadlines.first().map(|&(d, _)| d)
    }
}

async fn reap_loop(engine: Weak<Engine>, wake: Arc<Notify>) {
    loop {
        let Some(next) = engine.upgrade().map(|e| e.next_deadline()) else {
            return;
        };
        let latest = Instant::now() + REAPER_MAX_SLEEP;
        let until = next.map_or(latest, |d| d.min(latest));
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = wake.notified() => continue,
        }
        let Some(e) = engine.upgrade() else { return };
        if e.state.lock().first_expired(Instant::now()).is_none() {
            continue;
        }
        let result = e
            .write(|e| {
                let mut w = e.writer.lock();
                e.reap_locked(&mut w)
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "lease expiry failed; will retry");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
