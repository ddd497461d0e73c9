//! What placement reads, kept in memory and fed by the store's watch:
//! instances, connected agents, and the task groups per host. RunTask reads
//! it instead of listing every instance and every task of the cluster per
//! call. It is a cache, not a second source of truth: placement still
//! commits with a compare on every instance it touches, so a stale view
//! makes the write retry, never over-commit.

use crate::records::Versioned;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{watch, OnceCell};
use wharf_core::lifecycle::TaskStatus;
use wharf_core::placement::Constraint;
use wharf_core::query::{self, GroupCounts};
use wharf_core::records::{InstanceRecord, MANAGED_CLUSTER};
use wharf_store::{scan, DynStore, EventKind, KeyValue, Revision, StoreError};

/// Task groups and live-task count of one host, for one cluster's tasks.
#[derive(Default)]
pub struct HostTasks {
    pub groups: GroupCounts,
    pub running: usize,
}

/// One container instance as placement reads it. Slots are addressed by
/// index, so a placement that samples hosts reads them without hashing or
/// copying their IDs.
pub struct Slot {
    pub id: Arc<str>,
    /// None while only its session or its tasks are known.
    pub instance: Option<Arc<Versioned<InstanceRecord>>>,
    /// Its agent holds a session.
    pub connected: bool,
    /// Per task cluster (a managed host serves many clusters).
    tasks: Vec<(Arc<str>, HostTasks)>,
}

impl Slot {
    /// This host's tasks of `cluster`.
    pub fn tasks(&self, cluster: &str) -> Option<&HostTasks> {
        self.tasks
            .iter()
            .find(|(c, _)| &**c == cluster)
            .map(|(_, t)| t)
    }
}

/// The hosts of one capacity cluster (a cluster's own instances, or the
/// managed capacity).
#[derive(Default)]
pub struct Capacity {
    pub slots: Vec<Slot>,
    index: HashMap<Arc<str>, usize>,
    /// Bumped whenever a host appears or goes, or changes a field a static
    /// constraint reads; feasible sets of an older generation are stale.
    generation: u64,
    /// Hosts that pass a set of static constraints (see
    /// [`Constraint::is_static`]), computed once per generation.
    feasible: Vec<(Vec<Constraint>, u64, Arc<Vec<usize>>)>,
}

/// Distinct constraint sets remembered per capacity.
const FEASIBLE_SETS: usize = 64;

impl Capacity {
    pub fn slot(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    fn slot_mut(&mut self, id: &str) -> &mut Slot {
        let i = match self.index.get(id) {
            Some(&i) => i,
            None => {
                let id: Arc<str> = id.into();
                self.slots.push(Slot {
                    id: id.clone(),
                    instance: None,
                    connected: false,
                    tasks: vec![],
                });
                self.index.insert(id, self.slots.len() - 1);
                self.slots.len() - 1
            }
        };
        &mut self.slots[i]
    }

    /// Drops the slot of `id` once nothing refers to it any more.
    fn forget_if_unused(&mut self, id: &str) {
        let Some(&i) = self.index.get(id) else {
            return;
        };
        let s = &self.slots[i];
        if s.instance.is_some() || s.connected || !s.tasks.is_empty() {
            return;
        }
        self.index.remove(id);
        self.slots.swap_remove(i);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.id.clone(), i);
        }
        self.generation += 1;
    }

    /// Slots whose instance passes every one of `statics` (static
    /// constraints only), from the last computation while no host changed
    /// what they read.
    pub fn feasible(&mut self, statics: &[Constraint]) -> Arc<Vec<usize>> {
        let generation = self.generation;
        if let Some((_, _, set)) = self
            .feasible
            .iter()
            .find(|(c, g, _)| *g == generation && c.as_slice() == statics)
        {
            return set.clone();
        }
        let set: Arc<Vec<usize>> = Arc::new(
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.instance.as_ref().is_some_and(|v| {
                        let host = query::HostView::bare(&v.value);
                        statics.iter().all(|c| c.allows(&host, "").is_ok())
                    })
                })
                .map(|(i, _)| i)
                .collect(),
        );
        self.feasible
            .retain(|(c, g, _)| *g == generation && c.as_slice() != statics);
        if self.feasible.len() >= FEASIBLE_SETS {
            self.feasible.remove(0);
        }
        self.feasible
            .push((statics.to_vec(), generation, set.clone()));
        set
    }
}

