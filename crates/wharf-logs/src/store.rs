//! The log store: one redb database (a file, or memory for tests and
//! `--ephemeral`) apart from the control-plane store, because logs are
//! append-heavy, large and disposable while cluster state is small and precious.
//!
//! Layout:
//! - `groups`: name → [`GroupInfo`] (JSON)
//! - `streams`: group id ‖ stream name → [`StreamInfo`] (JSON), so one group's
//!   streams are a contiguous, name-ordered range
//! - `events`: group id ‖ stream id ‖ position → ingestion time ‖ message, so one
//!   stream's events are a contiguous range in time order; FilterLogEvents
//!   merges the per-stream ranges (each sought to the start time) by position.
//! - `meta`: id and sequence counters.
//!
//! A position is `(timestamp, ingest sequence)` (see [`crate::token`]); the
//! sequence is global, so positions are unique and equal timestamps still
//! have a total order that pagination can resume from.
//! Every write is one transaction (one PutLogEvents call = one commit), and
//! redb's page cache is bounded, so memory does not grow with the data.

use crate::error::{LogError, LogResult};
use crate::filter::Pattern;
use crate::rules::{self, DAY_MS};
use crate::token::{at, pos, unbiased, Pos};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use wharf_model::logs::{InputLogEvent, RejectedLogEventsInfo};

const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const STREAMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("streams");
const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_ID: &str = "next_id";
/// One item of a range over a `&[u8] → &[u8]` table.
type RawEntry = Result<
    (
        redb::AccessGuard<'static, &'static [u8]>,
        redb::AccessGuard<'static, &'static [u8]>,
    ),
    redb::StorageError,
>;
const NEXT_SEQ: &str = "next_seq";

/// redb's page cache: the store's memory bound however much is written.
const CACHE_BYTES: usize = 64 << 20;
/// Retention deletes at most this many events per transaction, so a sweep
/// of a huge backlog never builds one giant transaction.
const SWEEP_CHUNK: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub name: String,
    pub id: u64,
    pub created: i64,
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub stored_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub name: String,
    pub id: u64,
    pub created: i64,
    pub first_event: Option<i64>,
    pub last_event: Option<i64>,
    pub last_ingestion: Option<i64>,
    pub stored_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub timestamp: i64,
    /// Global ingest sequence: unique, and the tie-break among equal timestamps.
    pub seq: u64,
    pub ingestion_time: i64,
    pub message: String,
}

impl StoredEvent {
    pub fn pos(&self) -> Pos {
        pos(self.timestamp, self.seq)
    }
}

/// What a PutLogEvents call stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PutOutcome {
    pub accepted: usize,
    pub rejected: Option<RejectedLogEventsInfo>,
    /// The sequence after the last stored event (returned as nextSequenceToken).
    pub next_seq: u64,
}

/// Which streams of a group FilterLogEvents searches.
#[derive(Debug, Clone)]
pub enum StreamSelection {
    All,
    Names(Vec<String>),
    Prefix(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilteredEvent {
    pub stream: Arc<str>,
    pub event: StoredEvent,
}

#[derive(Debug, Clone)]
pub struct FilterPage {
    pub events: Vec<FilteredEvent>,
    /// Position of the last event examined, when more may follow.
    pub next: Option<Pos>,
}

/// A durable, indexed log store. Cheap to clone.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

fn corrupt(e: impl std::fmt::Display) -> LogError {
    LogError::Corrupt(e.to_string())
}

fn stream_key(gid: u64, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&gid.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

fn event_key(gid: u64, sid: u64, p: Pos) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&gid.to_be_bytes());
    k[8..16].copy_from_slice(&sid.to_be_bytes());
    k[16..].copy_from_slice(&p.to_be_bytes());
    k
}

fn key_pos(k: &[u8]) -> LogResult<Pos> {
    let b: [u8; 16] = k
        .get(16..32)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| corrupt("short event key"))?;
    Ok(u128::from_be_bytes(b))
}

