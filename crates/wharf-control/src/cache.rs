//! What placement reads, kept in memory and fed by the store's watch:
//! instances, connected agents, and the task groups per host. RunTask reads
//! it instead of listing every instance and every task of the cluster per
//! call. It is a cache, not a second source of truth: placement still
//! commits with a compare on every instance it touches, so a stale view
//! makes the write retry, never over-commit.

use crate::records::Versioned;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{watch, OnceCell};
use wharf_core::lifecycle::TaskStatus;
use wharf_core::records::InstanceRecord;
use wharf_store::{DynStore, EventKind, KeyValue, RangeRequest, Revision, StoreError};

/// Task groups and live-task count of one host, for one cluster's tasks.
#[derive(Default)]
pub struct HostTasks {
    pub groups: BTreeMap<String, usize>,
    pub running: usize,
}

#[derive(Default)]
pub struct View {
    /// Instances by capacity cluster, then ID.
    pub instances: HashMap<String, BTreeMap<String, Arc<Versioned<InstanceRecord>>>>,
    /// (capacity cluster, instance ID) of connected agents.
    pub connected: HashSet<(String, String)>,
    /// By (task cluster, instance ID).
    pub hosts: HashMap<(String, String), HostTasks>,
    /// Task key -> (task cluster, instance ID, group) of tasks not STOPPED.
    live: HashMap<String, (String, String, String)>,
}

/// The few task fields placement counts.
#[derive(serde::Deserialize)]
struct TaskBrief {
    cluster: String,
    instance_id: Option<String>,
    group: String,
    last_status: TaskStatus,
}

impl View {
    fn apply(&mut self, kind: EventKind, kv: &KeyValue) {
        let key = kv.key.as_str();
        let put = kind == EventKind::Put;
        if let Some(rest) = key.strip_prefix("/instances/") {
            let Some((cap, id)) = rest.split_once('/') else {
                return;
            };
            let per = self.instances.entry(cap.to_string()).or_default();
            match serde_json::from_slice::<InstanceRecord>(&kv.value) {
                Ok(value) if put => {
                    per.insert(
                        id.to_string(),
                        Arc::new(Versioned {
                            value,
                            key: kv.key.clone(),
                            mod_revision: kv.mod_revision,
                        }),
                    );
                }
                _ => {
                    per.remove(id);
                }
            }
        } else if let Some(rest) = key.strip_prefix("/agents/") {
            if let Some((cap, id)) = rest.split_once('/') {
                let k = (cap.to_string(), id.to_string());
                if put {
                    self.connected.insert(k);
                } else {
                    self.connected.remove(&k);
                }
            }
        } else if key.starts_with("/tasks/") {
            if let Some((cluster, iid, group)) = self.live.remove(key) {
                if let Some(h) = self.hosts.get_mut(&(cluster, iid)) {
                    h.running = h.running.saturating_sub(1);
                    if let Some(n) = h.groups.get_mut(&group) {
                        *n -= 1;
                        if *n == 0 {
                            h.groups.remove(&group);
                        }
                    }
                }
            }
            let Some(t) = put
                .then(|| serde_json::from_slice::<TaskBrief>(&kv.value).ok())
                .flatten()
            else {
                return;
            };
            let (Some(iid), true) = (t.instance_id, t.last_status != TaskStatus::Stopped) else {
                return;
            };
            let h = self
                .hosts
                .entry((t.cluster.clone(), iid.clone()))
                .or_default();
            h.running += 1;
            *h.groups.entry(t.group.clone()).or_default() += 1;
            self.live.insert(kv.key.clone(), (t.cluster, iid, t.group));
        }
    }
}

pub struct Cache {
    view: Mutex<View>,
    /// The store revision the view reflects.
    revision: watch::Sender<Revision>,
    started: OnceCell<()>,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            view: Mutex::default(),
            revision: watch::channel(0).0,
            started: OnceCell::new(),
        }
    }
}

const PREFIXES: [&str; 3] = ["/instances/", "/agents/", "/tasks/"];

impl Cache {
    /// The view, once it reflects at least the store's current revision
    /// (so a caller sees its own acknowledged writes). Starts following the
    /// store on first use.
    pub async fn fresh(
        self: &Arc<Self>,
        store: &DynStore,
    ) -> Result<MutexGuard<'_, View>, StoreError> {
        self.started
            .get_or_try_init(|| async {
                let rev = self.load(store).await?;
                let me = self.clone();
                let store = store.clone();
                tokio::spawn(async move { me.follow(store, rev).await });
                Ok::<_, StoreError>(())
            })
            .await?;
        let target = store.current_revision().await?;
        let mut rx = self.revision.subscribe();
        let _ = rx.wait_for(|r| *r >= target).await;
        Ok(self.view.lock().expect("cache lock"))
    }

    /// Loads the view from scratch; the revision it was read at.
    async fn load(&self, store: &DynStore) -> Result<Revision, StoreError> {
        let mut view = View::default();
        let mut at = None;
        for prefix in PREFIXES {
            let mut start_after = None;
            loop {
                let resp = store
                    .range(RangeRequest {
                        prefix: prefix.into(),
                        start_after: start_after.take(),
                        limit: Some(10_000),
                    })
                    .await?;
                // The watch replays from the first read's revision, so
                // anything that changed while paging is applied again.
                at.get_or_insert(resp.revision);
                for kv in &resp.kvs {
                    view.apply(EventKind::Put, kv);
                }
                if !resp.more {
                    break;
                }
                start_after = resp.kvs.last().map(|kv| kv.key.clone());
            }
        }
        let at = at.unwrap_or(0);
        *self.view.lock().expect("cache lock") = view;
        self.revision.send_replace(at);
        Ok(at)
    }

    async fn follow(self: Arc<Self>, store: DynStore, mut from: Revision) {
        loop {
            let mut rx = match store.watch("/", from + 1).await {
                Ok(rx) => rx,
                Err(e) => {
                    tracing::warn!(error = %e, "placement cache reloads");
                    match self.load(&store).await {
                        Ok(r) => from = r,
                        Err(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
                    }
                    continue;
                }
            };
            while let Some(ev) = rx.recv().await {
                let mut last = ev.kv.mod_revision;
                {
                    let mut view = self.view.lock().expect("cache lock");
                    if PREFIXES.iter().any(|p| ev.kv.key.starts_with(p)) {
                        view.apply(ev.kind, &ev.kv);
                    }
                    // Take what is queued under one lock.
                    while let Ok(ev) = rx.try_recv() {
                        last = ev.kv.mod_revision;
                        if PREFIXES.iter().any(|p| ev.kv.key.starts_with(p)) {
                            view.apply(ev.kind, &ev.kv);
                        }
                    }
                }
                from = last;
                self.revision.send_replace(last);
            }
            // Fell behind (or the store closed the watch): watch again from
            // where we are; history covers it or `Compacted` makes us reload.
        }
    }
}