/// The capacity `name`, created empty on first mention (without
/// allocating its name when it exists).
fn capacity_mut<'a>(all: &'a mut HashMap<String, Capacity>, name: &str) -> &'a mut Capacity {
    if !all.contains_key(name) {
        all.insert(name.to_string(), Capacity::default());
    }
    all.get_mut(name).expect("just inserted")
}

/// Where a live task is counted: its capacity, host, cluster and group
/// (interned: many tasks share each).
struct Live {
    capacity: Arc<str>,
    instance: Arc<str>,
    cluster: Arc<str>,
    group: Arc<str>,
}

#[derive(Default)]
pub struct View {
    /// By capacity cluster.
    pub capacities: HashMap<String, Capacity>,
    /// Task key -> where it is counted, for tasks not STOPPED.
    live: HashMap<Box<str>, Live>,
    /// Capacity and cluster names and groups, shared by the tasks that name them.
    names: HashSet<Arc<str>>,
}

/// The few task fields placement counts, borrowed from the record where
/// JSON allows.
#[derive(serde::Deserialize)]
struct TaskBrief<'a> {
    #[serde(borrow)]
    cluster: Cow<'a, str>,
    #[serde(borrow)]
    instance_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    launch_type: Cow<'a, str>,
    last_status: TaskStatus,
}