fn decode_event(k: &[u8], v: &[u8]) -> LogResult<StoredEvent> {
    let p = key_pos(k)?;
    let ingest: [u8; 8] = v
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| corrupt("short event value"))?;
    let message = std::str::from_utf8(&v[8..]).map_err(corrupt)?.to_owned();
    Ok(StoredEvent {
        timestamp: unbiased((p >> 64) as u64),
        seq: p as u64,
        ingestion_time: i64::from_be_bytes(ingest),
        message,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> LogResult<T> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

fn to_json<T: Serialize>(v: &T) -> LogResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(corrupt)
}

fn load_group(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> LogResult<GroupInfo> {
    let v = t.get(name)?.ok_or(LogError::GroupNotFound)?;
    read_json(v.value())
}

fn load_stream(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    gid: u64,
    name: &str,
) -> LogResult<StreamInfo> {
    let v = t
        .get(stream_key(gid, name).as_slice())?
        .ok_or(LogError::StreamNotFound)?;
    read_json(v.value())
}

/// All streams of a group whose name starts with `prefix` and sorts after `after`.
fn scan_streams(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    gid: u64,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> LogResult<Vec<StreamInfo>> {
    let lo = start(prefix, after).map(|name| stream_key(gid, name));
    let hi = (gid + 1).to_be_bytes();
    let mut out = Vec::new();
    let range = (
        lo.as_ref().map(Vec::as_slice),
        Bound::Excluded(hi.as_slice()),
    );
    for item in t.range::<&[u8]>(range)? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = item?;
        let name = std::str::from_utf8(&k.value()[8..]).map_err(corrupt)?;
        if !name.starts_with(prefix) {
            break;
        }
        out.push(read_json(v.value())?);
    }
    Ok(out)
}

/// Where a listing of names starting with `prefix` after `after` begins:
/// at the token, so a page costs its own length rather than everything
/// before it.
fn start<'a>(prefix: &'a str, after: Option<&'a str>) -> Bound<&'a str> {
    match after {
        Some(a) if a >= prefix => Bound::Excluded(a),
        _ => Bound::Included(prefix),
    }
}

fn take_ids(txn: &WriteTransaction, key: &str, n: u64) -> LogResult<u64> {
    let mut meta = txn.open_table(META)?;
    let first = meta.get(key)?.map(|v| v.value()).unwrap_or(1);
    meta.insert(key, first + n)?;
    Ok(first)
}

/// The layout this build writes: 2 keys groups by `REGION:NAME` (log
/// groups are regional; `:` never appears in a group name).
const SCHEMA: u64 = 2;
const SCHEMA_KEY: &str = "schema";

/// Moves an older layout's groups (keyed by bare name) into `region`, in
/// the opening transaction: their streams and events are keyed by the
/// group's ID, which stays.
fn upgrade(txn: &WriteTransaction, region: &str) -> LogResult<()> {
    let mut meta = txn.open_table(META)?;
    let found = meta.get(SCHEMA_KEY)?.map(|v| v.value());
    match found {
        Some(v) if v > SCHEMA => {
            return Err(LogError::Corrupt(format!(
                "the log store has layout {v}, newer than this wharf's {SCHEMA}: run a newer wharf"
            )))
        }
        Some(_) => return Ok(()),
        None => {}
    }
    let mut groups = txn.open_table(GROUPS)?;
    let mut old: Vec<GroupInfo> = vec![];
    for entry in groups.iter()? {
        let (k, v) = entry?;
        if !k.value().contains(':') {
            old.push(read_json(v.value())?);
        }
    }
    for mut g in old {
        groups.remove(g.name.as_str())?;
        g.name = format!("{region}:{}", g.name);
        groups.insert(g.name.as_str(), to_json(&g)?.as_slice())?;
    }
    meta.insert(SCHEMA_KEY, SCHEMA)?;
    Ok(())
}

impl LogStore {
    /// Opens (or creates) the store file at `path`; groups written before
    /// regions were kept apart move to us-east-1 (see [`Self::open_for`]).
    pub fn open(path: &Path) -> LogResult<Self> {
        Self::open_for(path, "us-east-1")
    }

    /// Opens (or creates) the store file at `path`; groups written before
    /// regions were kept apart move to `region`, as the control plane's
    /// store does (`wharf_control::migrate`).
    pub fn open_for(path: &Path, region: &str) -> LogResult<Self> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        Self::init(db, region)
    }

    /// A store in memory only: for tests and `wharf server --ephemeral`.
    pub fn in_memory() -> LogResult<Self> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db, "us-east-1")
    }

    fn init(db: Database, region: &str) -> LogResult<Self> {
        let txn = db.begin_write()?;
        txn.open_table(GROUPS)?;
        txn.open_table(STREAMS)?;
        txn.open_table(EVENTS)?;
        txn.open_table(META)?;
        upgrade(&txn, region)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `f` in one write transaction, committed only if it succeeds.
    fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> LogResult<T>) -> LogResult<T> {
        let txn = self.db.begin_write()?;
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }

    // ---- groups ---------------------------------------------------------

    pub fn create_group(
        &self,
        name: &str,
        now: i64,
        tags: BTreeMap<String, String>,
    ) -> LogResult<()> {
        self.write(|txn| {
            let mut groups = txn.open_table(GROUPS)?;
            if groups.get(name)?.is_some() {
                return Err(LogError::GroupExists);
            }
            let id = take_ids(txn, NEXT_ID, 1)?;
            let info = GroupInfo {
                name: name.to_owned(),
                id,
                created: now,
                retention_days: None,
                tags,
                stored_bytes: 0,
            };
            groups.insert(name, to_json(&info)?.as_slice())?;
            Ok(())
        })
    }

    /// Deletes a group with all its streams and events.
    pub fn delete_group(&self, name: &str) -> LogResult<()> {
        self.write(|txn| {
            let mut groups = txn.open_table(GROUPS)?;
            let info = load_group(&groups, name)?;
            groups.remove(name)?;
            let (lo, hi) = (info.id.to_be_bytes(), (info.id + 1).to_be_bytes());
            txn.open_table(STREAMS)?
                .retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false)?;
            txn.open_table(EVENTS)?
                .retain_in::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| false)?;
            Ok(())
        })
    }

    pub fn group(&self, name: &str) -> LogResult<GroupInfo> {
        let txn = self.db.begin_read()?;
        load_group(&txn.open_table(GROUPS)?, name)
    }

    /// Groups whose name starts with `prefix`, in name order, after `after`.
    pub fn list_groups(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> LogResult<Vec<GroupInfo>> {
        let txn = self.db.begin_read()?;
        let groups = txn.open_table(GROUPS)?;
        let mut out = Vec::new();
        for item in groups.range::<&str>((start(prefix, after), Bound::Unbounded))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let name = k.value();
            if !name.starts_with(prefix) {
                break;
            }
            out.push(read_json(v.value())?);
        }
        Ok(out)
    }

    /// Changes a group's settings (retention, tags) in place; `f` may refuse.
    pub fn update_group(
        &self,
        name: &str,
        f: impl FnOnce(&mut GroupInfo) -> LogResult<()>,
    ) -> LogResult<GroupInfo> {
        self.write(|txn| {
            let mut groups = txn.open_table(GROUPS)?;
            let mut info = load_group(&groups, name)?;
            f(&mut info)?;
            groups.insert(name, to_json(&info)?.as_slice())?;
            Ok(info)
        })
    }

    // ---- streams --------------------------------------------------------

    pub fn create_stream(&self, group: &str, stream: &str, now: i64) -> LogResult<()> {
        self.write(|txn| {
            let g = load_group(&txn.open_table(GROUPS)?, group)?;
            let mut streams = txn.open_table(STREAMS)?;
            let key = stream_key(g.id, stream);
            if streams.get(key.as_slice())?.is_some() {
                return Err(LogError::StreamExists);
            }
            let info = StreamInfo {
                name: stream.to_owned(),
                id: take_ids(txn, NEXT_ID, 1)?,
                created: now,
                first_event: None,
                last_event: None,
                last_ingestion: None,
                stored_bytes: 0,
            };
            streams.insert(key.as_slice(), to_json(&info)?.as_slice())?;
            Ok(())
        })
    }

    pub fn delete_stream(&self, group: &str, stream: &str) -> LogResult<()> {
        self.write(|txn| {
            let mut groups = txn.open_table(GROUPS)?;
            let mut g = load_group(&groups, group)?;
            let mut streams = txn.open_table(STREAMS)?;
            let s = load_stream(&streams, g.id, stream)?;
            streams.remove(stream_key(g.id, stream).as_slice())?;
            let (lo, hi) = (event_key(g.id, s.id, 0), event_key(g.id, s.id, Pos::MAX));
            txn.open_table(EVENTS)?
                .retain_in::<&[u8], _>(lo.as_slice()..=hi.as_slice(), |_, _| false)?;
            g.stored_bytes = g.stored_bytes.saturating_sub(s.stored_bytes);
            groups.insert(group, to_json(&g)?.as_slice())?;
            Ok(())
        })
    }

    pub fn stream(&self, group: &str, stream: &str) -> LogResult<StreamInfo> {
        let txn = self.db.begin_read()?;
        let g = load_group(&txn.open_table(GROUPS)?, group)?;
        load_stream(&txn.open_table(STREAMS)?, g.id, stream)
    }

    /// Streams of a group whose name starts with `prefix`, in name order, after `after`.
    pub fn list_streams(
        &self,
        group: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> LogResult<Vec<StreamInfo>> {
        let txn = self.db.begin_read()?;
        let g = load_group(&txn.open_table(GROUPS)?, group)?;
        scan_streams(&txn.open_table(STREAMS)?, g.id, prefix, after, limit)
    }

    // ---- events ---------------------------------------------------------

    /// Appends a batch under CloudWatch Logs' rules ([`rules`]): the batch
    /// is refused whole if it breaks a batch rule; events too old, expired
    /// or too new are left out and reported. One transaction.
    pub fn put_events(
        &self,
        group: &str,
        stream: &str,
        events: &[InputLogEvent],
        now: i64,
    ) -> LogResult<PutOutcome> {
        rules::check_batch(events)?;
        self.write(|txn| {
            let mut groups = txn.open_table(GROUPS)?;
            let mut g = load_group(&groups, group)?;
            let mut streams = txn.open_table(STREAMS)?;
            let mut s = load_stream(&streams, g.id, stream)?;
            let verdict = rules::classify(events, now, g.retention_days);
            let batch = &events[verdict.accepted.clone()];
            let first_seq = take_ids(txn, NEXT_SEQ, batch.len() as u64)?;
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return Ok(PutOutcome {
                    accepted: 0,
                    rejected: verdict.rejected,
                    next_seq: first_seq,
                });
            };
            let mut table = txn.open_table(EVENTS)?;
            let mut value = Vec::new();
            let mut bytes = 0u64;
            for (i, e) in batch.iter().enumerate() {
                let key = event_key(g.id, s.id, pos(e.timestamp, first_seq + i as u64));
                value.clear();
                value.extend_from_slice(&now.to_be_bytes());
                value.extend_from_slice(e.message.as_bytes());
                table.insert(key.as_slice(), value.as_slice())?;
                bytes += e.message.len() as u64;
            }
            s.first_event = Some(
                s.first_event
                    .map_or(first.timestamp, |f| f.min(first.timestamp)),
            );
            s.last_event = Some(
                s.last_event
                    .map_or(last.timestamp, |l| l.max(last.timestamp)),
            );
            s.last_ingestion = Some(now);
            s.stored_bytes += bytes;
            g.stored_bytes += bytes;
            streams.insert(stream_key(g.id, stream).as_slice(), to_json(&s)?.as_slice())?;
            groups.insert(group, to_json(&g)?.as_slice())?;
            Ok(PutOutcome {
                accepted: batch.len(),
                rejected: verdict.rejected,
                next_seq: first_seq + batch.len() as u64,
            })
        })
    }

    /// Up to `limit` events of one stream with positions in `lo..hi`: the
    /// first ones if `forward`, else the last ones (still returned oldest first).
    pub fn read_stream(
        &self,
        group: &str,
        stream: &str,
        lo: Pos,
        hi: Pos,
        forward: bool,
        limit: usize,
    ) -> LogResult<Vec<StoredEvent>> {
        let txn = self.db.begin_read()?;
        let g = load_group(&txn.open_table(GROUPS)?, group)?;
        let s = load_stream(&txn.open_table(STREAMS)?, g.id, stream)?;
        if lo >= hi {
            return Ok(Vec::new());
        }
        let events = txn.open_table(EVENTS)?;
        let (lo, hi) = (event_key(g.id, s.id, lo), event_key(g.id, s.id, hi));
        let range = events.range::<&[u8]>(lo.as_slice()..hi.as_slice())?;
        let decode = |item: RawEntry| {
            let (k, v) = item?;
            decode_event(k.value(), v.value())
        };
        if forward {
            range.take(limit).map(decode).collect()
        } else {
            let mut out: Vec<StoredEvent> = range
                .rev()
                .take(limit)
                .map(decode)
                .collect::<LogResult<_>>()?;
            out.reverse();
            Ok(out)
        }
    }

    /// Events of the selected streams with positions in `lo..hi` that match
    /// `pattern`, in position order across streams. Stops after `limit`
    /// matches or `scan_budget` examined events, returning where to resume.
    #[allow(clippy::too_many_arguments)]
    pub fn filter(
        &self,
        group: &str,
        selection: &StreamSelection,
        lo: Pos,
        hi: Pos,
        pattern: &Pattern,
        limit: usize,
        scan_budget: usize,
    ) -> LogResult<FilterPage> {
        let txn = self.db.begin_read()?;
        let g = load_group(&txn.open_table(GROUPS)?, group)?;
        let streams_t = txn.open_table(STREAMS)?;
        let streams = match selection {
            StreamSelection::All => scan_streams(&streams_t, g.id, "", None, usize::MAX)?,
            StreamSelection::Prefix(p) => scan_streams(&streams_t, g.id, p, None, usize::MAX)?,
            StreamSelection::Names(names) => {
                let mut out = Vec::new();
                for n in names {
                    match load_stream(&streams_t, g.id, n) {
                        Ok(s) => out.push(s),
                        Err(LogError::StreamNotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
                out
            }
        };
        let events = txn.open_table(EVENTS)?;
        let mut cursors = Vec::new();
        let mut heap = BinaryHeap::new();
        for s in &streams {
            // Streams with nothing in the window are not opened at all.
            let (Some(first), Some(last)) = (s.first_event, s.last_event) else {
                continue;
            };
            if at(first) >= hi || pos(last, u64::MAX) < lo {
                continue;
            }
            let (klo, khi) = (event_key(g.id, s.id, lo), event_key(g.id, s.id, hi));
            let mut range = events.range::<&[u8]>(klo.as_slice()..khi.as_slice())?;
            if let Some(item) = range.next() {
                let (k, v) = item?;
                heap.push(Reverse((key_pos(k.value())?, cursors.len())));
                cursors.push((Arc::<str>::from(s.name.as_str()), range, Some(v)));
            }
        }
        let mut out = Vec::new();
        let mut scanned = 0usize;
        while let Some(Reverse((p, i))) = heap.pop() {
            let (name, range, current) = &mut cursors[i];
            let v = current
                .take()
                .ok_or_else(|| corrupt("cursor without value"))?;
            let value = v.value();
            let message = value.get(8..).ok_or_else(|| corrupt("short event value"))?;
            let message = std::str::from_utf8(message).map_err(corrupt)?;
            scanned += 1;
            if pattern.matches(message) {
                out.push(FilteredEvent {
                    stream: name.clone(),
                    event: decode_event(&event_key(0, 0, p), value)?,
                });
            }
            if let Some(item) = range.next() {
                let (k, v) = item?;
                heap.push(Reverse((key_pos(k.value())?, i)));
                *current = Some(v);
            }
            if (out.len() >= limit || scanned >= scan_budget) && !heap.is_empty() {
                return Ok(FilterPage {
                    events: out,
                    next: Some(p),
                });
            }
        }
        Ok(FilterPage {
            events: out,
            next: None,
        })
    }

    // ---- retention ------------------------------------------------------

    /// Deletes every event older than its group's retention; returns how
    /// many were deleted. Bounded transactions of [`SWEEP_CHUNK`] events.
    pub fn sweep_retention(&self, now: i64) -> LogResult<u64> {
        let groups: Vec<GroupInfo> = self
            .list_groups("", None, usize::MAX)?
            .into_iter()
            .filter(|g| g.retention_days.is_some())
            .collect();
        let mut deleted = 0;
        for g in groups {
            let Some(days) = g.retention_days else {
                continue;
            };
            let cutoff = now - i64::from(days) * DAY_MS;
            for s in self.list_streams(&g.name, "", None, usize::MAX)? {
                if s.first_event.is_none_or(|f| f >= cutoff) {
                    continue;
                }
                loop {
                    match self.sweep_chunk(&g.name, &s.name, cutoff)? {
                        0 => break,
                        n => deleted += n,
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// Deletes up to [`SWEEP_CHUNK`] events of one stream older than `cutoff`.
    fn sweep_chunk(&self, group: &str, stream: &str, cutoff: i64) -> LogResult<u64> {
        self.write(|txn| {
            let mut groups = txn.open_table(GROUPS)?;
            let mut g = match load_group(&groups, group) {
                Err(LogError::GroupNotFound) => return Ok(0),
                other => other?,
            };
            let mut streams = txn.open_table(STREAMS)?;
            let mut s = match load_stream(&streams, g.id, stream) {
                Err(LogError::StreamNotFound) => return Ok(0),
                other => other?,
            };
            let mut events = txn.open_table(EVENTS)?;
            let (lo, hi) = (event_key(g.id, s.id, 0), event_key(g.id, s.id, at(cutoff)));
            let (mut n, mut bytes) = (0u64, 0u64);
            for item in events
                .extract_from_if::<&[u8], _>(lo.as_slice()..hi.as_slice(), |_, _| true)?
                .take(SWEEP_CHUNK)
            {
                let (_, v) = item?;
                n += 1;
                bytes += v.value().len().saturating_sub(8) as u64;
            }
            if n == 0 {
                return Ok(0);
            }
            let end = event_key(g.id, s.id, Pos::MAX);
            let first = events
                .range::<&[u8]>(lo.as_slice()..=end.as_slice())?
                .next();
            s.first_event = match first {
                Some(item) => Some(unbiased((key_pos(item?.0.value())? >> 64) as u64)),
                None => None,
            };
            s.stored_bytes = s.stored_bytes.saturating_sub(bytes);
            g.stored_bytes = g.stored_bytes.saturating_sub(bytes);
            streams.insert(stream_key(g.id, stream).as_slice(), to_json(&s)?.as_slice())?;
            groups.insert(group, to_json(&g)?.as_slice())?;
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as the layout before regions left it (groups by bare name, no
    /// schema): opening moves its groups into the region, streams and events
    /// with them, once.
    #[test]
    fn an_old_store_s_groups_move_into_the_region_it_is_opened_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.redb");
        {
            let s = LogStore::open(&path).unwrap();
            s.create_group("/ecs/web", 1, BTreeMap::new()).unwrap();
            s.create_stream("/ecs/web", "a", 1).unwrap();
            let ev = InputLogEvent {
                timestamp: 5,
                message: "hello".into(),
            };
            s.put_events("/ecs/web", "a", &[ev], 6).unwrap();
            s.write(|txn| {
                txn.open_table(META)?.remove(SCHEMA_KEY)?;
                Ok(())
            })
            .unwrap();
        }
        let s = LogStore::open_for(&path, "eu-west-1").unwrap();
        assert!(matches!(s.group("/ecs/web"), Err(LogError::GroupNotFound)));
        let g = s.group("eu-west-1:/ecs/web").unwrap();
        assert_eq!(g.name, "eu-west-1:/ecs/web");
        let events = s
            .read_stream("eu-west-1:/ecs/web", "a", 0, Pos::MAX, true, 10)
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].message, "hello");
        // Once: a group named later is not moved again on the next open.
        s.create_group("other", 1, BTreeMap::new()).unwrap();
        drop(s);
        let s = LogStore::open(&path).unwrap();
        assert!(s.group("other").is_ok());
    }
}
