//! What placement reads, kept in memory and fed by the store's watch:
//! instances, connected agents, and per host the task groups and what its
//! tasks hold. RunTask reads it instead of listing every instance and every
//! task of the cluster per call.
//!
//! What a host's tasks hold is not stored anywhere: it is the sum of the
//! reservations of its tasks not yet STOPPED, as Nomad derives a node's
//! usage from its allocations. This view is therefore also the ledger that
//! keeps placements from over-committing a host: a placement decides under
//! its lock and reserves what it took (`reserve`) before it commits, so a
//! placement that decides next counts it, until the committed task arrives
//! through the watch (or the commit fails and `release` gives it back). All
//! placements of a store go through one such view (one server per store;
//! with a shared store, placement must run on one leader). Placement still
//! commits with a compare on every instance record it placed on, so a host
//! drained or deregistered meanwhile makes it retry.

use crate::records::Versioned;
use crate::wire::Counts;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{watch, OnceCell};
use wharf_core::lifecycle::{DesiredStatus, TaskStatus};
use wharf_core::placement::{self, Constraint, ValueCounts};
use wharf_core::query::{self, GroupCounts};
use wharf_core::records::{keys, ClusterKey, InstanceRecord, Resources, MANAGED_CLUSTER};
use wharf_store::{scan, DynStore, EventKind, KeyValue, Revision, StoreError};

/// Task groups and live-task count of one host, for one cluster's tasks.
#[derive(Default)]
pub struct HostTasks {
    pub groups: GroupCounts,
    /// Tasks not STOPPED (what `runningTasksCount` in a query reads).
    pub running: usize,
    /// Committed tasks RUNNING, and PENDING on their way to it (what
    /// DescribeClusters and DescribeContainerInstances report).
    pub counts: Counts,
}

/// What the API reports of an instance beside its record.
#[derive(Default)]
pub struct OnInstance {
    /// What its tasks hold.
    pub held: Resources,
    pub counts: Counts,
    /// Its agent holds a session.
    pub connected: bool,
}

/// What the API reports of a cluster beside its record.
#[derive(Default)]
pub struct OnCluster {
    /// Its instances not INACTIVE.
    pub registered: i32,
    pub counts: Counts,
    /// Of `counts`, those on the managed capacity (FARGATE).
    pub fargate: Counts,
    /// Its tasks not STOPPED, with placements under way.
    pub live: usize,
}

/// Which of the API's task counts a live task is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counted {
    Running,
    Pending,
    /// Neither (stopping, or a reservation not yet committed).
    Neither,
}

impl Counted {
    fn of(last: TaskStatus, desired: DesiredStatus) -> Self {
        if last == TaskStatus::Running {
            Counted::Running
        } else if last.is_pending() && desired == DesiredStatus::Running {
            Counted::Pending
        } else {
            Counted::Neither
        }
    }

    /// Adds `n` (1 or -1) to the count this is.
    fn add_to(self, counts: &mut Counts, n: i32) {
        match self {
            Counted::Running => counts.running += n,
            Counted::Pending => counts.pending += n,
            Counted::Neither => {}
        }
    }
}

/// One container instance as placement reads it. Slots are addressed by
/// index, so a placement that samples hosts reads them without hashing or
/// copying their IDs.
pub struct Slot {
    pub id: Arc<str>,
    /// None while only its session or its tasks are known.
    pub instance: Option<Arc<Versioned<InstanceRecord>>>,
    /// What its tasks not yet STOPPED hold, with placements reserved but
    /// not yet seen committed.
    pub held: Resources,
    /// Placements reserved here and not yet seen committed or released.
    pending: usize,
    /// Deregistrations under way: placement passes it by.
    pub closing: usize,
    /// Its agent holds a session.
    pub connected: bool,
    /// Per task cluster (a managed host serves many clusters).
    tasks: Vec<(Arc<str>, HostTasks)>,
    /// Keys of every task placed here, STOPPED ones too (until deleted):
    /// what its agent's poll answers.
    hosted: HashSet<Arc<str>>,
}

impl Slot {
    /// Its instance record, while it is ACTIVE (whose tasks spread counts).
    fn active(&self) -> Option<&InstanceRecord> {
        self.instance
            .as_ref()
            .map(|v| &v.value)
            .filter(|i| i.status == "ACTIVE")
    }

    /// This host's tasks of `cluster`.
    pub fn tasks(&self, cluster: &ClusterKey) -> Option<&HostTasks> {
        self.tasks
            .iter()
            .find(|(c, _)| &**c == cluster.as_str())
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
    /// Feasible sets split by the value of an attribute spread by, per
    /// generation like `feasible`.
    by_value: Vec<Split>,
    /// For each attribute a placement spread by: cluster -> group -> live
    /// tasks per value (see [`Capacity::spread_counts`]). Dropped, to be
    /// counted again on next use, when a host appears, goes, or changes
    /// status or a static field.
    spread: HashMap<Box<str>, SpreadCounts>,
}

/// The hosts of a feasible set per value of one attribute (None: hosts
/// without it).
pub type ByValue = Vec<(Option<Box<str>>, Vec<usize>)>;

/// A remembered [`Capacity::feasible_by_value`].
struct Split {
    statics: Vec<Constraint>,
    attr: Box<str>,
    generation: u64,
    hosts: Arc<ByValue>,
}

type SpreadCounts = HashMap<Box<str>, HashMap<Box<str>, ValueCounts>>;

/// The counts of `group` of `cluster`, created empty on first mention.
fn by_group<'a>(counts: &'a mut SpreadCounts, cluster: &str, group: &str) -> &'a mut ValueCounts {
    if !counts.contains_key(cluster) {
        counts.insert(cluster.into(), HashMap::new());
    }
    let groups = counts.get_mut(cluster).expect("just inserted");
    if !groups.contains_key(group) {
        groups.insert(group.into(), ValueCounts::default());
    }
    groups.get_mut(group).expect("just inserted")
}