impl View {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        self.names.insert(a.clone());
        a
    }

    fn apply(&mut self, kind: EventKind, kv: &KeyValue) {
        let key = kv.key.as_str();
        let put = kind == EventKind::Put;
        if let Some(rest) = key.strip_prefix("/instances/") {
            let Some((cap, id)) = rest.split_once('/') else {
                return;
            };
            let capacity = capacity_mut(&mut self.capacities, cap);
            let record = match serde_json::from_slice::<InstanceRecord>(&kv.value) {
                Ok(value) if put => Some(Arc::new(Versioned {
                    value,
                    key: kv.key.clone(),
                    mod_revision: kv.mod_revision,
                })),
                _ => None,
            };
            let slot = capacity.slot_mut(id);
            let changed = match (&slot.instance, &record) {
                (Some(a), Some(b)) => query::static_fields_differ(&a.value, &b.value),
                (None, None) => false,
                _ => true,
            };
            slot.instance = record;
            if changed {
                capacity.generation += 1;
            }
            capacity.forget_if_unused(id);
        } else if let Some(rest) = key.strip_prefix("/agents/") {
            if let Some((cap, id)) = rest.split_once('/') {
                let capacity = capacity_mut(&mut self.capacities, cap);
                capacity.slot_mut(id).connected = put;
                capacity.forget_if_unused(id);
            }
        } else if key.starts_with("/tasks/") {
            if let Some(old) = self.live.remove(key) {
                self.uncount(&old);
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
            let capacity = self.intern(if t.launch_type == "FARGATE" {
                MANAGED_CLUSTER
            } else {
                &t.cluster
            });
            let cluster = self.intern(&t.cluster);
            let group = self.intern(&t.group);
            let slot = capacity_mut(&mut self.capacities, &capacity).slot_mut(&iid);
            let live = Live {
                capacity,
                instance: slot.id.clone(),
                cluster,
                group,
            };
            let h = match slot.tasks.iter().position(|(c, _)| *c == live.cluster) {
                Some(i) => &mut slot.tasks[i].1,
                None => {
                    slot.tasks
                        .push((live.cluster.clone(), HostTasks::default()));
                    &mut slot.tasks.last_mut().expect("just pushed").1
                }
            };
            h.running += 1;
            match h.groups.get_mut(&*live.group) {
                Some(n) => *n += 1,
                None => {
                    h.groups.insert(live.group.to_string(), 1);
                }
            }
            self.live.insert(key.into(), live);
        }
    }

    fn uncount(&mut self, old: &Live) {
        let Some(capacity) = self.capacities.get_mut(&*old.capacity) else {
            return;
        };
        let Some(i) = capacity.slot(&old.instance) else {
            return;
        };
        let slot = &mut capacity.slots[i];
        if let Some(at) = slot.tasks.iter().position(|(c, _)| *c == old.cluster) {
            let h = &mut slot.tasks[at].1;
            h.running = h.running.saturating_sub(1);
            if let Some(n) = h.groups.get_mut(&*old.group) {
                *n -= 1;
                if *n == 0 {
                    h.groups.remove(&*old.group);
                }
            }
            if h.running == 0 {
                slot.tasks.swap_remove(at);
            }
        }
        capacity.forget_if_unused(&old.instance);
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
            // The watch replays from the first read's revision, so anything
            // that changed while paging is applied again.
            let rev = scan(store.as_ref(), prefix, 10_000, |kv| {
                view.apply(EventKind::Put, &kv)
            })
            .await?;
            at.get_or_insert(rev);
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

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_core::placement::parse_constraints;
    use wharf_core::records::{Resources, TaskRecord};
    use wharf_model::ecs;

    fn instance(cluster: &str, id: &str, kind: &str) -> InstanceRecord {
        let registered = Resources {
            cpu: 1024,
            memory: 2048,
            ..Default::default()
        };
        InstanceRecord {
            attributes: [("kind".to_string(), Some(kind.to_string()))].into(),
            ..InstanceRecord::new(id, &format!("arn:{id}"), cluster, registered, 0)
        }
    }

    fn put(view: &mut View, key: String, value: Vec<u8>) {
        let kv = KeyValue {
            key,
            value,
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: None,
        };
        view.apply(EventKind::Put, &kv);
    }

    fn delete(view: &mut View, key: String) {
        let kv = KeyValue {
            key,
            value: vec![],
            create_revision: 0,
            mod_revision: 2,
            version: 0,
            lease: None,
        };
        view.apply(EventKind::Delete, &kv);
    }

    fn put_instance(view: &mut View, i: &InstanceRecord) {
        let key = format!("/instances/{}/{}", i.cluster, i.id);
        put(view, key, serde_json::to_vec(i).unwrap());
    }

    /// `at` is "CLUSTER/TASK/HOST/GROUP"; clusters other than "c" are FARGATE.
    fn put_task(view: &mut View, at: &str, status: TaskStatus) {
        let [cluster, id, on, group] = at.splitn(4, '/').collect::<Vec<_>>()[..] else {
            panic!("bad fixture {at}");
        };
        let mut t = TaskRecord::new(id, &format!("arn:{id}"), cluster, 0);
        t.instance_id = Some(on.into());
        t.group = group.into();
        t.last_status = status;
        if cluster != "c" {
            t.launch_type = "FARGATE".into();
        }
        let key = format!("/tasks/{cluster}/{id}");
        put(view, key, serde_json::to_vec(&t).unwrap());
    }

    fn member_of(expr: &str) -> Vec<Constraint> {
        parse_constraints(&[ecs::PlacementConstraint {
            r#type: Some(ecs::PlacementConstraintType::MemberOf),
            expression: Some(expr.into()),
        }])
        .unwrap()
    }

    fn ids(view: &View, cap: &str, set: &[usize]) -> Vec<String> {
        let slots = &view.capacities[cap].slots;
        let mut v: Vec<String> = set.iter().map(|&i| slots[i].id.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn feasible_sets_follow_the_attributes_not_the_allocations() {
        let mut view = View::default();
        let (a, b, c) = (
            instance("c", "a", "big"),
            instance("c", "b", "small"),
            instance("c", "c", "big"),
        );
        for i in [&a, &b, &c] {
            put_instance(&mut view, i);
        }
        let big = member_of("attribute:kind == big");
        let set = view.capacities.get_mut("c").unwrap().feasible(&big);
        assert_eq!(ids(&view, "c", &set), ["a", "c"]);

        // A new allocation changes nothing a static constraint reads: the
        // same set is handed out again, not recomputed.
        let mut busy = a.clone();
        busy.allocated.cpu = 512;
        put_instance(&mut view, &busy);
        let again = view.capacities.get_mut("c").unwrap().feasible(&big);
        assert!(Arc::ptr_eq(&set, &again));

        // A changed attribute does.
        let mut now_big = b.clone();
        now_big.attributes.insert("kind".into(), Some("big".into()));
        put_instance(&mut view, &now_big);
        let set = view.capacities.get_mut("c").unwrap().feasible(&big);
        assert_eq!(ids(&view, "c", &set), ["a", "b", "c"]);

        // A host that goes is gone from the next set, and the slot that
        // took its place is still found by its ID.
        delete(&mut view, "/instances/c/a".into());
        let set = view.capacities.get_mut("c").unwrap().feasible(&big);
        assert_eq!(ids(&view, "c", &set), ["b", "c"]);
        let cap = &view.capacities["c"];
        for id in ["b", "c"] {
            assert_eq!(&*cap.slots[cap.slot(id).unwrap()].id, id);
        }
        assert!(cap.slot("a").is_none());
    }

    #[test]
    fn counts_live_tasks_per_host_cluster_and_group() {
        let mut view = View::default();
        put_instance(&mut view, &instance("c", "h", "big"));
        put_instance(&mut view, &instance(MANAGED_CLUSTER, "m", "big"));
        put_task(&mut view, "c/t1/h/service:web", TaskStatus::Running);
        put_task(&mut view, "c/t2/h/service:web", TaskStatus::Pending);
        put_task(&mut view, "c/t3/h/family:batch", TaskStatus::Running);
        // FARGATE tasks of two clusters on one managed host.
        put_task(&mut view, "x/f1/m/service:web", TaskStatus::Running);
        put_task(&mut view, "y/f2/m/service:web", TaskStatus::Running);

        let slot = |view: &View, cap: &str, id: &str| view.capacities[cap].slot(id);
        let cap = &view.capacities["c"];
        let h = &cap.slots[cap.slot("h").unwrap()];
        let tasks = h.tasks("c").unwrap();
        assert_eq!(tasks.running, 3);
        assert_eq!(tasks.groups["service:web"], 2);
        assert_eq!(tasks.groups["family:batch"], 1);
        let m = &view.capacities[MANAGED_CLUSTER];
        let m = &m.slots[m.slot("m").unwrap()];
        assert_eq!(m.tasks("x").unwrap().groups["service:web"], 1);
        assert_eq!(m.tasks("y").unwrap().running, 1);
        assert!(m.tasks("c").is_none());

        // Stopping and deleting take tasks out; a task updated in place
        // (PENDING -> RUNNING) is counted once.
        put_task(&mut view, "c/t2/h/service:web", TaskStatus::Running);
        put_task(&mut view, "c/t1/h/service:web", TaskStatus::Stopped);
        delete(&mut view, "/tasks/c/t3".into());
        let cap = &view.capacities["c"];
        let tasks = cap.slots[cap.slot("h").unwrap()].tasks("c").unwrap();
        assert_eq!(tasks.running, 1);
        assert_eq!(tasks.groups.get("service:web"), Some(&1));
        assert_eq!(tasks.groups.get("family:batch"), None);

        // A deregistered host is forgotten once its last task is gone.
        delete(&mut view, "/instances/c/h".into());
        assert!(slot(&view, "c", "h").is_some());
        put_task(&mut view, "c/t2/h/service:web", TaskStatus::Stopped);
        assert!(slot(&view, "c", "h").is_none());
    }
}