/// Distinct constraint sets remembered per capacity.
const FEASIBLE_SETS: usize = 64;

impl Capacity {
    pub fn slot(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    fn slot_mut(&mut self, id: &str) -> &mut Slot {
        let i = self.slot_or_new(id);
        &mut self.slots[i]
    }

    /// The slot of `id`, created empty on first mention.
    fn slot_or_new(&mut self, id: &str) -> usize {
        match self.index.get(id) {
            Some(&i) => i,
            None => {
                let id: Arc<str> = id.into();
                self.slots.push(Slot {
                    id: id.clone(),
                    instance: None,
                    held: Resources::default(),
                    pending: 0,
                    closing: 0,
                    connected: false,
                    tasks: vec![],
                    hosted: HashSet::new(),
                });
                self.index.insert(id, self.slots.len() - 1);
                self.slots.len() - 1
            }
        }
    }

    /// Counts `n` more (or fewer) live tasks of `group` of `cluster` on
    /// slot `slot` in the spread counts kept.
    fn count_spread(&mut self, slot: usize, cluster: &str, group: &str, n: i64) {
        let Some(inst) = self.slots[slot].active() else {
            return;
        };
        for (attr, by_cluster) in &mut self.spread {
            let value = placement::attribute(inst, attr);
            by_group(by_cluster, cluster, group).add(value, n);
        }
    }

    /// The live tasks of `group` of `cluster` per value of `attr` over this
    /// capacity's ACTIVE hosts (what `spread(attribute:ATTR)` ranks by).
    /// Counted over every host on first use, then kept as tasks come and go.
    pub fn spread_counts(&mut self, attr: &str, cluster: &ClusterKey, group: &str) -> ValueCounts {
        if !self.spread.contains_key(attr) {
            let mut by_cluster = HashMap::new();
            for slot in &self.slots {
                let Some(inst) = slot.active() else {
                    continue;
                };
                let value = placement::attribute(inst, attr);
                for (c, tasks) in &slot.tasks {
                    for (g, &n) in &tasks.groups {
                        by_group(&mut by_cluster, c, g).add(value, n as i64);
                    }
                }
            }
            self.spread.insert(attr.into(), by_cluster);
        }
        self.spread[attr]
            .get(cluster.as_str())
            .and_then(|groups| groups.get(group))
            .cloned()
            .unwrap_or_default()
    }

    /// Drops the slot of `id` once nothing refers to it any more.
    fn forget_if_unused(&mut self, id: &str) {
        let Some(&i) = self.index.get(id) else {
            return;
        };
        let s = &self.slots[i];
        if s.instance.is_some()
            || s.pending > 0
            || s.closing > 0
            || s.connected
            || !s.tasks.is_empty()
            || !s.hosted.is_empty()
        {
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

    /// [`Self::feasible`]`(statics)` split by each host's value of
    /// attribute `attr`, from the last computation while no host changed.
    pub fn feasible_by_value(&mut self, statics: &[Constraint], attr: &str) -> Arc<ByValue> {
        let generation = self.generation;
        if let Some(s) = self.by_value.iter().find(|s| {
            s.generation == generation && &*s.attr == attr && s.statics.as_slice() == statics
        }) {
            return s.hosts.clone();
        }
        let mut split: ByValue = vec![];
        let mut at: HashMap<Option<&str>, usize> = HashMap::new();
        let feasible = self.feasible(statics);
        for &i in feasible.iter() {
            let inst = &self.slots[i].instance.as_ref().expect("feasible").value;
            let value = placement::attribute(inst, attr);
            let k = *at.entry(value).or_insert_with(|| {
                split.push((value.map(Into::into), vec![]));
                split.len() - 1
            });
            split[k].1.push(i);
        }
        let split = Arc::new(split);
        self.by_value.retain(|s| s.generation == generation);
        if self.by_value.len() >= FEASIBLE_SETS {
            self.by_value.remove(0);
        }
        self.by_value.push(Split {
            statics: statics.to_vec(),
            attr: attr.into(),
            generation,
            hosts: split.clone(),
        });
        split
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

/// Where a live task, or a placement decided and not yet seen committed,
/// is counted: its capacity, host, cluster and group (interned: many tasks
/// share each), and what it holds there.
struct Live {
    capacity: Arc<str>,
    instance: Arc<str>,
    cluster: Arc<str>,
    group: Arc<str>,
    reservation: Resources,
    counted: Counted,
}

#[derive(Default)]
pub struct View {
    /// By capacity cluster.
    pub capacities: HashMap<String, Capacity>,
    /// Task key -> where it is counted, for tasks not STOPPED.
    live: HashMap<Box<str>, Live>,
    /// Task key -> the capacity and host it was placed on, for every task
    /// stored (the key itself is shared with the host's `hosted`).
    placed: HashMap<Arc<str>, (Arc<str>, Arc<str>)>,
    /// Task key -> what a placement under way reserved for it (counted as
    /// its live task will be, groups and spread included).
    pending: HashMap<Box<str>, Live>,
    /// Capacity and cluster names and groups, shared by the tasks that name them.
    names: HashSet<Arc<str>>,
}

/// The few task fields placement counts, borrowed from the record where
/// JSON allows.
#[derive(serde::Deserialize)]
struct TaskBrief<'a> {
    #[serde(borrow)]
    instance_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    launch_type: Cow<'a, str>,
    last_status: TaskStatus,
    desired_status: DesiredStatus,
    reservation: Resources,
}

/// The capacity a task of `cluster` runs on: the managed one for FARGATE.
fn capacity_of<'a>(t: &TaskBrief, cluster: &'a str) -> &'a str {
    if t.launch_type == "FARGATE" {
        MANAGED_CLUSTER
    } else {
        cluster
    }
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
        if key.starts_with(keys::INSTANCES) {
            let Some((cap, id)) = ClusterKey::split(keys::INSTANCES, key) else {
                return;
            };
            let capacity = capacity_mut(&mut self.capacities, cap.as_str());
            let record = match serde_json::from_slice::<InstanceRecord>(&kv.value) {
                Ok(value) if put => Some(Arc::new(Versioned {
                    value,
                    key: kv.key.clone(),
                    mod_revision: kv.mod_revision,
                })),
                _ => None,
            };
            let slot = capacity.slot_mut(id);
            let (changed, status) = match (&slot.instance, &record) {
                (Some(a), Some(b)) => (
                    query::static_fields_differ(&a.value, &b.value),
                    a.value.status != b.value.status,
                ),
                (None, None) => (false, false),
                _ => (true, true),
            };
            slot.instance = record;
            if changed {
                capacity.generation += 1;
            }
            if changed || status {
                capacity.spread.clear();
            }
            capacity.forget_if_unused(id);
        } else if key.starts_with(keys::AGENT_SESSIONS) {
            if let Some((cap, id)) = ClusterKey::split(keys::AGENT_SESSIONS, key) {
                let capacity = capacity_mut(&mut self.capacities, cap.as_str());
                capacity.slot_mut(id).connected = put;
                capacity.forget_if_unused(id);
            }
        } else if let Some((cluster, _)) = ClusterKey::split(keys::TASKS, key) {
            let cluster = cluster.as_str();
            let brief = put
                .then(|| serde_json::from_slice::<TaskBrief>(&kv.value).ok())
                .flatten();
            let on = brief.as_ref().and_then(|b| {
                b.instance_id
                    .as_deref()
                    .map(|i| (capacity_of(b, cluster), i))
            });
            self.place(key, on);
            let t =
                brief.filter(|t| t.instance_id.is_some() && t.last_status != TaskStatus::Stopped);
            // Counted where it is already (a status update, or a reserved
            // placement arriving): nothing to count again.
            let same = |l: &Live| {
                t.as_ref().is_some_and(|t| {
                    *l.capacity == *capacity_of(t, cluster)
                        && Some(&*l.instance) == t.instance_id.as_deref()
                        && *l.cluster == *cluster
                        && *l.group == *t.group
                        && l.reservation == t.reservation
                })
            };
            let counted = t.as_ref().map_or(Counted::Neither, |t| {
                Counted::of(t.last_status, t.desired_status)
            });
            if let Some(old) = self.live.get(key).filter(|l| same(l)) {
                let was = old.counted;
                self.recount(key, was, counted);
                return;
            }
            if let Some(old) = self.live.remove(key) {
                self.uncount(&old);
            }
            // A reserved placement arrives: from here its task holds what
            // the reservation did (in this same step, so a placement never
            // sees the host without it).
            if let Some(p) = self.pending.remove(key) {
                self.settle(&p);
                if same(&p) {
                    let was = p.counted;
                    self.live.insert(key.into(), p);
                    self.recount(key, was, counted);
                    return;
                }
                self.uncount(&p);
            }
            let Some(t) = t else {
                return;
            };
            let capacity = self.intern(capacity_of(&t, cluster));
            let cluster = self.intern(cluster);
            let group = self.intern(&t.group);
            let iid = t.instance_id.as_deref().expect("filtered");
            let live = self.count(capacity, iid, cluster, group, t.reservation, counted);
            self.live.insert(key.into(), live);
        }
    }

    /// Records the task at `key` as placed on host `on` (capacity, ID), or
    /// on none (deleted, or not placed).
    fn place(&mut self, key: &str, on: Option<(&str, &str)>) {
        if let Some((cap, id)) = self.placed.get(key) {
            if on == Some((&**cap, &**id)) {
                return;
            }
        }
        if let Some((key, (cap, id))) = self.placed.remove_entry(key) {
            if let Some(capacity) = self.capacities.get_mut(&*cap) {
                if let Some(i) = capacity.slot(&id) {
                    capacity.slots[i].hosted.remove(&key);
                }
                capacity.forget_if_unused(&id);
            }
        }
        if let Some((cap, id)) = on {
            let cap = self.intern(cap);
            let capacity = capacity_mut(&mut self.capacities, &cap);
            let i = capacity.slot_or_new(id);
            let key: Arc<str> = key.into();
            capacity.slots[i].hosted.insert(key.clone());
            let id = capacity.slots[i].id.clone();
            self.placed.insert(key, (cap, id));
        }
    }

    /// Keys of every task stored as placed on host `id` of `capacity`.
    /// The agent credentials that registered host `id` of `capacity`
    /// (`Some(None)`: registered with an API key; None: no such host known).
    pub fn owner(&self, capacity: &ClusterKey, id: &str) -> Option<Option<&str>> {
        let cap = self.capacities.get(capacity.as_str())?;
        let slot = &cap.slots[cap.slot(id)?];
        Some(slot.instance.as_ref()?.value.agent.as_deref())
    }

    /// Hosts registered by any of `agents`: (capacity, instance ID).
    pub fn owned_by(&self, agents: &HashSet<String>) -> Vec<(ClusterKey, String)> {
        let mut out = vec![];
        for (name, cap) in &self.capacities {
            for slot in &cap.slots {
                let owner = slot.instance.as_ref().and_then(|i| i.value.agent.as_ref());
                if owner.is_some_and(|o| agents.contains(o)) {
                    out.push((ClusterKey::from_str_unchecked(name), slot.id.to_string()));
                }
            }
        }
        out
    }

    pub fn tasks_on(&self, capacity: &ClusterKey, id: &str) -> Vec<String> {
        self.capacities
            .get(capacity.as_str())
            .and_then(|cap| cap.slot(id).map(|i| &cap.slots[i]))
            .map(|s| s.hosted.iter().map(|k| k.to_string()).collect())
            .unwrap_or_default()
    }

    /// Moves the live task at `key` from the API count `was` to `now`.
    fn recount(&mut self, key: &str, was: Counted, now: Counted) {
        if was == now {
            return;
        }
        let Some(live) = self.live.get_mut(key) else {
            return;
        };
        live.counted = now;
        let h = self
            .capacities
            .get_mut(&*live.capacity)
            .and_then(|cap| cap.slot(&live.instance).map(|i| &mut cap.slots[i]))
            .and_then(|slot| slot.tasks.iter_mut().find(|(c, _)| *c == live.cluster));
        if let Some((_, h)) = h {
            was.add_to(&mut h.counts, -1);
            now.add_to(&mut h.counts, 1);
        }
    }

    /// Counts a task of `group` of `cluster` holding `reservation` on host
    /// `instance` of `capacity`: what the host holds, its groups, the
    /// spread counts; where it is counted, for [`Self::uncount`].
    fn count(
        &mut self,
        capacity: Arc<str>,
        instance: &str,
        cluster: Arc<str>,
        group: Arc<str>,
        reservation: Resources,
        counted: Counted,
    ) -> Live {
        let cap = capacity_mut(&mut self.capacities, &capacity);
        let at = cap.slot_or_new(instance);
        cap.count_spread(at, &cluster, &group, 1);
        let slot = &mut cap.slots[at];
        slot.held.add(&reservation);
        let live = Live {
            capacity,
            instance: slot.id.clone(),
            cluster,
            group,
            reservation,
            counted,
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
        counted.add_to(&mut h.counts, 1);
        match h.groups.get_mut(&*live.group) {
            Some(n) => *n += 1,
            None => {
                h.groups.insert(live.group.to_string(), 1);
            }
        }
        live
    }

    fn uncount(&mut self, old: &Live) {
        let Some(capacity) = self.capacities.get_mut(&*old.capacity) else {
            return;
        };
        let Some(i) = capacity.slot(&old.instance) else {
            return;
        };
        capacity.count_spread(i, &old.cluster, &old.group, -1);
        let slot = &mut capacity.slots[i];
        slot.held.remove(&old.reservation);
        if let Some(at) = slot.tasks.iter().position(|(c, _)| *c == old.cluster) {
            let h = &mut slot.tasks[at].1;
            h.running = h.running.saturating_sub(1);
            old.counted.add_to(&mut h.counts, -1);
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

    /// Counts a placement decided on slot `slot` of `capacity` for the task
    /// at `task_key` (of `group` of `cluster`) before it commits: until the
    /// task arrives through the watch (or [`Cache::release`]), the host
    /// holds its reservation and counts it in its groups and spread, as it
    /// will the task.
    pub fn reserve(
        &mut self,
        capacity: &ClusterKey,
        slot: usize,
        task_key: &str,
        cluster: &ClusterKey,
        group: &str,
        need: &Resources,
    ) {
        let Some(id) = self
            .capacities
            .get(capacity.as_str())
            .map(|c| c.slots[slot].id.clone())
        else {
            return;
        };
        let (capacity, cluster, group) = (
            self.intern(capacity.as_str()),
            self.intern(cluster.as_str()),
            self.intern(group),
        );
        // Not in the API's counts until committed.
        let p = self.count(
            capacity,
            &id,
            cluster,
            group,
            need.clone(),
            Counted::Neither,
        );
        self.hold(task_key.into(), p);
    }

    /// Keeps `p`, counted, as the reservation of the task at `task_key`
    /// (replacing what was held for it) until [`Self::unreserve`].
    fn hold(&mut self, task_key: Box<str>, p: Live) {
        if let Some(cap) = self.capacities.get_mut(&*p.capacity) {
            cap.slot_mut(&p.instance).pending += 1;
        }
        if let Some(old) = self.pending.insert(task_key, p) {
            self.unreserve(&old);
        }
    }

    /// Gives back reservation `p` (its placement did not commit).
    fn unreserve(&mut self, p: &Live) {
        self.settle(p);
        self.uncount(p);
    }

    /// Marks reservation `p` no longer pending (still counted).
    fn settle(&mut self, p: &Live) {
        if let Some(cap) = self.capacities.get_mut(&*p.capacity) {
            if let Some(i) = cap.slot(&p.instance) {
                cap.slots[i].pending -= 1;
            }
        }
    }

    /// Instance `id` of `capacity` as the API reports it, with the counts
    /// of `cluster`'s tasks on it.
    pub fn on_instance(&self, capacity: &ClusterKey, cluster: &ClusterKey, id: &str) -> OnInstance {
        let Some(slot) = self
            .capacities
            .get(capacity.as_str())
            .and_then(|cap| cap.slot(id).map(|i| &cap.slots[i]))
        else {
            return OnInstance::default();
        };
        OnInstance {
            held: slot.held.clone(),
            counts: slot.tasks(cluster).map_or(Counts::default(), |t| t.counts),
            connected: slot.connected,
        }
    }

    /// `cluster` as the API reports it beside its record: its tasks on its
    /// own instances and on the managed capacity, and its instances.
    pub fn on_cluster(&self, cluster: &ClusterKey) -> OnCluster {
        let mut out = OnCluster::default();
        for name in [cluster.as_str(), MANAGED_CLUSTER] {
            let Some(cap) = self.capacities.get(name) else {
                continue;
            };
            for slot in &cap.slots {
                if name == cluster.as_str()
                    && slot
                        .instance
                        .as_ref()
                        .is_some_and(|v| v.value.status != "INACTIVE")
                {
                    out.registered += 1;
                }
                if let Some(t) = slot.tasks(cluster) {
                    out.counts.running += t.counts.running;
                    out.counts.pending += t.counts.pending;
                    if name == MANAGED_CLUSTER {
                        out.fargate.running += t.counts.running;
                        out.fargate.pending += t.counts.pending;
                    }
                    out.live += t.running;
                }
            }
        }
        out
    }

    /// What only this process knows, from `old` (a view being replaced by
    /// a reload): hosts closed for deregistration, and the reservations
    /// still pending, except those whose tasks this view has seen or the
    /// store was found to hold (`committed`): those were committed, and
    /// the reload counted each as it is now (a task since stopped holds
    /// nothing).
    fn adopt(&mut self, old: &mut View, committed: &HashSet<String>) {
        for (name, cap) in &old.capacities {
            for s in cap.slots.iter().filter(|s| s.closing > 0) {
                capacity_mut(&mut self.capacities, name)
                    .slot_mut(&s.id)
                    .closing = s.closing;
            }
        }
        for (key, p) in std::mem::take(&mut old.pending) {
            if self.live.contains_key(&key) || committed.contains(&*key) {
                continue;
            }
            let p = self.count(
                p.capacity,
                &p.instance,
                p.cluster,
                p.group,
                p.reservation,
                p.counted,
            );
            self.hold(key, p);
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

/// A host closed to placement while it is deregistered (see
/// [`Cache::close`]); open again when dropped.
pub struct Closing {
    cache: Arc<Cache>,
    capacity: String,
    id: String,
}

impl Drop for Closing {
    fn drop(&mut self) {
        let mut view = self.cache.view.lock().expect("cache lock");
        if let Some(cap) = view.capacities.get_mut(&self.capacity) {
            if let Some(i) = cap.slot(&self.id) {
                cap.slots[i].closing = cap.slots[i].closing.saturating_sub(1);
                cap.forget_if_unused(&self.id);
            }
        }
    }
}

impl Cache {
    /// Gives back what a placement reserved for tasks it did not commit.
    pub fn release(&self, task_keys: &[String]) {
        let mut view = self.view.lock().expect("cache lock");
        for key in task_keys {
            if let Some(p) = view.pending.remove(key.as_str()) {
                view.unreserve(&p);
            }
        }
    }

    /// Closes host `id` of `capacity` to placement, then waits until no
    /// placement on it is still under way (each commits or gives up within
    /// a commit's time): from then on the store holds every task that will
    /// ever be placed there until the returned guard is dropped.
    pub async fn close(
        self: &Arc<Self>,
        store: &DynStore,
        capacity: &ClusterKey,
        id: &str,
    ) -> Result<Closing, StoreError> {
        {
            let mut view = self.fresh(store).await?;
            capacity_mut(&mut view.capacities, capacity.as_str())
                .slot_mut(id)
                .closing += 1;
        }
        let closing = Closing {
            cache: self.clone(),
            capacity: capacity.as_str().to_string(),
            id: id.to_string(),
        };
        // Each placement under way commits or gives up within a commit's
        // time; a store that takes longer is failing anyway.
        for _ in 0..5_000 {
            let settled = {
                let view = self.fresh(store).await?;
                let cap = &view.capacities[capacity.as_str()];
                cap.slot(id).is_none_or(|i| cap.slots[i].pending == 0)
            };
            if settled {
                return Ok(closing);
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        Err(StoreError::Storage(format!(
            "placements on instance {id} did not settle"
        )))
    }

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

    /// The agent credentials that registered host `id` of `capacity`, as
    /// the view holds it now, without waiting for it to catch up (None: not
    /// known to it). A host is known before any task is placed on it.
    pub fn peek_owner(&self, capacity: &ClusterKey, id: &str) -> Option<Option<String>> {
        let view = self.view.lock().expect("cache lock");
        view.owner(capacity, id).map(|o| o.map(str::to_string))
    }

    /// Keys of every task stored as placed on host `id` of `capacity`, and
    /// a revision they are complete at: a task placed there later changes a
    /// key after it.
    pub async fn tasks_on(
        self: &Arc<Self>,
        store: &DynStore,
        capacity: &ClusterKey,
        id: &str,
    ) -> Result<(Vec<String>, Revision), StoreError> {
        let view = self.fresh(store).await?;
        // Read under the view's lock: the follower cannot apply more
        // meanwhile, so the view holds at least everything up to it.
        let revision = *self.revision.borrow();
        Ok((view.tasks_on(capacity, id), revision))
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
        // Reservations whose tasks the store holds are settled; the others
        // (and any made meanwhile) belong to placements still under way.
        let reserved: Vec<String> = {
            let old = self.view.lock().expect("cache lock");
            old.pending.keys().map(|k| k.to_string()).collect()
        };
        let mut committed = HashSet::new();
        for key in reserved {
            if store.get(&key).await?.is_some() {
                committed.insert(key);
            }
        }
        let mut old = self.view.lock().expect("cache lock");
        view.adopt(&mut old, &committed);
        *old = view;
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

    /// Cluster `name` of the tests' region.
    fn ck(name: &str) -> ClusterKey {
        ClusterKey::new("r", name)
    }
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
        let key = format!("/instances/{}/{}", ck(&i.cluster), i.id);
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
        t.reservation = cpu(100);
        if cluster != "c" {
            t.launch_type = "FARGATE".into();
        }
        let key = format!("/tasks/{}/{id}", ck(cluster));
        put(view, key, serde_json::to_vec(&t).unwrap());
    }

    fn cpu(n: i64) -> Resources {
        Resources {
            cpu: n,
            ..Default::default()
        }
    }

    fn held(view: &View, cap: &str, id: &str) -> i64 {
        let cap = &view.capacities[cap];
        cap.slots[cap.slot(id).unwrap()].held.cpu
    }

    #[test]
    fn hosts_hold_what_their_live_tasks_and_reserved_placements_reserve() {
        let mut view = View::default();
        put_instance(&mut view, &instance("c", "h", "big"));
        put_task(&mut view, "c/t1/h/family:web", TaskStatus::Running);
        put_task(&mut view, "c/t2/h/family:web", TaskStatus::Pending);
        assert_eq!(held(&view, "r/c", "h"), 200);
        // An update in place is counted once; STOPPED and deleted give back.
        put_task(&mut view, "c/t2/h/family:web", TaskStatus::Running);
        assert_eq!(held(&view, "r/c", "h"), 200);
        put_task(&mut view, "c/t1/h/family:web", TaskStatus::Stopped);
        assert_eq!(held(&view, "r/c", "h"), 100);
        delete(&mut view, "/tasks/r/c/t2".into());
        assert_eq!(held(&view, "r/c", "h"), 0);

        // A reserved placement is held before its task arrives, and once
        // (not twice) after; so is it counted in the host's groups and in
        // the spread counts, which concurrent placements rank by.
        let web = |view: &mut View| {
            let cap = view.capacities.get_mut("r/c").unwrap();
            let spread = cap
                .spread_counts("kind", &ck("c"), "family:web")
                .get(Some("big"));
            let h = &cap.slots[cap.slot("h").unwrap()];
            let tasks = h.tasks(&ck("c"));
            let group = tasks.and_then(|t| t.groups.get("family:web").copied());
            (
                h.held.cpu,
                group.unwrap_or(0),
                tasks.map_or(0, |t| t.running),
                spread,
            )
        };
        assert_eq!(web(&mut view), (0, 0, 0, 0));
        let slot = view.capacities["r/c"].slot("h").unwrap();
        view.reserve(
            &ck("c"),
            slot,
            "/tasks/r/c/t3",
            &ck("c"),
            "family:web",
            &cpu(100),
        );
        view.reserve(
            &ck("c"),
            slot,
            "/tasks/r/c/t4",
            &ck("c"),
            "family:web",
            &cpu(100),
        );
        assert_eq!(web(&mut view), (200, 2, 2, 2));
        put_task(&mut view, "c/t3/h/family:web", TaskStatus::Provisioning);
        assert_eq!(web(&mut view), (200, 2, 2, 2));
        // One that never commits is given back by `release`.
        let cache = Cache::default();
        *cache.view.lock().unwrap() = view;
        cache.release(&["/tasks/r/c/t4".to_string(), "/tasks/r/c/t3".to_string()]);
        let mut view = cache.view.lock().unwrap();
        assert_eq!(web(&mut view), (100, 1, 1, 1));
        let cap = &view.capacities["r/c"];
        assert_eq!(cap.slots[cap.slot("h").unwrap()].pending, 0);

        // A task that arrives unlike its reservation (another host) is
        // counted where it is, and the reservation given back.
        put_instance(&mut view, &instance("c", "h2", "small"));
        let slot = view.capacities["r/c"].slot("h").unwrap();
        view.reserve(
            &ck("c"),
            slot,
            "/tasks/r/c/t5",
            &ck("c"),
            "family:web",
            &cpu(100),
        );
        assert_eq!(web(&mut view), (200, 2, 2, 2));
        put_task(&mut view, "c/t5/h2/family:web", TaskStatus::Pending);
        assert_eq!(web(&mut view), (100, 1, 1, 1));
        assert_eq!(held(&view, "r/c", "h2"), 100);
        let cap = &view.capacities["r/c"];
        assert_eq!(cap.slots[cap.slot("h").unwrap()].pending, 0);
    }

    #[test]
    fn api_counts_follow_task_status_and_leave_out_uncommitted_placements() {
        let mut view = View::default();
        put_instance(&mut view, &instance("c", "h", "big"));
        let mut gone = instance("c", "gone", "big");
        gone.status = "INACTIVE".into();
        put_instance(&mut view, &gone);
        // (instances registered, cluster pending, running, host pending, running)
        let counts = |view: &View, cluster: &str| {
            let c = view.on_cluster(&ck(cluster));
            let h = view.on_instance(&ck(cluster), &ck(cluster), "h").counts;
            (
                c.registered,
                c.counts.pending,
                c.counts.running,
                h.pending,
                h.running,
            )
        };
        let slot = view.capacities["r/c"].slot("h").unwrap();
        view.reserve(
            &ck("c"),
            slot,
            "/tasks/r/c/t1",
            &ck("c"),
            "family:web",
            &cpu(100),
        );
        assert_eq!(counts(&view, "c"), (1, 0, 0, 0, 0));
        assert_eq!(
            view.on_cluster(&ck("c")).live,
            1,
            "a placement under way is live"
        );
        put_task(&mut view, "c/t1/h/family:web", TaskStatus::Pending);
        assert_eq!(counts(&view, "c"), (1, 1, 0, 1, 0));
        put_task(&mut view, "c/t2/h/family:web", TaskStatus::Pending);
        put_task(&mut view, "c/t1/h/family:web", TaskStatus::Running);
        assert_eq!(counts(&view, "c"), (1, 1, 1, 1, 1));
        put_task(&mut view, "c/t1/h/family:web", TaskStatus::Stopped);
        delete(&mut view, "/tasks/r/c/t2".into());
        assert_eq!(counts(&view, "c"), (1, 0, 0, 0, 0));
        assert_eq!(view.on_cluster(&ck("c")).live, 0);
        // A FARGATE task of cluster x runs on the managed capacity.
        put_task(&mut view, "x/f1/m1/family:web", TaskStatus::Running);
        assert_eq!(view.on_cluster(&ck("x")).counts.running, 1);
        assert_eq!(view.on_cluster(&ck("c")).counts.running, 0);
        assert_eq!(view.on_cluster(&ck("x")).live, 1);
        assert_eq!(view.on_cluster(&ck("c")).live, 0);
        put_task(&mut view, "x/f1/m1/family:web", TaskStatus::Stopped);
        assert_eq!(view.on_cluster(&ck("x")).live, 0);
    }

    #[test]
    fn each_host_lists_its_tasks_stopped_ones_too_until_deleted() {
        let mut view = View::default();
        put_instance(&mut view, &instance("c", "h", "big"));
        put_task(&mut view, "c/t1/h/family:web", TaskStatus::Running);
        put_task(&mut view, "c/t2/h/family:web", TaskStatus::Pending);
        put_task(&mut view, "c/t3/h2/family:web", TaskStatus::Running);
        put_task(&mut view, "x/f1/m1/family:web", TaskStatus::Running);
        let on = |view: &View, cap: &str, id: &str| {
            let mut keys = view.tasks_on(&ck(cap), id);
            keys.sort();
            keys
        };
        assert_eq!(on(&view, "c", "h"), ["/tasks/r/c/t1", "/tasks/r/c/t2"]);
        put_task(&mut view, "c/t1/h/family:web", TaskStatus::Stopped);
        assert_eq!(on(&view, "c", "h"), ["/tasks/r/c/t1", "/tasks/r/c/t2"]);
        delete(&mut view, "/tasks/r/c/t1".into());
        assert_eq!(on(&view, "c", "h"), ["/tasks/r/c/t2"]);
        // A managed host lists the tasks of every cluster it runs.
        assert_eq!(on(&view, MANAGED_CLUSTER, "m1"), ["/tasks/r/x/f1"]);
        // A host known only by its tasks is forgotten with the last of them.
        put_task(&mut view, "c/t3/h2/family:web", TaskStatus::Stopped);
        assert_eq!(on(&view, "c", "h2"), ["/tasks/r/c/t3"]);
        delete(&mut view, "/tasks/r/c/t3".into());
        assert!(view.capacities["r/c"].slot("h2").is_none());
    }

    #[test]
    fn spread_counts_follow_tasks_and_forget_hosts_that_stop_being_active() {
        let mut view = View::default();
        put_instance(&mut view, &instance("c", "h1", "big"));
        put_instance(&mut view, &instance("c", "h2", "small"));
        put_task(&mut view, "c/t1/h1/service:web", TaskStatus::Running);
        let counts = |view: &mut View, group: &str| {
            let cap = view.capacities.get_mut("r/c").unwrap();
            let v = cap.spread_counts("kind", &ck("c"), group);
            (v.get(Some("big")), v.get(Some("small")), v.get(None))
        };
        // Counted over every host on first use...
        assert_eq!(counts(&mut view, "service:web"), (1, 0, 0));
        // ...then kept as tasks come and go.
        put_task(&mut view, "c/t2/h2/service:web", TaskStatus::Pending);
        put_task(&mut view, "c/t3/h2/service:web", TaskStatus::Running);
        put_task(&mut view, "c/t4/h2/family:other", TaskStatus::Running);
        assert_eq!(counts(&mut view, "service:web"), (1, 2, 0));
        put_task(&mut view, "c/t2/h2/service:web", TaskStatus::Running);
        put_task(&mut view, "c/t3/h2/service:web", TaskStatus::Stopped);
        assert_eq!(counts(&mut view, "service:web"), (1, 1, 0));
        assert_eq!(counts(&mut view, "family:other"), (0, 1, 0));
        // A DRAINING host's tasks no longer count; back ACTIVE, they do.
        let mut draining = instance("c", "h2", "small");
        draining.status = "DRAINING".into();
        put_instance(&mut view, &draining);
        assert_eq!(counts(&mut view, "service:web"), (1, 0, 0));
        put_task(&mut view, "c/t5/h2/service:web", TaskStatus::Running);
        assert_eq!(counts(&mut view, "service:web"), (1, 0, 0));
        put_instance(&mut view, &instance("c", "h2", "small"));
        assert_eq!(counts(&mut view, "service:web"), (1, 2, 0));
        // A host without the attribute counts in the no-value bucket.
        let mut bare = instance("c", "h3", "x");
        bare.attributes.clear();
        put_instance(&mut view, &bare);
        put_task(&mut view, "c/t6/h3/service:web", TaskStatus::Running);
        assert_eq!(counts(&mut view, "service:web"), (1, 2, 1));
    }

    #[tokio::test]
    async fn closing_a_host_waits_for_placements_under_way_and_hides_it_until_dropped() {
        use wharf_store::{MemStore, Op, Txn};
        let store: DynStore = Arc::new(MemStore::new());
        let i = instance("c", "h", "big");
        store
            .txn(Txn::new().then(Op::put("/instances/r/c/h", serde_json::to_vec(&i).unwrap())))
            .await
            .unwrap();
        let cache = Arc::new(Cache::default());
        {
            let mut view = cache.fresh(&store).await.unwrap();
            let slot = view.capacities["r/c"].slot("h").unwrap();
            view.reserve(
                &ck("c"),
                slot,
                "/tasks/r/c/t1",
                &ck("c"),
                "family:web",
                &cpu(100),
            );
        }
        let closing = {
            let (cache, store) = (cache.clone(), store.clone());
            tokio::spawn(async move { cache.close(&store, &ck("c"), "h").await.unwrap() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !closing.is_finished(),
            "closed while a placement was under way"
        );
        let closed_to_placement = |cache: &Arc<Cache>| {
            let view = cache.view.lock().unwrap();
            let cap = &view.capacities["r/c"];
            cap.slots[cap.slot("h").unwrap()].closing
        };
        assert_eq!(closed_to_placement(&cache), 1, "no new placement meanwhile");
        cache.release(&["/tasks/r/c/t1".to_string()]);
        let guard = tokio::time::timeout(std::time::Duration::from_secs(5), closing)
            .await
            .expect("closes once the placement settled")
            .unwrap();
        assert_eq!(closed_to_placement(&cache), 1);
        drop(guard);
        assert_eq!(closed_to_placement(&cache), 0);
    }

    #[test]
    fn a_reload_keeps_the_reservations_of_placements_under_way_and_closed_hosts() {
        let mut old = View::default();
        put_instance(&mut old, &instance("c", "h", "big"));
        put_instance(&mut old, &instance("c", "gone", "big"));
        let at = old.capacities["r/c"].slot("gone").unwrap();
        old.capacities.get_mut("r/c").unwrap().slots[at].closing = 1;
        let slot = old.capacities["r/c"].slot("h").unwrap();
        for t in ["t1", "t2", "t3"] {
            old.reserve(
                &ck("c"),
                slot,
                &format!("/tasks/r/c/{t}"),
                &ck("c"),
                "family:web",
                &cpu(100),
            );
        }
        // The reloaded view has t1 live; t3 was committed and has stopped
        // since (the store holds it); t2 is still under way.
        let mut new = View::default();
        put_instance(&mut new, &instance("c", "h", "big"));
        put_task(&mut new, "c/t1/h/family:web", TaskStatus::Provisioning);
        put_task(&mut new, "c/t3/h/family:web", TaskStatus::Stopped);
        let committed = ["/tasks/r/c/t1".to_string(), "/tasks/r/c/t3".to_string()].into();
        new.adopt(&mut old, &committed);
        assert_eq!(held(&new, "r/c", "h"), 200);
        let cap = &new.capacities["r/c"];
        assert_eq!(cap.slots[cap.slot("gone").unwrap()].closing, 1);
        assert_eq!(cap.slots[cap.slot("h").unwrap()].closing, 0);
        put_task(&mut new, "c/t2/h/family:web", TaskStatus::Provisioning);
        assert_eq!(held(&new, "r/c", "h"), 200);
        assert!(new.pending.is_empty());
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
        let set = view.capacities.get_mut("r/c").unwrap().feasible(&big);
        assert_eq!(ids(&view, "r/c", &set), ["a", "c"]);

        // A task placed there changes nothing a static constraint reads:
        // the same set is handed out again, not recomputed; nor does a
        // version bump of the record.
        put_task(&mut view, "c/t1/a/family:web", TaskStatus::Running);
        let again = view.capacities.get_mut("r/c").unwrap().feasible(&big);
        assert!(Arc::ptr_eq(&set, &again));
        let mut bumped = a.clone();
        bumped.version += 1;
        put_instance(&mut view, &bumped);
        let again = view.capacities.get_mut("r/c").unwrap().feasible(&big);
        assert!(Arc::ptr_eq(&set, &again));

        // A changed attribute does.
        let mut now_big = b.clone();
        now_big.attributes.insert("kind".into(), Some("big".into()));
        put_instance(&mut view, &now_big);
        let set = view.capacities.get_mut("r/c").unwrap().feasible(&big);
        assert_eq!(ids(&view, "r/c", &set), ["a", "b", "c"]);

        // A host that goes is gone from the next set, and the slot that
        // took its place is still found by its ID.
        delete(&mut view, "/instances/r/c/a".into());
        delete(&mut view, "/tasks/r/c/t1".into());
        let set = view.capacities.get_mut("r/c").unwrap().feasible(&big);
        assert_eq!(ids(&view, "r/c", &set), ["b", "c"]);
        let cap = &view.capacities["r/c"];
        for id in ["b", "c"] {
            assert_eq!(&*cap.slots[cap.slot(id).unwrap()].id, id);
        }
        assert!(cap.slot("a").is_none());

        // Split by an attribute: the feasible hosts per value, following
        // the same changes.
        let split = |view: &mut View| {
            let split = view
                .capacities
                .get_mut("r/c")
                .unwrap()
                .feasible_by_value(&big, "kind");
            split
                .iter()
                .map(|(v, set)| (v.as_deref().map(str::to_string), ids(view, "r/c", set)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            split(&mut view),
            [(Some("big".into()), vec!["b".to_string(), "c".into()])]
        );
        let mut other = c.clone();
        other.attributes.insert("kind".into(), None);
        put_instance(&mut view, &other);
        let all = parse_constraints(&[]).unwrap();
        let by_kind = view
            .capacities
            .get_mut("r/c")
            .unwrap()
            .feasible_by_value(&all, "kind");
        let mut got: Vec<_> = by_kind
            .iter()
            .map(|(v, set)| (v.as_deref().map(str::to_string), ids(&view, "r/c", set)))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                (None, vec!["c".to_string()]),
                (Some("big".into()), vec!["b".into()])
            ]
        );
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
        let cap = &view.capacities["r/c"];
        let h = &cap.slots[cap.slot("h").unwrap()];
        let tasks = h.tasks(&ck("c")).unwrap();
        assert_eq!(tasks.running, 3);
        assert_eq!(tasks.groups["service:web"], 2);
        assert_eq!(tasks.groups["family:batch"], 1);
        let m = &view.capacities[MANAGED_CLUSTER];
        let m = &m.slots[m.slot("m").unwrap()];
        assert_eq!(m.tasks(&ck("x")).unwrap().groups["service:web"], 1);
        assert_eq!(m.tasks(&ck("y")).unwrap().running, 1);
        assert!(m.tasks(&ck("c")).is_none());

        // Stopping and deleting take tasks out; a task updated in place
        // (PENDING -> RUNNING) is counted once.
        put_task(&mut view, "c/t2/h/service:web", TaskStatus::Running);
        put_task(&mut view, "c/t1/h/service:web", TaskStatus::Stopped);
        delete(&mut view, "/tasks/r/c/t3".into());
        let cap = &view.capacities["r/c"];
        let tasks = cap.slots[cap.slot("h").unwrap()].tasks(&ck("c")).unwrap();
        assert_eq!(tasks.running, 1);
        assert_eq!(tasks.groups.get("service:web"), Some(&1));
        assert_eq!(tasks.groups.get("family:batch"), None);

        // A deregistered host is forgotten once its last task is gone
        // (deleted: a STOPPED task is still its agent's to clean up).
        delete(&mut view, "/instances/r/c/h".into());
        assert!(slot(&view, "r/c", "h").is_some());
        put_task(&mut view, "c/t2/h/service:web", TaskStatus::Stopped);
        assert!(slot(&view, "r/c", "h").is_some());
        delete(&mut view, "/tasks/r/c/t1".into());
        delete(&mut view, "/tasks/r/c/t2".into());
        assert!(slot(&view, "r/c", "h").is_none());
    }
}
